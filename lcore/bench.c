/* SPDX-License-Identifier: Apache-2.0
 *
 * Data-plane benchmark loops (make bench): the pipeline next to a bare rx->tx loop with the
 * same traffic generator on the same PMD, so that their ratio cancels the machine's noise.
 */
#include <string.h>

#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_ether.h>
#include <rte_ip.h>
#include <rte_rcu_qsbr.h>
#include <rte_tcp.h>

#include "bench.h"

#define GEN_LEN (RTE_ETHER_HDR_LEN + sizeof(struct rte_ipv4_hdr) + sizeof(struct rte_tcp_hdr))

static inline uint64_t
xorshift(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

/* Writes an Ethernet/IPv4/TCP (ACK) frame of session k into m (64 bytes on the wire). */
static inline void
gen(struct rte_mbuf *m, const struct homing_key4 *k)
{
	uint8_t *d = rte_pktmbuf_mtod(m, uint8_t *);
	struct rte_ether_hdr *eth = (struct rte_ether_hdr *)d;
	struct rte_ipv4_hdr *ip = (struct rte_ipv4_hdr *)(eth + 1);
	struct rte_tcp_hdr *tcp = (struct rte_tcp_hdr *)(ip + 1);

	m->data_len = m->pkt_len = 64;
	memset(&eth->dst_addr, 0x02, RTE_ETHER_ADDR_LEN);
	memset(&eth->src_addr, 0x04, RTE_ETHER_ADDR_LEN);
	eth->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4);
	ip->version_ihl = RTE_IPV4_VHL_DEF;
	ip->type_of_service = 0;
	ip->total_length = rte_cpu_to_be_16(64 - RTE_ETHER_HDR_LEN);
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

static inline void
send_all(uint16_t port, struct rte_mbuf **p, uint16_t n)
{
	uint16_t s = rte_eth_tx_burst(port, 0, p, n);
	if (s < n)
		rte_pktmbuf_free_bulk(p + s, n - s);
}

int
homing_bench_main(void *arg)
{
	struct homing_bench *b = arg;
	struct homing_lcore *lc = b->lc;
	struct rte_rcu_qsbr *qsbr = lc->dp->table->qsbr;
	struct rte_mbuf *pkts[HOMING_BURST], *nic[HOMING_BURST], *tap[HOMING_BURST];
	uint64_t seed = b->seed | 1, done = 0, t0;
	uint16_t port = lc->nic_port, n, nn, nt, i;

	if (rte_rcu_qsbr_thread_register(qsbr, lc->lcore_id) != 0)
		return -1;
	rte_rcu_qsbr_thread_online(qsbr, lc->lcore_id);
	t0 = rte_rdtsc();
	while (done < b->packets) {
		n = rte_eth_rx_burst(port, 0, pkts, HOMING_BURST);
		for (i = 0; i < n; i++)
			gen(pkts[i], &b->keys[xorshift(&seed) % b->n_keys]);
		if (b->mode == HOMING_BENCH_BARE) {
			send_all(port, pkts, n);
		} else {
			homing_process_nic_burst(lc, pkts, n, nic, &nn, tap, &nt);
			if (nn)
				send_all(port, nic, nn);
			if (nt)
				send_all(port, tap, nt);
		}
		rte_rcu_qsbr_quiescent(qsbr, lc->lcore_id);
		done += n;
	}
	b->cycles = rte_rdtsc() - t0;
	b->done = done;
	b->tsc_hz = rte_get_tsc_hz();
	rte_rcu_qsbr_thread_offline(qsbr, lc->lcore_id);
	rte_rcu_qsbr_thread_unregister(qsbr, lc->lcore_id);
	return 0;
}
