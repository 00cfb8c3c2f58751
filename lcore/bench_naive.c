//go:build harness

/* SPDX-License-Identifier: Apache-2.0
 *
 * The naive reference design for make bench: what a competent, straightforward DPDK
 * forwarder does, measured in the same rounds as homing's pipeline, so that "ahead of the
 * obvious design" is a ratio anyone can re-run.
 *
 *   per burst: parse every packet (Ethernet, IPv4 without options, not a fragment, TCP
 *   or UDP to the VIP, not a SYN) into a 16-byte key and its hash (rte_hash_hash, CRC);
 *   rte_hash_lookup_with_hash_bulk_data on the burst (rte_hash with
 *   RTE_HASH_EXTRA_FLAGS_RW_CONCURRENCY_LF, so that a control plane can write while
 *   lcores read, as in homing); for a session owned by another host, replace the
 *   Ethernet header by outer Ethernet + IPv4 + UDP + GUE written field by field from the
 *   owner's peer record, checksum by rte_ipv4_cksum, UDP source port from the key's hash
 *   (computed once per packet, as homing does); everything else to the kernel port.
 *
 * Bench only: not linked into the data plane's decisions.
 */
#include <string.h>

#include <rte_byteorder.h>
#include <rte_errno.h>
#include <rte_ether.h>
#include <rte_hash.h>
#include <rte_hash_crc.h>
#include <rte_ip.h>
#include <rte_malloc.h>
#include <rte_tcp.h>
#include <rte_udp.h>

#include "bench.h"

#define NAIVE_PEERS 4

/* What a peer's tunnel needs. */
struct naive_peer {
	struct rte_ether_addr src_mac, dst_mac;
	uint32_t src_ip, dst_ip; /* network order */
	uint16_t dport;          /* network order */
	uint8_t live;
};

struct homing_bench_naive {
	struct rte_hash *h;
	uint32_t vip;       /* network order */
	uint16_t vip_port;  /* unused by the decision (any port of the VIP) */
	uint16_t self_id;
	uint64_t heap;
	struct naive_peer peer[NAIVE_PEERS];
};

static uint64_t
heap_used(void)
{
	struct rte_malloc_socket_stats s;
	uint64_t used = 0;

	for (int i = 0; i < RTE_MAX_NUMA_NODES; i++)
		if (rte_malloc_get_socket_stats(i, &s) == 0)
			used += s.heap_allocsz_bytes;
	return used;
}

struct homing_bench_naive *
homing_bench_naive_create(const char *name, uint32_t n, uint32_t vip, uint16_t vip_port,
			  uint16_t owner, uint16_t self_id, const uint8_t *src_mac,
			  const uint8_t *dst_mac, uint32_t src_ip, uint32_t dst_ip,
			  uint16_t tunnel_port)
{
	struct homing_bench_naive *nv;
	uint64_t before = heap_used();
	struct rte_hash_parameters p = {
		.name = name,
		.entries = n + n / 4,
		.key_len = sizeof(struct homing_key4),
		.hash_func = rte_hash_crc,
		.hash_func_init_val = 0,
		.socket_id = SOCKET_ID_ANY,
		.extra_flag = RTE_HASH_EXTRA_FLAGS_RW_CONCURRENCY_LF,
	};

	if (owner >= NAIVE_PEERS) {
		rte_errno = EINVAL;
		return NULL;
	}
	nv = rte_zmalloc("naive", sizeof(*nv), RTE_CACHE_LINE_SIZE);
	if (nv == NULL)
		return NULL;
	nv->h = rte_hash_create(&p);
	if (nv->h == NULL) {
		rte_free(nv);
		return NULL;
	}
	nv->vip = vip;
	nv->vip_port = vip_port;
	nv->self_id = self_id;
	for (uint32_t i = 0; i < n; i++) {
		struct homing_key4 k;
		homing_bench_key4(i, vip, vip_port, &k);
		if (rte_hash_add_key_data(nv->h, &k, (void *)(uintptr_t)HOMING_VAL(owner, 1)) != 0) {
			rte_hash_free(nv->h);
			rte_free(nv);
			rte_errno = ENOSPC;
			return NULL;
		}
	}
	struct naive_peer *pr = &nv->peer[owner];
	memcpy(&pr->src_mac, src_mac, RTE_ETHER_ADDR_LEN);
	memcpy(&pr->dst_mac, dst_mac, RTE_ETHER_ADDR_LEN);
	pr->src_ip = src_ip;
	pr->dst_ip = dst_ip;
	pr->dport = tunnel_port;
	pr->live = 1;
	nv->heap = heap_used() - before;
	return nv;
}

void
homing_bench_naive_free(struct homing_bench_naive *nv)
{
	if (nv == NULL)
		return;
	rte_hash_free(nv->h);
	rte_free(nv);
}

uint64_t
homing_bench_naive_heap(const struct homing_bench_naive *nv)
{
	return nv->heap;
}

/* Parses m into k. Returns 1 for a VIP session packet to look up, 0 for the kernel. */
static inline int
naive_parse(const struct homing_bench_naive *nv, struct rte_mbuf *m, struct homing_key4 *k,
	    uint16_t *ip_len)
{
	struct rte_ether_hdr *eth = rte_pktmbuf_mtod(m, struct rte_ether_hdr *);
	struct rte_ipv4_hdr *ip = (struct rte_ipv4_hdr *)(eth + 1);
	uint16_t tot;

	if (m->data_len < sizeof(*eth) + sizeof(*ip) + sizeof(struct rte_tcp_hdr) ||
	    eth->ether_type != rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4) ||
	    ip->version_ihl != RTE_IPV4_VHL_DEF ||
	    (ip->fragment_offset & rte_cpu_to_be_16(RTE_IPV4_HDR_MF_FLAG | RTE_IPV4_HDR_OFFSET_MASK)) ||
	    ip->dst_addr != nv->vip)
		return 0;
	tot = rte_be_to_cpu_16(ip->total_length);
	if (tot < sizeof(*ip) + sizeof(struct rte_udp_hdr) || tot > m->data_len - sizeof(*eth))
		return 0;
	if (ip->next_proto_id == IPPROTO_TCP) {
		struct rte_tcp_hdr *tcp = (struct rte_tcp_hdr *)(ip + 1);
		if (tot < sizeof(*ip) + sizeof(*tcp) ||
		    (tcp->tcp_flags & (RTE_TCP_SYN_FLAG | RTE_TCP_ACK_FLAG)) == RTE_TCP_SYN_FLAG)
			return 0;
		k->sport = tcp->src_port;
		k->dport = tcp->dst_port;
	} else if (ip->next_proto_id == IPPROTO_UDP) {
		struct rte_udp_hdr *udp = (struct rte_udp_hdr *)(ip + 1);
		k->sport = udp->src_port;
		k->dport = udp->dst_port;
	} else {
		return 0;
	}
	k->src = ip->src_addr;
	k->dst = ip->dst_addr;
	k->proto = ip->next_proto_id;
	k->pad[0] = k->pad[1] = k->pad[2] = 0;
	*ip_len = tot;
	return 1;
}

/* Replaces m's Ethernet header by the tunnel to peer p. Returns 0, or -1 without room. */
static inline int
naive_encap(const struct naive_peer *p, struct rte_mbuf *m, hash_sig_t sig, uint16_t ip_len)
{
	const uint16_t outer = sizeof(struct rte_ipv4_hdr) + sizeof(struct rte_udp_hdr) + HOMING_GUE_LEN;
	struct rte_ether_hdr *eth;
	struct rte_ipv4_hdr *ip;
	struct rte_udp_hdr *udp;
	uint8_t *gue;

	/* drop the Ethernet padding, then make room for the outer headers */
	rte_pktmbuf_trim(m, (uint16_t)(m->pkt_len - sizeof(*eth) - ip_len));
	eth = (struct rte_ether_hdr *)rte_pktmbuf_prepend(m, outer);
	if (eth == NULL)
		return -1;
	rte_ether_addr_copy(&p->dst_mac, &eth->dst_addr);
	rte_ether_addr_copy(&p->src_mac, &eth->src_addr);
	eth->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4);
	ip = (struct rte_ipv4_hdr *)(eth + 1);
	ip->version_ihl = RTE_IPV4_VHL_DEF;
	ip->type_of_service = 0;
	ip->total_length = rte_cpu_to_be_16(outer + ip_len);
	ip->packet_id = 0;
	ip->fragment_offset = rte_cpu_to_be_16(RTE_IPV4_HDR_DF_FLAG);
	ip->time_to_live = 64;
	ip->next_proto_id = IPPROTO_UDP;
	ip->src_addr = p->src_ip;
	ip->dst_addr = p->dst_ip;
	ip->hdr_checksum = 0;
	ip->hdr_checksum = rte_ipv4_cksum(ip);
	udp = (struct rte_udp_hdr *)(ip + 1);
	udp->src_port = rte_cpu_to_be_16(
		(uint16_t)(HOMING_SPORT_BASE + ((sig ^ sig >> 16) & HOMING_SPORT_MASK)));
	udp->dst_port = p->dport;
	udp->dgram_len = rte_cpu_to_be_16(sizeof(*udp) + HOMING_GUE_LEN + ip_len);
	udp->dgram_cksum = 0;
	gue = (uint8_t *)(udp + 1);
	gue[0] = 0;
	gue[1] = IPPROTO_IPIP;
	gue[2] = 0;
	gue[3] = 0;
	m->ol_flags = 0;
	m->packet_type = 0;
	return 0;
}

void
homing_bench_naive_burst(struct homing_bench_naive *nv, struct homing_lcore *lc,
			 struct rte_mbuf **pkts, uint16_t n, struct rte_mbuf **nic_out,
			 uint16_t *n_nic, struct rte_mbuf **tap_out, uint16_t *n_tap)
{
	struct homing_lcore_stats *st = &lc->stats;
	struct homing_key4 keys[HOMING_BURST];
	const void *kp[HOMING_BURST];
	hash_sig_t sig[HOMING_BURST];
	uint16_t ip_len[HOMING_BURST], idx[HOMING_BURST];
	void *data[HOMING_BURST];
	uint64_t hits = 0;
	uint16_t nk = 0, nn = 0, nt = 0, i;
	uint8_t look[HOMING_BURST];

	if (n > HOMING_BURST)
		n = HOMING_BURST;
	for (i = 0; i < n; i++) {
		look[i] = (uint8_t)naive_parse(nv, pkts[i], &keys[nk], &ip_len[nk]);
		if (look[i]) {
			kp[nk] = &keys[nk];
			sig[nk] = rte_hash_hash(nv->h, &keys[nk]);
			idx[i] = nk++;
		}
	}
	if (nk != 0)
		rte_hash_lookup_with_hash_bulk_data(nv->h, kp, sig, nk, &hits, data);
	for (i = 0; i < n; i++) {
		struct rte_mbuf *m = pkts[i];
		if (look[i] && ((hits >> idx[i]) & 1)) {
			uint16_t owner = HOMING_VAL_OWNER((uintptr_t)data[idx[i]]);
			const struct naive_peer *p = owner < NAIVE_PEERS ? &nv->peer[owner] : NULL;
			if (owner != nv->self_id && p != NULL && p->live) {
				if (naive_encap(p, m, sig[idx[i]], ip_len[idx[i]]) == 0) {
					st->cls_redirect++;
					nic_out[nn++] = m;
				} else {
					st->drop_headroom++;
					rte_pktmbuf_free(m);
				}
				continue;
			}
			st->cls_local++;
		} else if (look[i]) {
			st->cls_miss++;
		} else {
			st->cls_other++;
		}
		tap_out[nt++] = m;
	}
	st->rx_nic += n;
	*n_nic = nn;
	*n_tap = nt;
}
