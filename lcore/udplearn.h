/* SPDX-License-Identifier: Apache-2.0
 *
 * UDP session learning and QUIC connection-ID routing, the lcore side.
 *
 * Learning: every packet the kernel sends passes the lcore (TAP rx -> NIC tx). A UDP
 * packet from a VIP's UDP session port to a client proves that this host serves that
 * flow. The lcore reports the flow (client -> VIP key) on its own ring, which Go drains
 * in batches, claims and gossips. A small direct-mapped filter of recently reported
 * flows keeps a live flow from flooding the ring: a flow is reported again only once per
 * "tick", a number Go advances every refresh period, which is how Go learns that a flow
 * is still alive (it expires flows not reported for their port's idle timeout).
 *
 *     kernel (TAP rx)  --> homing_udp_learn_burst --> ring (SPSC) --> Go: drain, claim
 *                           filter: (hash, tick)                      tick++, sweep
 *
 * The ring is single producer (the lcore) and single consumer (Go, one goroutine):
 * head is written by the lcore only, tail by Go only, with release/acquire ordering.
 *
 * QUIC connection IDs (docs/PROTOCOL.md, "QUIC connection IDs"): on a UDP session port
 * declared with quic_cid, a packet of an unknown flow whose destination connection ID
 * carries a host id is sent to that host (or the local kernel if it is this host's),
 * when that host is live, instead of waiting in the park: a client that migrated or was
 * rebound to a new address reaches the server that holds its connection.
 */
#ifndef HOMING_UDPLEARN_H
#define HOMING_UDPLEARN_H

#include <stdint.h>
#include <rte_common.h>

#include "homing_table.h" /* table/homing_table.h (generate.go) */

#ifdef __cplusplus
extern "C" {
#endif

struct homing_lcore;
struct homing_dp;
struct rte_mbuf;

/* Largest ring (records) and filter (slots). */
#define HOMING_LEARN_RING_MAX (1u << 16)
#define HOMING_LEARN_FILTER_MAX (1u << 16)

/* QUIC connection-ID layout (version 1): the first two bytes of a server-issued CID are
 * 01hhhhhh hhhhhhrr: layout version 1 in the top two bits, the 12-bit host id, two random
 * bits; the rest is random. CIDs are at least HOMING_QUIC_CID_MIN bytes long. */
#define HOMING_QUIC_CID_MIN 8
#define HOMING_QUIC_CID_MAX 20
#define HOMING_QUIC_CID_VERSION 1
/* Smallest short-header packet with a CID of HOMING_QUIC_CID_MIN bytes: the header
 * protection sample (RFC 9001 5.4.2) needs 4 + 16 bytes after the packet number's
 * offset (1 + CID). */
#define HOMING_QUIC_SHORT_MIN (1 + HOMING_QUIC_CID_MIN + 4 + 16)

/* Learnt server connection IDs (docs/PROTOCOL.md, "QUIC connection IDs"): on a QUIC
 * port declared with cid_len, the SCID of the server's long-header packets (Initial,
 * Handshake) of that length is reported with the flow; Go stores it as a key of its own
 * (homing_cid_key) tied to the flow. A packet of an unknown flow on that port is looked
 * up by its DCID's key: a short header's first cid_len bytes, or a Handshake packet's
 * DCID of that length. Ports with a cid_len: at most HOMING_QUIC_LEN_PORTS. */
#define HOMING_QUIC_LEN_PORTS 16
#define HOMING_CID_PROTO 253 /* session.QUICCID: experimental (RFC 3692) */
#define HOMING_CID_KEY_MIN 4 /* session.MinCIDLen */

struct homing_quic_len {
	uint16_t port; /* host order */
	uint8_t len;   /* the servers' CID length, HOMING_CID_KEY_MIN..HOMING_QUIC_CID_MAX */
};

/* One learned flow: the client -> VIP key of its family, and the server's CID if the
 * packet carried one (cid_len != 0). 64 bytes. */
struct homing_learn_rec {
	uint8_t af; /* 4 or 6 */
	uint8_t cid_len;
	uint8_t pad[2];
	union {
		struct homing_key4 k4;
		struct homing_key6 k6;
	};
	uint8_t cid[HOMING_QUIC_CID_MAX];
};

struct homing_learn_slot {
	uint32_t hash;
	uint32_t tick; /* 0: empty (ticks start at 1) */
};

/* Counters of one lcore's UDP learning and CID routing. */
struct homing_udp_stats {
	uint64_t reported;     /* flows put on the ring (new, or again in a new tick) */
	uint64_t ring_full;    /* flows not reported: the ring was full (reported later) */
	uint64_t cid_redirect; /* unknown flows sent to the live peer named by their DCID */
	uint64_t cid_local;    /* unknown flows whose DCID names this host: to the kernel */
	uint64_t cid_not_live; /* unknown flows whose DCID names a host without a template */
	uint64_t cid_learn;    /* reports carrying a server CID (cid_len ports) */
	uint64_t cid_hit_redirect; /* unknown flows routed by a learnt CID: to a peer */
	uint64_t cid_hit_local;    /* ... to this host */
	uint64_t cid_miss;         /* unknown flows with a DCID of cid_len, not in the table */
	uint64_t cid_client;       /* reports carrying a client's DCID (cid_len ports) */
};

/* One lcore's learning state and counters. */
struct homing_udp_lcore {
	/* producer side (the lcore) */
	uint64_t head __rte_cache_aligned;
	struct homing_udp_stats stats;
	/* consumer side (Go) */
	uint64_t tail __rte_cache_aligned;
	volatile uint32_t tick; /* written by Go, >= 1 */
	/* fixed */
	uint32_t ring_mask;     /* ring size - 1; ring NULL: learning off */
	uint32_t filter_mask;
	struct homing_learn_rec *ring;
	struct homing_learn_slot *filter;
} __rte_cache_aligned;

/* Allocates an lcore's learning state: ring of ring_size records and a filter of
 * filter_size slots (powers of two, up to the maxima; ring_size 0: no learning, CID
 * counters only). Returns NULL on a bad size or no memory. */
struct homing_udp_lcore *homing_udp_lcore_create(uint32_t ring_size, uint32_t filter_size);
void homing_udp_lcore_free(struct homing_udp_lcore *u);

/* Reports the flows of the kernel's UDP packets from a VIP session port (lc->udp must be
 * set with a ring). Packets are not changed. */
void homing_udp_learn_burst(struct homing_lcore *lc, struct rte_mbuf **pkts, uint16_t n);

/* Reports the DCID of a client's QUIC packet that this host's kernel is given as its own
 * (a table hit owned here, routed here by a CID, or decapsulated: m is the frame the
 * kernel gets) on a port with a cid_len, with its flow: the CIDs a server issues after
 * its handshake (NEW_CONNECTION_ID frames, encrypted) are learnt when its clients use
 * them. lc->udp must be set with a ring. */
void homing_udp_learn_client(struct homing_lcore *lc, struct rte_mbuf *m);

/* Consumer: copies up to max records from u's ring to out, returns how many. */
uint32_t homing_udp_learn_drain(struct homing_udp_lcore *u, struct homing_learn_rec *out, uint32_t max);

/* Declares port (host order) a QUIC port whose servers encode host ids in their CIDs
 * (needs homing_dp_add_udp_port(dp, port, 1) too). Before the lcores start. */
void homing_dp_set_quic_cid(struct homing_dp *dp, uint16_t port);

/* Declares port (host order) a QUIC port whose servers issue CIDs of len bytes, learnt
 * from their long-header packets (see HOMING_QUIC_LEN_PORTS). Before the lcores start.
 * Returns 0, or -1 if len is out of range or the ports are full. */
int homing_dp_set_quic_cid_len(struct homing_dp *dp, uint16_t port, uint8_t len);

/* The CID length of port (network order) declared by homing_dp_set_quic_cid_len, or 0. */
uint8_t homing_quic_cid_len(const struct homing_dp *dp, uint16_t port_be);

/* The key of connection ID cid (len bytes) on VIP port port_be (session.CIDKey). */
void homing_cid_key(struct homing_key6 *k, const uint8_t *cid, uint32_t len, uint16_t port_be);

/* The server-chosen SCID of a long-header packet a server sends (UDP payload p of len
 * bytes): Initial or Handshake (v1, v2, drafts) with an SCID of exactly want bytes:
 * returns a pointer to it, else NULL (Retry, Version Negotiation, 0-RTT, other length,
 * cut). */
const uint8_t *homing_quic_scid(const uint8_t *p, uint32_t len, uint32_t want);

/* The DCID of a client's packet that may be looked up as a learnt CID: a short header of
 * at least 1 + want + 4 + 16 bytes (its first want bytes after the first), or a
 * Handshake packet whose DCID is want bytes and fits. NULL for anything else. */
const uint8_t *homing_quic_dcid(const uint8_t *p, uint32_t len, uint32_t want);

/* The host id in the destination connection ID of a QUIC packet (UDP payload p of len
 * bytes) routable by it: a short-header packet of at least HOMING_QUIC_SHORT_MIN bytes,
 * or a long-header Handshake packet (v1, v2, drafts) whose DCID is 8..20 bytes long and
 * fits; the CID's layout version must be 1. Initial and 0-RTT packets carry a DCID the
 * client chose, Retry and Version Negotiation are a server's: 0 for them, as for
 * anything else. */
uint16_t homing_quic_dcid_host(const uint8_t *p, uint32_t len);

#ifdef __cplusplus
}
#endif
#endif /* HOMING_UDPLEARN_H */
