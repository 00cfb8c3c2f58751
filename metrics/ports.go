package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Port metrics beyond the basic counters: the link (state, speed, duplex) and the
// per-queue counters of the generic ethdev xstats (rx_qN_*, tx_qN_*: counters.QueueRx
// and QueueTx). The set is bounded: a port has at most as many queues as worker lcores
// (<= 63), and the PMD's own xstats are not exported.

// Link is a port's link state.
type Link struct {
	Up         bool
	SpeedMbps  uint32 // 0: unknown
	FullDuplex bool
}

var (
	dLinkUp     = newDesc("port", "link_up", "1 when the port's link is up, 0 when down.", gauge, "port")
	dLinkSpeed  = newDesc("port", "link_speed_bytes", "The port's link speed in bytes per second (node_exporter's convention; Mb/s x 125000), 0 when down or unknown.", gauge, "port")
	dLinkDuplex = newDesc("port", "link_full_duplex", "1 when the port's link is full duplex.", gauge, "port")
)

func init() {
	allDescs = append(allDescs, dLinkUp, dLinkSpeed, dLinkDuplex)
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
	for i := range p.RxQueues {
		QueueRxCounters.Collect(ch, &p.RxQueues[i], p.Name)
	}
	for i := range p.TxQueues {
		QueueTxCounters.Collect(ch, &p.TxQueues[i], p.Name)
	}
}
