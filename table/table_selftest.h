/* SPDX-License-Identifier: Apache-2.0
 *
 * Test harness for the ownership table (compiled into the package because _test.go
 * files cannot use cgo; used only by its tests and benchmarks).
 *
 * Values written by the tests are derived from their key (homing_selftest_val): owner =
 * low 16 bits of FNV-1a(key bytes), epoch = (generation << 16) | high 16 bits. A reader
 * that ever returned the value of another key (a slot recycled under it) sees a
 * mismatch with probability 1 - 2^-32.
 */
#ifndef HOMING_TABLE_SELFTEST_H
#define HOMING_TABLE_SELFTEST_H

#include <stdint.h>
#include "homing_table.h"

struct homing_selftest_reader {
	/* Set by the launcher. */
	const struct homing_table *t;
	const struct homing_key4 *keys4;
	const struct homing_key6 *keys6;
	uint32_t n4, n6;
	/* Control, written by Go (atomics). */
	uint32_t stop;  /* return */
	uint32_t pause; /* stay online but stop reporting quiescent states */
	/* Once per loop the reader also looks one hit up by position, holds it hold_ns
	 * (like a long burst), then checks that the key slot at that position still holds
	 * its key: a slot recycled while a reader holds it counts in `reused`. */
	uint32_t hold_ns;
	/* Written by the reader (atomics). */
	uint32_t running; /* 1 once registered and online, 2 when paused */
	int32_t status;   /* 0, or negative errno of registration */
	uint32_t lcore;
	uint64_t loops, lookups, hits, mismatches, held, reused;
};

/* lcore_function_t: registers on t->qsbr with its lcore id, looks up bursts of 32 keys
 * (IPv4 then IPv6) and checks every hit, reporting a quiescent state once per loop. */
int homing_selftest_reader(void *arg);

/* Value the tests store for key (bytes, len) at generation gen. */
uint64_t homing_selftest_val(const void *key, uint32_t len, uint32_t gen);

/* Bulk lookups of n keys in bursts of 32 from keys (a shuffled array of nkeys IPv4 or
 * IPv6 keys), timed with rte_rdtsc. Returns the hits; *cycles receives the TSC delta. */
uint64_t homing_selftest_bench(const struct homing_table *t, int v6, const void *keys,
			       uint32_t nkeys, uint64_t n, uint64_t *cycles);

/* Looks the same key up n times in one homing_table_lookup{4,6}_bulk call; returns the
 * number of hits. */
int homing_selftest_lookup_repeat(const struct homing_table *t, int v6, const void *key,
				  uint32_t n);

/* Bytes allocated on every rte_malloc heap socket. */
uint64_t homing_selftest_heap_allocated(void);

/* IPv4 reader/writer race (the bucket versions): a writer thread churns a small, full
 * table (each step deletes a churn key, adds another through cuckoo paths that move
 * the stable keys, and rewrites a stable key's value) while the calling thread looks
 * the keys up for ms milliseconds. Every stable key must always be found (missing)
 * and every hit must carry its own key's value (mismatches). The table must be empty
 * with capacity4 >= nstable + nchurn / 2 + 1. Returns 0 or a negative errno. */
struct homing_selftest_race {
	uint32_t nstable, nchurn, ms;
	uint32_t stop; /* internal */
	uint64_t lookups, missing, mismatches, writes, writer_errors, cuckoo_moves;
};
int homing_selftest_race4(struct homing_table *t, struct homing_selftest_race *r);

/* The two buckets of IPv4 key k in t. */
void homing_selftest_buckets4(const struct homing_table *t, const struct homing_key4 *k,
			      uint32_t *b1, uint32_t *b2);

#endif
