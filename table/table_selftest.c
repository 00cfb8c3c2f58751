//go:build harness

/* SPDX-License-Identifier: Apache-2.0
 *
 * Test harness for the ownership table: see table_selftest.h.
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include <rte_common.h>
#include <rte_byteorder.h>
#include <rte_cycles.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_pause.h>
#include <rte_rcu_qsbr.h>

#include "homing_table.h"
#include "table_selftest.h"

#define SELFTEST_BURST 32

static uint32_t
fnv1a(const void *p, uint32_t len)
{
	const uint8_t *b = p;
	uint32_t h = 2166136261u;
	uint32_t i;

	for (i = 0; i < len; i++) {
		h ^= b[i];
		h *= 16777619u;
	}
	return h;
}

uint64_t
homing_selftest_val(const void *key, uint32_t len, uint32_t gen)
{
	uint32_t m = fnv1a(key, len);

	return HOMING_VAL(m & 0xffff, ((uint64_t)gen << 16) | (m >> 16));
}

static int
val_ok(const void *key, uint32_t len, uint64_t v)
{
	uint32_t m = fnv1a(key, len);

	return HOMING_VAL_OWNER(v) == (m & 0xffff) && (HOMING_VAL_EPOCH(v) & 0xffff) == (m >> 16);
}

static void
add64(uint64_t *p, uint64_t n)
{
	__atomic_store_n(p, __atomic_load_n(p, __ATOMIC_RELAXED) + n, __ATOMIC_RELAXED);
}

/* Looks key up by position, holds it hold_ns, and checks its slot still holds it. */
static void
hold(struct homing_selftest_reader *r, int v6, const void *key, uint32_t len,
     uint64_t hold_cycles)
{
	const void *slot;
	int32_t pos = homing_table_position(r->t, v6, key);
	uint64_t end;

	if (pos < 0)
		return;
	end = rte_rdtsc() + hold_cycles;
	while (rte_rdtsc() < end)
		rte_pause();
	/* The key slot at pos must still hold the key (deleted or not). */
	slot = homing_table_slot_key(r->t, v6, (uint32_t)pos);
	add64(&r->held, 1);
	if (slot == NULL || memcmp(slot, key, len) != 0)
		add64(&r->reused, 1);
}

/* One burst from keys[*off...] (wrapping); adds to r's counters. */
static void
burst(struct homing_selftest_reader *r, int v6, const uint8_t *keys, uint32_t nkeys,
      uint32_t *off, uint64_t hold_cycles)
{
	const void *kp[SELFTEST_BURST];
	uint64_t vals[SELFTEST_BURST], hits = 0, bad = 0;
	uint32_t len = v6 ? sizeof(struct homing_key6) : sizeof(struct homing_key4);
	uint32_t i, n = RTE_MIN((uint32_t)SELFTEST_BURST, nkeys);

	for (i = 0; i < n; i++) {
		kp[i] = keys + (size_t)*off * len;
		if (++*off == nkeys)
			*off = 0;
	}
	if (v6)
		homing_table_lookup6_bulk(r->t, kp, n, &hits, vals);
	else
		homing_table_lookup4_bulk(r->t, kp, n, &hits, vals);
	for (i = 0; i < n; i++)
		if ((hits & (1ULL << i)) && !val_ok(kp[i], len, vals[i]))
			bad++;
	/* IPv6 only: an IPv4 lookup holds nothing (its entry is read under the bucket's
	 * version, and IPv4 keys have no key slot). */
	if (hold_cycles != 0 && hits != 0 && v6) {
		i = (uint32_t)__builtin_ctzll(hits);
		hold(r, v6, kp[i], len, hold_cycles);
	}
	add64(&r->lookups, n);
	add64(&r->hits, (uint64_t)__builtin_popcountll(hits));
	if (bad)
		add64(&r->mismatches, bad);
}

int
homing_selftest_reader(void *arg)
{
	struct homing_selftest_reader *r = arg;
	struct rte_rcu_qsbr *q = r->t->qsbr;
	unsigned int lcore = rte_lcore_id();
	uint32_t off4 = 0, off6 = 0;
	uint64_t hold_cycles = rte_get_tsc_hz() / 1000000000.0 * r->hold_ns;

	r->lcore = lcore;
	if (rte_rcu_qsbr_thread_register(q, lcore) != 0) {
		__atomic_store_n(&r->status, -rte_errno, __ATOMIC_RELEASE);
		return -1;
	}
	rte_rcu_qsbr_thread_online(q, lcore);
	__atomic_store_n(&r->running, 1, __ATOMIC_RELEASE);
	while (!__atomic_load_n(&r->stop, __ATOMIC_ACQUIRE)) {
		if (__atomic_load_n(&r->pause, __ATOMIC_ACQUIRE)) {
			/* Online, not quiescent: the writer must not recycle anything. */
			__atomic_store_n(&r->running, 2, __ATOMIC_RELEASE);
			rte_pause();
			continue;
		}
		__atomic_store_n(&r->running, 1, __ATOMIC_RELAXED);
		if (r->n4)
			burst(r, 0, (const uint8_t *)r->keys4, r->n4, &off4, hold_cycles);
		if (r->n6)
			burst(r, 1, (const uint8_t *)r->keys6, r->n6, &off6, hold_cycles);
		rte_rcu_qsbr_quiescent(q, lcore);
		add64(&r->loops, 1);
	}
	rte_rcu_qsbr_thread_offline(q, lcore);
	rte_rcu_qsbr_thread_unregister(q, lcore);
	__atomic_store_n(&r->running, 0, __ATOMIC_RELEASE);
	return 0;
}

uint64_t
homing_selftest_bench(const struct homing_table *t, int v6, const void *keys, uint32_t nkeys,
		      uint64_t n, uint64_t *cycles)
{
	const uint8_t *kb = keys;
	uint32_t len = v6 ? sizeof(struct homing_key6) : sizeof(struct homing_key4);
	const void *kp[SELFTEST_BURST];
	uint64_t vals[SELFTEST_BURST], hits, total = 0, done = 0, start;
	uint32_t off = 0, i, b;

	start = rte_rdtsc();
	while (done < n) {
		b = (uint32_t)RTE_MIN((uint64_t)SELFTEST_BURST, n - done);
		for (i = 0; i < b; i++) {
			kp[i] = kb + (size_t)off * len;
			if (++off == nkeys)
				off = 0;
		}
		hits = 0;
		if (v6)
			homing_table_lookup6_bulk(t, kp, b, &hits, vals);
		else
			homing_table_lookup4_bulk(t, kp, b, &hits, vals);
		total += (uint64_t)__builtin_popcountll(hits);
		done += b;
	}
	*cycles = rte_rdtsc() - start;
	return total;
}

int
homing_selftest_lookup_repeat(const struct homing_table *t, int v6, const void *key, uint32_t n)
{
	const void *kp[HOMING_TABLE_LOOKUP_MAX];
	uint64_t vals[HOMING_TABLE_LOOKUP_MAX], hits = 0;
	uint32_t i;

	if (n == 0 || n > HOMING_TABLE_LOOKUP_MAX)
		return -EINVAL;
	for (i = 0; i < n; i++)
		kp[i] = key;
	if (v6)
		return homing_table_lookup6_bulk(t, kp, n, &hits, vals);
	return homing_table_lookup4_bulk(t, kp, n, &hits, vals);
}

uint64_t
homing_selftest_heap_allocated(void)
{
	struct rte_malloc_socket_stats st;
	uint64_t total = 0;
	unsigned int i;

	for (i = 0; i < rte_socket_count(); i++) {
		if (rte_malloc_get_socket_stats(rte_socket_id_by_idx(i), &st) == 0)
			total += st.heap_allocsz_bytes;
	}
	return total;
}

/* ---- IPv4 version race (homing_selftest_race4) ---- */

static void
race_key(uint32_t i, struct homing_key4 *k)
{
	memset(k, 0, sizeof(*k));
	k->src = rte_cpu_to_be_32(0xc6120000u | (i & 0xffff)); /* 198.18.x.y */
	k->dst = rte_cpu_to_be_32(0xc613ff01u);                /* 198.19.255.1 */
	k->sport = rte_cpu_to_be_16((uint16_t)(1024 + (i >> 16)));
	k->dport = rte_cpu_to_be_16(443);
	k->proto = (i & 1) ? 17 : 6;
}

struct race_writer {
	struct homing_table *t;
	struct homing_selftest_race *r;
};

static void *
race_writer_main(void *arg)
{
	struct race_writer *w = arg;
	struct homing_selftest_race *r = w->r;
	struct homing_key4 keys[2];
	uint64_t vals[2];
	uint8_t ops[2];
	int32_t res[2];
	uint32_t gen = 2, i = 0;

	/* Each step deletes one churn key and adds another (so that the table stays
	 * full and adds go through cuckoo paths that move the stable keys), and rewrites
	 * one stable key's value with a new generation. */
	while (!__atomic_load_n(&r->stop, __ATOMIC_ACQUIRE)) {
		uint32_t a = r->nstable + (i % r->nchurn), d;
		uint32_t s = i % r->nstable;

		d = r->nstable + ((i + r->nchurn / 2) % r->nchurn);
		race_key(d, &keys[0]);
		ops[0] = HOMING_OP_DEL;
		vals[0] = 0;
		race_key(a, &keys[1]);
		ops[1] = HOMING_OP_ADD;
		vals[1] = homing_selftest_val(&keys[1], sizeof(keys[1]), gen);
		homing_table_write4(w->t, keys, vals, ops, 2, res);
		race_key(s, &keys[0]);
		vals[0] = homing_selftest_val(&keys[0], sizeof(keys[0]), gen);
		ops[0] = HOMING_OP_ADD;
		if (homing_table_write4(w->t, keys, vals, ops, 1, res) != 1 ||
		    res[0] != HOMING_RES_UPDATED)
			add64(&r->writer_errors, 1);
		add64(&r->writes, 3);
		i++;
		if (i % r->nchurn == 0)
			gen++;
	}
	return NULL;
}

int
homing_selftest_race4(struct homing_table *t, struct homing_selftest_race *r)
{
	struct homing_key4 k, keys[SELFTEST_BURST];
	const void *kp[SELFTEST_BURST];
	const uint8_t *cand[SELFTEST_BURST];
	uint32_t hash[SELFTEST_BURST];
	uint64_t vals[SELFTEST_BURST], hits, end, val;
	struct race_writer w = {t, r};
	pthread_t th;
	uint32_t i, j, off = 0, n = r->nstable + r->nchurn;
	uint16_t owner;

	/* The stable keys, and the churn keys the writer deletes first (churn offsets
	 * nchurn/2 .. nchurn-1: step i deletes offset i + nchurn/2 and adds offset i). */
	if (r->nstable == 0 || r->nchurn < 2 || r->nchurn % 2 != 0)
		return -EINVAL;
	for (i = 0; i < n; i++) {
		if (i >= r->nstable && i < r->nstable + r->nchurn / 2)
			continue;
		race_key(i, &k);
		val = homing_selftest_val(&k, sizeof(k), 1);
		if (homing_table_add4(t, &k, &val, 1, NULL) != 1)
			return -ENOSPC;
	}
	if (pthread_create(&th, NULL, race_writer_main, &w) != 0)
		return -EAGAIN;
	end = rte_rdtsc() + rte_get_tsc_hz() / 1000 * r->ms;
	while (rte_rdtsc() < end) {
		/* A burst of stable keys (always present: every one must be found) through
		 * the pipeline's two steps, then a burst over every key through the bulk
		 * lookup (churn keys may be absent; a hit must be the key's own value). */
		for (j = 0; j < SELFTEST_BURST; j++) {
			race_key((off + j) % r->nstable, &keys[j]);
			hash[j] = homing_table_hash4(&keys[j]);
		}
		homing_table_stage4(t, hash, sizeof(hash[0]), SELFTEST_BURST, cand);
		for (j = 0; j < SELFTEST_BURST; j++) {
			if (!homing_table_finish4_owner(t, &keys[j], hash[j], cand[j], &owner)) {
				add64(&r->missing, 1);
				continue;
			}
			if (owner != HOMING_VAL_OWNER(homing_selftest_val(&keys[j], sizeof(keys[j]), 0)))
				add64(&r->mismatches, 1);
		}
		for (j = 0; j < SELFTEST_BURST; j++) {
			race_key((off + j) % n, &keys[j]);
			kp[j] = &keys[j];
		}
		homing_table_lookup4_bulk(t, kp, SELFTEST_BURST, &hits, vals);
		for (j = 0; j < SELFTEST_BURST; j++) {
			if ((off + j) % n < r->nstable && !(hits >> j & 1))
				add64(&r->missing, 1);
			if ((hits >> j & 1) && !val_ok(&keys[j], sizeof(keys[j]), vals[j]))
				add64(&r->mismatches, 1);
		}
		add64(&r->lookups, 2 * SELFTEST_BURST);
		off += 7;
	}
	__atomic_store_n(&r->stop, 1, __ATOMIC_RELEASE);
	pthread_join(th, NULL);
	r->cuckoo_moves = t->stats.cuckoo_moves;
	return 0;
}


void
homing_selftest_buckets4(const struct homing_table *t, const struct homing_key4 *k,
			 uint32_t *b1, uint32_t *b2)
{
	uint32_t hv = homing_table_hash4(k);

	*b1 = homing_table_b41_(hv, t->v4.nb);
	*b2 = homing_table_b42_(hv, t->v4.nb);
}
