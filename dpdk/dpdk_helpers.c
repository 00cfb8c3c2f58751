/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_launch.h>

#include "dpdk_helpers.h"

int hdpdk_errno(void) { return rte_errno; }
const char *hdpdk_strerror(int err) { return rte_strerror(err); }

int
hdpdk_port_setup(uint16_t port, const struct hdpdk_port_conf *c, struct rte_mempool *pool,
		 char *err, size_t errlen)
{
	struct rte_eth_dev_info info;
	struct rte_eth_conf conf;
	int socket, ret;
	uint16_t q, nb_rxd = c->nb_rxd, nb_txd = c->nb_txd;

	memset(&conf, 0, sizeof(conf));
	ret = rte_eth_dev_info_get(port, &info);
	if (ret != 0) {
		snprintf(err, errlen, "dev_info_get: %s", rte_strerror(-ret));
		return ret;
	}
	if (c->nb_rxq > info.max_rx_queues || c->nb_txq > info.max_tx_queues) {
		snprintf(err, errlen, "%u rx / %u tx queues requested, driver %s allows %u / %u",
			 c->nb_rxq, c->nb_txq, info.driver_name, info.max_rx_queues,
			 info.max_tx_queues);
		return -EINVAL;
	}
	if (c->rss && c->nb_rxq > 1) {
		uint64_t hf = (RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP) &
			      info.flow_type_rss_offloads;
		if (hf != 0) {
			conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
			conf.rx_adv_conf.rss_conf.rss_hf = hf;
		}
	}
	if (info.tx_offload_capa & RTE_ETH_TX_OFFLOAD_MBUF_FAST_FREE)
		conf.txmode.offloads |= RTE_ETH_TX_OFFLOAD_MBUF_FAST_FREE;
	/* Frames larger than the pool's buffers (jumbo MTU) arrive as chains (scattered rx)
	 * and leave as chains: the data plane classifies and encapsulates them. */
	if (c->mtu != 0 && (uint32_t)c->mtu + RTE_ETHER_HDR_LEN + RTE_ETHER_CRC_LEN + 8 >
				   (uint32_t)rte_pktmbuf_data_room_size(pool) - RTE_PKTMBUF_HEADROOM) {
		if (info.rx_offload_capa & RTE_ETH_RX_OFFLOAD_SCATTER)
			conf.rxmode.offloads |= RTE_ETH_RX_OFFLOAD_SCATTER;
		if (info.tx_offload_capa & RTE_ETH_TX_OFFLOAD_MULTI_SEGS)
			conf.txmode.offloads |= RTE_ETH_TX_OFFLOAD_MULTI_SEGS;
	}

	ret = rte_eth_dev_configure(port, c->nb_rxq, c->nb_txq, &conf);
	if (ret != 0) {
		snprintf(err, errlen, "configure: %s", rte_strerror(-ret));
		return ret;
	}
	ret = rte_eth_dev_adjust_nb_rx_tx_desc(port, &nb_rxd, &nb_txd);
	if (ret != 0) {
		snprintf(err, errlen, "adjust descriptors: %s", rte_strerror(-ret));
		return ret;
	}
	socket = rte_eth_dev_socket_id(port);
	if (socket < 0)
		socket = SOCKET_ID_ANY;
	for (q = 0; q < c->nb_rxq; q++) {
		ret = rte_eth_rx_queue_setup(port, q, nb_rxd, socket, NULL, pool);
		if (ret != 0) {
			snprintf(err, errlen, "rx queue %u: %s", q, rte_strerror(-ret));
			return ret;
		}
	}
	for (q = 0; q < c->nb_txq; q++) {
		struct rte_eth_txconf txc = info.default_txconf;
		txc.offloads = conf.txmode.offloads;
		ret = rte_eth_tx_queue_setup(port, q, nb_txd, socket, &txc);
		if (ret != 0) {
			snprintf(err, errlen, "tx queue %u: %s", q, rte_strerror(-ret));
			return ret;
		}
	}
	if (c->mtu != 0) {
		ret = rte_eth_dev_set_mtu(port, c->mtu);
		if (ret != 0 && ret != -ENOTSUP) {
			snprintf(err, errlen, "set mtu %u: %s", c->mtu, rte_strerror(-ret));
			return ret;
		}
	}
	ret = rte_eth_dev_start(port);
	if (ret != 0) {
		snprintf(err, errlen, "start: %s", rte_strerror(-ret));
		return ret;
	}
	if (c->promisc) {
		ret = rte_eth_promiscuous_enable(port);
		if (ret != 0 && ret != -ENOTSUP) {
			snprintf(err, errlen, "promiscuous: %s", rte_strerror(-ret));
			return ret;
		}
	}
	return 0;
}

int
hdpdk_port_stats(uint16_t port, struct hdpdk_port_stats *s)
{
	struct rte_eth_stats st;
	int ret = rte_eth_stats_get(port, &st);
	if (ret != 0)
		return ret;
	s->ipackets = st.ipackets;
	s->opackets = st.opackets;
	s->ibytes = st.ibytes;
	s->obytes = st.obytes;
	s->imissed = st.imissed;
	s->ierrors = st.ierrors;
	s->oerrors = st.oerrors;
	s->rx_nombuf = st.rx_nombuf;
	return 0;
}

int
hdpdk_remote_launch(void *fn, void *arg, unsigned int lcore)
{
	return rte_eal_remote_launch((lcore_function_t *)fn, arg, lcore);
}
