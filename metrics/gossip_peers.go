package metrics

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// Gossip metrics that a plain counter or gauge of Gossip cannot carry: a gauge per peer,
// the incarnation as a label (a float64 holds 53 bits, an incarnation 64), the repairs
// started, which are not an outcome (a sum over repairs_total{outcome} would count
// every finished repair twice); and whether the daemon is warming up.
var (
	dGHbAge      = newDesc("gossip", "peer_heartbeat_age_seconds", "Seconds since each peer's last heartbeat (its first datagram before one), for every peer heard from, up or down.", gauge, "peer")
	dGIncInfo    = newDesc("gossip", "incarnation_info", "Always 1; the label is this run's incarnation number exactly (homing_gossip_incarnation is a float64 and rounds it).", gauge, "incarnation")
	dGRepStarted = newDesc("gossip", "repairs_started_total", "Repairs this host started against a peer; each ends in repairs_total{outcome=\"completed\"} or {outcome=\"failed\"}.", cnt)
	dGWarming    = newDesc("gossip", "warming", "1 while the daemon warms up after its start (until a repair from every peer up, at most 5 s), else 0.", gauge)
)

func init() { allDescs = append(allDescs, dGHbAge, dGIncInfo, dGRepStarted, dGWarming) }

// collectGossipPeers emits the metrics above for g.
func collectGossipPeers(ch chan<- prometheus.Metric, g *Gossip) {
	for id, age := range g.HeartbeatAge {
		ch <- prometheus.MustNewConstMetric(dGHbAge.d, dGHbAge.t, age, strconv.Itoa(int(id)))
	}
	ch <- prometheus.MustNewConstMetric(dGIncInfo.d, dGIncInfo.t, 1, strconv.FormatUint(g.Incarnation, 10))
	ch <- prometheus.MustNewConstMetric(dGRepStarted.d, dGRepStarted.t, float64(g.RepairsStarted))
	warming := 0.0
	if g.Warming {
		warming = 1
	}
	ch <- prometheus.MustNewConstMetric(dGWarming.d, dGWarming.t, warming)
}
