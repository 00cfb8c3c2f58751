package metrics

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// Gossip metrics that a counter of gossip.Stats cannot carry: a gauge per peer, the
// incarnation as a label (a float64 holds 53 bits, an incarnation 64); and whether the
// daemon is warming up.
var (
	dGHbAge   = newDesc("gossip", "peer_heartbeat_age_seconds", "Seconds since each peer's last heartbeat (its first datagram before one), for every peer heard from, up or down.", gauge, "peer")
	dGIncInfo = newDesc("gossip", "incarnation_info", "Always 1; the label is this run's incarnation number exactly (homing_gossip_incarnation is a float64 and rounds it).", gauge, "incarnation")
	dGWarming = newDesc("gossip", "warming", "1 while the daemon warms up after its start (until a repair from every peer up, at most 5 s), else 0.", gauge)
)

func init() { allDescs = append(allDescs, dGHbAge, dGIncInfo, dGWarming) }

// collectGossipPeers emits the metrics above for g.
func collectGossipPeers(ch chan<- prometheus.Metric, g *Gossip) {
	for id, age := range g.HeartbeatAge {
		ch <- prometheus.MustNewConstMetric(dGHbAge.d, dGHbAge.t, age, strconv.Itoa(int(id)))
	}
	ch <- prometheus.MustNewConstMetric(dGIncInfo.d, dGIncInfo.t, 1, strconv.FormatUint(g.Incarnation, 10))
	warming := 0.0
	if g.Warming {
		warming = 1
	}
	ch <- prometheus.MustNewConstMetric(dGWarming.d, dGWarming.t, warming)
}
