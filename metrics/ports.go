package metrics

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// Port metrics beyond the basic counters: the link (state, speed, duplex) and the
// per-queue counters of the generic ethdev xstats (rx_qN_*, tx_qN_*). The set is
// bounded: a port has at most as many queues as worker lcores (<= 63), and the PMD's
// own xstats are not exported.

// Link is a port's link state.
type Link struct {
	Up         bool
	SpeedMbps  uint32 // 0: unknown
	FullDuplex bool
}

// Queue is one queue's counters of a port.
type Queue struct {
	Queue                        int
	RxPackets, RxBytes, RxErrors uint64
	TxPackets, TxBytes           uint64
	HasRx, HasTx                 bool
}

var (
	dLinkUp     = newDesc("port", "link_up", "1 when the port's link is up, 0 when down.", gauge, "port")
	dLinkSpeed  = newDesc("port", "link_speed_bytes", "The port's link speed in bytes per second (node_exporter's convention; Mb/s x 125000), 0 when down or unknown.", gauge, "port")
	dLinkDuplex = newDesc("port", "link_full_duplex", "1 when the port's link is full duplex.", gauge, "port")
	dQRxP       = newDesc("port", "queue_received_packets_total", "Packets received on one rx queue of the port (ethdev xstats rx_qN_packets).", cnt, "port", "queue")
	dQRxB       = newDesc("port", "queue_received_bytes_total", "Bytes received on one rx queue of the port (rx_qN_bytes).", cnt, "port", "queue")
	dQRxE       = newDesc("port", "queue_receive_errors_total", "Erroneous packets on one rx queue of the port (rx_qN_errors).", cnt, "port", "queue")
	dQTxP       = newDesc("port", "queue_sent_packets_total", "Packets sent on one tx queue of the port (tx_qN_packets).", cnt, "port", "queue")
	dQTxB       = newDesc("port", "queue_sent_bytes_total", "Bytes sent on one tx queue of the port (tx_qN_bytes).", cnt, "port", "queue")
)

func init() {
	allDescs = append(allDescs, dLinkUp, dLinkSpeed, dLinkDuplex, dQRxP, dQRxB, dQRxE, dQTxP, dQTxB)
}

func b01(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// collectPortExtra emits the link and queue metrics of p.
func collectPortExtra(ch chan<- prometheus.Metric, p Port) {
	m := func(d desc, v float64, l ...string) { ch <- prometheus.MustNewConstMetric(d.d, d.t, v, l...) }
	if l := p.Link; l != nil {
		m(dLinkUp, b01(l.Up), p.Name)
		speed := 0.0
		if l.Up && l.SpeedMbps != 0 && l.SpeedMbps != ^uint32(0) {
			speed = float64(l.SpeedMbps) * 125000
		}
		m(dLinkSpeed, speed, p.Name)
		m(dLinkDuplex, b01(l.Up && l.FullDuplex), p.Name)
	}
	for _, q := range p.Queues {
		id := strconv.Itoa(q.Queue)
		if q.HasRx {
			m(dQRxP, float64(q.RxPackets), p.Name, id)
			m(dQRxB, float64(q.RxBytes), p.Name, id)
			m(dQRxE, float64(q.RxErrors), p.Name, id)
		}
		if q.HasTx {
			m(dQTxP, float64(q.TxPackets), p.Name, id)
			m(dQTxB, float64(q.TxBytes), p.Name, id)
		}
	}
}
