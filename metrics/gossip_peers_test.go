package metrics

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/homing-dev/homing/gossip"
)

// TestGossipPeerMetrics: a heartbeat age per peer, the incarnation exact in a label, and
// repairs started in their own counter (repairs_total has only the outcomes).
func TestGossipPeerMetrics(t *testing.T) {
	snap := func() Snapshot {
		return Snapshot{Gossip: &Gossip{Incarnation: 1795649042780952014, Stats: gossip.Stats{RepairsStarted: 5, RepairsCompleted: 3, RepairsFailed: 1},
			HeartbeatAge: map[uint16]float64{2: 0.05, 3: 12.5}, Warming: true}}
	}
	m := New(SourceFunc(snap), Info{HostID: 1})
	want := `
# HELP homing_gossip_incarnation_info Always 1; the label is this run's incarnation number exactly (homing_gossip_incarnation is a float64 and rounds it).
# TYPE homing_gossip_incarnation_info gauge
homing_gossip_incarnation_info{incarnation="1795649042780952014"} 1
# HELP homing_gossip_peer_heartbeat_age_seconds Seconds since each peer's last heartbeat (its first datagram before one), for every peer heard from, up or down.
# TYPE homing_gossip_peer_heartbeat_age_seconds gauge
homing_gossip_peer_heartbeat_age_seconds{peer="2"} 0.05
homing_gossip_peer_heartbeat_age_seconds{peer="3"} 12.5
# HELP homing_gossip_repairs_started_total Repairs this host started against a peer; each ends in repairs_total{outcome="completed"} or {outcome="failed"}.
# TYPE homing_gossip_repairs_started_total counter
homing_gossip_repairs_started_total 5
# HELP homing_gossip_repairs_total Repairs this host ran against a peer (unicast fetch of its sessions), by outcome: completed or failed (started: repairs_started_total).
# TYPE homing_gossip_repairs_total counter
homing_gossip_repairs_total{outcome="completed"} 3
homing_gossip_repairs_total{outcome="failed"} 1
# HELP homing_gossip_warming 1 while the daemon warms up after its start (until a repair from every peer up, at most 5 s), else 0.
# TYPE homing_gossip_warming gauge
homing_gossip_warming 1
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "homing_gossip_incarnation_info",
		"homing_gossip_peer_heartbeat_age_seconds", "homing_gossip_repairs_started_total", "homing_gossip_repairs_total", "homing_gossip_warming"); err != nil {
		t.Error(err)
	}
}
