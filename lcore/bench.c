//go:build harness

/* SPDX-License-Identifier: Apache-2.0
 *
 * Data-plane benchmark loops (make bench): the pipeline next to a bare rx->tx loop with the
 * same traffic generator on the same PMD, so that their ratio cancels the machine's noise.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <time.h>

#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_ether.h>
#include <rte_ip.h>
#include <rte_rcu_qsbr.h>
#include <rte_tcp.h>
#include <rte_udp.h>

#include "bench.h"
#include "capture.h"

#define GEN_LEN (RTE_ETHER_HDR_LEN + sizeof(struct rte_ipv4_hdr) + sizeof(struct rte_tcp_hdr))
#define GUE_OUTER (sizeof(struct rte_ipv4_hdr) + sizeof(struct rte_udp_hdr) + HOMING_GUE_LEN)

static inline uint64_t
xorshift(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

/* The next session index in [0, n): a random 32-bit draw reduced by a multiply-high
 * (no division), then the session's key from its index (homing_bench_key4): no memory
 * outside the mbuf is read per packet. */
static inline void
next_key(uint64_t *s, uint32_t n, uint32_t vip, uint16_t dport, struct homing_key4 *k)
{
	uint32_t i = (uint32_t)(((xorshift(s) >> 32) * (uint64_t)n) >> 32);

	homing_bench_key4(i, vip, dport, k);
}

/* Writes the IPv4/TCP (ACK) packet of session k at ip (40 bytes). */
static inline void
gen_ip(struct rte_ipv4_hdr *ip, const struct homing_key4 *k)
{
	struct rte_tcp_hdr *tcp = (struct rte_tcp_hdr *)(ip + 1);

	ip->version_ihl = RTE_IPV4_VHL_DEF;
	ip->type_of_service = 0;
	ip->total_length = rte_cpu_to_be_16(sizeof(*ip) + sizeof(*tcp));
	ip->packet_id = 0;
	ip->fragment_offset = 0;
	ip->time_to_live = 64;
	ip->next_proto_id = k->proto;
	ip->hdr_checksum = 0;
	ip->src_addr = k->src;
	ip->dst_addr = k->dst;
	tcp->src_port = k->sport;
	tcp->dst_port = k->dport;
	tcp->sent_seq = 0;
	tcp->recv_ack = 0;
	tcp->data_off = 5 << 4;
	tcp->tcp_flags = RTE_TCP_ACK_FLAG;
	tcp->rx_win = 0xffff;
	tcp->cksum = 0;
	tcp->tcp_urp = 0;
}

/* Writes an Ethernet/IPv4/TCP (ACK) frame of session k into m (64 bytes on the wire). */
static inline void
gen(struct rte_mbuf *m, const struct homing_key4 *k)
{
	uint8_t *d = rte_pktmbuf_mtod(m, uint8_t *);
	struct rte_ether_hdr *eth = (struct rte_ether_hdr *)d;

	m->data_len = m->pkt_len = 64;
	memset(&eth->dst_addr, 0x02, RTE_ETHER_ADDR_LEN);
	memset(&eth->src_addr, 0x04, RTE_ETHER_ADDR_LEN);
	eth->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4);
	gen_ip((struct rte_ipv4_hdr *)(eth + 1), k);
}

/* Writes session k's packet inside Ethernet/IPv4/UDP/GUE from src (a peer) to dst:port
 * into m (86 bytes), as the owner receives it from a peer. */
static inline void
gen_gue(struct rte_mbuf *m, const struct homing_key4 *k, uint32_t src, uint32_t dst, uint16_t port)
{
	uint8_t *d = rte_pktmbuf_mtod(m, uint8_t *);
	struct rte_ether_hdr *eth = (struct rte_ether_hdr *)d;
	struct rte_ipv4_hdr *ip = (struct rte_ipv4_hdr *)(eth + 1);
	struct rte_udp_hdr *udp = (struct rte_udp_hdr *)(ip + 1);
	uint8_t *gue = (uint8_t *)(udp + 1);
	uint16_t inner = sizeof(struct rte_ipv4_hdr) + sizeof(struct rte_tcp_hdr);

	m->data_len = m->pkt_len = RTE_ETHER_HDR_LEN + GUE_OUTER + inner;
	memset(&eth->dst_addr, 0x02, RTE_ETHER_ADDR_LEN);
	memset(&eth->src_addr, 0x04, RTE_ETHER_ADDR_LEN);
	eth->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4);
	ip->version_ihl = RTE_IPV4_VHL_DEF;
	ip->type_of_service = 0;
	ip->total_length = rte_cpu_to_be_16(GUE_OUTER + inner);
	ip->packet_id = 0;
	ip->fragment_offset = rte_cpu_to_be_16(RTE_IPV4_HDR_DF_FLAG);
	ip->time_to_live = 64;
	ip->next_proto_id = IPPROTO_UDP;
	ip->hdr_checksum = 0;
	ip->src_addr = src;
	ip->dst_addr = dst;
	udp->src_port = k->sport | rte_cpu_to_be_16(0xc000);
	udp->dst_port = port;
	udp->dgram_len = rte_cpu_to_be_16(sizeof(*udp) + HOMING_GUE_LEN + inner);
	udp->dgram_cksum = 0;
	gue[0] = 0;
	gue[1] = IPPROTO_IPIP;
	gue[2] = gue[3] = 0;
	gen_ip((struct rte_ipv4_hdr *)(gue + HOMING_GUE_LEN), k);
}

static inline void
send_all(uint16_t port, uint16_t q, struct rte_mbuf **p, uint16_t n)
{
	uint16_t s = rte_eth_tx_burst(port, q, p, n);
	if (s < n)
		rte_pktmbuf_free_bulk(p + s, n - s);
}

/* The calling thread's CPU time (a system call: once per window). */
static uint64_t
thread_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Pins the calling thread to cpu. Returns cpu, or -1. */
static int
pin(int cpu)
{
	cpu_set_t set;

	if (cpu < 0)
		return -1;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (pthread_setaffinity_np(pthread_self(), sizeof(set), &set) != 0)
		return -1;
	return cpu;
}

/* Forwards packets until done reaches stop; returns the packets forwarded. */
static __rte_always_inline uint64_t
loop(struct homing_bench *b, uint64_t done, uint64_t stop, uint64_t *seed, const uint32_t mode,
     const uint32_t gen_kind)
{
	struct homing_lcore *lc = b->lc;
	struct rte_rcu_qsbr *qsbr = lc->dp->table->qsbr;
	struct rte_mbuf *pkts[HOMING_BURST], *nic[HOMING_NIC_OUT_MAX], *tap[HOMING_BURST];
	const uint32_t nk = b->n_keys, vip = b->vip, gdst = b->gue_dst, gsrc = b->gue_src;
	const uint16_t port = lc->nic_port, q = lc->queue, vport = b->vip_port, gport = b->gue_port;
	uint16_t n, nn, nt, i;
	struct homing_key4 k;

	while (done < stop) {
		n = rte_eth_rx_burst(port, q, pkts, HOMING_BURST);
		for (i = 0; i < n; i++) {
			next_key(seed, nk, vip, vport, &k);
			if (gen_kind == HOMING_BENCH_GEN_GUE)
				gen_gue(pkts[i], &k, gsrc, gdst, gport);
			else
				gen(pkts[i], &k);
		}
		if (mode == HOMING_BENCH_BARE) {
			send_all(port, q, pkts, n);
		} else {
			if (mode == HOMING_BENCH_NAIVE)
				homing_bench_naive_burst(b->naive, lc, pkts, n, nic, &nn, tap, &nt);
			else if (mode == HOMING_BENCH_HOOK)
				homing_nic_burst(lc, pkts, n, nic, &nn, tap, &nt);
			else
				homing_process_nic_burst(lc, pkts, n, nic, &nn, tap, &nt);
			if (nn)
				send_all(port, q, nic, nn);
			if (nt)
				send_all(port, q, tap, nt);
			/* what the poll loop does once per burst (the bare loop needs none) */
			rte_rcu_qsbr_quiescent(qsbr, lc->lcore_id);
		}
		done += n;
	}
	return done;
}

/* The whole run in one mode and generator (constants in each copy of loop). */
static uint64_t
run(struct homing_bench *b, uint64_t done, uint64_t stop, uint64_t *seed)
{
#define RUN_(m) (b->gen == HOMING_BENCH_GEN_GUE ? loop(b, done, stop, seed, m, HOMING_BENCH_GEN_GUE) \
					       : loop(b, done, stop, seed, m, HOMING_BENCH_GEN_TCP))
	switch (b->mode) {
	case HOMING_BENCH_BARE:
		return RUN_(HOMING_BENCH_BARE);
	case HOMING_BENCH_NAIVE:
		return RUN_(HOMING_BENCH_NAIVE);
	case HOMING_BENCH_HOOK:
		return RUN_(HOMING_BENCH_HOOK);
	default:
		return RUN_(HOMING_BENCH_PIPELINE);
	}
#undef RUN_
}

int
homing_bench_main(void *arg)
{
	struct homing_bench *b = arg;
	struct homing_lcore *lc = b->lc;
	struct rte_rcu_qsbr *qsbr = lc->dp->table->qsbr;
	uint64_t seed = b->seed | 1, done = 0, t0, t1, c0, c1;
	struct timespec ts;
	uint32_t w, nw = b->windows;

	if (nw == 0 || nw > HOMING_BENCH_WINDOWS_MAX || b->n_keys == 0)
		return -22;
	if (b->mode == HOMING_BENCH_NAIVE && b->naive == NULL)
		return -22;
	b->pinned = pin(b->cpu);
	if (rte_rcu_qsbr_thread_register(qsbr, lc->lcore_id) != 0)
		return -1;
	rte_rcu_qsbr_thread_online(qsbr, lc->lcore_id);
	if (b->warmup)
		run(b, 0, b->warmup, &seed);
	memset(&lc->stats, 0, sizeof(lc->stats));
	/* CLOCK_MONOTONIC, not the TSC: EAL's TSC frequency is an estimate when the VM does
	 * not report it, and a loaded machine skews the estimate (vDSO: no system call) */
	clock_gettime(CLOCK_MONOTONIC, &ts);
	t0 = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
	c0 = thread_ns();
	for (w = 0; w < nw; w++) {
		uint64_t d = run(b, done, done + b->packets, &seed);
		clock_gettime(CLOCK_MONOTONIC, &ts);
		t1 = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
		c1 = thread_ns();
		b->win_cpu_ns[w] = c1 - c0;
		c0 = c1;
		b->win_done[w] = d - done;
		b->win_ns[w] = t1 - t0;
		done = d;
		t0 = t1;
	}
	b->done = done;
	b->tsc_hz = rte_get_tsc_hz();
	rte_rcu_qsbr_thread_offline(qsbr, lc->lcore_id);
	rte_rcu_qsbr_thread_unregister(qsbr, lc->lcore_id);
	return 0;
}
