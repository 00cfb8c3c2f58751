/* SPDX-License-Identifier: Apache-2.0
 *
 * The host id in a QUIC packet's destination connection ID (see udplearn.h and
 * docs/PROTOCOL.md, "QUIC connection IDs"). Every byte comes from the network: each
 * length is checked before it is read.
 */
#include <stdint.h>
#include <string.h>

#include "udplearn.h"

/* QUIC version 2 (RFC 9369) numbers its long-header types differently from version 1
 * (RFC 9000) and the drafts. */
#define QUIC_V2 0x6b3343cfu

/* The host id of a CID's first two bytes, or 0 if they are not of layout version 1. */
static inline uint16_t
cid_host(const uint8_t *cid)
{
	if ((cid[0] >> 6) != HOMING_QUIC_CID_VERSION)
		return 0;
	return (uint16_t)(((cid[0] & 0x3f) << 6) | (cid[1] >> 2));
}

uint16_t
homing_quic_dcid_host(const uint8_t *p, uint32_t len)
{
	uint32_t ver, type, dcil;

	if (len < 1)
		return 0;
	if ((p[0] & 0x80) == 0) {
		/* Short header (RFC 9000 17.3.1): the fixed bit, then the DCID at byte 1, its
		 * length known to the server only: at least HOMING_QUIC_CID_MIN by the layout. */
		if ((p[0] & 0x40) == 0 || len < HOMING_QUIC_SHORT_MIN)
			return 0;
		return cid_host(p + 1);
	}
	/* Long header (RFC 9000 17.2): version (4), DCID length (1), DCID. */
	if (len < 6)
		return 0;
	ver = ((uint32_t)p[1] << 24) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 8) | p[4];
	if (ver == 0) /* Version Negotiation: a server's */
		return 0;
	type = (p[0] >> 4) & 3;
	/* Handshake: type 2 in version 1 and the drafts, 3 in version 2. */
	if (type != (ver == QUIC_V2 ? 3u : 2u))
		return 0;
	dcil = p[5];
	if (dcil < HOMING_QUIC_CID_MIN || dcil > HOMING_QUIC_CID_MAX || 6 + dcil > len)
		return 0;
	return cid_host(p + 6);
}

/* The long-header type numbers of version ver: Initial and Handshake. */
static inline void
long_types(uint32_t ver, uint32_t *initial, uint32_t *handshake)
{
	*initial = ver == QUIC_V2 ? 1u : 0u;
	*handshake = ver == QUIC_V2 ? 3u : 2u;
}

const uint8_t *
homing_quic_scid(const uint8_t *p, uint32_t len, uint32_t want)
{
	uint32_t ver, type, ini, hs, dcil;

	/* Long header: flags (1), version (4), DCID length (1), DCID, SCID length (1), SCID. */
	if (len < 7 || (p[0] & 0x80) == 0 || want == 0)
		return NULL;
	ver = ((uint32_t)p[1] << 24) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 8) | p[4];
	if (ver == 0) /* Version Negotiation: its SCID is the client's */
		return NULL;
	type = (p[0] >> 4) & 3;
	long_types(ver, &ini, &hs);
	if (type != ini && type != hs) /* 0-RTT is a client's; Retry's SCID is not used after */
		return NULL;
	dcil = p[5];
	if (dcil > HOMING_QUIC_CID_MAX || 7 + dcil + want > len || p[6 + dcil] != want)
		return NULL;
	return p + 7 + dcil;
}

const uint8_t *
homing_quic_dcid(const uint8_t *p, uint32_t len, uint32_t want)
{
	uint32_t ver, ini, hs;

	if (len < 1 || want == 0)
		return NULL;
	if ((p[0] & 0x80) == 0) {
		/* Short header: the DCID's length is the server's: want. */
		if ((p[0] & 0x40) == 0 || len < 1 + want + 4 + 16)
			return NULL;
		return p + 1;
	}
	if (len < 6)
		return NULL;
	ver = ((uint32_t)p[1] << 24) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 8) | p[4];
	if (ver == 0)
		return NULL;
	long_types(ver, &ini, &hs);
	/* Handshake only: an Initial's or 0-RTT's DCID is the client's choice. */
	if (((p[0] >> 4) & 3) != hs || p[5] != want || 6 + want > len)
		return NULL;
	return p + 6;
}

void
homing_cid_key(struct homing_key6 *k, const uint8_t *cid, uint32_t len, uint16_t port_be)
{
	uint32_t i;

	memset(k, 0, sizeof(*k));
	for (i = 0; i < len && i < 16; i++)
		k->src[i] = cid[i];
	for (; i < len; i++)
		k->dst[i - 16] = cid[i];
	k->dst[4] = (uint8_t)len;
	k->dport = port_be;
	k->proto = HOMING_CID_PROTO;
}
