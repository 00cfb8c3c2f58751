/* SPDX-License-Identifier: Apache-2.0
 *
 * UDP session learning on the kernel side of the pipeline (see udplearn.h).
 */
#include <stdlib.h>
#include <string.h>

#include <rte_branch_prediction.h>
#include <rte_byteorder.h>
#include <rte_ether.h>
#include <rte_ip.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>
#include <rte_udp.h>

#include "pipeline.h"
#include "udplearn.h"

struct homing_udp_lcore *
homing_udp_lcore_create(uint32_t ring_size, uint32_t filter_size)
{
	struct homing_udp_lcore *u;

	if (ring_size > HOMING_LEARN_RING_MAX || (ring_size & (ring_size - 1)) != 0 ||
	    (ring_size != 0 && (filter_size == 0 || filter_size > HOMING_LEARN_FILTER_MAX ||
				(filter_size & (filter_size - 1)) != 0)))
		return NULL;
	u = aligned_alloc(RTE_CACHE_LINE_SIZE, sizeof(*u));
	if (u == NULL)
		return NULL;
	memset(u, 0, sizeof(*u));
	u->tick = 1;
	if (ring_size == 0)
		return u;
	u->ring = calloc(ring_size, sizeof(*u->ring));
	u->filter = calloc(filter_size, sizeof(*u->filter));
	if (u->ring == NULL || u->filter == NULL) {
		homing_udp_lcore_free(u);
		return NULL;
	}
	u->ring_mask = ring_size - 1;
	u->filter_mask = filter_size - 1;
	return u;
}

void
homing_udp_lcore_free(struct homing_udp_lcore *u)
{
	if (u == NULL)
		return;
	free(u->ring);
	free(u->filter);
	free(u);
}

static inline int
port_set(const uint8_t *bitmap, uint16_t port_be)
{
	uint16_t p = rte_be_to_cpu_16(port_be);
	return (bitmap[p >> 3] >> (p & 7)) & 1;
}

static inline int
is_vip4(const struct homing_dp *dp, uint32_t a)
{
	for (unsigned i = 0; i < dp->n_vip4; i++)
		if ((a & dp->vip4[i].mask) == dp->vip4[i].net)
			return 1;
	return 0;
}

static inline int
is_vip6(const struct homing_dp *dp, const uint8_t *a)
{
	for (unsigned i = 0; i < dp->n_vip6; i++) {
		const struct homing_vip6 *v = &dp->vip6[i];
		unsigned b;
		for (b = 0; b < 16; b++)
			if ((a[b] & v->mask[b]) != v->net[b])
				break;
		if (b == 16)
			return 1;
	}
	return 0;
}

/* Puts rec on the ring unless the filter says it was reported in this tick: 1 if put. */
static inline int
report(struct homing_udp_lcore *u, const struct homing_learn_rec *rec, uint32_t hash)
{
	struct homing_learn_slot *s = &u->filter[hash & u->filter_mask];
	uint32_t tick = u->tick;
	uint64_t head = u->head;

	if (s->hash == hash && s->tick == tick)
		return 0;
	if (unlikely(head - __atomic_load_n(&u->tail, __ATOMIC_ACQUIRE) > u->ring_mask)) {
		u->stats.ring_full++;
		return 0; /* the filter is left as it was: the next packet tries again */
	}
	u->ring[head & u->ring_mask] = *rec;
	__atomic_store_n(&u->head, head + 1, __ATOMIC_RELEASE);
	s->hash = hash;
	s->tick = tick;
	u->stats.reported++;
	return 1;
}

/* On a port with a cid_len, copies the server's SCID of the QUIC packet in the UDP
 * datagram udp (ending at end) to rec. */
static inline void
scid_of(const struct homing_dp *dp, const struct rte_udp_hdr *udp, const uint8_t *end,
	struct homing_learn_rec *rec)
{
	const uint8_t *p = (const uint8_t *)(udp + 1), *cid;
	uint8_t want;

	rec->cid_len = 0;
	if (likely(!port_set(dp->udp_scid, udp->src_port)))
		return;
	if ((const uint8_t *)udp + rte_be_to_cpu_16(udp->dgram_len) < end)
		end = (const uint8_t *)udp + rte_be_to_cpu_16(udp->dgram_len);
	if (end <= p)
		return;
	want = homing_quic_cid_len(dp, udp->src_port);
	cid = homing_quic_scid(p, (uint32_t)(end - p), want);
	if (cid == NULL)
		return;
	memcpy(rec->cid, cid, want);
	rec->cid_len = want;
}

/* The client->VIP flow of an IPv4 or IPv6 UDP packet (not a later fragment) between a
 * VIP port in ports and a client: from the VIP (served != 0: the kernel's answer, the VIP
 * and its port are the source) or to it (served == 0). 1 with rec's key set (cid_len
 * untouched), *udpp its UDP header and *endp the end of its datagram within the mbuf. */
static inline int
udp_vip_flow(const struct homing_dp *dp, const struct rte_mbuf *m, const uint8_t *ports,
	     int served, struct homing_learn_rec *rec, const struct rte_udp_hdr **udpp,
	     const uint8_t **endp)
{
	const uint8_t *d = rte_pktmbuf_mtod(m, const uint8_t *);
	uint32_t len = rte_pktmbuf_data_len(m);
	const struct rte_udp_hdr *udp;
	const uint8_t *end;
	uint16_t et;

	if (len < RTE_ETHER_HDR_LEN + sizeof(struct rte_ipv4_hdr) + sizeof(*udp))
		return 0;
	et = ((const struct rte_ether_hdr *)d)->ether_type;
	if (et == rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4)) {
		const struct rte_ipv4_hdr *ip = (const struct rte_ipv4_hdr *)(d + RTE_ETHER_HDR_LEN);
		uint32_t hl = (ip->version_ihl & 0xf) * 4u;
		if ((ip->version_ihl >> 4) != 4 || ip->next_proto_id != IPPROTO_UDP || hl < sizeof(*ip) ||
		    RTE_ETHER_HDR_LEN + hl + sizeof(*udp) > len ||
		    (ip->fragment_offset & rte_cpu_to_be_16(RTE_IPV4_HDR_OFFSET_MASK)))
			return 0;
		udp = (const struct rte_udp_hdr *)((const uint8_t *)ip + hl);
		if (!port_set(ports, served ? udp->src_port : udp->dst_port) ||
		    !is_vip4(dp, served ? ip->src_addr : ip->dst_addr))
			return 0;
		rec->af = 4;
		memset(&rec->k4, 0, sizeof(rec->k4));
		rec->k4.src = served ? ip->dst_addr : ip->src_addr;
		rec->k4.dst = served ? ip->src_addr : ip->dst_addr;
		rec->k4.sport = served ? udp->dst_port : udp->src_port;
		rec->k4.dport = served ? udp->src_port : udp->dst_port;
		rec->k4.proto = IPPROTO_UDP;
		end = (const uint8_t *)ip + rte_be_to_cpu_16(ip->total_length);
	} else if (et == rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV6)) {
		const struct rte_ipv6_hdr *ip = (const struct rte_ipv6_hdr *)(d + RTE_ETHER_HDR_LEN);
		if (len < RTE_ETHER_HDR_LEN + sizeof(*ip) + sizeof(*udp) || (d[RTE_ETHER_HDR_LEN] >> 4) != 6 ||
		    ip->proto != IPPROTO_UDP)
			return 0;
		udp = (const struct rte_udp_hdr *)(ip + 1);
		if (!port_set(ports, served ? udp->src_port : udp->dst_port) ||
		    !is_vip6(dp, served ? ip->src_addr : ip->dst_addr))
			return 0;
		rec->af = 6;
		memset(&rec->k6, 0, sizeof(rec->k6));
		memcpy(rec->k6.src, served ? ip->dst_addr : ip->src_addr, 16);
		memcpy(rec->k6.dst, served ? ip->src_addr : ip->dst_addr, 16);
		rec->k6.sport = served ? udp->dst_port : udp->src_port;
		rec->k6.dport = served ? udp->src_port : udp->dst_port;
		rec->k6.proto = IPPROTO_UDP;
		end = (const uint8_t *)(ip + 1) + rte_be_to_cpu_16(ip->payload_len);
	} else {
		return 0;
	}
	*udpp = udp;
	*endp = RTE_MIN(end, d + len);
	return 1;
}

/* The flow of one kernel packet, if it is UDP from a VIP session port: 1 with rec set. */
static inline int
flow_of(const struct homing_dp *dp, const struct rte_mbuf *m, struct homing_learn_rec *rec)
{
	const struct rte_udp_hdr *udp;
	const uint8_t *end;

	if (!udp_vip_flow(dp, m, dp->udp_sess, 1, rec, &udp, &end))
		return 0;
	scid_of(dp, udp, end, rec);
	return 1;
}

void
homing_udp_learn_burst(struct homing_lcore *lc, struct rte_mbuf **pkts, uint16_t n)
{
	const struct homing_dp *dp = lc->dp;
	struct homing_udp_lcore *u = lc->udp;
	struct homing_learn_rec rec;

	for (uint16_t i = 0; i < n; i++) {
		if (!flow_of(dp, pkts[i], &rec))
			continue;
		if (rec.cid_len != 0) {
			/* Filtered as the CID, apart from the flow's own reports. */
			struct homing_key6 ck;
			homing_cid_key(&ck, rec.cid, rec.cid_len,
				       rec.af == 4 ? rec.k4.dport : rec.k6.dport);
			u->stats.cid_learn += report(u, &rec, homing_table_hash6(&ck));
			continue;
		}
		report(u, &rec, rec.af == 4 ? homing_table_hash4(&rec.k4) : homing_table_hash6(&rec.k6));
	}
}

uint32_t
homing_udp_learn_drain(struct homing_udp_lcore *u, struct homing_learn_rec *out, uint32_t max)
{
	uint64_t tail = u->tail, head = __atomic_load_n(&u->head, __ATOMIC_ACQUIRE);
	uint32_t n = 0;

	if (u->ring == NULL)
		return 0;
	while (tail != head && n < max)
		out[n++] = u->ring[tail++ & u->ring_mask];
	__atomic_store_n(&u->tail, tail, __ATOMIC_RELEASE);
	return n;
}

void
homing_dp_set_quic_cid(struct homing_dp *dp, uint16_t port)
{
	dp->udp_cid[port >> 3] |= (uint8_t)(1u << (port & 7));
}

int
homing_dp_set_quic_cid_len(struct homing_dp *dp, uint16_t port, uint8_t len)
{
	if (len < HOMING_CID_KEY_MIN || len > HOMING_QUIC_CID_MAX || dp->n_quic_len >= HOMING_QUIC_LEN_PORTS)
		return -1;
	dp->quic_len[dp->n_quic_len].port = port;
	dp->quic_len[dp->n_quic_len].len = len;
	dp->n_quic_len++;
	dp->udp_scid[port >> 3] |= (uint8_t)(1u << (port & 7));
	return 0;
}

uint8_t
homing_quic_cid_len(const struct homing_dp *dp, uint16_t port_be)
{
	uint16_t port = rte_be_to_cpu_16(port_be);

	if (!port_set(dp->udp_scid, port_be))
		return 0;
	for (uint32_t i = 0; i < dp->n_quic_len; i++)
		if (dp->quic_len[i].port == port)
			return dp->quic_len[i].len;
	return 0;
}

/* A client's packet this host's kernel receives (frame m: Ethernet, IP, UDP) on a port
 * with a cid_len: its DCID (homing_quic_dcid) with its flow, in rec. 1 if found. */
static inline int
client_dcid(const struct homing_dp *dp, const struct rte_mbuf *m, struct homing_learn_rec *rec)
{
	const uint8_t *end, *p, *cid;
	const struct rte_udp_hdr *udp;
	uint8_t want;

	if (!udp_vip_flow(dp, m, dp->udp_scid, 0, rec, &udp, &end))
		return 0;
	if ((const uint8_t *)udp + rte_be_to_cpu_16(udp->dgram_len) < end)
		end = (const uint8_t *)udp + rte_be_to_cpu_16(udp->dgram_len);
	p = (const uint8_t *)(udp + 1);
	if (end <= p)
		return 0;
	want = homing_quic_cid_len(dp, udp->dst_port);
	cid = homing_quic_dcid(p, (uint32_t)(end - p), want);
	if (cid == NULL)
		return 0;
	memcpy(rec->cid, cid, want);
	rec->cid_len = want;
	return 1;
}

void
homing_udp_learn_client(struct homing_lcore *lc, struct rte_mbuf *m)
{
	struct homing_udp_lcore *u = lc->udp;
	struct homing_learn_rec rec;
	struct homing_key6 ck;

	if (!client_dcid(lc->dp, m, &rec))
		return;
	homing_cid_key(&ck, rec.cid, rec.cid_len, rec.af == 4 ? rec.k4.dport : rec.k6.dport);
	u->stats.cid_client += report(u, &rec, homing_table_hash6(&ck));
}
