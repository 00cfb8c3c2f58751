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
 * Go offline before sleeping.
 *
 * Keys are in network byte order, in the client -> VIP direction of the 5-tuple.
 */
#ifndef HOMING_TABLE_H
#define HOMING_TABLE_H

#include <stdint.h>
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

/* Maximum keys per bulk lookup (rte_hash's limit). */
#define HOMING_TABLE_LOOKUP_MAX RTE_HASH_LOOKUP_BULK_MAX

struct homing_table_stats {
	uint64_t inserts;     /* successful adds (new key) */
	uint64_t updates;     /* successful overwrites of an existing key */
	uint64_t deletes;     /* successful deletes */
	uint64_t delete_miss; /* deletes of absent keys */
	uint64_t full;        /* adds refused because the table is full */
	uint64_t errors;      /* other failures */
};

struct homing_table {
	struct rte_hash *h4;
	struct rte_hash *h6;
	struct rte_rcu_qsbr *qsbr;
	uint32_t capacity4;
	uint32_t capacity6;
	struct homing_table_stats stats; /* written by the single writer only */
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

/* Point lookups for the control plane / CLI. Return 0 and fill *val, or -ENOENT. */
int homing_table_get4(const struct homing_table *t, const struct homing_key4 *key, uint64_t *val);
int homing_table_get6(const struct homing_table *t, const struct homing_key6 *key, uint64_t *val);

/* Iteration: *next starts at 0; fills up to max entries, returns the count (0 = done). */
uint32_t homing_table_iter4(const struct homing_table *t, uint32_t *next,
			    struct homing_key4 *keys, uint64_t *vals, uint32_t max);
uint32_t homing_table_iter6(const struct homing_table *t, uint32_t *next,
			    struct homing_key6 *keys, uint64_t *vals, uint32_t max);

uint32_t homing_table_count4(const struct homing_table *t);
uint32_t homing_table_count6(const struct homing_table *t);

/* Reader side, inlined into the lcore loop: one call per burst (n <= 64).
 * Sets bit i of *hitmask and vals[i] for every key found. Returns the number of hits. */
static inline int
homing_table_lookup4_bulk(const struct homing_table *t, const void **keys, uint32_t n,
			  uint64_t *hitmask, uint64_t *vals)
{
	return rte_hash_lookup_bulk_data(t->h4, keys, n, hitmask, (void **)vals);
}

static inline int
homing_table_lookup6_bulk(const struct homing_table *t, const void **keys, uint32_t n,
			  uint64_t *hitmask, uint64_t *vals)
{
	return rte_hash_lookup_bulk_data(t->h6, keys, n, hitmask, (void **)vals);
}

#ifdef __cplusplus
}
#endif
#endif /* HOMING_TABLE_H */
