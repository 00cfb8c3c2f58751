/* SPDX-License-Identifier: Apache-2.0
 *
 * Packet capture and flow trace on the worker lcores (capture.c).
 *
 * The control plane arms a capture by publishing a struct homing_cap (filter, snap
 * length, packets still to take) and one struct homing_cap_ring per lcore in
 * lc->cap_ring, then lc->cap. The poll loop reads lc->cap once per burst of each port:
 * NULL (no capture) costs that one load and one branch, and the burst goes to the
 * pipeline as before (homing_nic_burst, homing_tap_burst below). When armed, the burst
 * goes through capture.c instead, which runs the same pipeline functions and copies the
 * packets that match the filter, with their capture point, class, fate and lcore, into
 * the lcore's ring (single producer: the lcore; single consumer: Go, which writes
 * pcapng). Disarming clears lc->cap and waits for a QSBR grace period (each loop reports
 * a quiescent state after its bursts), after which Go owns the rings again.
 *
 *   capture point   what is copied
 *   NIC rx          the frame as received, before the pipeline (its class and fate are
 *                   known after the pipeline, and the class filter applies then)
 *   NIC tx          NIC packets sent back out (redirected: the encapsulated frame) and
 *                   kernel packets sent out of the NIC, after the pipeline
 *   TAP rx          what the kernel sent (class "kernel"), before the MSS clamp
 *   TAP tx          NIC packets handed to the kernel (decapsulated ones after decap)
 *
 * The filter is a conjunction: protocol, up to HOMING_CAP_MAX_ADDR addresses and
 * HOMING_CAP_MAX_PORT ports (each as source, destination or either), a class set and a
 * set of capture points. A GUE packet (UDP to this data plane's tunnel port, GUE
 * version 0 with an IP inner packet) matches if its outer or its inner headers match.
 * With bidir, addresses and ports also match with source and destination swapped.
 */
#ifndef HOMING_CAPTURE_H
#define HOMING_CAPTURE_H

#include <stdint.h>
#include <rte_branch_prediction.h>
#include <rte_mbuf.h>

#include "pipeline.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Capture points (bits of homing_cap_filter.points, and a record's point). */
#define HOMING_CAP_NIC_RX 1
#define HOMING_CAP_NIC_TX 2
#define HOMING_CAP_TAP_RX 4
#define HOMING_CAP_TAP_TX 8

/* What the pipeline did with a NIC packet (a record's fate). */
#define HOMING_FATE_KERNEL 0 /* handed to the kernel (TAP) */
#define HOMING_FATE_NIC 1    /* sent back out of the NIC (redirected, or kernel's packet) */
#define HOMING_FATE_PARKED 2 /* held in the park until its session shows up */
#define HOMING_FATE_DROP 3   /* dropped (no headroom, park full while warming) */
#define HOMING_FATE_TOOBIG 4 /* too big for the tunnel: answered with ICMP or dropped */

#define HOMING_CAP_MAX_ADDR 4
#define HOMING_CAP_MAX_PORT 4
/* Address / port direction. */
#define HOMING_CAP_EITHER 0
#define HOMING_CAP_SRC 1
#define HOMING_CAP_DST 2

/* Trace lookup result of a record. */
#define HOMING_CAP_LOOKUP_NONE 0 /* not looked up (no trace, or not a TCP/UDP VIP flow) */
#define HOMING_CAP_LOOKUP_HIT 1
#define HOMING_CAP_LOOKUP_MISS 2

struct homing_cap_addr {
	uint8_t af;  /* 4 or 6 */
	uint8_t dir; /* HOMING_CAP_EITHER/SRC/DST */
	uint8_t pad[2];
	uint8_t a[16]; /* IPv4: the first 4 bytes */
};

struct homing_cap_port {
	uint16_t port; /* network order */
	uint8_t dir;
	uint8_t pad;
};

struct homing_cap_filter {
	uint64_t classes; /* bit i: stats word i (a cls_* counter, or from_kernel); 0: all */
	uint8_t points;   /* HOMING_CAP_* bits; 0 captures nothing */
	uint8_t proto;    /* IP protocol; 0: any */
	uint8_t n_addr, n_port;
	uint8_t bidir;    /* 1: addresses and ports may also match swapped */
	uint8_t pad[3];
	struct homing_cap_addr addr[HOMING_CAP_MAX_ADDR];
	struct homing_cap_port port[HOMING_CAP_MAX_PORT];
};

/* One record in a ring slot; cap_len bytes of the frame follow it. */
struct homing_cap_rec {
	uint64_t ts_ns;    /* CLOCK_REALTIME, taken once per burst */
	uint64_t val;      /* trace, LOOKUP_HIT: the table's value (owner, epoch) */
	uint32_t wire_len; /* the frame's length */
	uint16_t cap_len;  /* bytes copied (<= snaplen) */
	uint8_t point;     /* one HOMING_CAP_* bit */
	uint8_t cls;       /* stats word of the class (cls_*, or from_kernel) */
	uint8_t fate;      /* HOMING_FATE_* (NIC rx, TAP tx and NIC tx of NIC packets) */
	uint8_t lookup;    /* HOMING_CAP_LOOKUP_* */
	uint16_t lcore;
	uint16_t port_id;  /* DPDK port of the capture point */
	uint16_t queue;
	uint32_t pad;
};

/* One lcore's ring: single producer (the lcore), single consumer (Go). */
struct homing_cap_ring {
	uint32_t head;     /* records written (the lcore stores with release) */
	uint32_t lost;     /* records not taken: ring full */
	uint8_t pad0[RTE_CACHE_LINE_SIZE - 8];
	uint32_t tail;     /* records consumed (Go stores with release) */
	uint8_t pad1[RTE_CACHE_LINE_SIZE - 4];
	uint32_t size;     /* slots, a power of two */
	uint32_t slot;     /* bytes per slot: sizeof(struct homing_cap_rec) + snaplen, rounded */
	uint8_t *mem;      /* size slots */
	uint8_t *stage;    /* HOMING_BURST slots: NIC rx copies until their class is known */
} __rte_cache_aligned;

/* The capture shared by every lcore. */
struct homing_cap {
	struct homing_cap_filter f;
	uint32_t snaplen;  /* bytes copied per packet at most; 0: metadata only (trace) */
	uint8_t trace;     /* 1: look each matching TCP/UDP VIP flow up in the table */
	uint8_t pad[3];
	int64_t remaining __rte_cache_aligned; /* packets still to take, all lcores */
} __rte_cache_aligned;

/* Parses the headers of frame f (len bytes) and tells whether the filter (addresses,
 * ports, protocol; not classes or points) matches it. For the unit tests. */
int homing_cap_match(const struct homing_dp *dp, const struct homing_cap_filter *f,
		     const uint8_t *frame, uint32_t len);

/* Waits until no lcore can still be using a capture it read before lc->cap was cleared
 * (a QSBR grace period of the table's readers). */
void homing_cap_sync(struct homing_dp *dp);

/* The capturing versions of the two bursts of the poll loop (capture.c). */
void homing_cap_nic_burst(struct homing_lcore *lc, struct homing_cap *c, struct rte_mbuf **pkts,
			  uint16_t n, struct rte_mbuf **nic_out, uint16_t *n_nic,
			  struct rte_mbuf **tap_out, uint16_t *n_tap);
void homing_cap_tap_burst(struct homing_lcore *lc, struct homing_cap *c, struct rte_mbuf **pkts,
			  uint16_t n);

/* homing_process_nic_burst that also reports each packet's class (stats word) and fate
 * (HOMING_FATE_*) in cls[i], fate[i] (pipeline.c). */
void homing_process_nic_burst_fate(struct homing_lcore *lc, struct rte_mbuf **pkts, uint16_t n,
				   struct rte_mbuf **nic_out, uint16_t *n_nic,
				   struct rte_mbuf **tap_out, uint16_t *n_tap, uint8_t *cls,
				   uint8_t *fate);

/* The poll loop's NIC burst: the pipeline, or the capture when one is armed. */
static __rte_always_inline void
homing_nic_burst(struct homing_lcore *lc, struct rte_mbuf **pkts, uint16_t n,
		 struct rte_mbuf **nic_out, uint16_t *n_nic, struct rte_mbuf **tap_out,
		 uint16_t *n_tap)
{
	struct homing_cap *c = __atomic_load_n(&lc->cap, __ATOMIC_ACQUIRE);
	if (unlikely(c != NULL))
		homing_cap_nic_burst(lc, c, pkts, n, nic_out, n_nic, tap_out, n_tap);
	else
		homing_process_nic_burst(lc, pkts, n, nic_out, n_nic, tap_out, n_tap);
}

/* The poll loop's TAP burst (before it goes out of the NIC). */
static __rte_always_inline void
homing_tap_burst(struct homing_lcore *lc, struct rte_mbuf **pkts, uint16_t n)
{
	struct homing_cap *c = __atomic_load_n(&lc->cap, __ATOMIC_ACQUIRE);
	if (unlikely(c != NULL))
		homing_cap_tap_burst(lc, c, pkts, n);
	else
		homing_process_tap_burst(lc, pkts, n);
}

#ifdef __cplusplus
}
#endif
#endif /* HOMING_CAPTURE_H */
