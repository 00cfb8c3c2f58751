/* SPDX-License-Identifier: Apache-2.0
 *
 * homing's per-packet pipeline, run on every worker lcore.
 *
 *            NIC rx queue q                                 TAP rx queue q
 *                 |                                               |
 *     parse + classify (whole burst, prefetched)                  |
 *                 |                                               |
 *   +-------------+--------------+--------------+                 |
 *   |             |              |              |                 |
 *  GUE for us   SYN / not a    VIP TCP/UDP     (other)            |
 *  from a live  VIP / other    -> bulk lookup                     |
 *  peer (decap;                                                   |
 *  else drop)                                                     |
 *   |             |          owner live peer?                     |
 *   |             |          yes        no                        |
 *   |             |           |          |                        |
 *   v             v           v          v                        v
 *  TAP tx q <-----+----    encap     TAP tx q                NIC tx q
 *                          (template)
 *                             v
 *                          NIC tx q
 *
 * Concurrency rules:
 *  - struct homing_dp is shared by all lcores and written by the Go control plane only
 *    through the functions below: the ownership table (lock-free readers, QSBR for
 *    deletes, see table/homing_table.h), the header templates (one rte_seqlock per
 *    peer slot, so that an lcore never copies half a template) and the live peers'
 *    tunnel addresses (struct homing_peers: an immutable set, replaced whole by a
 *    pointer swap; the old one is freed once every lcore has reported a quiescent
 *    state on the table's QSBR variable). VIPs and addresses are set before the
 *    lcores start and never change while they run.
 *  - struct homing_lcore is owned by one lcore: its counters are written by that lcore
 *    only and read by Go (aligned 64-bit loads, never torn on x86-64).
 *  - dp->stop is the only flag the lcores poll; Go sets it and waits for them.
 */
#ifndef HOMING_PIPELINE_H
#define HOMING_PIPELINE_H

#include <stdint.h>
#include <rte_common.h>
#include <rte_mbuf.h>
#include <rte_seqlock.h>

#include "homing_table.h" /* table/homing_table.h (generate.go) */
#include "udplearn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Packets per rx burst (<= 64, the bulk-lookup limit). */
#define HOMING_BURST 32
/* Room for a burst's NIC outputs: the fragments of packets too big for the tunnel add
 * to them (a burst's packets beyond this room are dropped, counted in drop_too_big). */
#define HOMING_NIC_OUT_MAX (2 * HOMING_BURST)
/* How many packets ahead the parser prefetches. */
#define HOMING_PREFETCH_OFFSET 3
/* Host ids are 1..HOMING_MAX_HOSTS-1; one template slot each. */
#define HOMING_MAX_HOSTS 4096
/* VIP prefixes per family. */
#define HOMING_MAX_VIPS 16
/* Largest header template: Ethernet + IPv6 + UDP + GUE = 66 bytes. */
#define HOMING_TMPL_MAX 80
/* Empty polls before the lcore starts sleeping. */
#define HOMING_IDLE_SPINS 512
/* First sleep of the idle backoff, microseconds (doubles up to the configured bound). */
#define HOMING_IDLE_SLEEP_MIN_US 1
/* GUE source ports are 49152 + (flow hash mod 16384). */
#define HOMING_SPORT_BASE 49152
#define HOMING_SPORT_MASK 0x3fff
/* Upper bound of the per-lcore park (packets of unknown VIP sessions held briefly). */
#define HOMING_PARK_MAX 4096
/* UDP port bitmaps (one bit per port). */
#define HOMING_PORT_BITMAP (65536 / 8)
/* GUE header (variant 0, no options) length. */
#define HOMING_GUE_LEN 4
/* Tunnel overhead: outer IP + UDP + GUE (the outer Ethernet header replaces the inner). */
#define HOMING_TUN4_OVERHEAD 32
#define HOMING_TUN6_OVERHEAD 52
/* Largest ICMP "fragmentation needed" datagram (RFC 1812 4.3.2.3: at most 576 bytes) and
 * ICMPv6 "packet too big" datagram (RFC 4443 2.4(c): at most the IPv6 minimum MTU). */
#define HOMING_ICMP4_MAX 576
#define HOMING_ICMP6_MAX 1280

/* One header template (outer Ethernet + IP + UDP + GUE), per peer host id. */
struct homing_tmpl {
	rte_seqlock_t lock;
	uint8_t valid;      /* 0: peer not live, never forward to it */
	uint8_t af;         /* 4 or 6: outer IP family */
	uint8_t len;        /* 46 (IPv4) or 66 (IPv6) */
	uint8_t pad;
	uint32_t csum_base; /* IPv4: one's complement sum of the header with tot_len = 0 */
	uint8_t hdr[HOMING_TMPL_MAX];
} __rte_cache_aligned;

/* Counters of one lcore. Every packet received is counted in exactly one cls_* counter
 * (NIC side) or in from_kernel (TAP side). */
struct homing_lcore_stats {
	uint64_t rx_nic;          /* packets received from the NIC */
	uint64_t from_kernel;     /* packets received from the TAP (kernel) */
	uint64_t tx_nic;          /* packets sent to the NIC (redirected + from kernel) */
	uint64_t tx_tap;          /* packets sent to the kernel */
	/* classification of NIC packets */
	uint64_t cls_redirect;    /* VIP session owned by a live peer: encapsulated */
	uint64_t cls_local;       /* VIP session owned here */
	uint64_t cls_miss;        /* VIP session unknown */
	uint64_t cls_dead_owner;  /* VIP session owned by a peer without a template */
	uint64_t cls_syn;         /* SYN without ACK */
	uint64_t cls_decap;       /* GUE for this host: decapsulated */
	uint64_t cls_gue_bad;     /* UDP to our tunnel port refused: dropped, counted by
				   * reason in gue_* below */
	uint64_t cls_other;       /* not for the pipeline: ARP, ICMP, non-VIP, VLAN, ... */
	uint64_t cls_frag;        /* IPv4 fragments */
	uint64_t cls_ipopt;       /* IPv4 options or IPv6 extension headers */
	uint64_t cls_malformed;   /* truncated or inconsistent headers; chains whose headers
				   * are not all in the first segment */
	uint64_t cls_no_redirect; /* VIP session, not looked up: redirection is off */
	uint64_t cls_udp_plain;   /* UDP to a VIP port that is not a UDP session port, not in
				   * the table: to the kernel at once, never parked */
	uint64_t cls_quic_initial; /* QUIC long-header Initial on a QUIC session port: a new
				    * connection, to the kernel like a TCP SYN */
	uint64_t cls_too_big;     /* VIP session owned by a live peer, but the encapsulated
				   * frame exceeds the NIC MTU: never sent as such; answered
				   * (icmp_too_big) or dropped (drop_too_big) */
	/* drops */
	uint64_t drop_nic_tx;     /* NIC tx queue full */
	uint64_t drop_tap_tx;     /* TAP tx queue full */
	uint64_t drop_headroom;   /* no headroom to prepend a template */
	uint64_t drop_too_big;    /* too big and neither answered nor fragmented: ICMP rate
				   * limit, ICMP off, no room or mbufs for fragments */
	/* GUE refusals (each also counted in cls_gue_bad): decapsulated is only GUE from
	 * a live peer's tunnel address whose inner packet is TCP/UDP to a VIP or an ICMP
	 * error about a VIP flow */
	uint64_t gue_unknown_source; /* outer source not a live peer's tunnel address */
	uint64_t gue_malformed;      /* GUE header or UDP length invalid, headers not in a
				      * chain's first segment */
	uint64_t gue_inner_malformed; /* inner IP header, TCP/UDP header or ICMP quote
				       * truncated or inconsistent; inner IPv4 options */
	uint64_t gue_inner_proto;    /* inner protocol not TCP/UDP, ICMP not an error
				      * (redirect, router advertisement, echo, ...) */
	uint64_t gue_inner_not_vip;  /* inner destination not a VIP */
	/* MTU budget */
	uint64_t icmp_too_big;    /* ICMP frag-needed / ICMPv6 packet-too-big sent to a client */
	uint64_t frag_tunnelled;  /* fragments of too-big IPv4 packets without DF, tunnelled */
	uint64_t mss_clamped;     /* SYN-ACKs from a VIP (kernel side) whose MSS was lowered */
	/* loop accounting */
	uint64_t loops;
	uint64_t idle_loops;
	uint64_t sleeps;
	uint64_t busy_cycles;     /* TSC cycles of loops that moved packets */
	uint64_t total_cycles;    /* TSC cycles since start */
	uint64_t tmpl_retries;    /* template copies retried because a writer was active */
	/* the park: VIP packets of unknown sessions held until the session shows up */
	uint64_t park_in;         /* packets parked */
	uint64_t park_redirect;   /* released to a live peer (also counted in cls_redirect) */
	uint64_t park_local;      /* released: owned here (also in cls_local / cls_dead_owner) */
	uint64_t park_expired;    /* released to the kernel after the hold time (also cls_miss) */
	uint64_t park_full;       /* not parked: park full (counted in cls_miss) */
	uint64_t park_warm_drop;  /* dropped, not handed to the kernel: park full while warming */
	uint64_t park_udp_in;     /* of park_in: UDP session packets */
	uint64_t park_udp_full;   /* of park_full: UDP session packets over the UDP share */
} __rte_cache_aligned;

/* The live peers' tunnel addresses: open addressing with linear probing, at most half
 * full, so that a probe ends at an empty slot (address 0 / ::, never a peer's). Built by
 * homing_peers_set, never changed once published. */
struct homing_peers {
	uint32_t mask4, mask6;     /* slots - 1 (powers of two) */
	uint32_t n4, n6;
	uint32_t *a4;              /* network order */
	uint8_t (*a6)[16];
};

struct homing_vip4 {
	uint32_t net;  /* network order */
	uint32_t mask; /* network order */
};

struct homing_vip6 {
	uint8_t net[16];
	uint8_t mask[16];
};

/* The data plane shared by all lcores of one daemon. */
struct homing_dp {
	struct homing_table *table;
	struct homing_tmpl *tmpl;  /* HOMING_MAX_HOSTS slots */
	struct homing_peers *peers; /* live peers' tunnel addresses (read with acquire) */
	uint64_t peers_leaked;     /* old sets not freed: readers did not report in time */
	uint32_t self4;            /* network order; 0 = none */
	uint8_t self6[16];         /* all zero = none */
	uint8_t has_self6;
	uint8_t no_redirect;       /* 1: VIP packets go to the kernel without a lookup */
	uint8_t n_vip4, n_vip6;
	uint16_t self_id;
	uint16_t tunnel_port;      /* network order */
	/* The MTU budget (set before the lcores start). mtu is the NIC's MTU, the largest IP
	 * packet it sends; an encapsulated packet longer than it is never sent. 0: no check. */
	uint32_t mtu;
	uint32_t max_inner4;       /* mtu - HOMING_TUN4_OVERHEAD, or UINT32_MAX: no check */
	uint32_t max_inner6;       /* mtu - HOMING_TUN6_OVERHEAD, or UINT32_MAX */
	uint16_t mss4, mss6;       /* SYN-ACK MSS clamp of IPv4 / IPv6 VIPs; 0: off */
	uint64_t icmp_tsc;         /* TSC cycles per ICMP token; 0: never answer too big */
	uint64_t icmp_burst_tsc;   /* (burst - 1) * icmp_tsc: the bucket's depth */
	struct homing_vip4 vip4[HOMING_MAX_VIPS];
	struct homing_vip6 vip6[HOMING_MAX_VIPS];
	volatile uint32_t stop;
	/* 1 while the control plane warms up after a start (it has not yet learned its
	 * peers' sessions): parked packets are held past the hold time, and a full park
	 * drops instead of handing packets to the kernel, which would reset them. */
	volatile uint32_t warming;
	/* UDP ports (host order bit index) of VIP services whose flows are sessions: only
	 * their packets may wait in the park; udp_quic marks those served by QUIC, whose
	 * long-header Initial packets go to the kernel like TCP SYNs. */
	uint8_t udp_sess[HOMING_PORT_BITMAP];
	uint8_t udp_quic[HOMING_PORT_BITMAP];
	/* QUIC ports whose servers encode host ids in their CIDs: an unknown flow goes to
	 * the live host its destination CID names (udplearn.h). */
	uint8_t udp_cid[HOMING_PORT_BITMAP];
	/* QUIC ports whose servers' CIDs are learnt (cid_len): udp_scid marks them, quic_len
	 * has their lengths (udplearn.h). */
	uint8_t udp_scid[HOMING_PORT_BITMAP];
	uint32_t n_quic_len;
	struct homing_quic_len quic_len[HOMING_QUIC_LEN_PORTS];
};

/* A parked packet and what it needs to be looked up again. */
struct homing_park_slot {
	struct rte_mbuf *m;
	uint64_t deadline;          /* TSC */
	uint16_t ip_len;
	uint8_t af;                 /* 4 or 6: key family and inner family */
	uint8_t udp;                /* 1: a UDP session packet (counted in park_udp) */
	union {
		struct homing_key4 k4;
		struct homing_key6 k6;
	};
};

struct homing_cap;
struct homing_cap_ring;

/* Packets per port and lcore that a full tx queue did not take (4 bursts). */
#define HOMING_TX_BACKLOG (4 * HOMING_BURST)

/* A port's tx backlog: what its queue refused, offered again before any newer packet at
 * the lcore's next send or poll (so order is kept); only what overflows it is dropped
 * (drop_nic_tx, drop_tap_tx). A full queue costs one tx call a loop, not a spin. */
struct homing_tx_backlog {
	uint16_t n;
	struct rte_mbuf *m[HOMING_TX_BACKLOG];
};

/* One worker lcore. */
struct homing_lcore {
	struct homing_lcore_stats stats;
	struct homing_dp *dp;
	uint16_t nic_port, tap_port, queue;
	uint32_t idle_sleep_max_us; /* 0: busy poll */
	uint32_t lcore_id;          /* QSBR thread id */
	/* the park (owned by this lcore; configured before start) */
	uint64_t park_tsc;          /* hold time in TSC cycles; 0: park off */
	uint32_t park_max;          /* slots in park, <= HOMING_PARK_MAX */
	uint32_t park_count;        /* parked packets: park[0..park_count) in arrival order */
	uint32_t park_udp_max;      /* slots UDP session packets may hold (< park_max) */
	uint32_t park_udp;          /* parked UDP session packets (of park_count) */
	uint64_t park_gen;          /* table generation at the last look */
	struct homing_park_slot *park;
	uint64_t icmp_tat;          /* ICMP rate limit: theoretical arrival time (GCRA), TSC */
	struct rte_mempool *pool;   /* fragments' mbufs; NULL: too-big IPv4 without DF dropped */
	struct homing_udp_lcore *udp; /* UDP learning and CID routing (udplearn.h); NULL: off */
	/* packet capture (capture.h): NULL unless one is armed; published by Go */
	struct homing_cap *cap;
	struct homing_cap_ring *cap_ring;
	/* tx backlogs of the NIC and TAP ports (homing_lcore_main) */
	struct homing_tx_backlog nic_bl, tap_bl;
} __rte_cache_aligned;

/* Sends n packets on lc's NIC queue as the poll loop does (after its backlog; what the
 * queue refuses joins the backlog, what overflows it is dropped); n == 0 offers the
 * backlog once. For tests (Frames.TxNIC). */
void homing_tx_nic(struct homing_lcore *lc, struct rte_mbuf **pkts, uint16_t n);

/* Data plane lifecycle (control plane side). */
struct homing_dp *homing_dp_create(struct homing_table *t, uint16_t self_id);
void homing_dp_free(struct homing_dp *dp);
/* Asks every lcore running on dp to return. */
void homing_dp_stop(struct homing_dp *dp);
int homing_dp_add_vip4(struct homing_dp *dp, uint32_t net, uint32_t mask);
int homing_dp_add_vip6(struct homing_dp *dp, const uint8_t *net, const uint8_t *mask);
/* Declares UDP port (host order) of the VIPs a session port (its unknown flows may be
 * parked), and a QUIC port if quic != 0. Before the lcores start. */
void homing_dp_add_udp_port(struct homing_dp *dp, uint16_t port, int quic);

/* Publishes the template for peer id: outer Ethernet dst/src, outer IP src/dst of family af
 * (4: 4-byte addresses, 6: 16-byte addresses), UDP destination port (host order). */
int homing_tmpl_set(struct homing_dp *dp, uint16_t id, const uint8_t *dst_mac,
		    const uint8_t *src_mac, int af, const uint8_t *src_ip, const uint8_t *dst_ip,
		    uint16_t dport);
/* Withdraws peer id's template: its sessions go to the local kernel from now on. */
void homing_tmpl_clear(struct homing_dp *dp, uint16_t id);
/* Publishes the live peers' tunnel addresses (v4: n4 addresses in network order; v6: n6
 * addresses of 16 bytes): from then on GUE is decapsulated only from these sources.
 * Replaces the previous set, which is freed once every lcore registered on the table's
 * QSBR variable has reported a quiescent state (waits up to about a second; after that
 * the old set is leaked, counted in peers_leaked). Duplicates are allowed; zero
 * addresses are skipped. Returns 0 or -ENOMEM (the previous set stays). */
int homing_peers_set(struct homing_dp *dp, const uint32_t *v4, uint32_t n4, const uint8_t *v6,
		     uint32_t n6);

/* The poll loop (lcore_function_t); arg is a struct homing_lcore *. */
int homing_lcore_main(void *arg);

/* Looks the parked packets up again if the table changed, and releases those whose session
 * showed up (encapsulated or to the kernel) or whose hold time is over (to the kernel).
 * Released packets are written to out[] with to_nic[i] = 1 for the NIC, 0 for the kernel;
 * out must hold HOMING_PARK_MAX. Returns the number released. */
uint32_t homing_park_service(struct homing_lcore *lc, uint64_t now, struct rte_mbuf **out,
			     uint8_t *to_nic);
/* Releases every parked packet to the kernel (at stop). Same outputs. */
uint32_t homing_park_flush(struct homing_lcore *lc, struct rte_mbuf **out, uint8_t *to_nic);

/* Processes one burst of NIC packets: every packet ends up in nic_out, tap_out or is freed
 * (counted); nic_out holds HOMING_NIC_OUT_MAX (fragments), tap_out HOMING_BURST. Used by
 * the poll loop, the tests and the fuzzer. */
void homing_process_nic_burst(struct homing_lcore *lc, struct rte_mbuf **pkts, uint16_t n,
			      struct rte_mbuf **nic_out, uint16_t *n_nic,
			      struct rte_mbuf **tap_out, uint16_t *n_tap);

/* Processes one burst of kernel (TAP) packets before they leave through the NIC:
 * lowers the MSS option of SYN-ACKs from a VIP to the clamp (dp->mss4/mss6), with an
 * incremental checksum update. Every packet stays in pkts. */
void homing_process_tap_burst(struct homing_lcore *lc, struct rte_mbuf **pkts, uint16_t n);

#ifdef __cplusplus
}
#endif
#endif /* HOMING_PIPELINE_H */
