package daemon

import (
	"github.com/homing-dev/homing/dpdk"
	"github.com/homing-dev/homing/metrics"
)

// withLinkQueues adds a port's link state and per-queue xstats to its metrics (either
// left out when the PMD cannot read it).
func withLinkQueues(p dpdk.Port, m metrics.Port) metrics.Port {
	if l, err := p.Link(); err == nil {
		m.Link = &metrics.Link{Up: l.Up, SpeedMbps: l.SpeedMbps, FullDuplex: l.FullDuplex}
	}
	if xs, err := p.XStats(); err == nil {
		m.RxQueues, m.TxQueues = dpdk.QueuesOf(xs)
	}
	return m
}
