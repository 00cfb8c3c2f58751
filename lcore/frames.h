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
#endif
