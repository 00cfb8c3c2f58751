/* SPDX-License-Identifier: Apache-2.0
 *
 * homing ownership table: session key -> (owner host id, epoch).
 *
 * Two DPDK cuckoo hashes (rte_hash), one for IPv4 keys (16 bytes) and one for IPv6 keys
 * (40 bytes), both created with RTE_HASH_EXTRA_FLAGS_RW_CONCURRENCY_LF: readers (the
 * worker lcores) never lock. There is exactly one writer, the Go control plane, which calls
 * the batched update/delete functions below from one goroutine at a time (the Go side holds
 * a mutex). Deleted key slots are recycled only after every registered reader has reported
 * a quiescent state on the table's QSBR variable (rte_hash_rcu_qsbr_add, defer-queue mode),
 * so an lcore never reads a slot that was reused for another session.
 *
 * Reader contract (lcore/): register the lcore on t->qsbr with its lcore id as thread id,
 * go online, call homing_table_lookup{4,6}_bulk inside the loop, and call
 * rte_rcu_qsbr_quiescent(t->qsbr, lcore_id) once per loop iteration (outside any lookup).
 * Go offline before sleeping. A reader that stays online without reporting holds every
 * deleted slot back: once the free slots run out, adds wait up to reclaim_wait_us (once
 * per batch) and then fail with -ENOSPC. Go offline and unregister before the table is
 * freed. Bursts may have up to 64 keys (see homing_table_lookup_bulk_ below).
 *
 * Keys are in network byte order, in the client -> VIP direction of the 5-tuple.
 */
#ifndef HOMING_TABLE_H
#define HOMING_TABLE_H

#include <stdint.h>
#include <rte_branch_prediction.h>
#include <rte_hash.h>
#include <rte_rcu_qsbr.h>

#ifdef __cplusplus
extern "C" {
#endif

/* IPv4 session key, 16 bytes. pad must be zero. */
struct homing_key4 {
	uint32_t src;   /* client address */
	uint32_t dst;   /* VIP */
	uint16_t sport; /* client port */
	uint16_t dport; /* VIP port */
	uint8_t proto;  /* IPPROTO_TCP or IPPROTO_UDP */
	uint8_t pad[3];
} __attribute__((packed, aligned(4)));

/* IPv6 session key, 40 bytes. pad must be zero. */
struct homing_key6 {
	uint8_t src[16];
	uint8_t dst[16];
	uint16_t sport;
	uint16_t dport;
	uint8_t proto;
	uint8_t pad[3];
} __attribute__((packed, aligned(4)));

/* The 64-bit value word: owner host id in the low 16 bits, epoch in the high 48. */
#define HOMING_VAL(owner, epoch) (((uint64_t)(epoch) << 16) | (uint64_t)(uint16_t)(owner))
#define HOMING_VAL_OWNER(v) ((uint16_t)((uint64_t)(v) & 0xffff))
#define HOMING_VAL_EPOCH(v) ((uint64_t)(v) >> 16)

/* Limits of homing_table_create. The name prefixes the rte_hash names and, through
 * them, ring names that DPDK truncates to 29 characters ("HASH_RCU_HT_<name>_v4"), so
 * it is short. */
#define HOMING_TABLE_NAME_MAX 16
#define HOMING_TABLE_CAPACITY_MIN 8
#define HOMING_TABLE_CAPACITY_MAX (1u << 30)
/* Default of struct homing_table.reclaim_wait_us. */
#define HOMING_TABLE_RECLAIM_WAIT_US 10000
/* An add waiting for the readers spins this long before it sleeps. */
#define HOMING_TABLE_RECLAIM_SPIN_US 50
/* Deferred slots freed per reclaim (each delete reclaims what is already safe). */
#define HOMING_TABLE_RECLAIM_BATCH 64

/* Ops and the extra result code of homing_table_write{4,6}. */
#define HOMING_OP_ADD 0
#define HOMING_OP_DEL 1
#define HOMING_RES_UPDATED 1

/* Maximum keys per bulk lookup (rte_hash's limit). */
#define HOMING_TABLE_LOOKUP_MAX RTE_HASH_LOOKUP_BULK_MAX

struct homing_table_stats {
	uint64_t inserts;     /* successful adds (new key) */
	uint64_t updates;     /* successful overwrites of an existing key */
	uint64_t deletes;     /* successful deletes */
	uint64_t delete_miss; /* deletes of absent keys */
	uint64_t full;        /* adds refused because the table is full */
	uint64_t errors;      /* other failures */
	uint64_t invalid;     /* writes refused for a bad key (proto, pad) or op (-EINVAL) */
	uint64_t reclaim_waits;    /* adds that waited for readers to release deleted slots */
	uint64_t reclaim_timeouts; /* ... and gave up after reclaim_wait_us */
};

struct homing_table {
	struct rte_hash *h4;
	struct rte_hash *h6;
	struct rte_rcu_qsbr *qsbr;
	uint32_t capacity4;
	uint32_t capacity6;
	struct homing_table_stats stats; /* written by the single writer only */
	/* Fields below were added after the first draft; the layout above is unchanged. */
	uint32_t count4; /* live IPv4 keys (rte_hash_count also counts deferred slots) */
	uint32_t count6; /* live IPv6 keys */
	/* How long an add that finds no free slot, while deleted slots still wait for the
	 * readers in the defer queue, waits for a grace period (once per batch). */
	uint32_t reclaim_wait_us;
	/* Bumped (release) after every write batch that changed something: readers that hold
	 * packets for a missing session (lcore's park) look again only when it moved. */
	uint64_t gen;
};

/* Creates both hashes and the QSBR variable (sized for RTE_MAX_LCORE threads).
 * name must be unique in the process (it prefixes the rte_hash names).
 * Returns NULL and sets rte_errno on failure. */
struct homing_table *homing_table_create(const char *name, uint32_t capacity4,
					 uint32_t capacity6, int socket_id);
void homing_table_free(struct homing_table *t);

/* Batched writes (single writer). results[i] receives 0 on success or a negative errno
 * (-ENOSPC: table full, -EINVAL: bad key). Returns the number of successes. */
uint32_t homing_table_add4(struct homing_table *t, const struct homing_key4 *keys,
			   const uint64_t *vals, uint32_t n, int32_t *results);
uint32_t homing_table_add6(struct homing_table *t, const struct homing_key6 *keys,
			   const uint64_t *vals, uint32_t n, int32_t *results);
/* results[i]: 0 deleted, -ENOENT absent. */
uint32_t homing_table_del4(struct homing_table *t, const struct homing_key4 *keys,
			   uint32_t n, int32_t *results);
uint32_t homing_table_del6(struct homing_table *t, const struct homing_key6 *keys,
			   uint32_t n, int32_t *results);

/* Mixed batch in order: ops[i] is HOMING_OP_ADD (vals[i] is the value) or HOMING_OP_DEL.
 * results[i]: 0 inserted or deleted, HOMING_RES_UPDATED for an add that overwrote,
 * -ENOSPC full, -ENOENT deleting an absent key, -EINVAL bad key or op.
 * Returns the number of results >= 0. */
uint32_t homing_table_write4(struct homing_table *t, const struct homing_key4 *keys,
			     const uint64_t *vals, const uint8_t *ops, uint32_t n,
			     int32_t *results);
uint32_t homing_table_write6(struct homing_table *t, const struct homing_key6 *keys,
			     const uint64_t *vals, const uint8_t *ops, uint32_t n,
			     int32_t *results);

/* Bytes of DPDK memory (rte_malloc heap) homing_table_create takes for these
 * capacities, computed from rte_hash's 22.11 layout; all of it is taken at creation. */
uint64_t homing_table_memsize(uint32_t capacity4, uint32_t capacity6);

/* Point lookups for the control plane / CLI, on the writer side (not concurrently with
 * writes: they are not QSBR readers). Return 0 and fill *val, -ENOENT, or -EINVAL. */
int homing_table_get4(const struct homing_table *t, const struct homing_key4 *key, uint64_t *val);
int homing_table_get6(const struct homing_table *t, const struct homing_key6 *key, uint64_t *val);

/* Iteration: *next starts at 0; fills up to max entries, returns the count (0 = done). */
uint32_t homing_table_iter4(const struct homing_table *t, uint32_t *next,
			    struct homing_key4 *keys, uint64_t *vals, uint32_t max);
uint32_t homing_table_iter6(const struct homing_table *t, uint32_t *next,
			    struct homing_key6 *keys, uint64_t *vals, uint32_t max);

/* Live keys (not counting deleted slots that wait for the readers). */
uint32_t homing_table_count4(const struct homing_table *t);
uint32_t homing_table_count6(const struct homing_table *t);

/* Reader side, inlined into the lcore loop: one call per burst (n <= 64).
 * Sets bit i of *hitmask and vals[i] for every key found. Returns the number of hits.
 *
 * rte_hash 22.11's lock-free bulk lookup tests "all found" as
 * hits == (1ULL << num_keys) - 1, which for num_keys == 64 shifts by 64: on x86 that is
 * 1 << 0, so a burst of 64 keys of which none is in a main bucket returns before the
 * extendable buckets are searched, and keys that overflowed there are missed (seen in
 * TestFull). Bursts of 64 are therefore split in two. */
static inline int
homing_table_lookup_bulk_(const struct rte_hash *h, const void **keys, uint32_t n,
			  uint64_t *hitmask, uint64_t *vals)
{
	uint64_t lo = 0, hi = 0;
	int a, b;

	if (likely(n < 64))
		return rte_hash_lookup_bulk_data(h, keys, n, hitmask, (void **)vals);
	a = rte_hash_lookup_bulk_data(h, keys, 32, &lo, (void **)vals);
	b = rte_hash_lookup_bulk_data(h, keys + 32, n - 32, &hi, (void **)(vals + 32));
	if (a < 0 || b < 0)
		return a < 0 ? a : b;
	*hitmask = lo | (hi << 32);
	return a + b;
}

static inline int
homing_table_lookup4_bulk(const struct homing_table *t, const void **keys, uint32_t n,
			  uint64_t *hitmask, uint64_t *vals)
{
	return homing_table_lookup_bulk_(t->h4, keys, n, hitmask, vals);
}

static inline int
homing_table_lookup6_bulk(const struct homing_table *t, const void **keys, uint32_t n,
			  uint64_t *hitmask, uint64_t *vals)
{
	return homing_table_lookup_bulk_(t->h6, keys, n, hitmask, vals);
}

#ifdef __cplusplus
}
#endif
#endif /* HOMING_TABLE_H */
