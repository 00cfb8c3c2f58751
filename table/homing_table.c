/* SPDX-License-Identifier: Apache-2.0
 *
 * homing ownership table: the writer side (create, batched writes, point lookups,
 * iteration, counts, free). The reader side is inline in homing_table.h, which also
 * draws the layout and states the concurrency rules.
 *
 * One writer at a time (the Go side holds a mutex). The writer may run on any OS thread,
 * EAL or not: nothing here needs an lcore id (rte_rcu_qsbr_start/check do not).
 *
 * Slot recycling (IPv6; IPv4 keys live in the bucket, changed under its version, and
 * an IPv4 add is refused only when count reaches capacity). A delete appends the key slot to the free ring's tail. At the end of
 * the batch (or when an add finds no free slot) the slots deleted since the last token
 * are closed into a group with a fresh QSBR token (rte_rcu_qsbr_start); a group becomes
 * free once rte_rcu_qsbr_check says every registered, online reader reported a
 * quiescent state after it. An add that finds no free slot while groups still wait
 * waits for the readers, at most reclaim_wait_us and once per batch; after that it is
 * -ENOSPC. With no reader registered, the check succeeds at once.
 *
 * Placement. A new key goes to a free entry of its primary bucket, else its secondary
 * bucket, else a breadth-first search (at most CUCKOO_NODES buckets) finds a path of
 * entries to move each to its other bucket; the moves are done from the free end of the
 * path, each one published in the destination before `change` is bumped and the source
 * overwritten. Failing that (not expected below 87.5 % load) the key goes to the stash.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <rte_common.h>
#include <rte_errno.h>
#include <rte_malloc.h>
#include <rte_pause.h>
#include <rte_rcu_qsbr.h>

#include "homing_table.h"

_Static_assert(sizeof(struct homing_key4) == 16, "homing_key4 must be 16 bytes");
_Static_assert(sizeof(struct homing_key6) == 40, "homing_key6 must be 40 bytes");
_Static_assert(sizeof(struct homing_tbucket) == 64, "a bucket is one cache line");
_Static_assert(sizeof(struct homing_tbucket4) == 64, "an IPv4 bucket is one cache line");
_Static_assert(sizeof(struct homing_stash4) == 24, "homing_stash4 is a key and a value");

/* Buckets the breadth-first cuckoo search visits at most. */
#define CUCKOO_NODES 256

/* Table names in use (unique per process, like rte_hash's names were). */
static pthread_mutex_t names_mu = PTHREAD_MUTEX_INITIALIZER;
static struct homing_table *names[256];

/* TCP, UDP, and in IPv6 keys 253: a QUIC connection ID (session.CIDKey). */
static int
valid_proto(uint8_t p, uint32_t klen)
{
	return p == 6 || p == 17 || (p == 253 && klen == sizeof(struct homing_key6));
}

static int
key_valid(const void *k, uint32_t klen)
{
	const uint8_t *b = k;

	return valid_proto(b[klen - 4], klen) && (b[klen - 3] | b[klen - 2] | b[klen - 1]) == 0;
}

static uint32_t
bucket_count(uint32_t capacity)
{
	uint32_t nb = (capacity + HOMING_TABLE_BUCKET_FILL - 1) / HOMING_TABLE_BUCKET_FILL;

	return nb < 2 ? 2 : nb;
}

static uint32_t
entry_size(uint32_t klen)
{
	return klen + 8;
}

/* The allocations of one family, in the order htab_init makes them. */
static uint64_t
htab_memsize(uint32_t capacity, uint32_t klen)
{
	return (uint64_t)bucket_count(capacity) * sizeof(struct homing_tbucket) +
	       RTE_ALIGN_CEIL(((uint64_t)capacity + 1) * entry_size(klen), RTE_CACHE_LINE_SIZE) +
	       RTE_ALIGN_CEIL((uint64_t)capacity * sizeof(uint32_t), RTE_CACHE_LINE_SIZE) +
	       sizeof(struct homing_defer) * HOMING_TABLE_DEFER_GROUPS;
}

static int
htab_init(struct homing_htab *h, uint32_t capacity, uint32_t klen, int socket)
{
	uint32_t nb = bucket_count(capacity), i;

	h->bkt = rte_zmalloc_socket("homing_tbl_bkt", (size_t)nb * sizeof(*h->bkt),
				    RTE_CACHE_LINE_SIZE, socket);
	h->kv = rte_zmalloc_socket("homing_tbl_kv", ((size_t)capacity + 1) * entry_size(klen),
				   RTE_CACHE_LINE_SIZE, socket);
	h->fifo = rte_malloc_socket("homing_tbl_free", (size_t)capacity * sizeof(uint32_t),
				    RTE_CACHE_LINE_SIZE, socket);
	h->defer = rte_malloc_socket("homing_tbl_defer",
				     sizeof(struct homing_defer) * HOMING_TABLE_DEFER_GROUPS,
				     RTE_CACHE_LINE_SIZE, socket);
	if (h->bkt == NULL || h->kv == NULL || h->fifo == NULL || h->defer == NULL)
		return -ENOMEM;
	h->nb = nb;
	h->capacity = capacity;
	h->key_len = klen;
	h->entry = entry_size(klen);
	for (i = 0; i < capacity; i++)
		h->fifo[i] = i;
	h->head = 0;
	h->safe = h->closed = h->tail = capacity;
	return 0;
}

static void
htab_free(struct homing_htab *h)
{
	rte_free(h->bkt);
	rte_free(h->kv);
	rte_free(h->fifo);
	rte_free(h->defer);
}

/* IPv4: keys and owners in the bucket (homing_table.h), values beside. */
static uint32_t
bucket_count4(uint32_t capacity)
{
	uint64_t nb = ((uint64_t)capacity * 2 + HOMING_TABLE_B4_FILL2 - 1) / HOMING_TABLE_B4_FILL2;

	return nb < 2 ? 2 : (uint32_t)nb;
}

static uint64_t
htab4_memsize(uint32_t capacity)
{
	uint64_t nb = bucket_count4(capacity);

	return nb * sizeof(struct homing_tbucket4) +
	       RTE_ALIGN_CEIL(nb * HOMING_TABLE_B4_ENTRIES * sizeof(uint64_t), RTE_CACHE_LINE_SIZE);
}

static int
htab4_init(struct homing_htab4 *h, uint32_t capacity, int socket)
{
	uint32_t nb = bucket_count4(capacity);

	h->bkt = rte_zmalloc_socket("homing_tbl_bkt4", (size_t)nb * sizeof(*h->bkt),
				    RTE_CACHE_LINE_SIZE, socket);
	h->val = rte_zmalloc_socket("homing_tbl_val4",
				    (size_t)nb * HOMING_TABLE_B4_ENTRIES * sizeof(uint64_t),
				    RTE_CACHE_LINE_SIZE, socket);
	if (h->bkt == NULL || h->val == NULL)
		return -ENOMEM;
	h->nb = nb;
	h->capacity = capacity;
	return 0;
}

static void
htab4_free(struct homing_htab4 *h)
{
	rte_free(h->bkt);
	rte_free(h->val);
}

static void
names_drop(struct homing_table *t)
{
	pthread_mutex_lock(&names_mu);
	for (unsigned i = 0; i < RTE_DIM(names); i++)
		if (names[i] == t)
			names[i] = NULL;
	pthread_mutex_unlock(&names_mu);
}

/* Registers t's name; -EEXIST if taken, -ENOSPC if too many tables. */
static int
names_add(struct homing_table *t)
{
	int free_i = -1, ret = 0;

	pthread_mutex_lock(&names_mu);
	for (unsigned i = 0; i < RTE_DIM(names); i++) {
		if (names[i] == NULL) {
			if (free_i < 0)
				free_i = (int)i;
		} else if (strcmp(names[i]->name, t->name) == 0) {
			ret = -EEXIST;
			break;
		}
	}
	if (ret == 0 && free_i < 0)
		ret = -ENOSPC;
	if (ret == 0)
		names[free_i] = t;
	pthread_mutex_unlock(&names_mu);
	return ret;
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
	snprintf(t->name, sizeof(t->name), "%s", name);
	err = -names_add(t);
	if (err != 0) {
		rte_free(t);
		rte_errno = err;
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
	if (htab4_init(&t->v4, capacity4, socket_id) != 0 ||
	    htab_init(&t->v6, capacity6, sizeof(struct homing_key6), socket_id) != 0) {
		err = ENOMEM;
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
	names_drop(t);
	htab4_free(&t->v4);
	htab_free(&t->v6);
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

/* Waits until every registered online reader has passed a quiescent state after token.
 * Readers report once per loop (a few microseconds), so it spins first and sleeps only
 * after HOMING_TABLE_RECLAIM_SPIN_US. Returns 1 on success, 0 on timeout. */
static int
wait_readers(struct homing_table *t, uint64_t token)
{
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

/* Closes the slots deleted since the last token into a group with a fresh token. */
static void
defer_close(struct homing_table *t, struct homing_htab *h)
{
	uint64_t token;

	if (h->closed == h->tail)
		return;
	token = rte_rcu_qsbr_start(t->qsbr);
	if (h->defer_n == HOMING_TABLE_DEFER_GROUPS) {
		/* Merge into the newest group: its slots wait for the newer token. */
		struct homing_defer *d = &h->defer[(h->defer_head + h->defer_n - 1) %
						   HOMING_TABLE_DEFER_GROUPS];
		d->end = h->tail;
		d->token = token;
	} else {
		struct homing_defer *d = &h->defer[(h->defer_head + h->defer_n) %
						   HOMING_TABLE_DEFER_GROUPS];
		d->end = h->tail;
		d->token = token;
		h->defer_n++;
	}
	h->closed = h->tail;
}

/* Frees the groups the readers are done with. */
static void
defer_reclaim(struct homing_table *t, struct homing_htab *h)
{
	while (h->defer_n != 0) {
		struct homing_defer *d = &h->defer[h->defer_head];
		if (!rte_rcu_qsbr_check(t->qsbr, d->token, false))
			break;
		h->safe = d->end;
		h->defer_head = (h->defer_head + 1) % HOMING_TABLE_DEFER_GROUPS;
		h->defer_n--;
	}
}

/* Takes a free key slot; -ENOSPC if none (after waiting for the readers once per
 * batch, see wait_readers). */
static int64_t
slot_alloc(struct homing_table *t, struct homing_htab *h, bool *gave_up)
{
	if (h->head == h->safe) {
		defer_close(t, h);
		defer_reclaim(t, h);
		if (h->head == h->safe && h->defer_n != 0 && !*gave_up) {
			struct homing_defer *d = &h->defer[(h->defer_head + h->defer_n - 1) %
							   HOMING_TABLE_DEFER_GROUPS];
			if (wait_readers(t, d->token))
				defer_reclaim(t, h);
			else
				*gave_up = true;
		}
		if (h->head == h->safe)
			return -ENOSPC;
	}
	return h->fifo[h->head++ % h->capacity];
}

/* Gives back the slot slot_alloc just returned. */
static void
slot_unalloc(struct homing_htab *h)
{
	h->head--;
}

static void
slot_defer(struct homing_htab *h, uint32_t slot)
{
	h->fifo[h->tail++ % h->capacity] = slot;
}

static uint8_t *
slot_ptr(const struct homing_htab *h, uint32_t slot)
{
	return h->kv + ((size_t)slot + 1) * h->entry;
}

/* Where a key is: bucket entry, or stash entry (bkt == UINT32_MAX). */
struct place {
	uint32_t bkt;
	uint32_t pos;
};

/* Writer-side search. Returns the key slot + 1 and its place, or 0. */
static uint32_t
locate(const struct homing_htab *h, const void *key, uint32_t hv, struct place *pl)
{
	uint32_t b = homing_table_b1_(hv, h->nb), m, x, i;
	uint16_t sig = homing_table_sig_(hv);

	for (int pass = 0; pass < 2; pass++) {
		const struct homing_tbucket *bk = &h->bkt[b];
		for (m = homing_table_sigmatch_(bk, sig); m != 0; m &= m - 1) {
			i = (uint32_t)__builtin_ctz(m) >> 1;
			x = bk->idx[i];
			if (x != 0 && memcmp(slot_ptr(h, x - 1), key, h->key_len) == 0) {
				pl->bkt = b;
				pl->pos = i;
				return x;
			}
		}
		b = homing_table_b2_(hv, h->nb);
	}
	for (i = 0; i < h->stash_n; i++) {
		x = h->stash[i];
		if (x != 0 && memcmp(slot_ptr(h, x - 1), key, h->key_len) == 0) {
			pl->bkt = UINT32_MAX;
			pl->pos = i;
			return x;
		}
	}
	return 0;
}

static int
free_entry(const struct homing_tbucket *bk)
{
	for (int i = 0; i < HOMING_TABLE_BUCKET_ENTRIES; i++)
		if (bk->idx[i] == 0)
			return i;
	return -1;
}

static void
publish(struct homing_tbucket *bk, uint32_t pos, uint16_t sig, uint32_t x)
{
	__atomic_store_n(&bk->sig[pos], sig, __ATOMIC_RELAXED);
	__atomic_store_n(&bk->idx[pos], x, __ATOMIC_RELEASE);
}

/* The other bucket of the entry with key slot x + 1 in bucket b: from its key's hash. */
static uint32_t
other_bucket(const struct homing_htab *h, uint32_t b, uint32_t x)
{
	uint32_t hv = homing_table_hash_(slot_ptr(h, x - 1), h->key_len);
	uint32_t b1 = homing_table_b1_(hv, h->nb);

	return b == b1 ? homing_table_b2_(hv, h->nb) : b1;
}

struct cuckoo_node {
	uint32_t bkt;
	int32_t parent; /* node index, -1 for the two roots */
	uint32_t ppos;  /* entry of the parent's bucket whose other bucket is bkt */
};

static bool
on_path(const struct cuckoo_node *q, int32_t n, uint32_t bkt)
{
	for (; n >= 0; n = q[n].parent)
		if (q[n].bkt == bkt)
			return true;
	return false;
}

/* Makes room in bucket b0 or b1 (both full) by moving entries along a cuckoo path.
 * Returns 0 and the freed entry, or -1. */
static int
cuckoo(struct homing_table *t, struct homing_htab *h, uint32_t b0, uint32_t b1,
       struct place *out)
{
	struct cuckoo_node q[CUCKOO_NODES];
	int32_t qh = 0, qt = 0;

	q[qt++] = (struct cuckoo_node){b0, -1, 0};
	q[qt++] = (struct cuckoo_node){b1, -1, 0};
	while (qh < qt) {
		int32_t cur = qh++;
		struct homing_tbucket *bk = &h->bkt[q[cur].bkt];
		for (uint32_t i = 0; i < HOMING_TABLE_BUCKET_ENTRIES; i++) {
			uint32_t alt = other_bucket(h, q[cur].bkt, bk->idx[i]);
			int f = free_entry(&h->bkt[alt]);
			if (f >= 0) {
				/* Move along the path, from its free end. */
				uint32_t db = alt, dp = (uint32_t)f, sp = i;
				int32_t n = cur;
				for (;;) {
					struct homing_tbucket *src = &h->bkt[q[n].bkt];
					publish(&h->bkt[db], dp, src->sig[sp], src->idx[sp]);
					__atomic_store_n(&h->change, h->change + 1, __ATOMIC_RELEASE);
					__atomic_thread_fence(__ATOMIC_RELEASE);
					t->stats.cuckoo_moves++;
					db = q[n].bkt;
					dp = sp;
					if (q[n].parent < 0)
						break;
					sp = q[n].ppos;
					n = q[n].parent;
				}
				out->bkt = db;
				out->pos = dp;
				return 0;
			}
			if (qt < CUCKOO_NODES && !on_path(q, cur, alt))
				q[qt++] = (struct cuckoo_node){alt, cur, i};
		}
	}
	return -1;
}

/* Places key slot x (key hash hv) in a bucket or the stash. Returns 0 or -ENOSPC. */
static int
place_new(struct homing_table *t, struct homing_htab *h, uint32_t hv, uint32_t x)
{
	uint32_t b0 = homing_table_b1_(hv, h->nb), b1 = homing_table_b2_(hv, h->nb);
	uint16_t sig = homing_table_sig_(hv);
	struct place pl;
	int f;

	if ((f = free_entry(&h->bkt[b0])) >= 0) {
		publish(&h->bkt[b0], (uint32_t)f, sig, x);
		return 0;
	}
	if ((f = free_entry(&h->bkt[b1])) >= 0) {
		publish(&h->bkt[b1], (uint32_t)f, sig, x);
		return 0;
	}
	if (cuckoo(t, h, b0, b1, &pl) == 0) {
		publish(&h->bkt[pl.bkt], pl.pos, sig, x);
		return 0;
	}
	for (uint32_t i = 0; i < HOMING_TABLE_STASH; i++) {
		if (h->stash[i] != 0)
			continue;
		__atomic_store_n(&h->stash[i], x, __ATOMIC_RELEASE);
		if (i >= h->stash_n)
			__atomic_store_n(&h->stash_n, i + 1, __ATOMIC_RELEASE);
		t->stats.stashed++;
		return 0;
	}
	return -ENOSPC;
}

/* Returns 0 (inserted), HOMING_RES_UPDATED, or a negative errno. */
static int32_t
add_one(struct homing_table *t, struct homing_htab *h, const void *key, uint64_t val,
	bool *gave_up)
{
	uint32_t hv, x;
	struct place pl;
	int64_t slot;
	uint8_t *p;

	if (!key_valid(key, h->key_len)) {
		t->stats.invalid++;
		return -EINVAL;
	}
	hv = homing_table_hash_(key, h->key_len);
	x = locate(h, key, hv, &pl);
	if (x != 0) {
		__atomic_store_n((uint64_t *)(void *)(slot_ptr(h, x - 1) + h->key_len), val,
				 __ATOMIC_RELAXED);
		t->stats.updates++;
		return HOMING_RES_UPDATED;
	}
	slot = slot_alloc(t, h, gave_up);
	if (slot < 0) {
		t->stats.full++;
		return -ENOSPC;
	}
	p = slot_ptr(h, (uint32_t)slot);
	memcpy(p, key, h->key_len);
	memcpy(p + h->key_len, &val, sizeof(val));
	if (place_new(t, h, hv, (uint32_t)slot + 1) != 0) {
		slot_unalloc(h);
		t->stats.full++;
		return -ENOSPC;
	}
	h->count++;
	t->stats.inserts++;
	return 0;
}

/* Returns 0 (deleted) or a negative errno. */
static int32_t
del_one(struct homing_table *t, struct homing_htab *h, const void *key)
{
	struct place pl;
	uint32_t x;

	if (!key_valid(key, h->key_len)) {
		t->stats.invalid++;
		return -EINVAL;
	}
	x = locate(h, key, homing_table_hash_(key, h->key_len), &pl);
	if (x == 0) {
		t->stats.delete_miss++;
		return -ENOENT;
	}
	if (pl.bkt == UINT32_MAX)
		__atomic_store_n(&h->stash[pl.pos], 0, __ATOMIC_RELEASE);
	else
		__atomic_store_n(&h->bkt[pl.bkt].idx[pl.pos], 0, __ATOMIC_RELEASE);
	slot_defer(h, x - 1);
	h->count--;
	t->stats.deletes++;
	return 0;
}

/* ---- IPv4: keys and owners in the bucket, under the bucket's version ---- */

/* One IPv4 entry as the writer moves it. */
struct ent4 {
	uint32_t w[4]; /* key words: src, dst, ports, proto (with the zero pad) */
	uint16_t owner;
	uint64_t val;
};

/* Opens a change of bucket bk: readers that overlap it see the version move. */
static void
wbegin4(uint32_t *ver)
{
	__atomic_store_n(ver, *ver + 1, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_RELEASE);
}

static void
wend4(uint32_t *ver)
{
	__atomic_store_n(ver, *ver + 1, __ATOMIC_RELEASE);
}

static void
get_ent4(const struct homing_htab4 *h, uint32_t b, uint32_t i, struct ent4 *e)
{
	const struct homing_tbucket4 *bk = &h->bkt[b];

	e->w[0] = bk->src[i];
	e->w[1] = bk->dst[i];
	e->w[2] = bk->ports[i];
	e->w[3] = bk->proto[i];
	e->owner = bk->owner[i];
	e->val = h->val[(size_t)b * HOMING_TABLE_B4_ENTRIES + i];
}

/* Writes entry i of bucket b (e == NULL: empties it), as one change of the bucket. */
static void
put_ent4(struct homing_htab4 *h, uint32_t b, uint32_t i, const struct ent4 *e)
{
	static const struct ent4 empty;
	struct homing_tbucket4 *bk = &h->bkt[b];

	if (e == NULL)
		e = &empty;
	wbegin4(&bk->ver);
	__atomic_store_n(&bk->src[i], e->w[0], __ATOMIC_RELAXED);
	__atomic_store_n(&bk->dst[i], e->w[1], __ATOMIC_RELAXED);
	__atomic_store_n(&bk->ports[i], e->w[2], __ATOMIC_RELAXED);
	__atomic_store_n(&bk->proto[i], (uint8_t)e->w[3], __ATOMIC_RELAXED);
	__atomic_store_n(&bk->owner[i], e->owner, __ATOMIC_RELAXED);
	__atomic_store_n(&h->val[(size_t)b * HOMING_TABLE_B4_ENTRIES + i], e->val, __ATOMIC_RELAXED);
	wend4(&bk->ver);
}

static uint32_t
ent4_hash(const struct ent4 *e)
{
	return homing_table_hash4((const struct homing_key4 *)(const void *)e->w);
}

static int
free_entry4(const struct homing_tbucket4 *bk)
{
	for (int i = 0; i < HOMING_TABLE_B4_ENTRIES; i++)
		if (bk->proto[i] == 0)
			return i;
	return -1;
}

/* Writer-side search: 1 and the key's place (bkt UINT32_MAX: stash), or 0. */
static int
locate4(const struct homing_htab4 *h, const struct homing_key4 *key, uint32_t hv,
	struct place *pl)
{
	uint32_t b = homing_table_b41_(hv, h->nb), m, i;

	for (int pass = 0; pass < 2; pass++) {
		m = homing_table_match4_(&h->bkt[b], key);
		if (m != 0) {
			pl->bkt = b;
			pl->pos = (uint32_t)__builtin_ctz(m);
			return 1;
		}
		b = homing_table_b42_(hv, h->nb);
	}
	for (i = 0; i < h->stash_n; i++)
		if (memcmp(&h->stash[i].key, key, sizeof(*key)) == 0) {
			pl->bkt = UINT32_MAX;
			pl->pos = i;
			return 1;
		}
	return 0;
}

/* Makes room in bucket b0 or b1 (both full) by moving entries along a cuckoo path: each
 * move copies the entry into its other bucket (a change of that bucket), bumps `change`,
 * and only then is the source overwritten (by the next move, or by the caller). Returns 0
 * and the freed entry, or -1. */
static int
cuckoo4(struct homing_table *t, struct homing_htab4 *h, uint32_t b0, uint32_t b1,
	struct place *out)
{
	struct cuckoo_node q[CUCKOO_NODES];
	int32_t qh = 0, qt = 0;

	q[qt++] = (struct cuckoo_node){b0, -1, 0};
	q[qt++] = (struct cuckoo_node){b1, -1, 0};
	while (qh < qt) {
		int32_t cur = qh++;
		for (uint32_t i = 0; i < HOMING_TABLE_B4_ENTRIES; i++) {
			struct ent4 e;
			uint32_t hv, alt;
			int f;

			get_ent4(h, q[cur].bkt, i, &e);
			hv = ent4_hash(&e);
			alt = homing_table_b41_(hv, h->nb);
			if (alt == q[cur].bkt)
				alt = homing_table_b42_(hv, h->nb);
			f = free_entry4(&h->bkt[alt]);
			if (f >= 0) {
				uint32_t db = alt, dp = (uint32_t)f, sp = i;
				int32_t n = cur;
				for (;;) {
					get_ent4(h, q[n].bkt, sp, &e);
					put_ent4(h, db, dp, &e);
					__atomic_store_n(&h->change, h->change + 1, __ATOMIC_RELEASE);
					__atomic_thread_fence(__ATOMIC_RELEASE);
					t->stats.cuckoo_moves++;
					db = q[n].bkt;
					dp = sp;
					if (q[n].parent < 0)
						break;
					sp = q[n].ppos;
					n = q[n].parent;
				}
				out->bkt = db;
				out->pos = dp;
				return 0;
			}
			if (qt < CUCKOO_NODES && !on_path(q, cur, alt))
				q[qt++] = (struct cuckoo_node){alt, cur, i};
		}
	}
	return -1;
}

static int
place_new4(struct homing_table *t, struct homing_htab4 *h, uint32_t hv, const struct ent4 *e)
{
	uint32_t b0 = homing_table_b41_(hv, h->nb), b1 = homing_table_b42_(hv, h->nb);
	struct place pl;
	int f;

	if ((f = free_entry4(&h->bkt[b0])) >= 0) {
		put_ent4(h, b0, (uint32_t)f, e);
		return 0;
	}
	if ((f = free_entry4(&h->bkt[b1])) >= 0) {
		put_ent4(h, b1, (uint32_t)f, e);
		return 0;
	}
	if (cuckoo4(t, h, b0, b1, &pl) == 0) {
		put_ent4(h, pl.bkt, pl.pos, e);
		return 0;
	}
	for (uint32_t i = 0; i < HOMING_TABLE_STASH; i++) {
		struct homing_stash4 *s = &h->stash[i];
		if (s->key.proto != 0)
			continue;
		wbegin4(&h->stash_ver);
		memcpy(&s->key, e->w, sizeof(s->key));
		__atomic_store_n(&s->val, e->val, __ATOMIC_RELAXED);
		if (i >= h->stash_n)
			__atomic_store_n(&h->stash_n, i + 1, __ATOMIC_RELAXED);
		wend4(&h->stash_ver);
		t->stats.stashed++;
		return 0;
	}
	return -ENOSPC;
}

static int32_t
add4_one(struct homing_table *t, struct homing_htab4 *h, const struct homing_key4 *key,
	 uint64_t val)
{
	struct place pl;
	struct ent4 e;
	uint32_t hv;

	if (!key_valid(key, sizeof(*key))) {
		t->stats.invalid++;
		return -EINVAL;
	}
	hv = homing_table_hash4(key);
	memcpy(e.w, key, sizeof(e.w));
	e.owner = HOMING_VAL_OWNER(val);
	e.val = val;
	if (locate4(h, key, hv, &pl)) {
		if (pl.bkt == UINT32_MAX) {
			wbegin4(&h->stash_ver);
			__atomic_store_n(&h->stash[pl.pos].val, val, __ATOMIC_RELAXED);
			wend4(&h->stash_ver);
		} else {
			struct homing_tbucket4 *bk = &h->bkt[pl.bkt];
			wbegin4(&bk->ver);
			__atomic_store_n(&bk->owner[pl.pos], e.owner, __ATOMIC_RELAXED);
			__atomic_store_n(&h->val[(size_t)pl.bkt * HOMING_TABLE_B4_ENTRIES + pl.pos],
					 val, __ATOMIC_RELAXED);
			wend4(&bk->ver);
		}
		t->stats.updates++;
		return HOMING_RES_UPDATED;
	}
	if (h->count >= h->capacity || place_new4(t, h, hv, &e) != 0) {
		t->stats.full++;
		return -ENOSPC;
	}
	h->count++;
	t->stats.inserts++;
	return 0;
}

static int32_t
del4_one(struct homing_table *t, struct homing_htab4 *h, const struct homing_key4 *key)
{
	struct place pl;

	if (!key_valid(key, sizeof(*key))) {
		t->stats.invalid++;
		return -EINVAL;
	}
	if (!locate4(h, key, homing_table_hash4(key), &pl)) {
		t->stats.delete_miss++;
		return -ENOENT;
	}
	if (pl.bkt == UINT32_MAX) {
		wbegin4(&h->stash_ver);
		memset(&h->stash[pl.pos], 0, sizeof(h->stash[pl.pos]));
		wend4(&h->stash_ver);
	} else {
		put_ent4(h, pl.bkt, pl.pos, NULL);
	}
	h->count--;
	t->stats.deletes++;
	return 0;
}

static uint32_t
write_batch4(struct homing_table *t, const struct homing_key4 *keys, const uint64_t *vals,
	     const uint8_t *ops, uint8_t all, uint32_t n, int32_t *results)
{
	struct homing_htab4 *h = &t->v4;
	uint32_t i, ok = 0;
	int32_t r;

	for (i = 0; i < n; i++) {
		uint8_t op = ops != NULL ? ops[i] : all;

		if (i + 1 < n)
			rte_prefetch0(&h->bkt[homing_table_b41_(homing_table_hash4(&keys[i + 1]), h->nb)]);
		if (op == HOMING_OP_ADD)
			r = add4_one(t, h, &keys[i], vals[i]);
		else if (op == HOMING_OP_DEL)
			r = del4_one(t, h, &keys[i]);
		else
			r = -EINVAL;
		if (r >= 0)
			ok++;
		if (results != NULL)
			results[i] = r;
	}
	t->count4 = h->count;
	if (ok != 0)
		__atomic_store_n(&t->gen, t->gen + 1, __ATOMIC_RELEASE);
	return ok;
}

static uint32_t
iter4(const struct homing_htab4 *h, uint32_t *next, struct homing_key4 *keys, uint64_t *vals,
      uint32_t max)
{
	uint64_t nbe = (uint64_t)h->nb * HOMING_TABLE_B4_ENTRIES;
	uint32_t n = 0;

	while (n < max && *next < nbe + HOMING_TABLE_STASH) {
		uint32_t c = (*next)++;
		if (c < nbe) {
			struct ent4 e;
			get_ent4(h, c / HOMING_TABLE_B4_ENTRIES, c % HOMING_TABLE_B4_ENTRIES, &e);
			if (e.w[3] == 0)
				continue;
			memcpy(&keys[n], e.w, sizeof(keys[n]));
			vals[n] = e.val;
		} else {
			const struct homing_stash4 *s = &h->stash[c - nbe];
			if (s->key.proto == 0)
				continue;
			keys[n] = s->key;
			vals[n] = s->val;
		}
		n++;
	}
	return n;
}

/* ops == NULL: every entry is the op `all`. Results as homing_table_write4. */
static uint32_t
write_batch(struct homing_table *t, struct homing_htab *h, uint32_t *count, const void *keys,
	    const uint64_t *vals, const uint8_t *ops, uint8_t all, uint32_t n, int32_t *results)
{
	const uint8_t *k = keys;
	bool gave_up = false;
	uint32_t i, ok = 0;
	int32_t r;

	defer_reclaim(t, h);
	for (i = 0; i < n; i++, k += h->key_len) {
		uint8_t op = ops != NULL ? ops[i] : all;

		if (i + 1 < n)
			rte_prefetch0(&h->bkt[homing_table_b1_(homing_table_hash_(k + h->key_len, h->key_len), h->nb)]);
		if (op == HOMING_OP_ADD)
			r = add_one(t, h, k, vals[i], &gave_up);
		else if (op == HOMING_OP_DEL)
			r = del_one(t, h, k);
		else
			r = -EINVAL;
		if (r >= 0)
			ok++;
		if (results != NULL)
			results[i] = r;
	}
	defer_close(t, h);
	*count = h->count;
	if (ok != 0)
		__atomic_store_n(&t->gen, t->gen + 1, __ATOMIC_RELEASE);
	return ok;
}

uint32_t
homing_table_write4(struct homing_table *t, const struct homing_key4 *keys,
		    const uint64_t *vals, const uint8_t *ops, uint32_t n, int32_t *results)
{
	return write_batch4(t, keys, vals, ops, HOMING_OP_ADD, n, results);
}

uint32_t
homing_table_write6(struct homing_table *t, const struct homing_key6 *keys,
		    const uint64_t *vals, const uint8_t *ops, uint32_t n, int32_t *results)
{
	return write_batch(t, &t->v6, &t->count6, keys, vals, ops, HOMING_OP_ADD, n, results);
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
	uint32_t ok = write_batch4(t, keys, vals, NULL, HOMING_OP_ADD, n, results);

	updated_is_success(results, n);
	return ok;
}

uint32_t
homing_table_add6(struct homing_table *t, const struct homing_key6 *keys,
		  const uint64_t *vals, uint32_t n, int32_t *results)
{
	uint32_t ok = write_batch(t, &t->v6, &t->count6, keys, vals, NULL, HOMING_OP_ADD, n,
				  results);

	updated_is_success(results, n);
	return ok;
}

uint32_t
homing_table_del4(struct homing_table *t, const struct homing_key4 *keys, uint32_t n,
		  int32_t *results)
{
	return write_batch4(t, keys, NULL, NULL, HOMING_OP_DEL, n, results);
}

uint32_t
homing_table_del6(struct homing_table *t, const struct homing_key6 *keys, uint32_t n,
		  int32_t *results)
{
	return write_batch(t, &t->v6, &t->count6, keys, NULL, NULL, HOMING_OP_DEL, n, results);
}

static int
get_one(const struct homing_htab *h, const void *key, uint64_t *val)
{
	struct place pl;
	uint32_t x;

	if (!key_valid(key, h->key_len))
		return -EINVAL;
	x = locate(h, key, homing_table_hash_(key, h->key_len), &pl);
	if (x == 0)
		return -ENOENT;
	memcpy(val, slot_ptr(h, x - 1) + h->key_len, sizeof(*val));
	return 0;
}

int
homing_table_get4(const struct homing_table *t, const struct homing_key4 *key, uint64_t *val)
{
	struct place pl;

	if (!key_valid(key, sizeof(*key)))
		return -EINVAL;
	if (!locate4(&t->v4, key, homing_table_hash4(key), &pl))
		return -ENOENT;
	*val = pl.bkt == UINT32_MAX ? t->v4.stash[pl.pos].val
				    : t->v4.val[(size_t)pl.bkt * HOMING_TABLE_B4_ENTRIES + pl.pos];
	return 0;
}

int
homing_table_get6(const struct homing_table *t, const struct homing_key6 *key, uint64_t *val)
{
	return get_one(&t->v6, key, val);
}

/* *next walks the bucket entries, then the stash. */
static uint32_t
iter(const struct homing_htab *h, uint32_t *next, void *keys, uint64_t *vals, uint32_t max)
{
	uint64_t nbe = (uint64_t)h->nb * HOMING_TABLE_BUCKET_ENTRIES;
	uint8_t *k = keys;
	uint32_t n = 0;

	while (n < max && *next < nbe + HOMING_TABLE_STASH) {
		uint32_t c = (*next)++, x;
		if (c < nbe)
			x = h->bkt[c / HOMING_TABLE_BUCKET_ENTRIES].idx[c % HOMING_TABLE_BUCKET_ENTRIES];
		else
			x = h->stash[c - nbe];
		if (x == 0)
			continue;
		memcpy(k + (size_t)n * h->key_len, slot_ptr(h, x - 1), h->key_len);
		memcpy(&vals[n], slot_ptr(h, x - 1) + h->key_len, sizeof(uint64_t));
		n++;
	}
	return n;
}

uint32_t
homing_table_iter4(const struct homing_table *t, uint32_t *next, struct homing_key4 *keys,
		   uint64_t *vals, uint32_t max)
{
	return iter4(&t->v4, next, keys, vals, max);
}

uint32_t
homing_table_iter6(const struct homing_table *t, uint32_t *next, struct homing_key6 *keys,
		   uint64_t *vals, uint32_t max)
{
	return iter(&t->v6, next, keys, vals, max);
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

int32_t
homing_table_position(const struct homing_table *t, int v6, const void *key)
{
	const struct homing_htab *h = &t->v6;
	struct place pl;
	uint32_t x;

	if (!v6) {
		/* IPv4: the entry's position, bucket * 4 + entry (the stash after the buckets). */
		if (!locate4(&t->v4, key, homing_table_hash4(key), &pl))
			return -ENOENT;
		return (int32_t)(pl.bkt == UINT32_MAX
					 ? t->v4.nb * HOMING_TABLE_B4_ENTRIES + pl.pos
					 : pl.bkt * HOMING_TABLE_B4_ENTRIES + pl.pos);
	}
	x = homing_table_find_(h, key, homing_table_hash6(key), 40, 48);
	return x == 0 ? -ENOENT : (int32_t)(x - 1);
}

const void *
homing_table_slot_key(const struct homing_table *t, int v6, uint32_t pos)
{
	const struct homing_htab *h = &t->v6;

	/* IPv4 keys have no key slot: they live in the bucket, column by column. */
	if (!v6)
		return NULL;
	return pos < h->capacity ? slot_ptr(h, pos) : NULL;
}

uint64_t
homing_table_memsize(uint32_t capacity4, uint32_t capacity6)
{
	return htab4_memsize(capacity4) +
	       htab_memsize(capacity6, sizeof(struct homing_key6)) +
	       rte_rcu_qsbr_get_memsize(RTE_MAX_LCORE) +
	       RTE_ALIGN(sizeof(struct homing_table), RTE_CACHE_LINE_SIZE);
}
