/* SPDX-License-Identifier: Apache-2.0
 *
 * Control-plane side of the data plane: creation, VIPs and header templates.
 */
#include <errno.h>
#include <string.h>
#include <time.h>

#include <rte_byteorder.h>
#include <rte_ether.h>
#include <rte_hash_crc.h>
#include <rte_ip.h>
#include <rte_malloc.h>
#include <rte_pause.h>
#include <rte_rcu_qsbr.h>
#include <rte_udp.h>

#include "pipeline.h"

/* The smallest power of two >= 2 n, at least 8: the set is at most half full. */
static uint32_t
peers_slots(uint32_t n)
{
	uint32_t s = 8;
	while (s < 2 * n)
		s <<= 1;
	return s;
}

/* Builds a peer set (one allocation); NULL if out of memory. */
static struct homing_peers *
peers_build(const uint32_t *v4, uint32_t n4, const uint8_t *v6, uint32_t n6)
{
	uint32_t s4 = peers_slots(n4), s6 = peers_slots(n6), i, j;
	size_t sz = sizeof(struct homing_peers) + s4 * sizeof(uint32_t) + (size_t)s6 * 16;
	struct homing_peers *p = rte_zmalloc("homing_peers", sz, RTE_CACHE_LINE_SIZE);
	static const uint8_t zero[16];

	if (p == NULL)
		return NULL;
	p->mask4 = s4 - 1;
	p->mask6 = s6 - 1;
	p->a4 = (uint32_t *)(p + 1);
	p->a6 = (uint8_t(*)[16])(p->a4 + s4);
	for (i = 0; i < n4; i++) {
		if (v4[i] == 0)
			continue;
		for (j = rte_hash_crc_4byte(v4[i], 0) & p->mask4; p->a4[j] != 0 && p->a4[j] != v4[i];
		     j = (j + 1) & p->mask4)
			;
		if (p->a4[j] == 0)
			p->n4++;
		p->a4[j] = v4[i];
	}
	for (i = 0; i < n6; i++) {
		const uint8_t *a = v6 + 16 * i;
		if (memcmp(a, zero, 16) == 0)
			continue;
		for (j = rte_hash_crc(a, 16, 0) & p->mask6;
		     memcmp(p->a6[j], zero, 16) != 0 && memcmp(p->a6[j], a, 16) != 0; j = (j + 1) & p->mask6)
			;
		if (memcmp(p->a6[j], zero, 16) == 0)
			p->n6++;
		memcpy(p->a6[j], a, 16);
	}
	return p;
}

static uint64_t
mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

int
homing_peers_set(struct homing_dp *dp, const uint32_t *v4, uint32_t n4, const uint8_t *v6,
		 uint32_t n6)
{
	struct homing_peers *p = peers_build(v4, n4, v6, n6), *old;
	struct timespec nap = {.tv_sec = 0, .tv_nsec = 20000};
	uint64_t token, start;

	if (p == NULL)
		return -ENOMEM;
	old = __atomic_exchange_n(&dp->peers, p, __ATOMIC_ACQ_REL);
	/* Every lcore that could still read old reports a quiescent state once per loop
	 * (or is offline while it sleeps). */
	token = rte_rcu_qsbr_start(dp->table->qsbr);
	start = mono_us();
	while (!rte_rcu_qsbr_check(dp->table->qsbr, token, false)) {
		if (mono_us() - start > 1000000) {
			__atomic_fetch_add(&dp->peers_leaked, 1, __ATOMIC_RELAXED);
			return 0;
		}
		if (mono_us() - start < 100)
			rte_pause();
		else
			nanosleep(&nap, NULL);
	}
	rte_free(old);
	return 0;
}

struct homing_dp *
homing_dp_create(struct homing_table *t, uint16_t self_id)
{
	struct homing_dp *dp = rte_zmalloc("homing_dp", sizeof(*dp), RTE_CACHE_LINE_SIZE);
	if (dp == NULL)
		return NULL;
	dp->tmpl = rte_zmalloc("homing_tmpl", sizeof(struct homing_tmpl) * HOMING_MAX_HOSTS,
			       RTE_CACHE_LINE_SIZE);
	if (dp->tmpl == NULL) {
		rte_free(dp);
		return NULL;
	}
	for (unsigned i = 0; i < HOMING_MAX_HOSTS; i++)
		rte_seqlock_init(&dp->tmpl[i].lock);
	dp->peers = peers_build(NULL, 0, NULL, 0);
	if (dp->peers == NULL) {
		rte_free(dp->tmpl);
		rte_free(dp);
		return NULL;
	}
	dp->table = t;
	dp->self_id = self_id;
	dp->max_inner4 = dp->max_inner6 = UINT32_MAX;
	return dp;
}

void
homing_dp_free(struct homing_dp *dp)
{
	if (dp == NULL)
		return;
	rte_free(dp->peers);
	rte_free(dp->tmpl);
	rte_free(dp);
}

int
homing_dp_add_vip4(struct homing_dp *dp, uint32_t net, uint32_t mask)
{
	if (dp->n_vip4 >= HOMING_MAX_VIPS)
		return -ENOSPC;
	dp->vip4[dp->n_vip4].net = net & mask;
	dp->vip4[dp->n_vip4].mask = mask;
	dp->n_vip4++;
	return 0;
}

int
homing_dp_add_vip6(struct homing_dp *dp, const uint8_t *net, const uint8_t *mask)
{
	struct homing_vip6 *v;
	if (dp->n_vip6 >= HOMING_MAX_VIPS)
		return -ENOSPC;
	v = &dp->vip6[dp->n_vip6];
	for (int i = 0; i < 16; i++) {
		v->mask[i] = mask[i];
		v->net[i] = net[i] & mask[i];
	}
	dp->n_vip6++;
	return 0;
}

void
homing_dp_add_udp_port(struct homing_dp *dp, uint16_t port, int quic)
{
	dp->udp_sess[port >> 3] |= (uint8_t)(1u << (port & 7));
	if (quic)
		dp->udp_quic[port >> 3] |= (uint8_t)(1u << (port & 7));
}

int
homing_tmpl_set(struct homing_dp *dp, uint16_t id, const uint8_t *dst_mac,
		const uint8_t *src_mac, int af, const uint8_t *src_ip, const uint8_t *dst_ip,
		uint16_t dport)
{
	uint8_t hdr[HOMING_TMPL_MAX];
	struct rte_ether_hdr *eth = (struct rte_ether_hdr *)hdr;
	struct rte_udp_hdr *udp;
	struct homing_tmpl *t;
	uint32_t csb = 0;
	uint8_t len;

	if (id == 0 || id >= HOMING_MAX_HOSTS || (af != 4 && af != 6))
		return -EINVAL;
	memset(hdr, 0, sizeof(hdr));
	memcpy(&eth->dst_addr, dst_mac, RTE_ETHER_ADDR_LEN);
	memcpy(&eth->src_addr, src_mac, RTE_ETHER_ADDR_LEN);
	if (af == 4) {
		struct rte_ipv4_hdr *ip = (struct rte_ipv4_hdr *)(eth + 1);
		eth->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4);
		ip->version_ihl = RTE_IPV4_VHL_DEF;
		ip->fragment_offset = rte_cpu_to_be_16(RTE_IPV4_HDR_DF_FLAG);
		ip->time_to_live = 64;
		ip->next_proto_id = IPPROTO_UDP;
		memcpy(&ip->src_addr, src_ip, 4);
		memcpy(&ip->dst_addr, dst_ip, 4);
		csb = rte_raw_cksum(ip, sizeof(*ip)); /* total_length and checksum are 0 */
		udp = (struct rte_udp_hdr *)(ip + 1);
		len = RTE_ETHER_HDR_LEN + sizeof(*ip) + sizeof(*udp) + HOMING_GUE_LEN;
	} else {
		struct rte_ipv6_hdr *ip = (struct rte_ipv6_hdr *)(eth + 1);
		eth->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV6);
		ip->vtc_flow = rte_cpu_to_be_32(6u << 28);
		ip->proto = IPPROTO_UDP;
		ip->hop_limits = 64;
		memcpy(ip->src_addr, src_ip, 16);
		memcpy(ip->dst_addr, dst_ip, 16);
		udp = (struct rte_udp_hdr *)(ip + 1);
		len = RTE_ETHER_HDR_LEN + sizeof(*ip) + sizeof(*udp) + HOMING_GUE_LEN;
	}
	udp->dst_port = rte_cpu_to_be_16(dport);
	/* GUE variant 0: version 0, C 0, Hlen 0; protocol set per packet; flags 0. */

	t = &dp->tmpl[id];
	rte_seqlock_write_lock(&t->lock);
	memcpy(t->hdr, hdr, sizeof(hdr));
	t->len = len;
	t->af = (uint8_t)af;
	t->csum_base = csb;
	t->valid = 1;
	rte_seqlock_write_unlock(&t->lock);
	return 0;
}

void
homing_tmpl_clear(struct homing_dp *dp, uint16_t id)
{
	struct homing_tmpl *t;
	if (id == 0 || id >= HOMING_MAX_HOSTS)
		return;
	t = &dp->tmpl[id];
	rte_seqlock_write_lock(&t->lock);
	t->valid = 0;
	rte_seqlock_write_unlock(&t->lock);
}

void
homing_dp_stop(struct homing_dp *dp)
{
	__atomic_store_n(&dp->stop, 1, __ATOMIC_RELEASE);
}
