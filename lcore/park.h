/* The park: packets of unknown VIP sessions held briefly, per lcore, until their
 * session's owner is known (gossip may lag a flow's first packets after an ECMP
 * change), then released to the owner or, after the hold time, to the kernel.
 * Internal to the lcore package: pipeline.c parks (homing_park_hold from its miss
 * path) and decides released packets (homing_park_decide); park.c owns the slots.
 * The public entry points (homing_park_service, homing_park_flush) are in
 * pipeline.h. */
#ifndef HOMING_PARK_H
#define HOMING_PARK_H

#include <stdint.h>

#include "pipeline.h"

/* What homing_park_hold did with a packet. */
enum homing_park_hold {
	HOMING_PARK_NOT_HELD = 0, /* park off or its protocol's share full: to the kernel */
	HOMING_PARK_HELD,         /* held: the park owns the mbuf */
	HOMING_PARK_HOLD_DROP,    /* share full while the daemon warms up: drop it */
};

/* Holds m (an IPv4 or IPv6 VIP packet of the unknown session key, af 4 or 6; udp: a
 * UDP session packet, counted against the UDP share) if its share has room. */
enum homing_park_hold homing_park_hold(struct homing_lcore *lc, struct rte_mbuf *m,
				       uint16_t ip_len, const void *key, uint32_t af, int udp);

/* Where a released packet goes, as the pipeline decided it. */
enum homing_park_fate {
	HOMING_PARK_TAP = 0, /* the local kernel (owned here, dead owner, ...) */
	HOMING_PARK_NIC,     /* encapsulated to its owner (a redirect) */
	HOMING_PARK_REPLY,   /* rewritten into an ICMP reply to the sender (too big) */
	HOMING_PARK_DROP,    /* dropped (too big and not answered) */
};

/* Decides a parked packet whose session is now known (value val): pipeline.c, the same
 * decision as for a looked-up packet; *cls is the stats word of its class. */
enum homing_park_fate homing_park_decide(struct homing_lcore *lc,
					 const struct homing_park_slot *s, uint64_t val,
					 uint8_t *cls);

#endif
