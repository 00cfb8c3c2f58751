/* SPDX-License-Identifier: Apache-2.0
 *
 * Packet capture and flow trace on the lcores: see capture.h. Only reached when a
 * capture is armed; nothing here runs per packet otherwise.
 */
#include <stddef.h>
#include <string.h>
#include <time.h>

#include <rte_byteorder.h>
#include <rte_ether.h>
#include <rte_ip.h>
#include <rte_mbuf.h>
#include <rte_rcu_qsbr.h>
#include <rte_tcp.h>
#include <rte_udp.h>

#include "capture.h"

#define WORD(field) ((uint8_t)(offsetof(struct homing_lcore_stats, field) / sizeof(uint64_t)))

/* The headers a filter looks at. */
struct flow {
	uint8_t af;    /* 0: not IP */
	uint8_t proto;
	uint8_t ports; /* 1: sport/dport valid (TCP or UDP, first fragment) */
	uint8_t pad;
	uint16_t sport, dport; /* network order */
	uint8_t src[16], dst[16];
};

/* Parses an IP packet at p (len bytes): 1 if IP, with *l4 and *l4_len set. */
static inline int
parse_ip(const uint8_t *p, uint32_t len, struct flow *f, const uint8_t **l4, uint32_t *l4_len)
{
	uint32_t hl, frag = 0;

	f->af = 0;
	f->ports = 0;
	f->sport = f->dport = 0;
	if (len < 1)
		return 0;
	if (p[0] >> 4 == 4) {
		const struct rte_ipv4_hdr *ip = (const struct rte_ipv4_hdr *)p;
		if (len < sizeof(*ip))
			return 0;
		hl = (uint32_t)(ip->version_ihl & 0xf) * 4;
		if (hl < sizeof(*ip) || hl > len)
			return 0;
		f->af = 4;
		f->proto = ip->next_proto_id;
		memcpy(f->src, &ip->src_addr, 4);
		memcpy(f->dst, &ip->dst_addr, 4);
		frag = rte_be_to_cpu_16(ip->fragment_offset) & RTE_IPV4_HDR_OFFSET_MASK;
	} else if (p[0] >> 4 == 6) {
		const struct rte_ipv6_hdr *ip = (const struct rte_ipv6_hdr *)p;
		if (len < sizeof(*ip))
			return 0;
		hl = sizeof(*ip);
		f->af = 6;
		f->proto = ip->proto;
		memcpy(f->src, ip->src_addr, 16);
		memcpy(f->dst, ip->dst_addr, 16);
	} else {
		return 0;
	}
	*l4 = p + hl;
	*l4_len = len - hl;
	if ((f->proto == IPPROTO_TCP || f->proto == IPPROTO_UDP) && frag == 0 && *l4_len >= 4) {
		memcpy(&f->sport, *l4, 2);
		memcpy(&f->dport, *l4 + 2, 2);
		f->ports = 1;
	}
	return 1;
}

/* Parses a frame: its outer flow, and the inner one if it is GUE to tunnel_port. */
static inline void
parse_frame(const uint8_t *d, uint32_t len, uint16_t tunnel_port, struct flow *outer,
	    struct flow *inner)
{
	const uint8_t *l4;
	uint32_t l4_len;
	uint16_t et;

	outer->af = inner->af = 0;
	if (len < RTE_ETHER_HDR_LEN)
		return;
	et = (uint16_t)(d[12] << 8 | d[13]);
	if (et != RTE_ETHER_TYPE_IPV4 && et != RTE_ETHER_TYPE_IPV6)
		return;
	if (!parse_ip(d + RTE_ETHER_HDR_LEN, len - RTE_ETHER_HDR_LEN, outer, &l4, &l4_len))
		return;
	/* GUE variant 0 without options: version 0, C 0, Hlen 0; IPv4 or IPv6 inside */
	if (outer->proto == IPPROTO_UDP && outer->ports && outer->dport == tunnel_port &&
	    tunnel_port != 0 && l4_len >= 8 + HOMING_GUE_LEN && l4[8] == 0 &&
	    (l4[9] == IPPROTO_IPIP || l4[9] == IPPROTO_IPV6)) {
		const uint8_t *il4;
		uint32_t il4_len;
		parse_ip(l4 + 8 + HOMING_GUE_LEN, l4_len - 8 - HOMING_GUE_LEN, inner, &il4, &il4_len);
	}
}

static inline int
addr_eq(const struct homing_cap_addr *a, const uint8_t *x, uint8_t af)
{
	uint64_t p[2], q[2];
	uint32_t v, w;

	if (a->af != af)
		return 0;
	if (af == 4) {
		memcpy(&v, a->a, 4);
		memcpy(&w, x, 4);
		return v == w;
	}
	memcpy(p, a->a, 16);
	memcpy(q, x, 16);
	return ((p[0] ^ q[0]) | (p[1] ^ q[1])) == 0;
}

/* The filter's addresses, ports and protocol against one flow (swapped: source and
 * destination exchanged). */
static inline int
flow_match(const struct homing_cap_filter *f, const struct flow *x, int swapped)
{
	const uint8_t *src = swapped ? x->dst : x->src, *dst = swapped ? x->src : x->dst;
	uint16_t sport = swapped ? x->dport : x->sport, dport = swapped ? x->sport : x->dport;

	if (x->af == 0)
		return f->n_addr == 0 && f->n_port == 0 && f->proto == 0;
	if (f->proto != 0 && f->proto != x->proto)
		return 0;
	for (uint32_t i = 0; i < f->n_addr; i++) {
		const struct homing_cap_addr *a = &f->addr[i];
		int s = a->dir != HOMING_CAP_DST && addr_eq(a, src, x->af);
		int d = a->dir != HOMING_CAP_SRC && addr_eq(a, dst, x->af);
		if (!s && !d)
			return 0;
	}
	for (uint32_t i = 0; i < f->n_port; i++) {
		const struct homing_cap_port *p = &f->port[i];
		if (!x->ports)
			return 0;
		if (!(p->dir != HOMING_CAP_DST && p->port == sport) &&
		    !(p->dir != HOMING_CAP_SRC && p->port == dport))
			return 0;
	}
	return 1;
}

/* The filter against a frame's outer or inner flow: the flow that matched, or NULL. */
static inline const struct flow *
filter_match(const struct homing_cap_filter *f, const struct flow *outer, const struct flow *inner)
{
	if (flow_match(f, outer, 0) || (f->bidir && flow_match(f, outer, 1)))
		return outer;
	if (inner->af != 0 && (flow_match(f, inner, 0) || (f->bidir && flow_match(f, inner, 1))))
		return inner;
	return NULL;
}

int
homing_cap_match(const struct homing_dp *dp, const struct homing_cap_filter *f,
		 const uint8_t *frame, uint32_t len)
{
	struct flow outer, inner;
	parse_frame(frame, len, dp->tunnel_port, &outer, &inner);
	return filter_match(f, &outer, &inner) != NULL;
}

/* Matches the filter against packet m (first segment's headers). */
static inline const struct flow *
mbuf_match(const struct homing_lcore *lc, const struct homing_cap *c, struct rte_mbuf *m,
	   struct flow *outer, struct flow *inner)
{
	parse_frame(rte_pktmbuf_mtod(m, const uint8_t *), rte_pktmbuf_data_len(m),
		    lc->dp->tunnel_port, outer, inner);
	return filter_match(&c->f, outer, inner);
}

static inline int
class_ok(const struct homing_cap *c, uint8_t cls)
{
	return c->f.classes == 0 || (c->f.classes >> (cls & 63) & 1);
}

static int
is_vip(const struct homing_dp *dp, const struct flow *x, const uint8_t *a)
{
	if (x->af == 4) {
		uint32_t v;
		memcpy(&v, a, 4);
		for (uint32_t i = 0; i < dp->n_vip4; i++)
			if ((v & dp->vip4[i].mask) == dp->vip4[i].net)
				return 1;
		return 0;
	}
	for (uint32_t i = 0; i < dp->n_vip6; i++) {
		int ok = 1;
		for (int j = 0; j < 16 && ok; j++)
			ok = (a[j] & dp->vip6[i].mask[j]) == dp->vip6[i].net[j];
		if (ok)
			return 1;
	}
	return 0;
}

/* Trace: looks the flow's session up (the client's side first, whichever way the
 * packet goes). Returns HOMING_CAP_LOOKUP_*. */
static uint8_t
trace_lookup(const struct homing_dp *dp, const struct flow *x, uint64_t *val)
{
	int rev;
	const uint8_t *cand;
	uint32_t h;

	if (x == NULL || !x->ports)
		return HOMING_CAP_LOOKUP_NONE;
	if (is_vip(dp, x, x->dst))
		rev = 0;
	else if (is_vip(dp, x, x->src))
		rev = 1;
	else
		return HOMING_CAP_LOOKUP_NONE;
	if (x->af == 4) {
		struct homing_key4 k;
		memset(&k, 0, sizeof(k));
		memcpy(&k.src, rev ? x->dst : x->src, 4);
		memcpy(&k.dst, rev ? x->src : x->dst, 4);
		k.sport = rev ? x->dport : x->sport;
		k.dport = rev ? x->sport : x->dport;
		k.proto = x->proto;
		h = homing_table_hash4(&k);
		homing_table_stage4(dp->table, &h, sizeof(h), 1, &cand);
		return homing_table_finish4(dp->table, &k, h, cand, val) ? HOMING_CAP_LOOKUP_HIT
									 : HOMING_CAP_LOOKUP_MISS;
	}
	struct homing_key6 k;
	memset(&k, 0, sizeof(k));
	memcpy(k.src, rev ? x->dst : x->src, 16);
	memcpy(k.dst, rev ? x->src : x->dst, 16);
	k.sport = rev ? x->dport : x->sport;
	k.dport = rev ? x->sport : x->dport;
	k.proto = x->proto;
	h = homing_table_hash6(&k);
	homing_table_stage6(dp->table, &h, sizeof(h), 1, &cand);
	return homing_table_finish6(dp->table, &k, h, cand, val) ? HOMING_CAP_LOOKUP_HIT
								 : HOMING_CAP_LOOKUP_MISS;
}

/* Fills a record (and its bytes) at rec for packet m. */
static void
fill(const struct homing_lcore *lc, const struct homing_cap *c, struct homing_cap_rec *rec,
     struct rte_mbuf *m, uint64_t ts, uint8_t point, uint16_t port, uint8_t cls, uint8_t fate,
     const struct flow *x)
{
	uint32_t len = rte_pktmbuf_pkt_len(m), cl = RTE_MIN(len, c->snaplen);

	rec->ts_ns = ts;
	rec->wire_len = len;
	rec->cap_len = (uint16_t)cl;
	rec->point = point;
	rec->cls = cls;
	rec->fate = fate;
	rec->lookup = HOMING_CAP_LOOKUP_NONE;
	rec->val = 0;
	rec->lcore = (uint16_t)lc->lcore_id;
	rec->port_id = port;
	rec->queue = lc->queue;
	rec->pad = 0;
	if (c->trace)
		rec->lookup = trace_lookup(lc->dp, x, &rec->val);
	if (cl != 0) {
		uint8_t *dst = (uint8_t *)(rec + 1);
		const void *p = rte_pktmbuf_read(m, 0, cl, dst);
		if (p != dst)
			memcpy(dst, p, cl);
	}
}

/* Takes one more packet of the count: 0 when the ring is full or the count is used up. */
static uint8_t *
ring_slot(struct homing_cap *c, struct homing_cap_ring *r)
{
	uint32_t tail = __atomic_load_n(&r->tail, __ATOMIC_ACQUIRE);
	if (r->head - tail >= r->size) {
		r->lost++;
		return NULL;
	}
	if (__atomic_fetch_sub(&c->remaining, 1, __ATOMIC_RELAXED) <= 0)
		return NULL;
	return r->mem + (size_t)(r->head & (r->size - 1)) * r->slot;
}

static inline void
ring_commit(struct homing_cap_ring *r)
{
	__atomic_store_n(&r->head, r->head + 1, __ATOMIC_RELEASE);
}

/* Copies packet m into the ring if it matches (class given). */
static void
take(const struct homing_lcore *lc, struct homing_cap *c, struct rte_mbuf *m, uint64_t ts,
     uint8_t point, uint16_t port, uint8_t cls, uint8_t fate)
{
	struct flow outer, inner;
	const struct flow *x;
	uint8_t *s;

	if (!(c->f.points & point) || !class_ok(c, cls))
		return;
	if ((x = mbuf_match(lc, c, m, &outer, &inner)) == NULL)
		return;
	if ((s = ring_slot(c, lc->cap_ring)) == NULL)
		return;
	fill(lc, c, (struct homing_cap_rec *)s, m, ts, point, port, cls, fate, x);
	ring_commit(lc->cap_ring);
}

static inline uint64_t
now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void
homing_cap_nic_burst(struct homing_lcore *lc, struct homing_cap *c, struct rte_mbuf **pkts,
		     uint16_t n, struct rte_mbuf **nic_out, uint16_t *n_nic,
		     struct rte_mbuf **tap_out, uint16_t *n_tap)
{
	struct homing_cap_ring *r = lc->cap_ring;
	uint8_t cls[HOMING_BURST], fate[HOMING_BURST], staged[HOMING_BURST];
	struct rte_mbuf *in[HOMING_BURST];
	uint64_t ts = now_ns();
	uint16_t i;

	if (n > HOMING_BURST)
		n = HOMING_BURST;
	memcpy(in, pkts, n * sizeof(*pkts));
	/* NIC rx: the frames as received, staged until their class is known */
	for (i = 0; i < n; i++) {
		struct flow outer, inner;
		const struct flow *x;
		staged[i] = 0;
		if (!(c->f.points & HOMING_CAP_NIC_RX))
			continue;
		if ((x = mbuf_match(lc, c, in[i], &outer, &inner)) == NULL)
			continue;
		fill(lc, c, (struct homing_cap_rec *)(r->stage + (size_t)i * r->slot), in[i], ts,
		     HOMING_CAP_NIC_RX, lc->nic_port, 0, 0, x);
		staged[i] = 1;
	}
	homing_process_nic_burst_fate(lc, pkts, n, nic_out, n_nic, tap_out, n_tap, cls, fate);
	for (i = 0; i < n; i++) {
		if (staged[i] && class_ok(c, cls[i])) {
			uint8_t *s = ring_slot(c, r);
			if (s != NULL) {
				struct homing_cap_rec *rec = (struct homing_cap_rec *)(r->stage + (size_t)i * r->slot);
				rec->cls = cls[i];
				rec->fate = fate[i];
				memcpy(s, rec, sizeof(*rec) + rec->cap_len);
				ring_commit(r);
			}
		}
		/* Where the packet went, as it leaves (dropped and parked packets are gone or
		 * held: not touched; too-big ones may have been freed) */
		if (fate[i] == HOMING_FATE_NIC)
			take(lc, c, in[i], ts, HOMING_CAP_NIC_TX, lc->nic_port, cls[i], fate[i]);
		else if (fate[i] == HOMING_FATE_KERNEL)
			take(lc, c, in[i], ts, HOMING_CAP_TAP_TX, lc->tap_port, cls[i], fate[i]);
	}
}

void
homing_cap_tap_burst(struct homing_lcore *lc, struct homing_cap *c, struct rte_mbuf **pkts,
		     uint16_t n)
{
	const uint8_t k = WORD(from_kernel);
	uint64_t ts = now_ns();
	uint16_t i;

	for (i = 0; i < n; i++)
		take(lc, c, pkts[i], ts, HOMING_CAP_TAP_RX, lc->tap_port, k, HOMING_FATE_NIC);
	homing_process_tap_burst(lc, pkts, n);
	for (i = 0; i < n; i++)
		take(lc, c, pkts[i], ts, HOMING_CAP_NIC_TX, lc->nic_port, k, HOMING_FATE_NIC);
}

void
homing_cap_sync(struct homing_dp *dp)
{
	rte_rcu_qsbr_synchronize(dp->table->qsbr, RTE_QSBR_THRID_INVALID);
}
