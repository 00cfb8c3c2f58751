package dpdk

/*
#include <stdlib.h>
#include <rte_ethdev.h>

// hdpdk_xstats fills names (n * RTE_ETH_XSTATS_NAME_SIZE bytes) and values of up to n
// extended statistics of port; returns how many, the number needed when n is too
// small (> n), or a negative errno.
static int hdpdk_xstats(uint16_t port, char *names, uint64_t *values, unsigned n)
{
	struct rte_eth_xstat_name *xn;
	struct rte_eth_xstat *xv;
	int k, m;

	k = rte_eth_xstats_get_names(port, NULL, 0);
	if (k < 0 || (unsigned)k > n)
		return k;
	xn = calloc(k ? k : 1, sizeof(*xn));
	xv = calloc(k ? k : 1, sizeof(*xv));
	if (xn == NULL || xv == NULL) {
		free(xn);
		free(xv);
		return -ENOMEM;
	}
	m = rte_eth_xstats_get_names(port, xn, k);
	if (m == k)
		m = rte_eth_xstats_get(port, xv, k);
	if (m == k) {
		for (int i = 0; i < k; i++) {
			memcpy(names + (size_t)i * RTE_ETH_XSTATS_NAME_SIZE, xn[i].name, RTE_ETH_XSTATS_NAME_SIZE);
			names[(size_t)i * RTE_ETH_XSTATS_NAME_SIZE + RTE_ETH_XSTATS_NAME_SIZE - 1] = 0;
			values[i] = xv[i].value;
		}
	}
	free(xn);
	free(xv);
	return m;
}
*/
import "C"

import (
	"regexp"
	"strconv"
	"unsafe"

	"github.com/homing-dev/homing/internal/counters"
)

// Socket is the NUMA socket the port's device is attached to, or -1 (SOCKET_ID_ANY)
// when DPDK does not know it (virtual devices, single-socket machines): the socket the
// mempool and the tables should come from.
func (p Port) Socket() int {
	s := int(C.rte_eth_dev_socket_id(C.uint16_t(p.ID)))
	if s < 0 {
		return -1
	}
	return s
}

// XStat is one extended statistic of a port.
type XStat struct {
	Name  string
	Value uint64
}

// XStats reads the port's extended statistics (rte_eth_xstats_get_names and _get): the
// generic ones of every PMD (rx_good_packets, rx_q0_packets, ...) and the PMD's own.
func (p Port) XStats() ([]XStat, error) {
	n := 256
	for {
		names := C.malloc(C.size_t(n * C.RTE_ETH_XSTATS_NAME_SIZE))
		vals := C.malloc(C.size_t(n * 8))
		k := C.hdpdk_xstats(C.uint16_t(p.ID), (*C.char)(names), (*C.uint64_t)(vals), C.unsigned(n))
		if k < 0 {
			C.free(names)
			C.free(vals)
			return nil, errorf(k, "xstats of port %s", p.Name)
		}
		if int(k) > n {
			C.free(names)
			C.free(vals)
			n = int(k)
			continue
		}
		out := make([]XStat, int(k))
		vs := unsafe.Slice((*uint64)(vals), n)
		for i := range out {
			out[i] = XStat{Name: C.GoString((*C.char)(unsafe.Add(names, i*C.RTE_ETH_XSTATS_NAME_SIZE))), Value: vs[i]}
		}
		C.free(names)
		C.free(vals)
		return out, nil
	}
}

var queueXStat = regexp.MustCompile(`^(rx|tx)_q([0-9]+)_(packets|bytes|errors)$`)

// MaxQueueStats bounds the queues QueuesOf reports (xstats list the first
// RTE_ETHDEV_QUEUE_STAT_CNTRS queues of each direction).
const MaxQueueStats = 64

// QueuesOf picks the per-queue counters (rx_qN_packets, rx_qN_bytes, rx_qN_errors,
// tx_qN_packets, tx_qN_bytes) out of xstats, by queue and direction, for queues below
// MaxQueueStats, each list in the order of the xstats.
func QueuesOf(xs []XStat) (rx []counters.QueueRx, tx []counters.QueueTx) {
	rxAt, txAt := map[int]int{}, map[int]int{}
	for _, x := range xs {
		m := queueXStat.FindStringSubmatch(x.Name)
		if m == nil {
			continue
		}
		q, err := strconv.Atoi(m[2])
		if err != nil || q >= MaxQueueStats {
			continue
		}
		if m[1] == "rx" {
			i, ok := rxAt[q]
			if !ok {
				i, rxAt[q] = len(rx), len(rx)
				rx = append(rx, counters.QueueRx{Queue: uint(q)})
			}
			switch m[3] {
			case "packets":
				rx[i].Packets = x.Value
			case "bytes":
				rx[i].Bytes = x.Value
			case "errors":
				rx[i].Errors = x.Value
			}
			continue
		}
		i, ok := txAt[q]
		if !ok {
			i, txAt[q] = len(tx), len(tx)
			tx = append(tx, counters.QueueTx{Queue: uint(q)})
		}
		switch m[3] {
		case "packets":
			tx[i].Packets = x.Value
		case "bytes":
			tx[i].Bytes = x.Value
		}
	}
	return rx, tx
}
