/* SPDX-License-Identifier: Apache-2.0
 *
 * The per-packet pipeline: classification, bulk lookup, GUE encapsulation and
 * decapsulation, and the poll loop. See pipeline.h for the flow and the concurrency rules.
 */
#include <string.h>

#include <rte_branch_prediction.h>
#include <rte_byteorder.h>
#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_ether.h>
#include <rte_hash_crc.h>
#include <rte_icmp.h>
#include <rte_ip.h>
#include <rte_prefetch.h>
#include <rte_rcu_qsbr.h>
#include <rte_tcp.h>
#include <rte_udp.h>

#include "pipeline.h"
#include "bench.h"
#include "capture.h"
#include "park.h"

/* What happens to a NIC packet, decided per packet in the parse pass. */
enum action {
	A_TAP = 0,  /* to the kernel, counted in the cls_* counter given by cls[] */
	A_LOOKUP4,  /* VIP session, IPv4 key built, decided after the bulk lookup */
	A_LOOKUP6,
	A_DECAP4,   /* GUE for us, outer IPv4 */
	A_DECAP6,   /* GUE for us, outer IPv6 */
	A_NIC,      /* encapsulated, to the NIC */
	A_DROP,
	A_PARKED,   /* held in the park: counted when released */
	A_TOOBIG,   /* to a live peer, but too big for the tunnel: answer or drop (too_big) */
	A_REPLY,    /* rewritten in place into a reply to the sender, to the NIC, counted in cls */
};

/* Index of the cls_* counter (in struct homing_lcore_stats, as uint64_t words): the
 * pipeline counts through cnt[bm->cls]++ with cnt the stats struct seen as an array.
 * That needs a struct of uint64_t words only (no padding, no other type: Go's
 * counters.NewFromC refuses any other field at start) whose every index fits the
 * uint8_t of burst_meta. */
#define CLS(field) ((uint8_t)(offsetof(struct homing_lcore_stats, field) / sizeof(uint64_t)))
_Static_assert(sizeof(struct homing_lcore_stats) % sizeof(uint64_t) == 0,
	       "struct homing_lcore_stats: uint64_t words only");
_Static_assert(sizeof(struct homing_lcore_stats) / sizeof(uint64_t) <= UINT8_MAX + 1,
	       "struct homing_lcore_stats: too many words for CLS's uint8_t index");

#define ETH_LEN RTE_ETHER_HDR_LEN
#define TUN_V4_LEN (sizeof(struct rte_ipv4_hdr) + sizeof(struct rte_udp_hdr) + HOMING_GUE_LEN)
#define TUN_V6_LEN (sizeof(struct rte_ipv6_hdr) + sizeof(struct rte_udp_hdr) + HOMING_GUE_LEN)

#define IPV4_MF_OFF_MASK (RTE_IPV4_HDR_MF_FLAG | RTE_IPV4_HDR_OFFSET_MASK)

/* A packet to look up: its key, the key's table hash, the packet and its meta. */
struct lookup4 {
	struct homing_key4 key;
	uint32_t hash;
	struct rte_mbuf *m;
	struct burst_meta *b;
};

struct lookup6 {
	struct homing_key6 key;
	uint32_t hash;
	struct rte_mbuf *m;
	struct burst_meta *b;
};

struct burst_meta {
	uint8_t act;
	uint8_t cls;
	uint8_t inner;      /* inner packet: IPPROTO_IPIP (IPv4) or IPPROTO_IPV6, the GUE protocol */
	uint8_t tun_af;     /* A_TOOBIG: the owner's tunnel family (4 or 6) */
	uint8_t why;        /* A_DROP of cls_gue_bad: the gue_* counter of the refusal */
	uint16_t owner;     /* A_TOOBIG: the owner */
	uint16_t sport;     /* A_TOOBIG: the flow's GUE source port */
	uint16_t ip_len;    /* encap: inner IP packet length; decap: inner length */
};

static inline int
vip4_match(const struct homing_dp *dp, uint32_t dst)
{
	for (unsigned i = 0; i < dp->n_vip4; i++)
		if ((dst & dp->vip4[i].mask) == dp->vip4[i].net)
			return 1;
	return 0;
}

static inline int
vip6_match(const struct homing_dp *dp, const uint8_t *dst)
{
	for (unsigned i = 0; i < dp->n_vip6; i++) {
		const struct homing_vip6 *v = &dp->vip6[i];
		unsigned b;
		for (b = 0; b < 16; b++)
			if ((dst[b] & v->mask[b]) != v->net[b])
				break;
		if (b == 16)
			return 1;
	}
	return 0;
}

/* Validates a GUE header and its inner packet (avail bytes after the UDP header).
 * Returns the inner family (4/6) and sets *inner_len, or 0 if invalid. */
static inline int
gue_check(const uint8_t *gue, uint32_t avail, uint16_t *inner_len)
{
	const uint8_t *in = gue + HOMING_GUE_LEN;

	if (avail < HOMING_GUE_LEN || gue[0] != 0 || gue[2] != 0 || gue[3] != 0)
		return 0;
	avail -= HOMING_GUE_LEN;
	if (gue[1] == IPPROTO_IPIP) {
		uint32_t ihl, tot;
		if (avail < sizeof(struct rte_ipv4_hdr) || (in[0] >> 4) != 4)
			return 0;
		ihl = (in[0] & 0xf) * 4u;
		tot = ((uint32_t)in[2] << 8) | in[3];
		if (ihl < sizeof(struct rte_ipv4_hdr) || tot < ihl || tot > avail)
			return 0;
		*inner_len = (uint16_t)tot;
		return 4;
	}
	if (gue[1] == IPPROTO_IPV6) {
		uint32_t plen;
		if (avail < sizeof(struct rte_ipv6_hdr) || (in[0] >> 4) != 6)
			return 0;
		plen = ((uint32_t)in[4] << 8) | in[5];
		if (sizeof(struct rte_ipv6_hdr) + plen > avail)
			return 0;
		*inner_len = (uint16_t)(sizeof(struct rte_ipv6_hdr) + plen);
		return 6;
	}
	return 0;
}

/* Whether a is the IPv4 tunnel address (network order) of a live peer: one CRC32 and,
 * the set being at most half full, one or two probes. */
static inline int
peer4_known(const struct homing_dp *dp, uint32_t a)
{
	const struct homing_peers *p = __atomic_load_n(&dp->peers, __ATOMIC_ACQUIRE);
	uint32_t i = rte_hash_crc_4byte(a, 0) & p->mask4;

	for (;; i = (i + 1) & p->mask4) {
		uint32_t v = p->a4[i];
		if (v == 0)
			return 0;
		if (v == a)
			return 1;
	}
}

/* The same for an IPv6 address. */
static inline int
peer6_known(const struct homing_dp *dp, const uint8_t *a)
{
	const struct homing_peers *p = __atomic_load_n(&dp->peers, __ATOMIC_ACQUIRE);
	uint64_t a0, a1;
	uint32_t i = rte_hash_crc(a, 16, 0) & p->mask6;

	memcpy(&a0, a, 8);
	memcpy(&a1, a + 8, 8);
	for (;; i = (i + 1) & p->mask6) {
		uint64_t v0, v1;
		memcpy(&v0, p->a6[i], 8);
		memcpy(&v1, p->a6[i] + 8, 8);
		if ((v0 | v1) == 0)
			return 0;
		if (v0 == a0 && v1 == a1)
			return 1;
	}
}

/* Checks the L4 header of a TCP/UDP packet of l4_len bytes. Returns 0 if malformed,
 * 1 if it is a TCP SYN without ACK, 2 otherwise. */
static inline int
l4_check(const uint8_t *l4, uint32_t l4_len, uint8_t proto)
{
	if (proto == IPPROTO_TCP) {
		const struct rte_tcp_hdr *tcp = (const struct rte_tcp_hdr *)l4;
		if (l4_len < sizeof(*tcp) || (tcp->data_off >> 4) < 5 ||
		    (uint32_t)(tcp->data_off >> 4) * 4 > l4_len)
			return 0;
		if ((tcp->tcp_flags & (RTE_TCP_SYN_FLAG | RTE_TCP_ACK_FLAG)) == RTE_TCP_SYN_FLAG)
			return 1;
		return 2;
	}
	if (l4_len < sizeof(struct rte_udp_hdr))
		return 0;
	return 2;
}

/* Whether bit port (network order) is set in a port bitmap. */
static inline int
port_in(const uint8_t *bitmap, uint16_t port_be)
{
	uint16_t p = rte_be_to_cpu_16(port_be);
	return (bitmap[p >> 3] >> (p & 7)) & 1;
}

/* QUIC versions 1 (RFC 9000) and 2 (RFC 9369): their long-header type of Initial. */
#define QUIC_V2 0x6b3343cfu

/* Whether a UDP payload of len bytes starts with a QUIC long header of an Initial
 * packet (a client's first packet of a new connection). Version 2 numbers Initial 1,
 * every other version (1, drafts) 0; version 0 is a server's Version Negotiation. */
static inline int
quic_initial(const uint8_t *p, uint32_t len)
{
	uint32_t ver;
	if (len < 5 || (p[0] & 0xc0) != 0xc0)
		return 0;
	ver = ((uint32_t)p[1] << 24) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 8) | p[4];
	if (ver == 0)
		return 0;
	return ((p[0] >> 4) & 3) == (ver == QUIC_V2 ? 1 : 0);
}

/* A UDP packet to a VIP on a QUIC port: its Initial is classed like a SYN (1). */
static inline int
udp_new_session(const struct homing_dp *dp, const uint8_t *l4, uint32_t l4_len)
{
	const struct rte_udp_hdr *udp = (const struct rte_udp_hdr *)l4;
	return port_in(dp->udp_quic, udp->dst_port) &&
	       quic_initial(l4 + sizeof(*udp), l4_len - sizeof(*udp));
}

/* An ICMP error about a VIP session (RFC 792: destination unreachable, including
 * fragmentation needed, time exceeded, parameter problem), to the VIP: the router hashed
 * it on its own header, so it reaches an arbitrary host. The quoted packet is one the VIP
 * sent (VIP -> client); its reverse is the session's key (client -> VIP). icmp points to
 * the ICMP header, with icmp_len bytes up to the IP total length. Returns 1 with the key
 * built, 0 if the message is no such error or its quote does not hold an IPv4 header
 * without fragment offset and the first 4 bytes of a TCP/UDP header from the VIP
 * (truncated quotes, lying lengths). The quote's own total length is not trusted: the
 * quote is usually cut. */
static inline int
icmp4_key(const uint8_t *icmp, uint32_t icmp_len, uint32_t vip, struct homing_key4 *key)
{
	const struct rte_ipv4_hdr *q = (const struct rte_ipv4_hdr *)(icmp + 8);
	const uint8_t *ql4;
	uint32_t qhl;

	if (icmp_len < 8 + sizeof(*q) + 4)
		return 0;
	switch (icmp[0]) {
	case 3:  /* destination unreachable (code 4: fragmentation needed) */
	case 11: /* time exceeded */
	case 12: /* parameter problem */
		break;
	default:
		return 0;
	}
	qhl = (q->version_ihl & 0xf) * 4u;
	if ((q->version_ihl >> 4) != 4 || qhl < sizeof(*q) || 8 + qhl + 4 > icmp_len ||
	    (q->next_proto_id != IPPROTO_TCP && q->next_proto_id != IPPROTO_UDP) ||
	    (q->fragment_offset & rte_cpu_to_be_16(RTE_IPV4_HDR_OFFSET_MASK)) || q->src_addr != vip)
		return 0;
	ql4 = icmp + 8 + qhl;
	key->src = q->dst_addr;
	key->dst = q->src_addr;
	memcpy(&key->sport, ql4 + 2, 2); /* the quote's destination port: the client's */
	memcpy(&key->dport, ql4, 2);
	key->proto = q->next_proto_id;
	key->pad[0] = key->pad[1] = key->pad[2] = 0;
	return 1;
}

/* The same for ICMPv6 (RFC 4443: destination unreachable, packet too big, time exceeded,
 * parameter problem) quoting an IPv6 header whose next header is TCP or UDP. */
static inline int
icmp6_key(const uint8_t *icmp, uint32_t icmp_len, const uint8_t *vip, struct homing_key6 *key)
{
	const struct rte_ipv6_hdr *q = (const struct rte_ipv6_hdr *)(icmp + 8);
	const uint8_t *ql4 = (const uint8_t *)(q + 1);

	if (icmp_len < 8 + sizeof(*q) + 4 || icmp[0] < 1 || icmp[0] > 4 ||
	    (icmp[8] >> 4) != 6 || (q->proto != IPPROTO_TCP && q->proto != IPPROTO_UDP) ||
	    memcmp(q->src_addr, vip, 16) != 0)
		return 0;
	memcpy(key->src, q->dst_addr, 16);
	memcpy(key->dst, q->src_addr, 16);
	memcpy(&key->sport, ql4 + 2, 2);
	memcpy(&key->dport, ql4, 2);
	key->proto = q->proto;
	key->pad[0] = key->pad[1] = key->pad[2] = 0;
	return 1;
}

/* Index of the cls_* or gue_* counter (in struct homing_lcore_stats, as uint64_t words). */
#define CNT(field) CLS(field)

/* What a peer tunnels (the inner packet of valid GUE, family af, ilen bytes at in): TCP
 * or UDP to a VIP (IPv4 without options; a fragment, which a peer sends for a too-big
 * packet without DF, is checked up to its destination and protocol), or an ICMP / ICMPv6
 * error about a VIP flow (what parse4/parse6 hand to a session's owner). Returns 0, or
 * the gue_* counter of the refusal. Reads at most GUE_INNER_READ bytes of the inner
 * packet, and none beyond ilen. */
static inline uint8_t
gue_inner(const struct homing_dp *dp, const uint8_t *in, uint32_t ilen, int af)
{
	union {
		struct homing_key4 k4;
		struct homing_key6 k6;
	} k;
	uint8_t proto;

	if (af == 4) {
		const struct rte_ipv4_hdr *ip = (const struct rte_ipv4_hdr *)in;
		/* gue_check: version 4, 20 <= IHL <= ilen */
		if (unlikely(ip->version_ihl != RTE_IPV4_VHL_DEF))
			return CNT(gue_inner_malformed);
		proto = ip->next_proto_id;
		if (likely(proto == IPPROTO_TCP || proto == IPPROTO_UDP)) {
			if (unlikely(!vip4_match(dp, ip->dst_addr)))
				return CNT(gue_inner_not_vip);
			if (unlikely(ip->fragment_offset & rte_cpu_to_be_16(IPV4_MF_OFF_MASK)))
				return 0;
			return l4_check(in + sizeof(*ip), ilen - sizeof(*ip), proto) ? 0 : CNT(gue_inner_malformed);
		}
		if (proto != IPPROTO_ICMP)
			return CNT(gue_inner_proto);
		if (ilen < sizeof(*ip) + 1)
			return CNT(gue_inner_malformed);
		if (in[sizeof(*ip)] != 3 && in[sizeof(*ip)] != 11 && in[sizeof(*ip)] != 12)
			return CNT(gue_inner_proto);
		if (!vip4_match(dp, ip->dst_addr))
			return CNT(gue_inner_not_vip);
		if ((ip->fragment_offset & rte_cpu_to_be_16(IPV4_MF_OFF_MASK)) ||
		    !icmp4_key(in + sizeof(*ip), ilen - sizeof(*ip), ip->dst_addr, &k.k4))
			return CNT(gue_inner_malformed);
		return 0;
	} else {
		const struct rte_ipv6_hdr *ip = (const struct rte_ipv6_hdr *)in;
		/* gue_check: version 6, 40 + payload length = ilen */
		proto = ip->proto;
		if (likely(proto == IPPROTO_TCP || proto == IPPROTO_UDP)) {
			if (unlikely(!vip6_match(dp, ip->dst_addr)))
				return CNT(gue_inner_not_vip);
			return l4_check(in + sizeof(*ip), ilen - sizeof(*ip), proto) ? 0 : CNT(gue_inner_malformed);
		}
		if (proto != IPPROTO_ICMPV6)
			return CNT(gue_inner_proto);
		if (ilen < sizeof(*ip) + 1)
			return CNT(gue_inner_malformed);
		if (in[sizeof(*ip)] < 1 || in[sizeof(*ip)] > 4)
			return CNT(gue_inner_proto);
		if (!vip6_match(dp, ip->dst_addr))
			return CNT(gue_inner_not_vip);
		if (!icmp6_key(in + sizeof(*ip), ilen - sizeof(*ip), ip->dst_addr, &k.k6))
			return CNT(gue_inner_malformed);
		return 0;
	}
}

/* Whether avail bytes at gue hold a GUE header gue_check accepts (variant 0, no flags or
 * options, protocol IPv4 or IPv6): if gue_check failed, the inner packet did. */
static inline int
gue_hdr_ok(const uint8_t *gue, uint32_t avail)
{
	return avail >= HOMING_GUE_LEN && gue[0] == 0 && gue[2] == 0 && gue[3] == 0 &&
	       (gue[1] == IPPROTO_IPIP || gue[1] == IPPROTO_IPV6);
}

/* Refuses a GUE packet: dropped, counted in cls_gue_bad and in the gue_* counter why. */
static inline void
gue_refuse(struct burst_meta *bm, uint8_t why)
{
	bm->act = A_DROP;
	bm->cls = CLS(cls_gue_bad);
	bm->why = why;
}

/* The length of the TCP or UDP header at l4 (checked by l4_check). */
static inline uint32_t
l4_hdr_len(const uint8_t *l4, uint8_t proto)
{
	return proto == IPPROTO_TCP ? (uint32_t)(l4[12] >> 4) * 4 : sizeof(struct rte_udp_hdr);
}

/* A chain (multi-segment mbuf: len, the packet's length, > hlen, its first segment's)
 * is parsed like one segment if the headers the pipeline reads are in its first segment
 * and it carries no bytes after its IP packet (a chain is a large frame: no Ethernet
 * padding). chain_ok checks the second for a packet of ip_len bytes. */
static inline int
chain_ok(uint32_t len, uint32_t hlen, uint32_t ip_len)
{
	return hlen == len || ETH_LEN + ip_len == len;
}

/* The most gue_inner reads of an inner packet: IPv6, ICMPv6 header, quoted IPv6 header,
 * 4 bytes of its TCP/UDP header. */
#define GUE_INNER_READ (2 * sizeof(struct rte_ipv6_hdr) + 8 + 4)
/* The smallest first segment of a chain that holds a GUE packet's headers: outer IP, UDP,
 * GUE and what gue_inner reads. */
#define GUE_HDRS_LEN(l3) (ETH_LEN + (l3) + sizeof(struct rte_udp_hdr) + HOMING_GUE_LEN + \
			  GUE_INNER_READ)

static inline void
parse4(const struct homing_dp *dp, const uint8_t *d, uint32_t len, uint32_t hlen,
       struct burst_meta *bm, struct homing_key4 *key)
{
	const struct rte_ipv4_hdr *ip = (const struct rte_ipv4_hdr *)(d + ETH_LEN);
	const uint8_t *l4;
	uint32_t tot, l4_len;
	int r;

	if (unlikely(hlen < ETH_LEN + sizeof(*ip) || (ip->version_ihl >> 4) != 4)) {
		bm->cls = CLS(cls_malformed);
		return;
	}
	if (unlikely((ip->version_ihl & 0xf) != 5)) {
		bm->cls = (ip->version_ihl & 0xf) < 5 ? CLS(cls_malformed) : CLS(cls_ipopt);
		return;
	}
	tot = rte_be_to_cpu_16(ip->total_length);
	if (unlikely(tot < sizeof(*ip) || ETH_LEN + tot > len || !chain_ok(len, hlen, tot))) {
		bm->cls = CLS(cls_malformed);
		return;
	}
	if (unlikely(ip->fragment_offset & rte_cpu_to_be_16(IPV4_MF_OFF_MASK))) {
		bm->cls = CLS(cls_frag);
		return;
	}
	if (ip->next_proto_id != IPPROTO_TCP && ip->next_proto_id != IPPROTO_UDP) {
		/* An ICMP error about a VIP session goes where the session lives. */
		if (ip->next_proto_id == IPPROTO_ICMP && vip4_match(dp, ip->dst_addr) &&
		    icmp4_key((const uint8_t *)(ip + 1), RTE_MIN(tot, hlen - ETH_LEN) - sizeof(*ip),
			      ip->dst_addr, key)) {
			bm->ip_len = (uint16_t)tot;
			bm->inner = IPPROTO_IPIP;
			bm->act = A_LOOKUP4;
			return;
		}
		bm->cls = CLS(cls_other);
		return;
	}
	l4 = (const uint8_t *)(ip + 1);
	l4_len = tot - sizeof(*ip);
	/* A chain's TCP/UDP header must be in its first segment (l4_check reads 20 bytes). */
	if (unlikely(hlen < len && (hlen < ETH_LEN + sizeof(*ip) + sizeof(struct rte_tcp_hdr) ||
				    hlen < ETH_LEN + sizeof(*ip) + l4_hdr_len(l4, ip->next_proto_id)))) {
		bm->cls = CLS(cls_malformed);
		return;
	}
	r = l4_check(l4, l4_len, ip->next_proto_id);
	if (unlikely(r == 0)) {
		bm->cls = CLS(cls_malformed);
		return;
	}
	if (ip->next_proto_id == IPPROTO_UDP && ip->dst_addr == dp->self4 &&
	    ((const struct rte_udp_hdr *)l4)->dst_port == dp->tunnel_port) {
		const struct rte_udp_hdr *udp = (const struct rte_udp_hdr *)l4;
		uint32_t ulen = rte_be_to_cpu_16(udp->dgram_len);
		uint8_t why;
		int af;
		if (!peer4_known(dp, ip->src_addr)) {
			gue_refuse(bm, CNT(gue_unknown_source));
			return;
		}
		if (ulen < sizeof(*udp) || ulen > l4_len ||
		    (hlen < len && hlen < GUE_HDRS_LEN(sizeof(*ip)))) {
			gue_refuse(bm, CNT(gue_malformed));
			return;
		}
		af = gue_check(l4 + sizeof(*udp), ulen - sizeof(*udp), &bm->ip_len);
		if (af == 0) {
			gue_refuse(bm, gue_hdr_ok(l4 + sizeof(*udp), ulen - sizeof(*udp))
					       ? CNT(gue_inner_malformed) : CNT(gue_malformed));
			return;
		}
		why = gue_inner(dp, l4 + sizeof(*udp) + HOMING_GUE_LEN, bm->ip_len, af);
		if (why != 0) {
			gue_refuse(bm, why);
			return;
		}
		bm->inner = af == 4 ? IPPROTO_IPIP : IPPROTO_IPV6;
		bm->act = A_DECAP4;
		return;
	}
	if (r == 1) {
		bm->cls = CLS(cls_syn);
		return;
	}
	if (!vip4_match(dp, ip->dst_addr)) {
		bm->cls = CLS(cls_other);
		return;
	}
	if (ip->next_proto_id == IPPROTO_UDP && unlikely(udp_new_session(dp, l4, l4_len))) {
		bm->cls = CLS(cls_quic_initial);
		return;
	}
	key->src = ip->src_addr;
	key->dst = ip->dst_addr;
	key->sport = ((const uint16_t *)l4)[0];
	key->dport = ((const uint16_t *)l4)[1];
	key->proto = ip->next_proto_id;
	key->pad[0] = key->pad[1] = key->pad[2] = 0;
	bm->ip_len = (uint16_t)tot;
	bm->inner = IPPROTO_IPIP;
	bm->act = A_LOOKUP4;
}

static inline void
parse6(const struct homing_dp *dp, const uint8_t *d, uint32_t len, uint32_t hlen,
       struct burst_meta *bm, struct homing_key6 *key)
{
	const struct rte_ipv6_hdr *ip = (const struct rte_ipv6_hdr *)(d + ETH_LEN);
	const uint8_t *l4;
	uint32_t plen;
	int r;

	if (unlikely(hlen < ETH_LEN + sizeof(*ip) || (d[ETH_LEN] >> 4) != 6)) {
		bm->cls = CLS(cls_malformed);
		return;
	}
	plen = rte_be_to_cpu_16(ip->payload_len);
	if (unlikely(ETH_LEN + sizeof(*ip) + plen > len || !chain_ok(len, hlen, sizeof(*ip) + plen))) {
		bm->cls = CLS(cls_malformed);
		return;
	}
	switch (ip->proto) {
	case IPPROTO_TCP:
	case IPPROTO_UDP:
		break;
	case IPPROTO_FRAGMENT:
		bm->cls = CLS(cls_frag);
		return;
	case IPPROTO_ICMPV6:
		/* An ICMPv6 error about a VIP session goes where the session lives. */
		if (vip6_match(dp, ip->dst_addr) &&
		    icmp6_key((const uint8_t *)(ip + 1), RTE_MIN(plen, hlen - ETH_LEN - sizeof(*ip)),
			      ip->dst_addr, key)) {
			bm->ip_len = (uint16_t)(sizeof(*ip) + plen);
			bm->inner = IPPROTO_IPV6;
			bm->act = A_LOOKUP6;
			return;
		}
		bm->cls = CLS(cls_other);
		return;
	case IPPROTO_HOPOPTS:
	case IPPROTO_ROUTING:
	case IPPROTO_DSTOPTS:
	case IPPROTO_AH:
	case IPPROTO_ESP:
	case 135: /* mobility */
	case 139: /* HIP */
	case 140: /* shim6 */
		bm->cls = CLS(cls_ipopt);
		return;
	default:
		bm->cls = CLS(cls_other);
		return;
	}
	l4 = (const uint8_t *)(ip + 1);
	if (unlikely(hlen < len && (hlen < ETH_LEN + sizeof(*ip) + sizeof(struct rte_tcp_hdr) ||
				    hlen < ETH_LEN + sizeof(*ip) + l4_hdr_len(l4, ip->proto)))) {
		bm->cls = CLS(cls_malformed);
		return;
	}
	r = l4_check(l4, plen, ip->proto);
	if (unlikely(r == 0)) {
		bm->cls = CLS(cls_malformed);
		return;
	}
	if (ip->proto == IPPROTO_UDP && dp->has_self6 &&
	    ((const struct rte_udp_hdr *)l4)->dst_port == dp->tunnel_port &&
	    memcmp(ip->dst_addr, dp->self6, 16) == 0) {
		const struct rte_udp_hdr *udp = (const struct rte_udp_hdr *)l4;
		uint32_t ulen = rte_be_to_cpu_16(udp->dgram_len);
		uint8_t why;
		int af;
		if (!peer6_known(dp, ip->src_addr)) {
			gue_refuse(bm, CNT(gue_unknown_source));
			return;
		}
		if (ulen < sizeof(*udp) || ulen > plen ||
		    (hlen < len && hlen < GUE_HDRS_LEN(sizeof(*ip)))) {
			gue_refuse(bm, CNT(gue_malformed));
			return;
		}
		af = gue_check(l4 + sizeof(*udp), ulen - sizeof(*udp), &bm->ip_len);
		if (af == 0) {
			gue_refuse(bm, gue_hdr_ok(l4 + sizeof(*udp), ulen - sizeof(*udp))
					       ? CNT(gue_inner_malformed) : CNT(gue_malformed));
			return;
		}
		why = gue_inner(dp, l4 + sizeof(*udp) + HOMING_GUE_LEN, bm->ip_len, af);
		if (why != 0) {
			gue_refuse(bm, why);
			return;
		}
		bm->inner = af == 4 ? IPPROTO_IPIP : IPPROTO_IPV6;
		bm->act = A_DECAP6;
		return;
	}
	if (r == 1) {
		bm->cls = CLS(cls_syn);
		return;
	}
	if (!vip6_match(dp, ip->dst_addr)) {
		bm->cls = CLS(cls_other);
		return;
	}
	if (ip->proto == IPPROTO_UDP && unlikely(udp_new_session(dp, l4, plen))) {
		bm->cls = CLS(cls_quic_initial);
		return;
	}
	memcpy(key->src, ip->src_addr, 16);
	memcpy(key->dst, ip->dst_addr, 16);
	key->sport = ((const uint16_t *)l4)[0];
	key->dport = ((const uint16_t *)l4)[1];
	key->proto = ip->proto;
	key->pad[0] = key->pad[1] = key->pad[2] = 0;
	bm->ip_len = (uint16_t)(sizeof(*ip) + plen);
	bm->inner = IPPROTO_IPV6;
	bm->act = A_LOOKUP6;
}

static inline void
parse(const struct homing_dp *dp, struct rte_mbuf *m, struct burst_meta *bm,
      struct homing_key4 *k4, struct homing_key6 *k6)
{
	const uint8_t *d = rte_pktmbuf_mtod(m, const uint8_t *);
	uint32_t hlen = rte_pktmbuf_data_len(m), len = hlen;
	uint16_t et;

	bm->act = A_TAP;
	/* A chain: classified like one segment if its headers are in the first (parse4/6). */
	if (unlikely(m->nb_segs != 1))
		len = rte_pktmbuf_pkt_len(m);
	if (unlikely(hlen < ETH_LEN || len < hlen)) {
		bm->cls = CLS(cls_malformed);
		return;
	}
	et = ((const struct rte_ether_hdr *)d)->ether_type;
	if (et == rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4))
		parse4(dp, d, len, hlen, bm, k4);
	else if (et == rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV6))
		parse6(dp, d, len, hlen, bm, k6);
	else
		bm->cls = CLS(cls_other);
}

/* GUE to this host over IPv4 (after parse_fast4's first tests: one segment, IPv4
 * without options, not a fragment, UDP) from a live peer with an IPv4 inner packet, TCP
 * or UDP to a VIP, not a fragment: 1 (A_DECAP4, exactly what parse4 decides), else 0
 * (the full parser decides, and counts the refusals). */
static __rte_always_inline int
parse_fast_gue4(const struct homing_dp *dp, const struct rte_ipv4_hdr *ip, uint32_t len,
		struct burst_meta *bm)
{
	const struct rte_udp_hdr *udp = (const struct rte_udp_hdr *)(ip + 1);
	const struct rte_ipv4_hdr *in;
	uint32_t tot = rte_be_to_cpu_16(ip->total_length), ulen, itot, g, w;

	if (ip->dst_addr != dp->self4 || udp->dst_port != dp->tunnel_port)
		return 0;
	ulen = rte_be_to_cpu_16(udp->dgram_len);
	/* 52 <= tot <= len - ETH_LEN; 32 <= ulen <= tot - 20 (room for GUE and an inner
	 * IPv4 header); anything shorter is the full parser's. */
	if (unlikely(len < ETH_LEN + 52 || tot - 52 > len - (ETH_LEN + 52) || ulen - 32 > tot - 52))
		return 0;
	/* GUE variant 0, no flags, protocol IPIP; inner IPv4 without options,
	 * 20 <= inner tot <= ulen - 12 (what gue_check accepts for these headers) */
	memcpy(&g, udp + 1, 4);
	in = (const struct rte_ipv4_hdr *)((const uint8_t *)(udp + 1) + HOMING_GUE_LEN);
	itot = rte_be_to_cpu_16(in->total_length);
	if (g != rte_cpu_to_be_32(IPPROTO_IPIP << 16) || in->version_ihl != RTE_IPV4_VHL_DEF ||
	    itot - 20 > ulen - 32)
		return 0;
	/* gue_inner's TCP/UDP case: not a fragment, l4_check on itot - 20 bytes, to a VIP.
	 * w: the inner fragment_offset, ttl, next_proto_id. */
	memcpy(&w, &in->fragment_offset, 4);
	w &= rte_cpu_to_be_32((IPV4_MF_OFF_MASK << 16) | 0xff);
	if (likely(w == rte_cpu_to_be_32(IPPROTO_TCP))) {
		/* inner bytes up to itot are in the frame (itot <= ulen - 12); with itot >= 40,
		 * 20 <= doff <= itot - 20 is doff - 20 <= itot - 40 (unsigned) */
		if (itot < 40 ||
		    ((uint32_t)(((const uint8_t *)(in + 1))[12] >> 2) & 0x3c) - 20 > itot - 40)
			return 0;
	} else if (w != rte_cpu_to_be_32(IPPROTO_UDP) || itot < 28) {
		return 0;
	}
	if (unlikely(!peer4_known(dp, ip->src_addr) || !vip4_match(dp, in->dst_addr)))
		return 0;
	bm->ip_len = (uint16_t)itot;
	bm->inner = IPPROTO_IPIP;
	bm->act = A_DECAP4;
	return 1;
}

/* The common case, decided with few tests: one segment, IPv4 without options, not a
 * fragment, TCP with a valid header, not a SYN, to a VIP. Returns 1 with the key built
 * (exactly what parse4 would decide), else 0: the full parser decides. */
static __rte_always_inline int
parse_fast4(const struct homing_dp *dp, const struct rte_mbuf *m, struct burst_meta *bm,
	    struct homing_key4 *key)
{
	const uint8_t *d = rte_pktmbuf_mtod(m, const uint8_t *);
	const struct rte_ipv4_hdr *ip = (const struct rte_ipv4_hdr *)(d + ETH_LEN);
	const struct rte_tcp_hdr *tcp = (const struct rte_tcp_hdr *)(ip + 1);
	uint32_t len = rte_pktmbuf_data_len(m), tot, doff, proto = IPPROTO_TCP, w0, w1;

	/* w0: ether_type, version_ihl, tos; w1: fragment_offset, ttl, next_proto_id. */
	memcpy(&w0, d + 2 * RTE_ETHER_ADDR_LEN, 4);
	memcpy(&w1, &ip->fragment_offset, 4);
	if (unlikely(len < ETH_LEN + sizeof(*ip) + sizeof(*tcp) || m->nb_segs != 1 ||
		     (w0 & rte_cpu_to_be_32(0xffffff00)) !=
			     rte_cpu_to_be_32((RTE_ETHER_TYPE_IPV4 << 16) | (RTE_IPV4_VHL_DEF << 8))))
		return 0;
	w1 &= rte_cpu_to_be_32((IPV4_MF_OFF_MASK << 16) | 0xff);
	if (unlikely(w1 != rte_cpu_to_be_32(IPPROTO_TCP))) {
		if (w1 == rte_cpu_to_be_32(IPPROTO_UDP))
			return parse_fast_gue4(dp, ip, len, bm);
		return 0;
	}
	/* With l = tot - 40 (unsigned) and o = doff - 20 (unsigned): 40 <= tot and
	 * ETH_LEN + tot <= len is l <= len - 54 (len >= 54 here); 20 <= doff and
	 * doff <= tot - 20 is then o <= l. */
	tot = rte_be_to_cpu_16(ip->total_length);
	doff = (uint32_t)(tcp->data_off >> 2) & 0x3c;
	if (unlikely(tot - 40 > len - (ETH_LEN + 40) || doff - 20 > tot - 40 ||
		     (tcp->tcp_flags & (RTE_TCP_SYN_FLAG | RTE_TCP_ACK_FLAG)) == RTE_TCP_SYN_FLAG ||
		     !vip4_match(dp, ip->dst_addr)))
		return 0;
	memcpy(&key->src, &ip->src_addr, 8);   /* src, dst */
	memcpy(&key->sport, &tcp->src_port, 4); /* sport, dport */
	memcpy(&key->proto, &proto, 4);         /* proto, zero pad (little endian) */
	bm->ip_len = (uint16_t)tot;
	bm->inner = IPPROTO_IPIP;
	bm->act = A_LOOKUP4;
	return 1;
}

/* Cuts a chain to its pkt_len: bytes beyond it (GUE's outer trailer, an ICMP reply's
 * unquoted rest) are dropped, segments that hold none of it are freed. */
static void
trim_chain(struct rte_mbuf *m)
{
	uint32_t left = m->pkt_len;
	struct rte_mbuf *s = m, *prev = NULL;
	uint16_t n = 0;

	while (s != NULL && left > 0) {
		if (s->data_len > left)
			s->data_len = (uint16_t)left;
		left -= s->data_len;
		n++;
		prev = s;
		s = s->next;
	}
	if (prev != NULL && prev->next != NULL) {
		rte_pktmbuf_free(prev->next);
		prev->next = NULL;
	}
	m->nb_segs = n;
}

/* Strips the outer IP/UDP/GUE headers, keeping the outer MAC addresses. */
static inline void
decap(struct rte_mbuf *m, uint32_t outer_l3, const struct burst_meta *bm)
{
	uint8_t *d = rte_pktmbuf_mtod(m, uint8_t *);
	uint32_t strip = outer_l3 + sizeof(struct rte_udp_hdr) + HOMING_GUE_LEN;
	uint16_t et = bm->inner == IPPROTO_IPIP ? RTE_ETHER_TYPE_IPV4 : RTE_ETHER_TYPE_IPV6;

	memcpy(d + strip, d, 2 * RTE_ETHER_ADDR_LEN);
	*(uint16_t *)(d + strip + 2 * RTE_ETHER_ADDR_LEN) = rte_cpu_to_be_16(et);
	m->data_off += (uint16_t)strip;
	if (likely(m->nb_segs == 1)) {
		/* The parser checked ETH_LEN + ip_len <= data_len - strip. */
		m->data_len = (uint16_t)(ETH_LEN + bm->ip_len);
		m->pkt_len = ETH_LEN + bm->ip_len;
	} else {
		/* A chain: the outer headers are in its first segment and nothing follows
		 * the outer packet, whose UDP length the parser compared with the inner one. */
		m->data_len -= (uint16_t)strip;
		m->pkt_len = ETH_LEN + bm->ip_len;
		trim_chain(m);
	}
}

/* The GUE source port: from the key's table hash (computed once per packet, while
 * parsing), so that every packet of a session takes the same port. */
static inline uint16_t
flow_sport(uint32_t h)
{
	h ^= h >> 16;
	return rte_cpu_to_be_16((uint16_t)(HOMING_SPORT_BASE + (h & HOMING_SPORT_MASK)));
}

static inline uint32_t
key_hash(const void *key, uint32_t af)
{
	return af == 4 ? homing_table_hash4(key) : homing_table_hash6(key);
}

#define TMPL4_LEN (ETH_LEN + TUN_V4_LEN)
#define TMPL6_LEN (ETH_LEN + TUN_V6_LEN)
/* struct homing_tmpl's valid and af bytes, read as one little-endian 16-bit word. */
#define TMPL_LIVE4 (RTE_BYTE_ORDER == RTE_LITTLE_ENDIAN ? 0x0401 : 0x0104)
#define TMPL_LIVE6 (RTE_BYTE_ORDER == RTE_LITTLE_ENDIAN ? 0x0601 : 0x0106)
_Static_assert(offsetof(struct homing_tmpl, af) == offsetof(struct homing_tmpl, valid) + 1,
	       "valid and af are adjacent");

/* Fills the encapsulated packet's lengths, checksum and ports (outer family af, a
 * constant at each call) once the template is at h. */
static __rte_always_inline void
encap_finish(struct rte_mbuf *m, uint8_t *h, const struct burst_meta *bm, uint16_t sport,
	     uint32_t csb, const uint32_t af)
{
	const uint32_t tlen = af == 4 ? TMPL4_LEN : TMPL6_LEN;

	/* Ethernet padding is not carried. */
	if (likely(m->nb_segs == 1))
		m->data_len = (uint16_t)(tlen + bm->ip_len);
	else /* a chain: nothing follows its IP packet (checked by the parser) */
		m->data_len += (uint16_t)(rte_pktmbuf_mtod(m, uint8_t *) - h);
	m->data_off = (uint16_t)(h - (uint8_t *)m->buf_addr);
	m->pkt_len = tlen + bm->ip_len;
	/* GUE protocol: the inner family. */
	h[tlen - 3] = bm->inner;
	if (af == 4) {
		struct rte_ipv4_hdr *ip = (struct rte_ipv4_hdr *)(h + ETH_LEN);
		struct rte_udp_hdr *udp = (struct rte_udp_hdr *)(ip + 1);
		uint16_t tot = rte_cpu_to_be_16((uint16_t)(TUN_V4_LEN + bm->ip_len));
		/* csum_base is a folded 16-bit sum (rte_raw_cksum): one fold is enough */
		uint32_t sum = csb + tot;
		sum = (sum & 0xffff) + (sum >> 16);
		ip->total_length = tot;
		ip->hdr_checksum = (uint16_t)~sum;
		udp->src_port = sport;
		udp->dgram_len = rte_cpu_to_be_16(
			(uint16_t)(sizeof(*udp) + HOMING_GUE_LEN + bm->ip_len));
	} else {
		struct rte_ipv6_hdr *ip = (struct rte_ipv6_hdr *)(h + ETH_LEN);
		struct rte_udp_hdr *udp = (struct rte_udp_hdr *)(ip + 1);
		uint16_t plen = rte_cpu_to_be_16(
			(uint16_t)(sizeof(*udp) + HOMING_GUE_LEN + bm->ip_len));
		ip->payload_len = plen;
		udp->src_port = sport;
		udp->dgram_len = plen;
		udp->dgram_cksum = 0;
		udp->dgram_cksum = rte_ipv6_udptcp_cksum_mbuf(m, ip, ETH_LEN + sizeof(*ip));
	}
	m->ol_flags = 0;
	m->packet_type = 0;
}

/* Prepends owner's template in place of the Ethernet header. Returns 0 (encapsulated),
 * -1 (owner has no live template: packet untouched), -2 (no headroom), or 4 / 6 (the
 * encapsulated packet, over an outer IPv4 / IPv6 tunnel, would exceed the NIC MTU:
 * packet untouched). The template's length follows from its family (homing_tmpl_set),
 * so that the copy has a fixed size. Slot 0 is never valid (homing_tmpl_set refuses
 * id 0). */
static __rte_always_inline int
encap(const struct homing_dp *dp, struct homing_lcore_stats *st, struct rte_mbuf *m,
      uint16_t owner, const struct burst_meta *bm, uint16_t sport)
{
	const struct homing_tmpl *tmpl = dp->tmpl;
	const struct homing_tmpl *t;
	uint8_t *h;
	uint32_t sn, csb;

	if (unlikely(owner >= HOMING_MAX_HOSTS))
		return -1;
	t = &tmpl[owner];
	for (;;) {
		uint16_t va;
		sn = rte_seqlock_read_begin(&t->lock);
		/* valid and af, adjacent bytes: one load */
		memcpy(&va, &t->valid, 2);
		csb = t->csum_base;
		if (likely(va == TMPL_LIVE4)) {
			if (unlikely(bm->ip_len > dp->max_inner4)) {
				if (rte_seqlock_read_retry(&t->lock, sn))
					continue;
				return 4;
			}
			if (unlikely(rte_pktmbuf_headroom(m) < TMPL4_LEN - ETH_LEN))
				goto no_room;
			h = rte_pktmbuf_mtod(m, uint8_t *) - (TMPL4_LEN - ETH_LEN);
			memcpy(h, t->hdr, TMPL4_LEN);
			if (likely(!rte_seqlock_read_retry(&t->lock, sn))) {
				encap_finish(m, h, bm, sport, csb, 4);
				return 0;
			}
		} else if (va == TMPL_LIVE6) {
			if (unlikely(bm->ip_len > dp->max_inner6)) {
				if (rte_seqlock_read_retry(&t->lock, sn))
					continue;
				return 6;
			}
			if (unlikely(rte_pktmbuf_headroom(m) < TMPL6_LEN - ETH_LEN))
				goto no_room;
			h = rte_pktmbuf_mtod(m, uint8_t *) - (TMPL6_LEN - ETH_LEN);
			memcpy(h, t->hdr, TMPL6_LEN);
			if (likely(!rte_seqlock_read_retry(&t->lock, sn))) {
				encap_finish(m, h, bm, sport, csb, 6);
				return 0;
			}
		} else {
			if (rte_seqlock_read_retry(&t->lock, sn))
				continue;
			return -1;
		}
		st->tmpl_retries++;
		continue;
	no_room:
		if (rte_seqlock_read_retry(&t->lock, sn))
			continue;
		return -2;
	}
}

/* What decide() did, for the burst's accounting: summed in one word (redirected in the
 * low 16 bits, local in the high 16). */
#define DECIDED_OTHER 0
#define DECIDED_REDIRECT 1
#define DECIDED_LOCAL (1 << 16)

/* Decides a packet whose session was found: to the owner (encapsulated), to the kernel
 * (owned here, or the owner is not live), dropped (no headroom), or A_TOOBIG (too big
 * for the tunnel: too_big() decides). Sets b->act, b->cls. */
static __rte_always_inline int
decide(const struct homing_dp *dp, struct homing_lcore_stats *st, struct rte_mbuf *m,
       struct burst_meta *b, uint64_t val, uint32_t hash)
{
	uint16_t owner = HOMING_VAL_OWNER(val);
	int r;

	if (owner == dp->self_id) {
		b->act = A_TAP;
		b->cls = CLS(cls_local);
		return DECIDED_LOCAL;
	}
	r = encap(dp, st, m, owner, b, flow_sport(hash));
	if (likely(r == 0)) {
		b->act = A_NIC;
		b->cls = CLS(cls_redirect);
		return DECIDED_REDIRECT;
	}
	if (r > 0) {
		b->act = A_TOOBIG;
		b->cls = CLS(cls_too_big);
		b->tun_af = (uint8_t)r;
		b->owner = owner;
		b->sport = flow_sport(hash);
	} else if (r == -1) {
		b->act = A_TAP;
		b->cls = CLS(cls_dead_owner);
	} else {
		b->act = A_DROP;
		b->cls = CLS(cls_redirect);
		st->drop_headroom++;
	}
	return DECIDED_OTHER;
}

/* ICMP rate limit of one lcore: a token bucket as a GCRA (one token per dp->icmp_tsc
 * cycles, at most burst tokens). Returns 1 if a reply may be sent now. */
static inline int
icmp_allow(struct homing_lcore *lc)
{
	const struct homing_dp *dp = lc->dp;
	uint64_t now, tat;

	if (dp->icmp_tsc == 0)
		return 0;
	now = rte_rdtsc();
	tat = lc->icmp_tat > now ? lc->icmp_tat : now;
	if (tat - now > dp->icmp_burst_tsc)
		return 0;
	lc->icmp_tat = tat + dp->icmp_tsc;
	return 1;
}

/* Rewrites m, an IPv4 packet of ip_len bytes after its Ethernet header, into an ICMP
 * Destination Unreachable / Fragmentation Needed (RFC 792, RFC 1191) from its destination
 * (the VIP) to its source, with next-hop MTU mtu, quoting as much of the packet as fits
 * in HOMING_ICMP4_MAX bytes. The Ethernet addresses are swapped (the packet came from
 * the router). Returns 0, or -1 without headroom (m unchanged). */
static int
icmp4_too_big(struct rte_mbuf *m, uint32_t ip_len, uint16_t mtu)
{
	const uint32_t hl = sizeof(struct rte_ipv4_hdr) + sizeof(struct rte_icmp_hdr);
	struct rte_ether_hdr eth = *rte_pktmbuf_mtod(m, struct rte_ether_hdr *);
	uint32_t quote = RTE_MIN(ip_len, HOMING_ICMP4_MAX - hl);
	struct rte_ether_hdr *e;
	struct rte_ipv4_hdr *ip, *orig;
	struct rte_icmp_hdr *icmp;
	uint16_t *next_mtu, sum = 0;

	e = (struct rte_ether_hdr *)rte_pktmbuf_prepend(m, (uint16_t)hl);
	if (e == NULL)
		return -1;
	ip = (struct rte_ipv4_hdr *)(e + 1);
	icmp = (struct rte_icmp_hdr *)(ip + 1);
	orig = (struct rte_ipv4_hdr *)(icmp + 1);
	rte_ether_addr_copy(&eth.src_addr, &e->dst_addr);
	rte_ether_addr_copy(&eth.dst_addr, &e->src_addr);
	e->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4);
	memset(ip, 0, sizeof(*ip));
	ip->version_ihl = RTE_IPV4_VHL_DEF;
	ip->total_length = rte_cpu_to_be_16((uint16_t)(hl + quote));
	ip->time_to_live = 64;
	ip->next_proto_id = IPPROTO_ICMP;
	ip->src_addr = orig->dst_addr;
	ip->dst_addr = orig->src_addr;
	ip->hdr_checksum = rte_ipv4_cksum(ip);
	icmp->icmp_type = 3; /* destination unreachable */
	icmp->icmp_code = 4; /* fragmentation needed and DF set */
	icmp->icmp_cksum = 0;
	icmp->icmp_ident = 0; /* unused */
	next_mtu = &icmp->icmp_seq_nb;
	*next_mtu = rte_cpu_to_be_16(mtu);
	/* Cut the quote (it may continue in a chain's next segments). */
	m->pkt_len = ETH_LEN + hl + quote;
	trim_chain(m);
	rte_raw_cksum_mbuf(m, ETH_LEN + sizeof(*ip), sizeof(*icmp) + quote, &sum);
	icmp->icmp_cksum = (uint16_t)~sum;
	m->ol_flags = 0;
	m->packet_type = 0;
	return 0;
}

/* The same for IPv6: ICMPv6 Packet Too Big (RFC 4443 3.2), at most HOMING_ICMP6_MAX
 * bytes. */
static int
icmp6_too_big(struct rte_mbuf *m, uint32_t ip_len, uint32_t mtu)
{
	const uint32_t hl = sizeof(struct rte_ipv6_hdr) + 8;
	struct rte_ether_hdr eth = *rte_pktmbuf_mtod(m, struct rte_ether_hdr *);
	uint32_t quote = RTE_MIN(ip_len, HOMING_ICMP6_MAX - hl);
	struct rte_ether_hdr *e;
	struct rte_ipv6_hdr *ip, *orig;
	uint8_t *icmp;
	uint8_t src[16];

	e = (struct rte_ether_hdr *)rte_pktmbuf_prepend(m, (uint16_t)hl);
	if (e == NULL)
		return -1;
	ip = (struct rte_ipv6_hdr *)(e + 1);
	icmp = (uint8_t *)(ip + 1);
	orig = (struct rte_ipv6_hdr *)(icmp + 8);
	rte_ether_addr_copy(&eth.src_addr, &e->dst_addr);
	rte_ether_addr_copy(&eth.dst_addr, &e->src_addr);
	e->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV6);
	memcpy(src, orig->dst_addr, 16);
	memcpy(ip->dst_addr, orig->src_addr, 16);
	memcpy(ip->src_addr, src, 16);
	ip->vtc_flow = rte_cpu_to_be_32(6u << 28);
	ip->payload_len = rte_cpu_to_be_16((uint16_t)(8 + quote));
	ip->proto = IPPROTO_ICMPV6;
	ip->hop_limits = 64;
	icmp[0] = 2; /* packet too big */
	icmp[1] = 0;
	icmp[2] = icmp[3] = 0;
	*(uint32_t *)(icmp + 4) = rte_cpu_to_be_32(mtu);
	m->pkt_len = ETH_LEN + hl + quote;
	trim_chain(m);
	*(uint16_t *)(icmp + 2) = rte_ipv6_udptcp_cksum_mbuf(m, ip, ETH_LEN + sizeof(*ip));
	m->ol_flags = 0;
	m->packet_type = 0;
	return 0;
}

/* Fragments m, an IPv4 packet without DF of b->ip_len bytes (IHL 5, not a fragment:
 * checked by the parser) after its Ethernet header, into fragments of at most max bytes
 * (RFC 791), and encapsulates each to b->owner: m becomes the first, the others are new
 * mbufs of lc->pool (copies), written to out[0..max_out). Returns the number of new
 * mbufs, or -1 (nothing sent: no pool, no room, no mbuf, no headroom, template gone;
 * m unchanged but for its first fragment's IP header). */
static int
frag4(struct homing_lcore *lc, struct rte_mbuf *m, const struct burst_meta *b, uint32_t max,
      struct rte_mbuf **out, uint32_t max_out)
{
	const uint32_t hl = sizeof(struct rte_ipv4_hdr);
	struct rte_ipv4_hdr *ip = rte_pktmbuf_mtod_offset(m, struct rte_ipv4_hdr *, ETH_LEN);
	uint32_t payload = b->ip_len - hl, fp = ((max - hl) / 8) * 8, nf, k;
	struct burst_meta fb = { .inner = IPPROTO_IPIP };

	if (lc->pool == NULL || max < hl + 8 || fp == 0)
		return -1;
	nf = (payload + fp - 1) / fp;
	if (nf - 1 > max_out)
		return -1;
	for (k = 1; k < nf; k++) {
		uint32_t off = k * fp, n = RTE_MIN(fp, payload - off);
		struct rte_mbuf *f = rte_pktmbuf_alloc(lc->pool);
		struct rte_ipv4_hdr *fi;
		uint32_t done = 0;
		uint8_t *d;
		if (f == NULL || rte_pktmbuf_tailroom(f) < ETH_LEN + hl) {
			rte_pktmbuf_free(f);
			goto fail;
		}
		d = (uint8_t *)rte_pktmbuf_append(f, (uint16_t)(ETH_LEN + hl));
		memcpy(d, rte_pktmbuf_mtod(m, uint8_t *), ETH_LEN + hl);
		fi = (struct rte_ipv4_hdr *)(d + ETH_LEN);
		out[k - 1] = f;
		/* The payload, in as many segments of the pool as it takes. */
		while (done < n) {
			uint32_t take = RTE_MIN(n - done,
						(uint32_t)rte_pktmbuf_tailroom(rte_pktmbuf_lastseg(f)));
			const void *src;
			uint8_t *p;
			if (take == 0) {
				struct rte_mbuf *s = rte_pktmbuf_alloc(lc->pool);
				if (s == NULL || rte_pktmbuf_chain(f, s) != 0) {
					rte_pktmbuf_free(s);
					goto fail_k;
				}
				continue;
			}
			p = (uint8_t *)rte_pktmbuf_append(f, (uint16_t)take);
			src = rte_pktmbuf_read(m, ETH_LEN + hl + off + done, take, p);
			if (src != p)
				memcpy(p, src, take);
			done += take;
		}
		fi->total_length = rte_cpu_to_be_16((uint16_t)(hl + n));
		fi->fragment_offset = rte_cpu_to_be_16((uint16_t)((off / 8) | (k + 1 < nf ? RTE_IPV4_HDR_MF_FLAG : 0)));
		fi->hdr_checksum = 0;
		fi->hdr_checksum = rte_ipv4_cksum(fi);
	}
	ip->total_length = rte_cpu_to_be_16((uint16_t)(hl + fp));
	ip->fragment_offset = rte_cpu_to_be_16(RTE_IPV4_HDR_MF_FLAG);
	ip->hdr_checksum = 0;
	ip->hdr_checksum = rte_ipv4_cksum(ip);
	m->pkt_len = ETH_LEN + hl + fp;
	trim_chain(m);
	for (k = 0; k < nf; k++) {
		struct rte_mbuf *f = k == 0 ? m : out[k - 1];
		fb.ip_len = (uint16_t)(rte_pktmbuf_pkt_len(f) - ETH_LEN);
		if (encap(lc->dp, &lc->stats, f, b->owner, &fb, b->sport) != 0)
			goto fail_all;
	}
	return (int)nf - 1;
fail_k:
	k++; /* out[k - 1] is this fragment */
fail:
	rte_pktmbuf_free_bulk(out, k - 1);
	return -1;
fail_all:
	/* Some fragments are encapsulated already: send none (m is freed by the caller). */
	rte_pktmbuf_free_bulk(out, nf - 1);
	return -1;
}

/* A packet that does not fit through the tunnel (b->act == A_TOOBIG, its tunnel family
 * in b->tun_af). An IPv6 packet, or an IPv4 one with DF, is answered with ICMP (in place:
 * A_REPLY, to the NIC) if the rate limit allows. An IPv4 packet without DF is fragmented
 * and tunnelled (A_NIC: m is the first fragment, the others in frags[0..*n_frags), at
 * most max_frags; frags NULL: not fragmented). Anything else is dropped (A_DROP, counted
 * in drop_too_big). Returns the action. */
static __rte_noinline uint8_t
too_big(struct homing_lcore *lc, struct rte_mbuf *m, const struct burst_meta *b,
	struct rte_mbuf **frags, uint32_t max_frags, uint32_t *n_frags)
{
	const struct homing_dp *dp = lc->dp;
	const uint8_t *ipb = rte_pktmbuf_mtod_offset(m, const uint8_t *, ETH_LEN);
	uint32_t ovh = b->tun_af == 4 ? HOMING_TUN4_OVERHEAD : HOMING_TUN6_OVERHEAD;
	uint32_t mtu = dp->mtu > ovh ? dp->mtu - ovh : 0;
	int r = -1;

	/* Never an ICMP error about an ICMP message (RFC 1122 3.2.2, RFC 4443 2.4(e)): the
	 * ICMP errors tunnelled to a session's owner are such messages. */
	if (b->inner == IPPROTO_IPIP) {
		const struct rte_ipv4_hdr *ip = (const struct rte_ipv4_hdr *)ipb;
		if (!(ip->fragment_offset & rte_cpu_to_be_16(RTE_IPV4_HDR_DF_FLAG))) {
			int nf = frags == NULL ? -1 : frag4(lc, m, b, mtu, frags, max_frags);
			if (nf >= 0) {
				*n_frags = (uint32_t)nf;
				lc->stats.frag_tunnelled += (uint64_t)nf + 1;
				return A_NIC;
			}
		} else if (ip->next_proto_id != IPPROTO_ICMP && icmp_allow(lc)) {
			r = icmp4_too_big(m, b->ip_len, (uint16_t)RTE_MAX(mtu, 68u));
		}
	} else if (((const struct rte_ipv6_hdr *)ipb)->proto != IPPROTO_ICMPV6 && icmp_allow(lc)) {
		r = icmp6_too_big(m, b->ip_len, RTE_MAX(mtu, 1280u));
	}
	if (r == 0) {
		lc->stats.icmp_too_big++;
		return A_REPLY;
	}
	lc->stats.drop_too_big++;
	return A_DROP;
}

/* The UDP payload of a looked-up UDP packet (not an ICMP error about a UDP flow, whose
 * key is the quoted flow's): within the UDP length, the IP length and the first segment.
 * NULL if there is none. */
static inline const uint8_t *
udp_payload(const struct rte_mbuf *m, const struct burst_meta *b, uint32_t af, uint32_t *plen)
{
	const uint32_t l3 = af == 4 ? sizeof(struct rte_ipv4_hdr) : sizeof(struct rte_ipv6_hdr);
	const uint32_t off = ETH_LEN + l3 + sizeof(struct rte_udp_hdr);
	const uint8_t *ip = rte_pktmbuf_mtod_offset(m, const uint8_t *, ETH_LEN);
	uint32_t len, ulen;

	if (ip[af == 4 ? 9 : 6] != IPPROTO_UDP)
		return NULL;
	ulen = ((uint32_t)ip[l3 + 4] << 8) | ip[l3 + 5];
	len = RTE_MIN(ETH_LEN + l3 + ulen, (uint32_t)ETH_LEN + b->ip_len);
	len = RTE_MIN(len, (uint32_t)rte_pktmbuf_data_len(m));
	if (ulen < sizeof(struct rte_udp_hdr) || len <= off)
		return NULL;
	*plen = len - off;
	return rte_pktmbuf_mtod_offset(m, const uint8_t *, off);
}

/* An unknown flow on a QUIC port with host-id CIDs (dp->udp_cid): if its destination
 * CID names this host or a live peer, it goes there (decide(), as a table hit would):
 * returns 1 with *r decide()'s result. Otherwise 0 (parked or to the kernel as usual). */
static inline int
cid_route(struct homing_lcore *lc, struct rte_mbuf *m, struct burst_meta *b, uint32_t af,
	  uint32_t hash, uint32_t *r)
{
	const struct homing_dp *dp = lc->dp;
	const uint8_t *p;
	uint32_t len;
	uint16_t h;

	p = udp_payload(m, b, af, &len);
	if (p == NULL)
		return 0;
	h = homing_quic_dcid_host(p, len);
	if (h == 0 || h >= HOMING_MAX_HOSTS)
		return 0;
	if (h != dp->self_id && !dp->tmpl[h].valid) {
		if (lc->udp != NULL)
			lc->udp->stats.cid_not_live++;
		return 0;
	}
	*r = decide(dp, &lc->stats, m, b, HOMING_VAL(h, 0), hash);
	if (lc->udp != NULL) {
		lc->udp->stats.cid_local += *r == DECIDED_LOCAL;
		lc->udp->stats.cid_redirect += *r == DECIDED_REDIRECT;
	}
	return 1;
}

/* An unknown flow on a QUIC port with a cid_len (dp->udp_scid): its DCID is looked up
 * as a learnt server CID (one table lookup); if some host learnt it, the packet goes
 * there as a table hit would: returns 1 with *r decide()'s result. Otherwise 0. */
static inline int
cid_lookup(struct homing_lcore *lc, struct rte_mbuf *m, struct burst_meta *b, uint32_t af,
	   uint32_t hash, uint16_t dport, uint32_t *r)
{
	const struct homing_dp *dp = lc->dp;
	const uint8_t *p, *cid, *cand;
	struct homing_key6 k;
	uint32_t len, h;
	uint64_t val;
	uint8_t want;

	p = udp_payload(m, b, af, &len);
	if (p == NULL)
		return 0;
	want = homing_quic_cid_len(dp, dport);
	cid = homing_quic_dcid(p, len, want);
	if (cid == NULL)
		return 0;
	homing_cid_key(&k, cid, want, dport);
	h = homing_table_hash6(&k);
	homing_table_stage6(dp->table, &h, sizeof(h), 1, &cand);
	if (!homing_table_finish6(dp->table, &k, h, cand, &val)) {
		if (lc->udp != NULL)
			lc->udp->stats.cid_miss++;
		return 0;
	}
	*r = decide(dp, &lc->stats, m, b, val, hash);
	if (lc->udp != NULL) {
		lc->udp->stats.cid_hit_local += *r == DECIDED_LOCAL;
		lc->udp->stats.cid_hit_redirect += *r == DECIDED_REDIRECT;
	}
	return 1;
}

/* A looked-up packet whose session is unknown: parked if it may have an owner elsewhere
 * (TCP, or UDP to a UDP session port) and its class's share of the park has room, else to
 * the kernel. Other UDP (a plain UDP service: DNS, ...) never waits. */
static __rte_noinline uint32_t
miss(struct homing_lcore *lc, struct rte_mbuf *m, struct burst_meta *b, const void *key,
     uint32_t af, uint32_t hash)
{
	const struct homing_dp *dp = lc->dp;
	uint8_t proto = af == 4 ? ((const struct homing_key4 *)key)->proto
				: ((const struct homing_key6 *)key)->proto;
	uint16_t dport = af == 4 ? ((const struct homing_key4 *)key)->dport
				 : ((const struct homing_key6 *)key)->dport;
	int udp = proto == IPPROTO_UDP;

	b->act = A_TAP;
	if (udp && !port_in(dp->udp_sess, dport)) {
		b->cls = CLS(cls_udp_plain);
		return DECIDED_OTHER;
	}
	if (udp && port_in(dp->udp_cid, dport)) {
		uint32_t r;
		if (cid_route(lc, m, b, af, hash, &r))
			return r;
	}
	if (udp && port_in(dp->udp_scid, dport)) {
		uint32_t r;
		if (cid_lookup(lc, m, b, af, hash, dport, &r))
			return r;
	}
	b->cls = CLS(cls_miss);
	switch (homing_park_hold(lc, m, b->ip_len, key, af, udp)) {
	case HOMING_PARK_HELD:
		b->act = A_PARKED;
		break;
	case HOMING_PARK_HOLD_DROP:
		b->act = A_DROP; /* full while warming: the kernel would reset it */
		break;
	case HOMING_PARK_NOT_HELD: /* to the kernel */
		break;
	}
	return DECIDED_OTHER;
}

/* Looks up and decides the VIP packets of a burst (lk[0..n), one address family).
 * Returns the packets redirected (low 16 bits) and local (high 16 bits). Out of line
 * (one call per burst), so that the parser's registers are free. */
static __rte_noinline uint32_t
lookup_resolve4(struct homing_lcore *lc, struct lookup4 *lk, uint32_t n)
{
	const struct homing_dp *dp = lc->dp;
	const uint8_t *cand[HOMING_BURST];
	uint32_t j, acc = 0;

	homing_table_stage4(dp->table, &lk[0].hash, sizeof(*lk), n, cand);
	for (j = 0; j < n; j++) {
		struct lookup4 *l = &lk[j];
		uint16_t owner;
		/* the owner only: one cache line, the bucket */
		if (unlikely(!homing_table_finish4_owner(dp->table, &l->key, l->hash, cand[j], &owner))) {
			acc += miss(lc, l->m, l->b, &l->key, 4, l->hash);
			continue;
		}
		acc += decide(dp, &lc->stats, l->m, l->b, HOMING_VAL(owner, 0), l->hash);
	}
	return acc;
}

static __rte_noinline uint32_t
lookup_resolve6(struct homing_lcore *lc, struct lookup6 *lk, uint32_t n)
{
	const struct homing_dp *dp = lc->dp;
	const uint8_t *cand[HOMING_BURST];
	uint32_t j, acc = 0;

	homing_table_stage6(dp->table, &lk[0].hash, sizeof(*lk), n, cand);
	for (j = 0; j < n; j++) {
		struct lookup6 *l = &lk[j];
		uint64_t val;
		if (unlikely(!homing_table_finish6(dp->table, &l->key, l->hash, cand[j], &val))) {
			acc += miss(lc, l->m, l->b, &l->key, 6, l->hash);
			continue;
		}
		acc += decide(dp, &lc->stats, l->m, l->b, val, l->hash);
	}
	return acc;
}

/* The park's release of a parked packet whose session showed up (park.c): decides it
 * as the pipeline decides a looked-up packet (to its owner, too big, or the kernel). */
enum homing_park_fate
homing_park_decide(struct homing_lcore *lc, const struct homing_park_slot *s, uint64_t val,
		   uint8_t *cls)
{
	struct burst_meta b = { .ip_len = s->ip_len,
				.inner = s->af == 4 ? IPPROTO_IPIP : IPPROTO_IPV6 };

	decide(lc->dp, &lc->stats, s->m, &b, val, key_hash(&s->k4, s->af));
	if (unlikely(b.act == A_TOOBIG))
		b.act = too_big(lc, s->m, &b, NULL, 0, NULL);
	*cls = b.cls;
	switch (b.act) {
	case A_NIC:
		return HOMING_PARK_NIC;
	case A_REPLY:
		return HOMING_PARK_REPLY;
	case A_DROP:
		return HOMING_PARK_DROP;
	default:
		return HOMING_PARK_TAP;
	}
}

/* Each packet's class (stats word) and fate for the capture (capture.h). */
static __rte_noinline void
export_fate(const struct burst_meta *bm, uint32_t n, uint8_t *cls, uint8_t *fate)
{
	for (uint32_t i = 0; i < n; i++) {
		uint8_t a = bm[i].act;
		cls[i] = bm[i].cls;
		fate[i] = a == A_NIC || a == A_REPLY ? HOMING_FATE_NIC
			: a == A_PARKED		     ? HOMING_FATE_PARKED
			: a == A_DROP		     ? HOMING_FATE_DROP
			: a == A_TOOBIG		     ? HOMING_FATE_TOOBIG
						     : HOMING_FATE_KERNEL;
		if (a == A_DECAP4 || a == A_DECAP6)
			cls[i] = CLS(cls_decap);
	}
}

/* Fast paths on (1, the default) or off (0: every packet through the full classifier;
 * tests compare both). */
int homing_fast_paths = 1;

/* The parse pass: classifies pkts[0..n) into bm[] and collects the VIP packets to look
 * up (with their key hashes) in l4[]/l6[]. fast is a constant at each call. */
static __rte_always_inline void
parse_burst(const struct homing_dp *dp, struct rte_mbuf **pkts, uint32_t n,
	    struct burst_meta *bm, struct lookup4 *l4, struct lookup6 *l6, uint32_t *n4p,
	    uint32_t *n6p, const int fast)
{
	uint32_t n4 = 0, n6 = 0, i;

	for (i = 0; i < n; i++) {
		struct rte_mbuf *m = pkts[i];
		if (i + HOMING_PREFETCH_OFFSET < n)
			rte_prefetch0(rte_pktmbuf_mtod(pkts[i + HOMING_PREFETCH_OFFSET], void *));
		if (!fast || !parse_fast4(dp, m, &bm[i], &l4[n4].key))
			parse(dp, m, &bm[i], &l4[n4].key, &l6[n6].key);
		if (likely(bm[i].act == A_LOOKUP4)) {
			l4[n4].hash = homing_table_hash4(&l4[n4].key);
			l4[n4].m = m;
			l4[n4].b = &bm[i];
			n4++;
		} else if (unlikely(bm[i].act == A_LOOKUP6)) {
			l6[n6].hash = homing_table_hash6(&l6[n6].key);
			l6[n6].m = m;
			l6[n6].b = &bm[i];
			n6++;
		}
	}
	*n4p = n4;
	*n6p = n6;
}

/* parse_burst without the fast paths, out of line (tests only). */
static __rte_noinline void
parse_burst_full(const struct homing_dp *dp, struct rte_mbuf **pkts, uint32_t n,
		 struct burst_meta *bm, struct lookup4 *l4, struct lookup6 *l6, uint32_t *n4p,
		 uint32_t *n6p)
{
	parse_burst(dp, pkts, n, bm, l4, l6, n4p, n6p, 0);
}

/* The NIC burst; with fate != NULL (a constant in each caller), also each packet's class
 * and fate for the capture (capture.h). */
static __rte_always_inline void
process_nic_burst(struct homing_lcore *lc, struct rte_mbuf **pkts, uint16_t n,
		  struct rte_mbuf **nic_out, uint16_t *n_nic, struct rte_mbuf **tap_out,
		  uint16_t *n_tap, uint8_t *cls, uint8_t *fate)
{
	const struct homing_dp *dp = lc->dp;
	struct homing_lcore_stats *st = &lc->stats;
	uint64_t *cnt = (uint64_t *)st;
	struct burst_meta bm[HOMING_BURST];
	struct lookup4 l4[HOMING_BURST];
	struct lookup6 l6[HOMING_BURST];
	uint32_t n4 = 0, n6 = 0, acc = 0, n_red, n_loc, n_reply = 0, i, j;
	uint16_t nn = 0, nt = 0;

	RTE_BUILD_BUG_ON(HOMING_BURST > HOMING_TABLE_LOOKUP_MAX);
	if (n > HOMING_BURST)
		n = HOMING_BURST;

	for (i = 0; i < n && i < HOMING_PREFETCH_OFFSET; i++)
		rte_prefetch0(rte_pktmbuf_mtod(pkts[i], void *));
	if (likely(homing_fast_paths))
		parse_burst(dp, pkts, n, bm, l4, l6, &n4, &n6, 1);
	else
		parse_burst_full(dp, pkts, n, bm, l4, l6, &n4, &n6);
	/* Redirection off (decided once per burst): VIP packets go to the kernel. */
	if (unlikely(dp->no_redirect) && (n4 | n6) != 0) {
		for (j = 0; j < n4; j++) {
			l4[j].b->act = A_TAP;
			l4[j].b->cls = CLS(cls_no_redirect);
		}
		for (j = 0; j < n6; j++) {
			l6[j].b->act = A_TAP;
			l6[j].b->cls = CLS(cls_no_redirect);
		}
		n4 = n6 = 0;
	}

	if (likely(n4 != 0))
		acc += lookup_resolve4(lc, l4, n4);
	if (unlikely(n6 != 0))
		acc += lookup_resolve6(lc, l6, n6);
	n_red = acc & 0xffff;
	n_loc = acc >> 16;

	/* Final pass in arrival order, so that each output keeps the input order. Bursts
	 * that all go one way (IPv4 lookups only) skip it. Clients' QUIC packets given to
	 * this host's kernel teach their DCIDs on cid_len ports (udplearn.h). */
	uint32_t nloop = n;
	const int learn_client = lc->udp != NULL && lc->udp->ring != NULL && dp->n_quic_len != 0;
	if (n_red == n) {
		memcpy(nic_out, pkts, n * sizeof(*pkts));
		nn = n;
		nloop = 0;
	} else if (n_loc == n) {
		memcpy(tap_out, pkts, n * sizeof(*pkts));
		st->cls_local += n;
		nt = n;
		nloop = 0;
		if (unlikely(learn_client))
			for (j = 0; j < n; j++)
				homing_udp_learn_client(lc, pkts[j]);
	}
	for (i = 0; i < nloop; i++) {
		struct rte_mbuf *m = pkts[i];
		uint8_t act = bm[i].act;
		if (likely(act == A_NIC)) {
			/* decide() classifies every A_NIC packet as cls_redirect */
			nic_out[nn++] = m;
			continue;
		}
		if (act == A_TAP) {
			cnt[bm[i].cls]++;
			if (unlikely(learn_client) && bm[i].cls == CLS(cls_local))
				homing_udp_learn_client(lc, m);
			tap_out[nt++] = m;
			continue;
		}
		if (act == A_DECAP4) {
			decap(m, sizeof(struct rte_ipv4_hdr), &bm[i]);
			st->cls_decap++;
			if (unlikely(learn_client))
				homing_udp_learn_client(lc, m);
			tap_out[nt++] = m;
			continue;
		}
		switch (act) { /* A_DECAP4 is taken above */
		case A_DECAP6:
			decap(m, sizeof(struct rte_ipv6_hdr), &bm[i]);
			st->cls_decap++;
			if (unlikely(learn_client))
				homing_udp_learn_client(lc, m);
			tap_out[nt++] = m;
			break;
		case A_DROP:
			cnt[bm[i].cls]++;
			if (bm[i].cls == CLS(cls_gue_bad))
				cnt[bm[i].why]++;
			rte_pktmbuf_free(m);
			break;
		case A_TOOBIG: {
			/* Fragments: room for them, and for one output of each packet left. */
			uint32_t nf = 0, room = HOMING_NIC_OUT_MAX - nn - (n - i);
			uint8_t a = too_big(lc, m, &bm[i], nic_out + nn + 1, room, &nf);
			st->cls_too_big++;
			if (a == A_DROP) {
				rte_pktmbuf_free(m);
				break;
			}
			nic_out[nn++] = m; /* not a redirect: see below */
			nn += nf;
			n_reply += 1 + nf;
			break;
		}
		default: /* A_PARKED: counted when released */
			break;
		}
	}
	st->cls_redirect += nn - n_reply;
	st->rx_nic += n;
	*n_nic = nn;
	*n_tap = nt;
	if (fate != NULL)
		export_fate(bm, n, cls, fate);
}

void
homing_process_nic_burst(struct homing_lcore *lc, struct rte_mbuf **pkts, uint16_t n,
			 struct rte_mbuf **nic_out, uint16_t *n_nic,
			 struct rte_mbuf **tap_out, uint16_t *n_tap)
{
	process_nic_burst(lc, pkts, n, nic_out, n_nic, tap_out, n_tap, NULL, NULL);
}

void
homing_process_nic_burst_fate(struct homing_lcore *lc, struct rte_mbuf **pkts, uint16_t n,
			      struct rte_mbuf **nic_out, uint16_t *n_nic,
			      struct rte_mbuf **tap_out, uint16_t *n_tap, uint8_t *cls, uint8_t *fate)
{
	process_nic_burst(lc, pkts, n, nic_out, n_nic, tap_out, n_tap, cls, fate);
}

/* Lowers the MSS option of a TCP header (tcp, hl bytes of header, in the frame) to max,
 * updating the checksum incrementally (RFC 1624, eqn. 3). Returns 1 if it was lowered. */
static int
clamp_tcp_mss(uint8_t *tcp, uint32_t hl, uint16_t max)
{
	uint32_t i = sizeof(struct rte_tcp_hdr);

	while (i < hl) {
		uint32_t kind = tcp[i], olen;
		if (kind == 0) /* end of options */
			return 0;
		if (kind == 1) { /* no-op */
			i++;
			continue;
		}
		if (i + 1 >= hl || (olen = tcp[i + 1]) < 2 || i + olen > hl)
			return 0;
		if (kind == 2 && olen == 4) {
			uint8_t *v = tcp + i + 2;
			uint32_t old = ((uint32_t)v[0] << 8) | v[1], sum, hc, mo, mn;
			if (old <= max)
				return 0;
			v[0] = (uint8_t)(max >> 8);
			v[1] = (uint8_t)max;
			/* The checksum sums 16-bit words at even offsets of the header: a value at an
			 * odd offset contributes its bytes swapped. */
			mo = old;
			mn = max;
			if ((i + 2) & 1) {
				mo = ((mo & 0xff) << 8) | (mo >> 8);
				mn = ((mn & 0xff) << 8) | (mn >> 8);
			}
			hc = ((uint32_t)tcp[16] << 8) | tcp[17];
			sum = (~hc & 0xffff) + (~mo & 0xffff) + mn;
			sum = (sum & 0xffff) + (sum >> 16);
			sum = (sum & 0xffff) + (sum >> 16);
			hc = ~sum & 0xffff;
			tcp[16] = (uint8_t)(hc >> 8);
			tcp[17] = (uint8_t)hc;
			return 1;
		}
		i += olen;
	}
	return 0;
}

/* The MSS clamp of one kernel packet: a TCP SYN-ACK from a VIP (IPv4 without fragment
 * offset, or IPv6 with TCP as the first next header). */
static inline void
clamp_mss(const struct homing_dp *dp, struct rte_mbuf *m, struct homing_lcore_stats *st)
{
	uint8_t *d = rte_pktmbuf_mtod(m, uint8_t *), *tcp;
	uint32_t len = rte_pktmbuf_data_len(m), l3, hl;
	uint16_t et, max;

	if (len < ETH_LEN + sizeof(struct rte_ipv4_hdr) + sizeof(struct rte_tcp_hdr))
		return;
	et = ((const struct rte_ether_hdr *)d)->ether_type;
	if (et == rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4)) {
		const struct rte_ipv4_hdr *ip = (const struct rte_ipv4_hdr *)(d + ETH_LEN);
		if (dp->mss4 == 0 || (ip->version_ihl >> 4) != 4 || ip->next_proto_id != IPPROTO_TCP ||
		    (ip->fragment_offset & rte_cpu_to_be_16(RTE_IPV4_HDR_OFFSET_MASK)) ||
		    !vip4_match(dp, ip->src_addr))
			return;
		l3 = (ip->version_ihl & 0xf) * 4u;
		max = dp->mss4;
	} else if (et == rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV6)) {
		const struct rte_ipv6_hdr *ip = (const struct rte_ipv6_hdr *)(d + ETH_LEN);
		if (dp->mss6 == 0 || len < ETH_LEN + sizeof(*ip) + sizeof(struct rte_tcp_hdr) ||
		    (d[ETH_LEN] >> 4) != 6 || ip->proto != IPPROTO_TCP || !vip6_match(dp, ip->src_addr))
			return;
		l3 = sizeof(*ip);
		max = dp->mss6;
	} else {
		return;
	}
	if (l3 < sizeof(struct rte_ipv4_hdr) || ETH_LEN + l3 + sizeof(struct rte_tcp_hdr) > len)
		return;
	tcp = d + ETH_LEN + l3;
	if ((tcp[13] & (RTE_TCP_SYN_FLAG | RTE_TCP_ACK_FLAG)) != (RTE_TCP_SYN_FLAG | RTE_TCP_ACK_FLAG))
		return;
	hl = (uint32_t)(tcp[12] >> 4) * 4;
	if (hl <= sizeof(struct rte_tcp_hdr) || ETH_LEN + l3 + hl > len)
		return;
	st->mss_clamped += (uint64_t)clamp_tcp_mss(tcp, hl, max);
}

void
homing_process_tap_burst(struct homing_lcore *lc, struct rte_mbuf **pkts, uint16_t n)
{
	const struct homing_dp *dp = lc->dp;

	if (lc->udp != NULL && lc->udp->ring != NULL)
		homing_udp_learn_burst(lc, pkts, n);
	if ((dp->mss4 | dp->mss6) == 0)
		return;
	for (uint16_t i = 0; i < n; i++)
		clamp_mss(dp, pkts[i], &lc->stats);
}

/* Offers a port's backlog to its queue once. */
static void
tx_flush(uint16_t port, uint16_t q, struct homing_tx_backlog *bl, uint64_t *sent)
{
	uint16_t s = rte_eth_tx_burst(port, q, bl->m, bl->n);
	*sent += s;
	bl->n -= s;
	if (s != 0 && bl->n != 0)
		memmove(bl->m, bl->m + s, bl->n * sizeof(*bl->m));
}

/* Sends pkts[0..n) on port's queue q after the port's backlog (struct homing_tx_backlog):
 * what the queue does not take joins the backlog; what overflows it is dropped. */
static void
tx_all(uint16_t port, uint16_t q, struct homing_tx_backlog *bl, struct rte_mbuf **pkts,
       uint16_t n, uint64_t *sent, uint64_t *dropped)
{
	uint16_t s = 0, k;

	if (unlikely(bl->n != 0))
		tx_flush(port, q, bl, sent);
	if (likely(bl->n == 0)) {
		s = rte_eth_tx_burst(port, q, pkts, n);
		*sent += s;
		if (likely(s == n))
			return;
	}
	k = RTE_MIN((uint16_t)(n - s), (uint16_t)(HOMING_TX_BACKLOG - bl->n));
	memcpy(bl->m + bl->n, pkts + s, k * sizeof(*pkts));
	bl->n += k;
	s += k;
	if (unlikely(s < n)) {
		*dropped += n - s;
		rte_pktmbuf_free_bulk(pkts + s, n - s);
	}
}

void
homing_tx_nic(struct homing_lcore *lc, struct rte_mbuf **pkts, uint16_t n)
{
	if (n == 0)
		tx_flush(lc->nic_port, lc->queue, &lc->nic_bl, &lc->stats.tx_nic);
	else
		tx_all(lc->nic_port, lc->queue, &lc->nic_bl, pkts, n, &lc->stats.tx_nic,
		       &lc->stats.drop_nic_tx);
}

/* Sends what the park released: NIC-bound and kernel-bound packets in their order. */
static void
park_emit(struct homing_lcore *lc, struct rte_mbuf **out, const uint8_t *to_nic, uint32_t n)
{
	struct homing_lcore_stats *st = &lc->stats;
	struct rte_mbuf *nic[HOMING_BURST], *tap[HOMING_BURST];
	uint16_t nn = 0, nt = 0;

	for (uint32_t i = 0; i < n; i++) {
		if (to_nic[i])
			nic[nn++] = out[i];
		else
			tap[nt++] = out[i];
		if (nn == HOMING_BURST || nt == HOMING_BURST || i + 1 == n) {
			if (nn != 0)
				tx_all(lc->nic_port, lc->queue, &lc->nic_bl, nic, nn, &st->tx_nic, &st->drop_nic_tx);
			if (nt != 0)
				tx_all(lc->tap_port, lc->queue, &lc->tap_bl, tap, nt, &st->tx_tap, &st->drop_tap_tx);
			nn = nt = 0;
		}
	}
}

int
homing_lcore_main(void *arg)
{
	struct homing_lcore *lc = arg;
	struct homing_dp *dp = lc->dp;
	struct homing_lcore_stats *st = &lc->stats;
	struct rte_rcu_qsbr *qsbr = dp->table->qsbr;
	struct rte_mbuf *pkts[HOMING_BURST], *nic_out[HOMING_NIC_OUT_MAX], *tap_out[HOMING_BURST];
	struct rte_mbuf *park_out[HOMING_PARK_MAX];
	uint8_t park_to_nic[HOMING_PARK_MAX];
	uint64_t start, t0;
	uint32_t idle = 0, sleep_us = 0;
	uint16_t n, nn, nt;

	if (rte_rcu_qsbr_thread_register(qsbr, lc->lcore_id) != 0)
		return -1;
	rte_rcu_qsbr_thread_online(qsbr, lc->lcore_id);
	start = rte_rdtsc();
	while (!__atomic_load_n(&dp->stop, __ATOMIC_RELAXED)) {
		uint32_t moved = 0;
		t0 = rte_rdtsc();
		if (lc->park_count != 0) {
			uint32_t r = homing_park_service(lc, t0, park_out, park_to_nic);
			if (r != 0) {
				park_emit(lc, park_out, park_to_nic, r);
				moved += r;
			}
		}
		n = rte_eth_rx_burst(lc->nic_port, lc->queue, pkts, HOMING_BURST);
		if (n != 0) {
			homing_nic_burst(lc, pkts, n, nic_out, &nn, tap_out, &nt);
			if (nn != 0)
				tx_all(lc->nic_port, lc->queue, &lc->nic_bl, nic_out, nn, &st->tx_nic,
				       &st->drop_nic_tx);
			if (nt != 0)
				tx_all(lc->tap_port, lc->queue, &lc->tap_bl, tap_out, nt, &st->tx_tap,
				       &st->drop_tap_tx);
			moved += n;
		}
		n = rte_eth_rx_burst(lc->tap_port, lc->queue, pkts, HOMING_BURST);
		if (n != 0) {
			st->from_kernel += n;
			homing_tap_burst(lc, pkts, n);
			tx_all(lc->nic_port, lc->queue, &lc->nic_bl, pkts, n, &st->tx_nic, &st->drop_nic_tx);
			moved += n;
		}
		if (unlikely((lc->nic_bl.n | lc->tap_bl.n) != 0)) {
			uint16_t before = lc->nic_bl.n + lc->tap_bl.n;
			if (lc->nic_bl.n != 0)
				tx_flush(lc->nic_port, lc->queue, &lc->nic_bl, &st->tx_nic);
			if (lc->tap_bl.n != 0)
				tx_flush(lc->tap_port, lc->queue, &lc->tap_bl, &st->tx_tap);
			moved += before - (lc->nic_bl.n + lc->tap_bl.n);
		}
		rte_rcu_qsbr_quiescent(qsbr, lc->lcore_id);
		if ((++st->loops & 1023) == 0)
			st->total_cycles = rte_rdtsc() - start;
		if (moved != 0) {
			st->busy_cycles += rte_rdtsc() - t0;
			idle = 0;
			sleep_us = 0;
			continue;
		}
		st->idle_loops++;
		if (lc->idle_sleep_max_us != 0 && lc->park_count == 0 &&
		    (lc->nic_bl.n | lc->tap_bl.n) == 0 && ++idle > HOMING_IDLE_SPINS) {
			sleep_us = sleep_us == 0 ? HOMING_IDLE_SLEEP_MIN_US : sleep_us * 2;
			if (sleep_us > lc->idle_sleep_max_us)
				sleep_us = lc->idle_sleep_max_us;
			rte_rcu_qsbr_thread_offline(qsbr, lc->lcore_id);
			rte_delay_us_sleep(sleep_us);
			rte_rcu_qsbr_thread_online(qsbr, lc->lcore_id);
			st->sleeps++;
		}
	}
	if (lc->park_count != 0)
		park_emit(lc, park_out, park_to_nic, homing_park_flush(lc, park_out, park_to_nic));
	/* At stop, a backlog gets a few more offers; what its queue still refuses is dropped. */
	for (int tries = 0; (lc->nic_bl.n | lc->tap_bl.n) != 0 && tries < 64; tries++) {
		if (lc->nic_bl.n != 0)
			tx_flush(lc->nic_port, lc->queue, &lc->nic_bl, &st->tx_nic);
		if (lc->tap_bl.n != 0)
			tx_flush(lc->tap_port, lc->queue, &lc->tap_bl, &st->tx_tap);
	}
	st->drop_nic_tx += lc->nic_bl.n;
	st->drop_tap_tx += lc->tap_bl.n;
	rte_pktmbuf_free_bulk(lc->nic_bl.m, lc->nic_bl.n);
	rte_pktmbuf_free_bulk(lc->tap_bl.m, lc->tap_bl.n);
	lc->nic_bl.n = lc->tap_bl.n = 0;
	st->total_cycles = rte_rdtsc() - start;
	rte_rcu_qsbr_thread_offline(qsbr, lc->lcore_id);
	rte_rcu_qsbr_thread_unregister(qsbr, lc->lcore_id);
	return 0;
}
