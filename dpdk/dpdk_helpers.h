/* SPDX-License-Identifier: Apache-2.0
 * C helpers of the dpdk binding: whatever is a macro, an inline or a large struct in DPDK
 * is wrapped here so that Go calls one plain function. */
#ifndef HOMING_DPDK_HELPERS_H
#define HOMING_DPDK_HELPERS_H

#include <stdint.h>
#include <rte_mempool.h>

int hdpdk_errno(void);
const char *hdpdk_strerror(int err);

struct hdpdk_port_conf {
	uint16_t nb_rxq;
	uint16_t nb_txq;
	uint16_t nb_rxd;
	uint16_t nb_txd;
	uint16_t mtu;     /* 0: leave the PMD's default */
	uint8_t promisc;
	uint8_t rss;      /* spread rx over nb_rxq queues with RSS (when nb_rxq > 1) */
};

/* Configures queues, sets MTU and promiscuous mode, and starts the port.
 * On failure returns a negative errno and writes a message into err. */
int hdpdk_port_setup(uint16_t port, const struct hdpdk_port_conf *c,
		     struct rte_mempool *pool, char *err, size_t errlen);

struct hdpdk_port_stats {
	uint64_t ipackets, opackets, ibytes, obytes, imissed, ierrors, oerrors, rx_nombuf;
};
int hdpdk_port_stats(uint16_t port, struct hdpdk_port_stats *s);

/* Launch helper: lcore_function_t cannot be named from Go. */
int hdpdk_remote_launch(void *fn, void *arg, unsigned int lcore);

#endif
