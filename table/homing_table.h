/* SPDX-License-Identifier: Apache-2.0
 *
 * homing ownership table: session key -> (owner host id, epoch).
 *
 * One cuckoo hash per address family, written for this table instead of rte_hash (see
 * docs/PERFORMANCE.md: rte_hash spent about 140 instructions per lookup and 95 bytes per
 * session). Two layouts:
 *
 * IPv4 (16-byte keys): keys and owners inside the 64-byte bucket, so that a hit reads one
 * cache line (homing_tbucket4, 4 entries, column by column):
 *
 *   ver | proto[4] | owner[4] | src[4] | dst[4] | ports[4]     val[b*4+i] (owner+epoch)
 *
 *   The 64-bit values sit in a side array (read only by homing_table_finish4 and the
 *   bulk lookups, which return the epoch too; the pipeline's finish4_owner reads the
 *   bucket only). Buckets: ceil(capacity * 2 / 7) (3.5 keys of 4, 87.5 % load at
 *   capacity): 64 + 32 bytes per 3.5 sessions, 27.4 bytes a session. Primary bucket:
 *   homing_table_b41_, secondary: _b42_ (both mix h first). The stage step prefetches
 *   both (buckets of 4 overflow more than buckets of 8).
 *
 * IPv6 (40-byte keys): buckets of 8 signatures and key-slot indexes, the keys and values
 * in a key store:
 *
 *   bucket array (64-byte buckets)                     key store (capacity slots)
 *   +--------------------------------------------+    +------------------+-------+
 *   | sig[8] (16 bits of hash) | idx[8] (slot+1) | -> | key (40 B)       | value |
 *   +--------------------------------------------+    +------------------+-------+
 *
 *   Primary bucket: the multiply-high of h and the bucket count (any count: 64 bytes per
 *   7 keys), secondary: the same of a multiplicative mix of h, signature: h's low 16
 *   bits (homing_table_b1_, _b2_, _sig_).
 *
 * A key's hash h is CRC-32C of the key (homing_table_hash4/6, SSE4.2). A cuckoo move
 * finds an entry's other bucket by hashing its key again (writer side only). A small
 * stash per family takes the keys that no cuckoo path could place, so that the table
 * holds exactly `capacity` keys (the stash is for safety).
 *
 * Concurrency. There is exactly one writer, the Go control plane, which calls the
 * batched write functions below from one goroutine at a time (the Go side holds a
 * mutex); readers (the worker lcores) never lock.
 * IPv4, per-bucket versions (a seqlock without the lock): every change of a bucket
 * (insert, update, delete, either end of a cuckoo move) makes its version odd, stores
 * the fields, and makes it even again (release); a reader loads the version (acquire),
 * compares and reads the entry, fences (acquire), and retries if the version was odd or
 * moved. The stash has one version of its own. Nothing is deferred: a reader never keeps
 * a reference past its check.
 * IPv6, QSBR:
 *  - an insert writes the key and value into a free key slot, then the bucket's
 *    signature, then publishes the slot index with a release store;
 *  - an update stores the new value with one aligned 64-bit store;
 *  - a delete clears the bucket's index; the key slot goes to a defer queue and is
 *    reused only after every registered reader has reported a quiescent state on
 *    t->qsbr (QSBR), so a reader never reads a slot that was reused for another session.
 * Both: a cuckoo move copies an entry into its other bucket first, bumps `change`
 * (release), then overwrites the old place: a reader that misses re-checks `change` and
 * searches again if it moved during its lookup.
 *
 * Reader contract (lcore/): register the lcore on t->qsbr with its lcore id as thread id,
 * go online, call homing_table_lookup{4,6}_bulk* inside the loop, and call
 * rte_rcu_qsbr_quiescent(t->qsbr, lcore_id) once per loop iteration (outside any lookup).
 * Go offline before sleeping. A reader that stays online without reporting holds every
 * deleted IPv6 slot back: once the free slots run out, IPv6 adds wait up to
 * reclaim_wait_us (once per batch) and then fail with -ENOSPC. Go offline and unregister
 * before the table is freed. Bursts have up to HOMING_TABLE_LOOKUP_MAX keys. Keys looked
 * up must have protocol 6 or 17, or 253 in IPv6 (a QUIC connection ID: session.CIDKey)
 * (an all-zero IPv4 key would match an empty entry).
 *
 * Keys are in network byte order, in the client -> VIP direction of the 5-tuple.
 */
#ifndef HOMING_TABLE_H
#define HOMING_TABLE_H

#include <stdint.h>
#include <string.h>
#include <rte_branch_prediction.h>
#include <rte_common.h>
#include <rte_pause.h>
#include <rte_prefetch.h>
#include <rte_rcu_qsbr.h>
#if defined(__SSE4_2__)
#include <nmmintrin.h>
#else
#include <rte_hash_crc.h>
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* IPv4 session key, 16 bytes. pad must be zero. */
struct homing_key4 {
	uint32_t src;   /* client address */
	uint32_t dst;   /* VIP */
	uint16_t sport; /* client port */
	uint16_t dport; /* VIP port */
	uint8_t proto;  /* IPPROTO_TCP or IPPROTO_UDP (IPv6: or 253, a QUIC CID) */
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

/* Limits of homing_table_create. */
#define HOMING_TABLE_NAME_MAX 16
#define HOMING_TABLE_CAPACITY_MIN 8
#define HOMING_TABLE_CAPACITY_MAX (1u << 30)
/* Default of struct homing_table.reclaim_wait_us. */
#define HOMING_TABLE_RECLAIM_WAIT_US 10000
/* An add waiting for the readers spins this long before it sleeps. */
#define HOMING_TABLE_RECLAIM_SPIN_US 50

/* Ops and the extra result code of homing_table_write{4,6}. */
#define HOMING_OP_ADD 0
#define HOMING_OP_DEL 1
#define HOMING_RES_UPDATED 1

/* Maximum keys per bulk lookup. */
#define HOMING_TABLE_LOOKUP_MAX 64
/* Entries per bucket (one 64-byte cache line). */
#define HOMING_TABLE_BUCKET_ENTRIES 8
/* Keys per bucket the bucket array is sized for (8 entries: 87.5 % load at capacity). */
#define HOMING_TABLE_BUCKET_FILL 7
/* IPv4 entries per bucket (keys and owners in the 64-byte line), and the IPv4 keys per
 * bucket the array is sized for, in halves: 7/2 = 3.5 keys of 4 (87.5 % load). */
#define HOMING_TABLE_B4_ENTRIES 4
#define HOMING_TABLE_B4_FILL2 7
/* Overflow stash entries per family (keys no cuckoo path could place). */
#define HOMING_TABLE_STASH 32
/* Pending QSBR tokens per family (groups of deleted slots waiting for the readers). */
#define HOMING_TABLE_DEFER_GROUPS 1024
/* Seed of the CRC-32C key hash. */
#define HOMING_TABLE_HASH_SEED 0x9e3779b9u

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
	uint64_t cuckoo_moves;     /* entries moved to their other bucket to make room */
	uint64_t stashed;          /* keys placed in the stash */
};

struct homing_tbucket {
	uint16_t sig[HOMING_TABLE_BUCKET_ENTRIES];
	uint32_t idx[HOMING_TABLE_BUCKET_ENTRIES]; /* key slot + 1; 0: empty */
	uint32_t pad_[4];
} __attribute__((aligned(64)));

/* IPv4 bucket: four keys, column by column, with their owners and a version. The version
 * is even while the bucket is stable; the writer makes it odd for the time of a change
 * (insert, update, delete, either end of a cuckoo move) and even again after it. */
struct homing_tbucket4 {
	uint32_t ver;
	uint8_t proto[HOMING_TABLE_B4_ENTRIES];  /* 0: empty entry (the key's pad is zero) */
	uint16_t owner[HOMING_TABLE_B4_ENTRIES];
	uint32_t src[HOMING_TABLE_B4_ENTRIES];   /* key bytes 0..3 */
	uint32_t dst[HOMING_TABLE_B4_ENTRIES];   /* key bytes 4..7 */
	uint32_t ports[HOMING_TABLE_B4_ENTRIES]; /* key bytes 8..11 (sport, dport) */
} __attribute__((aligned(64)));

/* An IPv4 stash entry (protocol 0: empty). */
struct homing_stash4 {
	struct homing_key4 key;
	uint64_t val;
};

/* The IPv4 hash. */
struct homing_htab4 {
	/* Read by the lcores. */
	struct homing_tbucket4 *bkt;
	uint64_t *val;      /* value (owner and epoch) of entry i of bucket b at b * 4 + i */
	uint32_t nb;        /* buckets */
	uint32_t change;    /* bumped by every cuckoo move */
	uint32_t stash_ver; /* the stash's version (as a bucket's) */
	uint32_t stash_n;   /* stash entries to search (high-water mark) */
	struct homing_stash4 stash[HOMING_TABLE_STASH];
	/* Writer only. */
	uint32_t capacity;
	uint32_t count;
};

/* A group of deleted key slots (fifo positions before end) and its QSBR token. */
struct homing_defer {
	uint64_t end;
	uint64_t token;
};

/* One address family's hash. */
struct homing_htab {
	/* Read by the lcores. */
	struct homing_tbucket *bkt;
	/* Key slots: key, then the value (at offset key_len). Bucket index x (slot + 1) is
	 * at kv + x * entry: kv starts with a dummy all-zero slot (protocol 0, never a valid
	 * key), so that readers can compare with the slot of an empty entry. */
	uint8_t *kv;
	uint32_t nb;        /* buckets (any number >= 2: indexes by multiply-high) */
	uint32_t change;    /* bumped by every cuckoo move */
	uint32_t stash_n;   /* stash entries to search (high-water mark) */
	uint32_t stash[HOMING_TABLE_STASH]; /* key slot + 1; 0: empty */
	/* Writer only. */
	uint32_t capacity;
	uint32_t key_len;   /* 16 or 40 */
	uint32_t entry;     /* key slot size: 24 or 48 */
	uint32_t count;     /* live keys */
	/* Free key slots: a ring of capacity slot numbers indexed by free-running positions.
	 * [head, safe): free; [safe, closed): deleted, waiting for their group's token;
	 * [closed, tail): deleted in this batch, no token yet. */
	uint32_t *fifo;
	uint64_t head, safe, closed, tail;
	struct homing_defer *defer; /* HOMING_TABLE_DEFER_GROUPS, a ring */
	uint32_t defer_head, defer_n;
};

struct homing_table {
	struct homing_htab4 v4;
	struct homing_htab v6;
	struct rte_rcu_qsbr *qsbr;
	uint32_t capacity4;
	uint32_t capacity6;
	struct homing_table_stats stats; /* written by the single writer only */
	uint32_t count4; /* live IPv4 keys */
	uint32_t count6; /* live IPv6 keys */
	/* How long an add that finds no free slot, while deleted slots still wait for the
	 * readers, waits for a grace period (once per batch). */
	uint32_t reclaim_wait_us;
	/* Bumped (release) after every write batch that changed something: readers that hold
	 * packets for a missing session (lcore's park) look again only when it moved. */
	uint64_t gen;
	char name[HOMING_TABLE_NAME_MAX + 1];
};

/* Creates both hashes and the QSBR variable (sized for RTE_MAX_LCORE threads).
 * name must be unique in the process. Returns NULL and sets rte_errno on failure. */
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
 * capacities; all of it is taken at creation. */
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

/* Reader side, for tests: the key slot holding key (>= 0) or -ENOENT; and the key bytes
 * stored in slot pos (valid while the reader holds it, i.e. until its next quiescent
 * state). */
int32_t homing_table_position(const struct homing_table *t, int v6, const void *key);
const void *homing_table_slot_key(const struct homing_table *t, int v6, uint32_t pos);

/* ---- Reader side, inlined into the lcore loop ---- */

/* The key hashes. The lcore computes them while parsing and reuses them (UDP source
 * port of the tunnel). */
static __rte_always_inline uint32_t
homing_table_hash4(const struct homing_key4 *k)
{
	uint64_t a, b;

	memcpy(&a, k, 8);
	memcpy(&b, (const uint8_t *)k + 8, 8);
#if defined(__SSE4_2__)
	return (uint32_t)_mm_crc32_u64(_mm_crc32_u64(HOMING_TABLE_HASH_SEED, a), b);
#else
	return rte_hash_crc_8byte(b, rte_hash_crc_8byte(a, HOMING_TABLE_HASH_SEED));
#endif
}

static __rte_always_inline uint32_t
homing_table_hash6(const struct homing_key6 *k)
{
	const uint8_t *p = (const uint8_t *)k;
	uint64_t c = HOMING_TABLE_HASH_SEED, w;

	for (int i = 0; i < 5; i++) {
		memcpy(&w, p + 8 * i, 8);
#if defined(__SSE4_2__)
		c = _mm_crc32_u64(c, w);
#else
		c = rte_hash_crc_8byte(w, (uint32_t)c);
#endif
	}
	return (uint32_t)c;
}

static __rte_always_inline uint32_t
homing_table_hash_(const void *k, uint32_t klen)
{
	return klen == 16 ? homing_table_hash4((const struct homing_key4 *)k)
			  : homing_table_hash6((const struct homing_key6 *)k);
}

/* A key's two buckets and its signature, from its hash hv: the primary bucket from hv's
 * high bits by a multiply-high (no power-of-two bucket count, so that the bucket array
 * follows the capacity closely), the secondary from a multiplicative mix of hv, the
 * signature from hv's low 16 bits (independent of the primary bucket). */
static __rte_always_inline uint32_t
homing_table_b1_(uint32_t hv, uint32_t nb)
{
	return (uint32_t)(((uint64_t)hv * nb) >> 32);
}

static __rte_always_inline uint32_t
homing_table_b2_(uint32_t hv, uint32_t nb)
{
	return (uint32_t)(((uint64_t)(uint32_t)(hv * 0x9e3779b1u + 0x7f4a7c15u) * nb) >> 32);
}

/* The IPv4 hash's two buckets. CRC-32C is linear and session keys are structured (a
 * client network, a port range): the high bits of hv alone fill buckets of 4 unevenly
 * (37 % of 100,000 test keys missed their primary bucket at 75 % load). A multiply by an
 * odd constant carries every bit of hv into the high bits that pick the bucket. */
static __rte_always_inline uint32_t
homing_table_b41_(uint32_t hv, uint32_t nb)
{
	return (uint32_t)(((uint64_t)(uint32_t)(hv * 0x9e3779b1u) * nb) >> 32);
}

static __rte_always_inline uint32_t
homing_table_b42_(uint32_t hv, uint32_t nb)
{
	return (uint32_t)(((uint64_t)(uint32_t)((hv >> 16 | hv << 16) * 0x85ebca77u) * nb) >> 32);
}

static __rte_always_inline uint16_t
homing_table_sig_(uint32_t hv)
{
	return (uint16_t)hv;
}

/* Bit 2*i set for every entry i of b whose signature is sig. */
static __rte_always_inline uint32_t
homing_table_sigmatch_(const struct homing_tbucket *b, uint16_t sig)
{
#if defined(__SSE4_2__)
	__m128i v = _mm_load_si128((const __m128i *)(const void *)b->sig);
	return (uint32_t)_mm_movemask_epi8(_mm_cmpeq_epi16(v, _mm_set1_epi16((short)sig))) &
	       0x5555u;
#else
	uint32_t m = 0;
	for (int i = 0; i < HOMING_TABLE_BUCKET_ENTRIES; i++)
		m |= (uint32_t)(b->sig[i] == sig) << (2 * i);
	return m;
#endif
}

static __rte_always_inline int
homing_table_keyeq_(const uint8_t *a, const void *bv, uint32_t klen)
{
	const uint8_t *b = (const uint8_t *)bv;
#if defined(__SSE4_2__)
	__m128i x = _mm_xor_si128(_mm_loadu_si128((const __m128i *)(const void *)a),
				  _mm_loadu_si128((const __m128i *)(const void *)b));
	if (klen == 40) {
		uint64_t p, q;
		x = _mm_or_si128(x, _mm_xor_si128(
			_mm_loadu_si128((const __m128i *)(const void *)(a + 16)),
			_mm_loadu_si128((const __m128i *)(const void *)(b + 16))));
		memcpy(&p, a + 32, 8);
		memcpy(&q, b + 32, 8);
		return _mm_testz_si128(x, x) && p == q;
	}
	return _mm_testz_si128(x, x);
#else
	return memcmp(a, b, klen) == 0;
#endif
}

/* Searches key in both buckets and the stash. Returns the key slot + 1, or 0. */
static __rte_always_inline uint32_t
homing_table_search_(const struct homing_htab *h, const void *key, uint32_t hv, uint32_t klen,
		     uint32_t esz)
{
	uint32_t b = homing_table_b1_(hv, h->nb), m, x, i, sn;
	uint16_t sig = homing_table_sig_(hv);

	for (int pass = 0; pass < 2; pass++) {
		const struct homing_tbucket *bk = &h->bkt[b];
		for (m = homing_table_sigmatch_(bk, sig); m != 0; m &= m - 1) {
			x = __atomic_load_n(&bk->idx[__builtin_ctz(m) >> 1], __ATOMIC_ACQUIRE);
			if (x != 0 && homing_table_keyeq_(h->kv + (size_t)x * esz, key, klen))
				return x;
		}
		b = homing_table_b2_(hv, h->nb);
	}
	sn = __atomic_load_n(&h->stash_n, __ATOMIC_ACQUIRE);
	for (i = 0; i < sn; i++) {
		x = __atomic_load_n(&h->stash[i], __ATOMIC_ACQUIRE);
		if (x != 0 && homing_table_keyeq_(h->kv + (size_t)x * esz, key, klen))
			return x;
	}
	return 0;
}

/* Lookup of one key, retried while a cuckoo move may have hidden it. */
static __rte_always_inline uint32_t
homing_table_find_(const struct homing_htab *h, const void *key, uint32_t hv, uint32_t klen,
		   uint32_t esz)
{
	uint32_t c0, x;

	do {
		c0 = __atomic_load_n(&h->change, __ATOMIC_ACQUIRE);
		x = homing_table_search_(h, key, hv, klen, esz);
		if (x != 0)
			return x;
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
	} while (__atomic_load_n(&h->change, __ATOMIC_ACQUIRE) != c0);
	return 0;
}

/* Lookup in two steps, for callers that act on each key right after its comparison
 * (lcore's pipeline): homing_table_stage_ takes the hashes of a burst, prefetches the
 * primary buckets, then picks in each the first entry whose signature matches and
 * prefetches its key slot (cand[i]); homing_table_finish_ then compares one key
 * with its candidate (the dummy slot if none) and falls back to a full search (both
 * buckets, the stash, retried while cuckoo moves run) when the candidate is not the key. Both must run inside the
 * same quiescent period. */
static __rte_always_inline void
homing_table_stage_(const struct homing_htab *h, const uint32_t *hash, uint32_t stride,
		    uint32_t n, const uint8_t **cand, const uint32_t esz)
{
	const struct homing_tbucket *B = h->bkt;
	const uint8_t *kv = h->kv;
	const uint32_t nb = h->nb;
	uint32_t i;
#define HOMING_TABLE_HASH_(i) (*(const uint32_t *)(const void *)((const uint8_t *)hash + (size_t)(i) * stride))

	/* Only the primary bucket is prefetched: below 87.5 % load nearly every key is in
	 * its primary bucket (an insert tries it first). cand[] holds the bucket until the
	 * second loop replaces it by the candidate key slot. */
	for (i = 0; i < n; i++) {
		const struct homing_tbucket *bk = &B[homing_table_b1_(HOMING_TABLE_HASH_(i), nb)];
		rte_prefetch0(bk);
		cand[i] = (const uint8_t *)bk;
	}
	for (i = 0; i < n; i++) {
		uint32_t hv = HOMING_TABLE_HASH_(i);
		const struct homing_tbucket *bk = (const struct homing_tbucket *)(const void *)cand[i];
		uint32_t m = homing_table_sigmatch_(bk, homing_table_sig_(hv)), x = 0;
		/* no match: x = 0, the dummy slot, which no key equals */
		if (likely(m != 0))
			x = __atomic_load_n(&bk->idx[(uint32_t)__builtin_ctz(m) >> 1], __ATOMIC_ACQUIRE);
		cand[i] = kv + (size_t)x * esz;
		/* a key slot (24 or 48 bytes) may straddle two cache lines: 2 of 8 IPv4
		 * slots do, and the compare reads the key and the value */
		rte_prefetch0(cand[i]);
		rte_prefetch0(cand[i] + esz - 1);
	}
#undef HOMING_TABLE_HASH_
}

static __rte_always_inline int
homing_table_finish_(const struct homing_htab *h, const void *key, uint32_t hash,
		     const uint8_t *cand, uint64_t *val, const uint32_t klen)
{
	const uint32_t esz = klen == 16 ? 24 : 48;
	uint32_t x;

	if (likely(homing_table_keyeq_(cand, key, klen))) {
		*val = __atomic_load_n((const uint64_t *)(const void *)(cand + klen), __ATOMIC_RELAXED);
		return 1;
	}
	x = homing_table_find_(h, key, hash, klen, esz);
	if (x == 0)
		return 0;
	*val = __atomic_load_n((const uint64_t *)(const void *)(h->kv + (size_t)x * esz + klen),
			       __ATOMIC_RELAXED);
	return 1;
}

/* ---- IPv4: keys and owners inside the bucket (one cache line per lookup) ---- */

/* Bit i set for every entry i of IPv4 bucket b that holds key k (all 16 key bytes:
 * addresses, ports, and protocol with the padding; an empty entry has protocol 0). */
static __rte_always_inline uint32_t
homing_table_match4_(const struct homing_tbucket4 *b, const struct homing_key4 *k)
{
	uint32_t w[4];

	memcpy(w, k, sizeof(w));
#if defined(__SSE4_2__)
	uint32_t pw;
	__m128i s, d, p, q;

	__m128i kv = _mm_loadu_si128((const __m128i *)(const void *)k);

	memcpy(&pw, b->proto, sizeof(pw));
	s = _mm_cmpeq_epi32(_mm_load_si128((const __m128i *)(const void *)b->src),
			    _mm_shuffle_epi32(kv, 0x00));
	d = _mm_cmpeq_epi32(_mm_load_si128((const __m128i *)(const void *)b->dst),
			    _mm_shuffle_epi32(kv, 0x55));
	p = _mm_cmpeq_epi32(_mm_load_si128((const __m128i *)(const void *)b->ports),
			    _mm_shuffle_epi32(kv, 0xaa));
	q = _mm_cmpeq_epi32(_mm_cvtepu8_epi32(_mm_cvtsi32_si128((int)pw)),
			    _mm_shuffle_epi32(kv, 0xff));
	return (uint32_t)_mm_movemask_ps(
		_mm_castsi128_ps(_mm_and_si128(_mm_and_si128(s, d), _mm_and_si128(p, q))));
#else
	uint32_t m = 0;
	for (int i = 0; i < HOMING_TABLE_B4_ENTRIES; i++)
		m |= (uint32_t)(b->src[i] == w[0] && b->dst[i] == w[1] && b->ports[i] == w[2] &&
				(uint32_t)b->proto[i] == w[3]) << i;
	return m;
#endif
}

/* Reads key's entry in bucket bk under the bucket's version. Returns 1 (found: *owner,
 * and *val if val is not NULL), 0 (not in bk), -1 (the writer changed bk meanwhile). */
static __rte_always_inline int
homing_table_read4_(const struct homing_htab4 *h, const struct homing_tbucket4 *bk,
		    const struct homing_key4 *key, uint16_t *owner, uint64_t *val)
{
	uint32_t v0 = __atomic_load_n(&bk->ver, __ATOMIC_ACQUIRE);
	uint32_t m = homing_table_match4_(bk, key), i;
	uint16_t o = 0;
	uint64_t x = 0;

	if (m != 0) {
		i = (uint32_t)__builtin_ctz(m);
		o = __atomic_load_n(&bk->owner[i], __ATOMIC_RELAXED);
		if (val != NULL)
			x = __atomic_load_n(&h->val[(size_t)(bk - h->bkt) * HOMING_TABLE_B4_ENTRIES + i],
					    __ATOMIC_RELAXED);
	}
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	if (unlikely((v0 & 1) != 0 || __atomic_load_n(&bk->ver, __ATOMIC_RELAXED) != v0))
		return -1;
	if (m == 0)
		return 0;
	*owner = o;
	if (val != NULL)
		*val = x;
	return 1;
}

/* The stash, under its own version. Same results as homing_table_read4_. */
static __rte_always_inline int
homing_table_stash4_(const struct homing_htab4 *h, const struct homing_key4 *key,
		     uint16_t *owner, uint64_t *val)
{
	uint32_t v0 = __atomic_load_n(&h->stash_ver, __ATOMIC_ACQUIRE);
	uint32_t sn = __atomic_load_n(&h->stash_n, __ATOMIC_RELAXED), i;
	uint64_t x = 0;
	int found = 0;

	for (i = 0; i < sn && i < HOMING_TABLE_STASH; i++)
		if (homing_table_keyeq_((const uint8_t *)&h->stash[i].key, key, 16)) {
			x = __atomic_load_n(&h->stash[i].val, __ATOMIC_RELAXED);
			found = 1;
			break;
		}
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	if (unlikely((v0 & 1) != 0 || __atomic_load_n(&h->stash_ver, __ATOMIC_RELAXED) != v0))
		return -1;
	if (!found)
		return 0;
	*owner = HOMING_VAL_OWNER(x);
	if (val != NULL)
		*val = x;
	return 1;
}

/* Full IPv4 search: both buckets and the stash, each read under its version (retried
 * while the writer changes it), the whole retried while a cuckoo move may have hidden
 * the key. Returns 1 (found) or 0. */
static __rte_always_inline int
homing_table_find4_(const struct homing_htab4 *h, const struct homing_key4 *key, uint32_t hv,
		    uint16_t *owner, uint64_t *val)
{
	uint32_t c0, b;
	int r;

	do {
		c0 = __atomic_load_n(&h->change, __ATOMIC_ACQUIRE);
		b = homing_table_b41_(hv, h->nb);
		for (int pass = 0; pass < 2; pass++) {
			while ((r = homing_table_read4_(h, &h->bkt[b], key, owner, val)) < 0)
				rte_pause();
			if (r > 0)
				return 1;
			b = homing_table_b42_(hv, h->nb);
		}
		if (__atomic_load_n(&h->stash_n, __ATOMIC_ACQUIRE) != 0) {
			while ((r = homing_table_stash4_(h, key, owner, val)) < 0)
				rte_pause();
			if (r > 0)
				return 1;
		}
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
	} while (__atomic_load_n(&h->change, __ATOMIC_ACQUIRE) != c0);
	return 0;
}

/* hash[0] is the first key's hash, the next ones follow every stride bytes (the hashes
 * may sit in the caller's per-packet records). IPv4: stage prefetches each key's two
 * buckets (cand[i]: the primary); finish compares the key in the primary bucket under
 * its version (a hit reads that one cache line), then in the secondary, then falls back
 * to the full search. No QSBR hold: an IPv4 lookup is complete when finish returns. */
static __rte_always_inline void
homing_table_stage4(const struct homing_table *t, const uint32_t *hash, uint32_t stride,
		    uint32_t n, const uint8_t **cand)
{
	const struct homing_tbucket4 *B = t->v4.bkt;
	const uint32_t nb = t->v4.nb;
	uint32_t i;

	for (i = 0; i < n; i++) {
		uint32_t hv = *(const uint32_t *)(const void *)((const uint8_t *)hash + (size_t)i * stride);
		const struct homing_tbucket4 *bk = &B[homing_table_b41_(hv, nb)];
		rte_prefetch0(bk);
		/* buckets of 4 overflow: 7-13 % of keys live in their secondary bucket
		 * (at 70-87 % load); fetching it in parallel beats a dependent miss */
		rte_prefetch0(&B[homing_table_b42_(hv, nb)]);
		cand[i] = (const uint8_t *)bk;
	}
}

/* After a miss in the primary bucket: the secondary bucket (a hit there is as good as
 * anywhere), then the full search. */
static __rte_always_inline int
homing_table_second4_(const struct homing_htab4 *h, const struct homing_key4 *key, uint32_t hv,
		      int r, uint16_t *owner, uint64_t *val)
{
	if (r == 0 &&
	    homing_table_read4_(h, &h->bkt[homing_table_b42_(hv, h->nb)], key, owner, val) > 0)
		return 1;
	return homing_table_find4_(h, key, hv, owner, val);
}

/* The owner only: what the forwarding decision needs (no read outside the bucket). */
static __rte_always_inline int
homing_table_finish4_owner(const struct homing_table *t, const struct homing_key4 *key,
			   uint32_t hash, const uint8_t *cand, uint16_t *owner)
{
	const struct homing_tbucket4 *bk = (const struct homing_tbucket4 *)(const void *)cand;
	int r = homing_table_read4_(&t->v4, bk, key, owner, NULL);

	if (likely(r > 0))
		return 1;
	return homing_table_second4_(&t->v4, key, hash, r, owner, NULL);
}

/* The whole value (owner and epoch): reads the entry's value word too (a second line). */
static __rte_always_inline int
homing_table_finish4(const struct homing_table *t, const struct homing_key4 *key,
		     uint32_t hash, const uint8_t *cand, uint64_t *val)
{
	const struct homing_tbucket4 *bk = (const struct homing_tbucket4 *)(const void *)cand;
	uint16_t owner;
	int r = homing_table_read4_(&t->v4, bk, key, &owner, val);

	if (likely(r > 0))
		return 1;
	return homing_table_second4_(&t->v4, key, hash, r, &owner, val);
}

static __rte_always_inline void
homing_table_stage6(const struct homing_table *t, const uint32_t *hash, uint32_t stride,
		    uint32_t n, const uint8_t **cand)
{
	homing_table_stage_(&t->v6, hash, stride, n, cand, 48);
}

static __rte_always_inline int
homing_table_finish6(const struct homing_table *t, const struct homing_key6 *key,
		     uint32_t hash, const uint8_t *cand, uint64_t *val)
{
	return homing_table_finish_(&t->v6, key, hash, cand, val, 40);
}

/* IPv4 bulk lookup (pointers kp or array karr; hashes given or computed). */
static __rte_always_inline uint64_t
homing_table_bulk4_(const struct homing_table *t, const void *const *kp, const void *karr,
		    const uint32_t *hash, uint32_t n, uint64_t *vals)
{
	const uint8_t *cand[HOMING_TABLE_LOOKUP_MAX];
	uint32_t hs[HOMING_TABLE_LOOKUP_MAX];
	uint64_t hits = 0;
	uint32_t i;

#define HOMING_TABLE_KEY4_(i) \
	((const struct homing_key4 *)(kp != NULL ? kp[i] : (const void *)((const uint8_t *)karr + (size_t)(i) * 16)))
	if (hash == NULL) {
		for (i = 0; i < n; i++)
			hs[i] = homing_table_hash4(HOMING_TABLE_KEY4_(i));
		hash = hs;
	}
	homing_table_stage4(t, hash, sizeof(uint32_t), n, cand);
	for (i = 0; i < n; i++)
		if (homing_table_finish4(t, HOMING_TABLE_KEY4_(i), hash[i], cand[i], &vals[i]))
			hits |= 1ULL << i;
#undef HOMING_TABLE_KEY4_
	return hits;
}

/* The bulk lookup: keys either as pointers (kp) or as an array (karr); hashes given
 * (hash) or computed. */
static __rte_always_inline uint64_t
homing_table_bulk_(const struct homing_htab *h, const void *const *kp, const void *karr,
		   const uint32_t *hash, uint32_t n, uint64_t *vals, const uint32_t klen)
{
	const uint32_t esz = klen == 16 ? 24 : 48;
	const uint8_t *cand[HOMING_TABLE_LOOKUP_MAX];
	uint32_t hs[HOMING_TABLE_LOOKUP_MAX];
	uint64_t hits = 0;
	uint32_t i;

#define HOMING_TABLE_KEY_(i) \
	(kp != NULL ? kp[i] : (const void *)((const uint8_t *)karr + (size_t)(i) * klen))
	if (hash == NULL) {
		for (i = 0; i < n; i++)
			hs[i] = homing_table_hash_(HOMING_TABLE_KEY_(i), klen);
		hash = hs;
	}
	homing_table_stage_(h, hash, sizeof(uint32_t), n, cand, esz);
	for (i = 0; i < n; i++)
		if (homing_table_finish_(h, HOMING_TABLE_KEY_(i), hash[i], cand[i], &vals[i], klen))
			hits |= 1ULL << i;
#undef HOMING_TABLE_KEY_
	return hits;
}

/* Looks up n (<= HOMING_TABLE_LOOKUP_MAX) IPv4 keys whose hashes (homing_table_hash4)
 * are hash[i]. Returns the hit mask (bit i: keys[i] found, vals[i] set). */
static __rte_always_inline uint64_t
homing_table_lookup4_hashed(const struct homing_table *t, const struct homing_key4 *keys,
			    const uint32_t *hash, uint32_t n, uint64_t *vals)
{
	return homing_table_bulk4_(t, NULL, keys, hash, n, vals);
}

static __rte_always_inline uint64_t
homing_table_lookup6_hashed(const struct homing_table *t, const struct homing_key6 *keys,
			    const uint32_t *hash, uint32_t n, uint64_t *vals)
{
	return homing_table_bulk_(&t->v6, NULL, keys, hash, n, vals, 40);
}

/* Pointer-array form: one call per burst (n <= 64). Sets bit i of *hitmask and vals[i]
 * for every key found. Returns the number of hits. */
static inline int
homing_table_lookup4_bulk(const struct homing_table *t, const void **keys, uint32_t n,
			  uint64_t *hitmask, uint64_t *vals)
{
	*hitmask = homing_table_bulk4_(t, keys, NULL, NULL, n, vals);
	return __builtin_popcountll(*hitmask);
}

static inline int
homing_table_lookup6_bulk(const struct homing_table *t, const void **keys, uint32_t n,
			  uint64_t *hitmask, uint64_t *vals)
{
	*hitmask = homing_table_bulk_(&t->v6, keys, NULL, NULL, n, vals, 40);
	return __builtin_popcountll(*hitmask);
}

#ifdef __cplusplus
}
#endif
#endif /* HOMING_TABLE_H */
