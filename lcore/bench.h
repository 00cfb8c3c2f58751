/* SPDX-License-Identifier: Apache-2.0 */
#ifndef HOMING_BENCH_H
#define HOMING_BENCH_H
#include <stdint.h>
#include "pipeline.h"

enum homing_bench_mode {
	HOMING_BENCH_BARE = 0,     /* rx -> generator -> tx: the cost of moving packets */
	HOMING_BENCH_PIPELINE = 1, /* rx -> generator -> pipeline -> tx */
};

enum homing_bench_gen {
	HOMING_BENCH_GEN_TCP = 0, /* Ethernet/IPv4/TCP ACK of the session (64 bytes) */
	HOMING_BENCH_GEN_GUE = 1, /* the same IPv4/TCP packet in IPv4/UDP/GUE to gue_dst:gue_port
				   * (86 bytes), as a peer's pipeline sends it */
};

/* One benchmark run on one lcore over one queue of a port (net_null or net_ring): every
 * received mbuf gets a flow written into it by the generator (a session drawn at random
 * from keys), then is either sent back out (bare) or processed by the pipeline first;
 * both outputs of the pipeline go to the same port and queue. */
struct homing_bench {
	struct homing_lcore *lc;   /* dp and counters; lc->nic_port = lc->tap_port = port,
				    * lc->queue the queue */
	const struct homing_key4 *keys;
	uint32_t n_keys;
	uint32_t mode;
	uint32_t gen;
	uint32_t gue_dst;          /* GEN_GUE: outer destination (network order) */
	uint16_t gue_port;         /* GEN_GUE: UDP destination port (network order) */
	uint64_t packets;          /* stop after this many */
	uint64_t seed;
	/* results */
	uint64_t done;
	uint64_t cycles;
	uint64_t tsc_hz;
};

int homing_bench_main(void *arg);

/* 1 (default): the pipeline's fast paths are on; 0: every packet goes through the full
 * classifier. For the tests that check both decide alike; not for use while lcores run. */
extern int homing_fast_paths;
#endif
