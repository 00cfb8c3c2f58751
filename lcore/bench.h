/* SPDX-License-Identifier: Apache-2.0 */
#ifndef HOMING_BENCH_H
#define HOMING_BENCH_H
#include <stdint.h>
#include <netinet/in.h>
#include <rte_byteorder.h>
#include "pipeline.h"

enum homing_bench_mode {
	HOMING_BENCH_BARE = 0,     /* rx -> generator -> tx: the cost of moving packets */
	HOMING_BENCH_PIPELINE = 1, /* rx -> generator -> pipeline -> tx */
	HOMING_BENCH_NAIVE = 2,    /* rx -> generator -> the naive reference (bench_naive.c) -> tx */
	HOMING_BENCH_HOOK = 3,     /* rx -> generator -> the poll loop's NIC burst: the pipeline
				    * behind the capture branch (capture.h), a capture armed or
				    * not (lc->cap) -> tx */
};

enum homing_bench_gen {
	HOMING_BENCH_GEN_TCP = 0, /* Ethernet/IPv4/TCP ACK of the session (64 bytes) */
	HOMING_BENCH_GEN_GUE = 1, /* the same IPv4/TCP packet in IPv4/UDP/GUE to gue_dst:gue_port
				   * (86 bytes), as a peer's pipeline sends it */
};

/* Most timed windows per run. */
#define HOMING_BENCH_WINDOWS_MAX 16

/* The benchmark's sessions, computed from their index alone (no table of keys is read
 * while packets flow): session i < 2^32 has x = i * 0x9e3779b1 (mod 2^32, a bijection),
 * client address 198.18.(x >> 24).((x >> 16) & 0xff), client port x & 0xffff, the VIP
 * vip:dport, TCP. cmd/homing-bench fills the tables with exactly these keys (flowKey);
 * homing_bench_key4 is the one definition on the C side. */
#define HOMING_BENCH_KEY_MUL 0x9e3779b1u
#define HOMING_BENCH_SRC_NET 0xc6120000u /* 198.18.0.0/16, host order */

static inline void
homing_bench_key4(uint32_t i, uint32_t vip, uint16_t dport, struct homing_key4 *k)
{
	uint32_t x = i * HOMING_BENCH_KEY_MUL;

	k->src = rte_cpu_to_be_32(HOMING_BENCH_SRC_NET | (x >> 16));
	k->dst = vip;
	k->sport = rte_cpu_to_be_16((uint16_t)x);
	k->dport = dport;
	k->proto = IPPROTO_TCP;
	k->pad[0] = k->pad[1] = k->pad[2] = 0;
}

struct homing_bench_naive;

/* One benchmark run on one lcore over one queue of a port (net_null or net_ring): every
 * received mbuf gets the frame of a session written into it by the generator (index
 * drawn at random among the n_keys sessions, key computed from it), then is either sent
 * back out (bare) or processed by the pipeline (or the naive reference) first; every
 * output goes to the same port and queue. The run forwards warmup packets untimed, then
 * windows timed windows of packets each. */
struct homing_bench {
	struct homing_lcore *lc;   /* dp and counters; lc->nic_port = lc->tap_port = port,
				    * lc->queue the queue */
	struct homing_bench_naive *naive; /* mode NAIVE */
	uint32_t n_keys;           /* sessions 0..n_keys-1 */
	uint32_t vip;              /* sessions' destination (network order) */
	uint16_t vip_port;         /* sessions' destination port (network order) */
	uint16_t gue_port;         /* GEN_GUE: UDP destination port (network order) */
	uint32_t gue_dst;          /* GEN_GUE: outer destination (network order) */
	uint32_t gue_src;          /* GEN_GUE: outer source, a live peer (network order) */
	uint32_t mode;
	uint32_t gen;
	int32_t cpu;               /* pin the lcore's thread to this CPU; -1: leave it */
	uint32_t windows;          /* 1..HOMING_BENCH_WINDOWS_MAX */
	uint64_t warmup;           /* packets before the first window */
	uint64_t packets;          /* per window */
	uint64_t seed;
	/* results */
	uint64_t done;             /* timed packets */
	uint64_t win_done[HOMING_BENCH_WINDOWS_MAX];
	uint64_t win_ns[HOMING_BENCH_WINDOWS_MAX]; /* CLOCK_MONOTONIC */
	uint64_t win_cpu_ns[HOMING_BENCH_WINDOWS_MAX]; /* the lcore thread's CPU time */
	uint64_t tsc_hz;           /* EAL's TSC frequency (for comparison) */
	int32_t pinned;            /* the CPU the run was pinned to, -1 none */
};

int homing_bench_main(void *arg);

/* The naive reference design (bench_naive.c): rte_hash with lock-free readers, filled
 * with sessions 0..n-1 (homing_bench_key4) owned by owner; a packet of a session owned by
 * another host gets its GUE header written field by field. The peer's addresses are
 * given in network order. Returns NULL on failure (rte_errno). */
struct homing_bench_naive *homing_bench_naive_create(const char *name, uint32_t n,
						     uint32_t vip, uint16_t vip_port,
						     uint16_t owner, uint16_t self_id,
						     const uint8_t *src_mac, const uint8_t *dst_mac,
						     uint32_t src_ip, uint32_t dst_ip,
						     uint16_t tunnel_port);
void homing_bench_naive_free(struct homing_bench_naive *nv);
/* Bytes of DPDK heap the naive table took. */
uint64_t homing_bench_naive_heap(const struct homing_bench_naive *nv);
/* One burst through the naive design (counts in lc->stats as the pipeline does). */
void homing_bench_naive_burst(struct homing_bench_naive *nv, struct homing_lcore *lc,
			      struct rte_mbuf **pkts, uint16_t n, struct rte_mbuf **nic_out,
			      uint16_t *n_nic, struct rte_mbuf **tap_out, uint16_t *n_tap);

/* 1 (default): the pipeline's fast paths are on; 0: every packet goes through the full
 * classifier. For the tests that check both decide alike; not for use while lcores run. */
extern int homing_fast_paths;
#endif
