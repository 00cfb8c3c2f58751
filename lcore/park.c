/* The park (park.h): packets of unknown VIP sessions held until their owner is known.
 * Each lcore owns its park; nothing here is shared between lcores. */

#include <rte_branch_prediction.h>
#include <rte_cycles.h>
#include <rte_mbuf.h>

#include "park.h"

enum homing_park_hold
homing_park_hold(struct homing_lcore *lc, struct rte_mbuf *m, uint16_t ip_len, const void *key,
		 uint32_t af, int udp)
{
	struct homing_park_slot *s;

	if (lc->park_tsc == 0)
		return HOMING_PARK_NOT_HELD;
	if (unlikely(lc->park_count >= lc->park_max ||
		     (udp ? lc->park_udp >= lc->park_udp_max
			  : lc->park_count - lc->park_udp >= lc->park_max - lc->park_udp_max))) {
		lc->stats.park_full++;
		lc->stats.park_udp_full += udp;
		if (unlikely(lc->dp->warming)) {
			lc->stats.park_warm_drop++;
			return HOMING_PARK_HOLD_DROP;
		}
		return HOMING_PARK_NOT_HELD;
	}
	s = &lc->park[lc->park_count++];
	s->m = m;
	s->deadline = rte_rdtsc() + lc->park_tsc;
	s->ip_len = ip_len;
	s->af = (uint8_t)af;
	s->udp = (uint8_t)udp;
	if (af == 4)
		s->k4 = *(const struct homing_key4 *)key;
	else
		s->k6 = *(const struct homing_key6 *)key;
	lc->park_udp += udp;
	lc->stats.park_in++;
	lc->stats.park_udp_in += udp;
	return HOMING_PARK_HELD;
}

uint32_t
homing_park_service(struct homing_lcore *lc, uint64_t now, struct rte_mbuf **out,
		    uint8_t *to_nic)
{
	const struct homing_dp *dp = lc->dp;
	struct homing_lcore_stats *st = &lc->stats;
	uint64_t *cnt = (uint64_t *)st;
	uint32_t count = lc->park_count, keep = 0, keep_udp = 0, nout = 0, i, j;
	uint64_t gen;
	int relook;

	if (count == 0)
		return 0;
	gen = __atomic_load_n(&dp->table->gen, __ATOMIC_ACQUIRE);
	relook = gen != lc->park_gen;
	if (!relook && (lc->park[0].deadline > now || dp->warming))
		return 0;
	lc->park_gen = gen;
	for (i = 0; i < count; i += HOMING_BURST) {
		uint32_t n = RTE_MIN((uint32_t)HOMING_BURST, count - i);
		const void *kp4[HOMING_BURST], *kp6[HOMING_BURST];
		uint8_t i4[HOMING_BURST], i6[HOMING_BURST];
		uint64_t v4[HOMING_BURST], v6[HOMING_BURST], h4 = 0, h6 = 0;
		uint64_t hit = 0, val[HOMING_BURST];
		uint32_t n4 = 0, n6 = 0;

		if (relook) {
			for (j = 0; j < n; j++) {
				struct homing_park_slot *s = &lc->park[i + j];
				if (s->af == 4) {
					i4[n4] = (uint8_t)j;
					kp4[n4++] = &s->k4;
				} else {
					i6[n6] = (uint8_t)j;
					kp6[n6++] = &s->k6;
				}
			}
			if (n4 != 0)
				homing_table_lookup4_bulk(dp->table, kp4, n4, &h4, v4);
			if (n6 != 0)
				homing_table_lookup6_bulk(dp->table, kp6, n6, &h6, v6);
			for (j = 0; j < n4; j++)
				if ((h4 >> j) & 1) {
					hit |= 1ULL << i4[j];
					val[i4[j]] = v4[j];
				}
			for (j = 0; j < n6; j++)
				if ((h6 >> j) & 1) {
					hit |= 1ULL << i6[j];
					val[i6[j]] = v6[j];
				}
		}
		for (j = 0; j < n; j++) {
			struct homing_park_slot *s = &lc->park[i + j];
			enum homing_park_fate f;
			if ((hit >> j) & 1) {
				uint8_t cls;
				f = homing_park_decide(lc, s, val[j], &cls);
				cnt[cls]++;
				if (f == HOMING_PARK_NIC)
					st->park_redirect++;
				else
					st->park_local++;
				if (f == HOMING_PARK_DROP) {
					rte_pktmbuf_free(s->m);
					continue;
				}
			} else if (s->deadline <= now && !dp->warming) {
				f = HOMING_PARK_TAP;
				st->cls_miss++;
				st->park_expired++;
			} else {
				if (keep != i + j)
					lc->park[keep] = *s;
				keep++;
				keep_udp += s->udp;
				continue;
			}
			to_nic[nout] = f == HOMING_PARK_NIC || f == HOMING_PARK_REPLY;
			out[nout++] = s->m;
		}
	}
	lc->park_count = keep;
	lc->park_udp = keep_udp;
	return nout;
}

uint32_t
homing_park_flush(struct homing_lcore *lc, struct rte_mbuf **out, uint8_t *to_nic)
{
	uint32_t n = lc->park_count;
	for (uint32_t i = 0; i < n; i++) {
		out[i] = lc->park[i].m;
		to_nic[i] = 0;
	}
	lc->stats.cls_miss += n;
	lc->stats.park_expired += n;
	lc->park_count = 0;
	lc->park_udp = 0;
	return n;
}

