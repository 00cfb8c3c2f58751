/* SPDX-License-Identifier: Apache-2.0 */
#ifndef HOMING_FRAMES_H
#define HOMING_FRAMES_H
#include <stdint.h>
#include <rte_mempool.h>
#include "pipeline.h"

/* Runs n frames (concatenated in `in`) through the pipeline in bursts. Outputs are
 * concatenated in `out` with their lengths and port (0 NIC, 1 TAP). Returns 0 or -ENOMEM. */
int homing_run_frames(struct homing_lcore *lc, struct rte_mempool *pool, const uint8_t *in,
		      const uint32_t *in_lens, uint32_t n, uint8_t *out, uint32_t out_cap,
		      uint32_t *out_lens, uint8_t *out_port, uint32_t *n_out);
/* The same for frames from the kernel side (kernel != 0: homing_process_tap_burst, every
 * output to the NIC) or from the NIC (kernel == 0: homing_run_frames). */
int homing_run_frames_side(struct homing_lcore *lc, struct rte_mempool *pool, int kernel,
			   const uint8_t *in, const uint32_t *in_lens, uint32_t n, uint8_t *out,
			   uint32_t out_cap, uint32_t *out_lens, uint8_t *out_port, uint32_t max_out,
			   uint32_t *n_out);
/* Services (or, with flush, empties) the runner's park; outputs as homing_run_frames.
 * Not reentrant (test use only). */
int homing_service_frames(struct homing_lcore *lc, int flush, uint8_t *out, uint32_t out_cap,
			  uint32_t *out_lens, uint8_t *out_port, uint32_t *n_out);
/* Sends n 64-byte frames numbered first, first+1, ... (a big-endian uint32 at byte 60)
 * through homing_tx_nic on port (n == 0: offers the backlog). -1: out of mbufs. */
int homing_tx_numbered(struct homing_lcore *lc, struct rte_mempool *pool, uint16_t port,
		       uint32_t first, uint32_t n);
/* Receives up to max frames from port's queue 0 and returns their numbers (byte 60). */
uint32_t homing_rx_numbered(uint16_t port, uint32_t *nums, uint32_t max);
#endif
