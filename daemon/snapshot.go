package daemon

import (
	"time"

	"github.com/homing-dev/homing/gossip"
	"github.com/homing-dev/homing/metrics"
	"github.com/homing-dev/homing/session"
)

// The metrics source: Snapshot reads every counter struct for the Prometheus collector
// and homingctl stats (lcore, ports, table, gossip, relay, probe), and the per-owner
// entry counts it caches. The structs' tags say how each counter is exported
// (metrics/counters.go): nothing here names a counter.

// Snapshot reads every counter (metrics.Source).
func (o *ops) Snapshot() metrics.Snapshot {
	d := o.d
	var s metrics.Snapshot
	if d.DP != nil {
		s.Lcores = d.DP.Stats()
	}
	if ps, err := d.NICStats(); err == nil {
		s.Ports = append(s.Ports, withLinkQueues(d.nic, metrics.Port{Name: "nic", Port: ps}))
	}
	if ps, err := d.KernelStats(); err == nil {
		s.Ports = append(s.Ports, withLinkQueues(d.tap, metrics.Port{Name: "kernel", Port: ps}))
	}
	if d.Table != nil {
		t := &metrics.Table{Table: d.Table.Stats()}
		t.Entries4, t.Entries6 = d.Table.Len()
		t.Capacity4, t.Capacity6 = d.Table.Capacity()
		t.ByOwner = o.ownerCounts()
		s.Table = t
	}
	if sv := d.serving.Load(); sv != nil {
		s.Serving = sv.metrics()
	}
	if n := d.Node(); n != nil {
		s.Gossip = gossipMetrics(n)
		s.Gossip.Warming = d.warming.Load()
	}
	if d.ctl != nil && d.ctl.dom != nil && d.ctl.dom.relay != nil {
		rs := d.ctl.dom.relay.Stats()
		s.Relay = &rs
	}
	if d.ctl != nil && d.ctl.udp != nil {
		u, ul := d.DP.UDPStats(), d.ctl.udp.Stats()
		s.UDP, s.UDPLearn = &u, &ul
	}
	if d.ctl != nil && d.ctl.probe != nil {
		ps := d.ctl.probe.Stats()
		s.Probe = &ps
	}
	return s
}

func gossipMetrics(n *gossip.Node) *metrics.Gossip {
	return &metrics.Gossip{Stats: n.Stats(), Incarnation: n.Incarnation(), HeartbeatAge: heartbeatAges(n)}
}

// ownerCounts counts table entries per owner. It iterates the table (about 150 ms per
// million entries on the development VM) only when the table changed since the last
// count, and then at most at 1/OwnerCountDuty of one core: a small table is counted
// afresh at every call, a large one at most every 100 × its counting time.
func (o *ops) ownerCounts() map[uint16]int {
	o.countMu.Lock()
	defer o.countMu.Unlock()
	ts := o.d.Table.Stats()
	gen := ts.Inserts + ts.Updates + ts.Deletes
	if o.owners != nil && (gen == o.ownersGen || time.Since(o.ownersAt) < OwnerCountDuty*o.ownersCost) {
		return o.owners
	}
	start := time.Now()
	m := map[uint16]int{}
	o.d.Table.Entries(func(_ session.Key, ow session.Owner) bool {
		m[ow.Host]++
		return true
	})
	o.owners, o.ownersAt, o.ownersCost, o.ownersGen = m, time.Now(), time.Since(start), gen
	return m
}
