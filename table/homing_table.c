/* SPDX-License-Identifier: Apache-2.0
 *
 * homing ownership table: the writer side (create, batched writes, point lookups,
 * iteration, counts, free). The reader side is inline in homing_table.h.
 *
 * Concurrency. One writer at a time (the Go side holds a mutex), any number of lcore
 * readers, lock-free. The writer may run on any OS thread, EAL or not: rte_hash calls
 * rte_lcore_id() only for the per-lcore free-slot caches of
 * RTE_HASH_EXTRA_FLAGS_MULTI_WRITER_ADD, which we do not set; without it the free-slot
 * ring is used with single-producer/single-consumer calls, from the writer only. The
 * QSBR defer queue uses MT-safe ring modes and rte_rcu_qsbr_start/check, none of which
 * need an lcore id (checked against DPDK 22.11 lib/hash/rte_cuckoo_hash.c and
 * lib/rcu/rte_rcu_qsbr.c). Point lookups and iteration run on the writer side, under the
 * same mutex, so that no slot they read is recycled under them.
 *
 * Slot recycling. With RW_CONCURRENCY_LF and a QSBR variable attached in DQ mode,
 * rte_hash_del_key() pushes the key-store slot (and an extendable bucket it emptied) on
 * a defer queue with a fresh QSBR token. The queue is reclaimed by later deletes (trigger
 * limit 0: every enqueue frees what is already safe, up to HOMING_TABLE_RECLAIM_BATCH)
 * and by adds that find no free slot. A slot comes back only when every registered,
 * online reader has called rte_rcu_qsbr_quiescent() after the delete. An add that finds
 * no free slot while deleted slots are still deferred waits, at most reclaim_wait_us and
 * once per batch, for the readers to pass a quiescent state; after that it is -ENOSPC.
 *
 * Extendable buckets. RTE_HASH_EXTRA_FLAGS_EXT_TABLE is supported together with
 * RW_CONCURRENCY_LF since DPDK 19.05 (emptied extendable buckets are recycled through
 * the same defer queue as key slots). With it the table holds exactly `capacity` keys,
 * whatever the cuckoo paths, so "full" is deterministic; the price is a second bucket
 * array (64 B per 8 keys) and a chained search for the few keys that overflow. See the
 * note on 64-key bulk lookups in homing_table.h.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <rte_common.h>
#include <rte_errno.h>
#include <rte_hash.h>
#include <rte_hash_crc.h>
#include <rte_malloc.h>
#include <rte_pause.h>
#include <rte_rcu_qsbr.h>
#include <rte_ring_elem.h>

#include "homing_table.h"


_Static_assert(sizeof(struct homing_key4) == 16, "homing_key4 must be 16 bytes");
_Static_assert(sizeof(struct homing_key6) == 40, "homing_key6 must be 40 bytes");

#define HASH_FLAGS (RTE_HASH_EXTRA_FLAGS_RW_CONCURRENCY_LF | RTE_HASH_EXTRA_FLAGS_EXT_TABLE)

/* Mirrors of rte_hash internals (lib/hash/rte_cuckoo_hash.h, 22.11), for memsize only. */
#define HASH_BUCKET_ENTRIES 8
#define HASH_BUCKET_SIZE 64
#define HASH_KEY_ALIGNMENT 16
#define HASH_KEY_HDR 8 /* struct rte_hash_key: the data pointer before the key */
#define HASH_DQ_ELEM 16 /* QSBR token + struct __rte_hash_rcu_dq_entry */

static int
valid_proto(uint8_t p)
{
	return p == 6 || p == 17;
}

static int
key4_valid(const void *k)
{
	const struct homing_key4 *key = k;

	return valid_proto(key->proto) && (key->pad[0] | key->pad[1] | key->pad[2]) == 0;
}

static int
key6_valid(const void *k)
{
	const struct homing_key6 *key = k;

	return valid_proto(key->proto) && (key->pad[0] | key->pad[1] | key->pad[2]) == 0;
}

static struct rte_hash *
create_hash(const char *name, const char *suffix, uint32_t key_len, uint32_t capacity,
	    int socket_id, struct rte_rcu_qsbr *qsbr)
{
	char hname[RTE_HASH_NAMESIZE];
	struct rte_hash_parameters p = {
		.name = hname,
		.entries = capacity,
		.key_len = key_len,
		.hash_func = rte_hash_crc,
		.hash_func_init_val = 0,
		.socket_id = socket_id,
		.extra_flag = HASH_FLAGS,
	};
	struct rte_hash_rcu_config rcu = {
		.v = qsbr,
		.mode = RTE_HASH_QSBR_MODE_DQ,
		/* A deferred slot is a slot not in the table: capacity entries always fit,
		 * so an enqueue never fails (a failed enqueue would leak the slot). */
		.dq_size = capacity,
		.trigger_reclaim_limit = 0,
		.max_reclaim_size = HOMING_TABLE_RECLAIM_BATCH,
	};
	struct rte_hash *h;
	int err;

	snprintf(hname, sizeof(hname), "%s%s", name, suffix);
	h = rte_hash_create(&p);
	if (h == NULL) {
		if (rte_errno == 0)
			rte_errno = ENOMEM;
		return NULL;
	}
	if (rte_hash_rcu_qsbr_add(h, &rcu) != 0) {
		err = rte_errno != 0 ? rte_errno : ENOMEM;
		rte_hash_free(h);
		rte_errno = err;
		return NULL;
	}
	return h;
}

struct homing_table *
homing_table_create(const char *name, uint32_t capacity4, uint32_t capacity6, int socket_id)
{
	struct homing_table *t;
	size_t qsz;
	int err;

	if (name == NULL || name[0] == '\0') {
		rte_errno = EINVAL;
		return NULL;
	}
	if (strlen(name) > HOMING_TABLE_NAME_MAX) {
		rte_errno = ENAMETOOLONG;
		return NULL;
	}
	if (capacity4 < HOMING_TABLE_CAPACITY_MIN || capacity4 > HOMING_TABLE_CAPACITY_MAX ||
	    capacity6 < HOMING_TABLE_CAPACITY_MIN || capacity6 > HOMING_TABLE_CAPACITY_MAX) {
		rte_errno = EINVAL;
		return NULL;
	}
	t = rte_zmalloc_socket("homing_table", sizeof(*t), RTE_CACHE_LINE_SIZE, socket_id);
	if (t == NULL) {
		rte_errno = ENOMEM;
		return NULL;
	}
	qsz = rte_rcu_qsbr_get_memsize(RTE_MAX_LCORE);
	t->qsbr = rte_zmalloc_socket("homing_table_qsbr", qsz, RTE_CACHE_LINE_SIZE, socket_id);
	if (t->qsbr == NULL) {
		err = ENOMEM;
		goto fail;
	}
	if (rte_rcu_qsbr_init(t->qsbr, RTE_MAX_LCORE) != 0) {
		err = rte_errno;
		goto fail;
	}
	t->capacity4 = capacity4;
	t->capacity6 = capacity6;
	t->reclaim_wait_us = HOMING_TABLE_RECLAIM_WAIT_US;
	t->h4 = create_hash(name, "_v4", sizeof(struct homing_key4), capacity4, socket_id, t->qsbr);
	if (t->h4 == NULL) {
		err = rte_errno;
		goto fail;
	}
	t->h6 = create_hash(name, "_v6", sizeof(struct homing_key6), capacity6, socket_id, t->qsbr);
	if (t->h6 == NULL) {
		err = rte_errno;
		goto fail;
	}
	return t;
fail:
	homing_table_free(t);
	rte_errno = err;
	return NULL;
}

void
homing_table_free(struct homing_table *t)
{
	if (t == NULL)
		return;
	/* rte_hash_free reclaims the defer queue; readers must be gone (or offline). */
	rte_hash_free(t->h4);
	rte_hash_free(t->h6);
	rte_free(t->qsbr);
	rte_free(t);
}

static uint64_t
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Waits until every registered online reader has passed a quiescent state, so that
 * every slot deferred so far can be reclaimed. Readers report once per loop (a few
 * microseconds), so it spins first and sleeps only after HOMING_TABLE_RECLAIM_SPIN_US.
 * Returns 1 on success, 0 on timeout. */
static int
wait_readers(struct homing_table *t)
{
	uint64_t token = rte_rcu_qsbr_start(t->qsbr);
	uint64_t start = now_us(), now;
	struct timespec nap = {.tv_sec = 0, .tv_nsec = 20000};

	t->stats.reclaim_waits++;
	while (!rte_rcu_qsbr_check(t->qsbr, token, false)) {
		now = now_us();
		if (now - start >= t->reclaim_wait_us) {
			t->stats.reclaim_timeouts++;
			return 0;
		}
		if (now - start < HOMING_TABLE_RECLAIM_SPIN_US)
			rte_pause();
		else
			nanosleep(&nap, NULL);
	}
	return 1;
}

/* One family's side of the table, for the generic batch loop. */
struct family {
	struct rte_hash *h;
	uint32_t *count;
	uint32_t capacity;
	size_t key_size;
	int (*valid)(const void *key);
};

static struct family
family4(struct homing_table *t)
{
	return (struct family){t->h4, &t->count4, t->capacity4, sizeof(struct homing_key4),
			       key4_valid};
}

static struct family
family6(struct homing_table *t)
{
	return (struct family){t->h6, &t->count6, t->capacity6, sizeof(struct homing_key6),
			       key6_valid};
}

/* Returns 0 (inserted), HOMING_RES_UPDATED, or a negative errno. */
static int32_t
add_one(struct homing_table *t, const struct family *f, const void *key, uint64_t val,
	bool *gave_up)
{
	hash_sig_t sig;
	int32_t pos;
	int ret;

	if (!f->valid(key)) {
		t->stats.invalid++;
		return -EINVAL;
	}
	sig = rte_hash_hash(f->h, key);
	pos = rte_hash_lookup_with_hash(f->h, key, sig);
	ret = rte_hash_add_key_with_hash_data(f->h, key, sig, (void *)(uintptr_t)val);
	if (ret == -ENOSPC && pos < 0 && *f->count < f->capacity && !*gave_up) {
		/* Free slots exist but wait in the defer queue for the readers. */
		if (wait_readers(t))
			ret = rte_hash_add_key_with_hash_data(f->h, key, sig,
							      (void *)(uintptr_t)val);
		else
			*gave_up = true;
	}
	if (ret == 0 && pos >= 0) {
		t->stats.updates++;
		return HOMING_RES_UPDATED;
	}
	if (ret == 0) {
		t->stats.inserts++;
		(*f->count)++;
		return 0;
	}
	if (ret == -ENOSPC) {
		t->stats.full++;
		return -ENOSPC;
	}
	t->stats.errors++;
	return ret < 0 ? ret : -EIO;
}

/* Returns 0 (deleted) or a negative errno. */
static int32_t
del_one(struct homing_table *t, const struct family *f, const void *key)
{
	int32_t ret;

	if (!f->valid(key)) {
		t->stats.invalid++;
		return -EINVAL;
	}
	ret = rte_hash_del_key(f->h, key);
	if (ret >= 0) {
		t->stats.deletes++;
		(*f->count)--;
		return 0;
	}
	if (ret == -ENOENT) {
		t->stats.delete_miss++;
		return -ENOENT;
	}
	t->stats.errors++;
	return ret;
}

/* ops == NULL: every entry is the op `all`. Results as homing_table_write4. */
static uint32_t
write_batch(struct homing_table *t, const struct family *f, const void *keys,
	    const uint64_t *vals, const uint8_t *ops, uint8_t all, uint32_t n, int32_t *results)
{
	const uint8_t *k = keys;
	bool gave_up = false;
	uint32_t i, ok = 0;
	int32_t r;

	for (i = 0; i < n; i++, k += f->key_size) {
		uint8_t op = ops != NULL ? ops[i] : all;

		if (op == HOMING_OP_ADD)
			r = add_one(t, f, k, vals[i], &gave_up);
		else if (op == HOMING_OP_DEL)
			r = del_one(t, f, k);
		else
			r = -EINVAL;
		if (r >= 0)
			ok++;
		if (results != NULL)
			results[i] = r;
	}
	if (ok != 0)
		__atomic_store_n(&t->gen, t->gen + 1, __ATOMIC_RELEASE);
	return ok;
}

uint32_t
homing_table_write4(struct homing_table *t, const struct homing_key4 *keys,
		    const uint64_t *vals, const uint8_t *ops, uint32_t n, int32_t *results)
{
	struct family f = family4(t);

	return write_batch(t, &f, keys, vals, ops, HOMING_OP_ADD, n, results);
}

uint32_t
homing_table_write6(struct homing_table *t, const struct homing_key6 *keys,
		    const uint64_t *vals, const uint8_t *ops, uint32_t n, int32_t *results)
{
	struct family f = family6(t);

	return write_batch(t, &f, keys, vals, ops, HOMING_OP_ADD, n, results);
}

static void
updated_is_success(int32_t *results, uint32_t n)
{
	uint32_t i;

	for (i = 0; results != NULL && i < n; i++)
		if (results[i] == HOMING_RES_UPDATED)
			results[i] = 0;
}

uint32_t
homing_table_add4(struct homing_table *t, const struct homing_key4 *keys,
		  const uint64_t *vals, uint32_t n, int32_t *results)
{
	struct family f = family4(t);
	uint32_t ok = write_batch(t, &f, keys, vals, NULL, HOMING_OP_ADD, n, results);

	updated_is_success(results, n);
	return ok;
}

uint32_t
homing_table_add6(struct homing_table *t, const struct homing_key6 *keys,
		  const uint64_t *vals, uint32_t n, int32_t *results)
{
	struct family f = family6(t);
	uint32_t ok = write_batch(t, &f, keys, vals, NULL, HOMING_OP_ADD, n, results);

	updated_is_success(results, n);
	return ok;
}

uint32_t
homing_table_del4(struct homing_table *t, const struct homing_key4 *keys, uint32_t n,
		  int32_t *results)
{
	struct family f = family4(t);

	return write_batch(t, &f, keys, NULL, NULL, HOMING_OP_DEL, n, results);
}

uint32_t
homing_table_del6(struct homing_table *t, const struct homing_key6 *keys, uint32_t n,
		  int32_t *results)
{
	struct family f = family6(t);

	return write_batch(t, &f, keys, NULL, NULL, HOMING_OP_DEL, n, results);
}

static int
get_one(const struct rte_hash *h, const void *key, uint64_t *val)
{
	void *data = NULL;
	int ret = rte_hash_lookup_data(h, key, &data);

	if (ret < 0)
		return ret == -ENOENT ? -ENOENT : ret;
	*val = (uint64_t)(uintptr_t)data;
	return 0;
}

int
homing_table_get4(const struct homing_table *t, const struct homing_key4 *key, uint64_t *val)
{
	if (!key4_valid(key))
		return -EINVAL;
	return get_one(t->h4, key, val);
}

int
homing_table_get6(const struct homing_table *t, const struct homing_key6 *key, uint64_t *val)
{
	if (!key6_valid(key))
		return -EINVAL;
	return get_one(t->h6, key, val);
}

static uint32_t
iter(const struct rte_hash *h, uint32_t *next, void *keys, size_t key_size, uint64_t *vals,
     uint32_t max)
{
	uint8_t *k = keys;
	uint32_t n = 0;

	while (n < max) {
		const void *key;
		void *data;

		if (rte_hash_iterate(h, &key, &data, next) < 0)
			break;
		memcpy(k + (size_t)n * key_size, key, key_size);
		vals[n++] = (uint64_t)(uintptr_t)data;
	}
	return n;
}

uint32_t
homing_table_iter4(const struct homing_table *t, uint32_t *next, struct homing_key4 *keys,
		   uint64_t *vals, uint32_t max)
{
	return iter(t->h4, next, keys, sizeof(*keys), vals, max);
}

uint32_t
homing_table_iter6(const struct homing_table *t, uint32_t *next, struct homing_key6 *keys,
		   uint64_t *vals, uint32_t max)
{
	return iter(t->h6, next, keys, sizeof(*keys), vals, max);
}

uint32_t
homing_table_count4(const struct homing_table *t)
{
	return t->count4;
}

uint32_t
homing_table_count6(const struct homing_table *t)
{
	return t->count6;
}

static uint64_t
ring_size(uint32_t esize, uint32_t count)
{
	ssize_t s = rte_ring_get_memsize_elem(esize, rte_align32pow2(count));

	return s < 0 ? 0 : (uint64_t)s;
}

static uint64_t
hash_memsize(uint32_t capacity, uint32_t key_len)
{
	uint64_t slots = (uint64_t)capacity + 1;
	uint64_t buckets = rte_align32pow2(capacity) / HASH_BUCKET_ENTRIES;
	uint64_t key_entry = RTE_ALIGN(HASH_KEY_HDR + key_len, HASH_KEY_ALIGNMENT);

	return key_entry * slots                           /* key store */
	       + 2 * buckets * HASH_BUCKET_SIZE            /* buckets + extendable buckets */
	       + ring_size(sizeof(uint32_t), slots)        /* free key slots */
	       + ring_size(sizeof(uint32_t), buckets + 1)  /* free extendable buckets */
	       + sizeof(uint32_t) * slots                  /* ext_bkt_to_free */
	       + ring_size(HASH_DQ_ELEM, capacity + 1)     /* QSBR defer queue */
	       + 4 * RTE_CACHE_LINE_SIZE;                  /* struct rte_hash, counters */
}

uint64_t
homing_table_memsize(uint32_t capacity4, uint32_t capacity6)
{
	return hash_memsize(capacity4, sizeof(struct homing_key4)) +
	       hash_memsize(capacity6, sizeof(struct homing_key6)) +
	       rte_rcu_qsbr_get_memsize(RTE_MAX_LCORE) +
	       RTE_ALIGN(sizeof(struct homing_table), RTE_CACHE_LINE_SIZE);
}
