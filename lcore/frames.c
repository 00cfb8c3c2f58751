//go:build harness

/* SPDX-License-Identifier: Apache-2.0
 *
 * Runs raw frames through the poll loop's bursts (homing_nic_burst, homing_tap_burst: the
 * pipeline, and the capture when one is armed) without any port: the fuzzer's and the
 * unit tests' entry point (one call per batch of frames, never per packet on a data path).
 */
#include <errno.h>
#include <string.h>

#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>

#include "pipeline.h"
#include "frames.h"
#include "capture.h"

/* Copies a packet (one segment or a chain) into the output buffers and frees it. */
static void
emit_copy(struct rte_mbuf *m, uint8_t port, uint8_t *out, uint32_t out_cap, uint32_t *ooff,
	  uint32_t *out_lens, uint8_t *out_port, uint32_t max_out, uint32_t *no)
{
	uint32_t len = rte_pktmbuf_pkt_len(m);
	if (*ooff + len <= out_cap && *no < max_out) {
		const void *p = rte_pktmbuf_read(m, 0, len, out + *ooff);
		if (p != out + *ooff)
			memcpy(out + *ooff, p, len);
		*ooff += len;
		out_lens[*no] = len;
		out_port[*no] = port;
		(*no)++;
	}
	rte_pktmbuf_free(m);
}

/* A frame in an mbuf of pool, or in a chain of them if it does not fit one (as a NIC
 * with scattered rx delivers a frame larger than its buffers). NULL: out of mbufs. */
static struct rte_mbuf *
frame_mbuf(struct rte_mempool *pool, const uint8_t *f, uint32_t len)
{
	struct rte_mbuf *head = NULL;

	do {
		struct rte_mbuf *m = rte_pktmbuf_alloc(pool);
		uint16_t n;
		if (m == NULL)
			goto fail;
		n = (uint16_t)RTE_MIN(len, (uint32_t)rte_pktmbuf_tailroom(m));
		memcpy(rte_pktmbuf_append(m, n), f, n);
		f += n;
		len -= n;
		if (head == NULL)
			head = m;
		else if (rte_pktmbuf_chain(head, m) != 0) {
			rte_pktmbuf_free(m);
			goto fail;
		}
	} while (len > 0);
	return head;
fail:
	rte_pktmbuf_free(head);
	return NULL;
}

int
homing_run_frames(struct homing_lcore *lc, struct rte_mempool *pool, const uint8_t *in,
		  const uint32_t *in_lens, uint32_t n, uint8_t *out, uint32_t out_cap,
		  uint32_t *out_lens, uint8_t *out_port, uint32_t *n_out)
{
	return homing_run_frames_side(lc, pool, 0, in, in_lens, n, out, out_cap, out_lens,
				      out_port, n, n_out);
}

int
homing_run_frames_side(struct homing_lcore *lc, struct rte_mempool *pool, int kernel,
		       const uint8_t *in, const uint32_t *in_lens, uint32_t n, uint8_t *out,
		       uint32_t out_cap, uint32_t *out_lens, uint8_t *out_port, uint32_t max_out,
		       uint32_t *n_out)
{
	struct rte_mbuf *pkts[HOMING_BURST], *nic[HOMING_NIC_OUT_MAX], *tap[HOMING_BURST];
	uint32_t off = 0, ooff = 0, no = 0, done = 0;

	while (done < n) {
		uint16_t b = 0, nn = 0, nt = 0;
		while (b < HOMING_BURST && done + b < n) {
			uint32_t len = in_lens[done + b];
			struct rte_mbuf *m = frame_mbuf(pool, in + off, len);
			if (m == NULL) {
				rte_pktmbuf_free_bulk(pkts, b);
				return -ENOMEM;
			}
			off += len;
			pkts[b++] = m;
		}
		if (kernel) {
			/* The poll loop's kernel side: every packet to the NIC. */
			homing_tap_burst(lc, pkts, b);
			memcpy(nic, pkts, b * sizeof(*pkts));
			nn = b;
		} else {
			homing_nic_burst(lc, pkts, b, nic, &nn, tap, &nt);
		}
		/* Outputs of one burst: NIC ones first, then TAP ones (order kept per port). */
		for (uint16_t k = 0; k < nn + nt; k++)
			emit_copy(k < nn ? nic[k] : tap[k - nn], k < nn ? 0 : 1, out, out_cap, &ooff,
				  out_lens, out_port, max_out, &no);
		done += b;
	}
	*n_out = no;
	return 0;
}

int
homing_service_frames(struct homing_lcore *lc, int flush, uint8_t *out, uint32_t out_cap,
		      uint32_t *out_lens, uint8_t *out_port, uint32_t *n_out)
{
	static struct rte_mbuf *rel[HOMING_PARK_MAX];
	static uint8_t to_nic[HOMING_PARK_MAX];
	uint32_t n, ooff = 0, no = 0;

	n = flush ? homing_park_flush(lc, rel, to_nic)
		  : homing_park_service(lc, rte_rdtsc(), rel, to_nic);
	for (uint32_t i = 0; i < n; i++)
		emit_copy(rel[i], to_nic[i] ? 0 : 1, out, out_cap, &ooff, out_lens, out_port,
			  HOMING_PARK_MAX, &no);
	*n_out = no;
	return 0;
}

int
homing_tx_numbered(struct homing_lcore *lc, struct rte_mempool *pool, uint16_t port,
		   uint32_t first, uint32_t n)
{
	lc->nic_port = port;
	if (n == 0) {
		homing_tx_nic(lc, NULL, 0);
		return 0;
	}
	while (n != 0) {
		struct rte_mbuf *m[HOMING_BURST];
		uint16_t k = (uint16_t)RTE_MIN(n, (uint32_t)HOMING_BURST);
		if (rte_pktmbuf_alloc_bulk(pool, m, k) != 0)
			return -1;
		for (uint16_t i = 0; i < k; i++) {
			uint8_t *d = (uint8_t *)rte_pktmbuf_append(m[i], 64);
			uint32_t be = rte_cpu_to_be_32(first + i);
			memset(d, 0, 64);
			memcpy(d + 60, &be, 4);
		}
		homing_tx_nic(lc, m, k);
		first += k;
		n -= k;
	}
	return 0;
}

uint32_t
homing_rx_numbered(uint16_t port, uint32_t *nums, uint32_t max)
{
	uint32_t got = 0;
	while (got < max) {
		struct rte_mbuf *m[HOMING_BURST];
		uint16_t k = rte_eth_rx_burst(port, 0, m, (uint16_t)RTE_MIN(max - got, (uint32_t)HOMING_BURST));
		if (k == 0)
			break;
		for (uint16_t i = 0; i < k; i++) {
			uint32_t be;
			memcpy(&be, rte_pktmbuf_mtod_offset(m[i], const uint8_t *, 60), 4);
			nums[got++] = rte_be_to_cpu_32(be);
		}
		rte_pktmbuf_free_bulk(m, k);
	}
	return got;
}
