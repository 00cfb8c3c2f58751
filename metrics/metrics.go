// Package metrics exports homingd's counters to Prometheus.
//
// Nothing is counted here: the data plane's lcores, the ports, the table and the gossip
// node keep their own counters, and the Collector reads them through a Source when
// Prometheus scrapes (never per packet). The only metric this package owns is the
// histogram of gossip convergence delays, fed once per applied records datagram.
//
// Each counter is declared once, on the struct that holds it (gossip.Stats,
// gossip.RelayStats, probe.Stats, and internal/counters' Lcore, Port and Table, which
// lcore.Stats, dpdk.Stats and table.Stats alias), by the tags of its field; a Group
// reads them at start and exports both the Prometheus families and the view of
// homingctl stats (counters.go). The few metrics that are not a struct's counter
// (gauges the daemon computes, the serving state, BGP, the convergence histogram) are
// described here by hand.
//
// Pure Go (no cgo): the cgo packages' counter structs live in internal/counters, so
// that the collector is tested with a fake Source.
package metrics

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/homing-dev/homing/gossip"
	"github.com/homing-dev/homing/internal/counters"
	"github.com/homing-dev/homing/probe"
)

// Namespace prefixes every metric name.
const Namespace = "homing"

// Port is a DPDK port's counters; Name ("nic" or "kernel") labels them.
type Port struct {
	Name string
	counters.Port
	Link     *Link              // nil: not read (ports.go)
	RxQueues []counters.QueueRx // per-queue xstats, as the PMD reports them
	TxQueues []counters.QueueTx
}

// Table is the ownership table's state.
type Table struct {
	Entries4, Entries6, Capacity4, Capacity6 int
	counters.Table
	// ByOwner counts entries per owner host id; nil when not computed.
	ByOwner map[uint16]int
}

// Gossip is the gossip node's counters and what else the collector shows of it.
type Gossip struct {
	gossip.Stats
	Incarnation uint64
	// HeartbeatAge is the seconds since each peer's last heartbeat, by host id.
	HeartbeatAge map[uint16]float64
	// Warming: the daemon is warming up after its start (peers' sessions not all learnt).
	Warming bool
}

// Snapshot is everything the collector exports, read at once.
type Snapshot struct {
	Lcores []counters.Lcore
	Ports  []Port
	Table  *Table             // nil: no table
	Gossip *Gossip            // nil: gossip is off
	Probe  *probe.Stats       // nil: the probe is off
	Relay  *gossip.RelayStats // nil: this host is not a gossip relay
	// Serving is the host's announcement state (nil: not started).
	Serving  *Serving
	UDP      *counters.UDP      // nil: no [[udp_sessions]]
	UDPLearn *counters.UDPLearn // nil: no [[udp_sessions]]
}

// Serving is whether the host takes new traffic (daemon's serving state).
type Serving struct {
	State     string   // the current one of States
	States    []string // every state, each exported (1 for the current)
	Announced bool     // the VIPs are announced
	Owned     int      // sessions this host owns
	BGP       []BGPPeer
}

// BGPPeer is one BGP neighbour's session.
type BGPPeer struct {
	Address    string
	Up         bool
	Advertised uint64
	Losses     uint64 // sessions lost after they had come up
}

// Source gives the collector a snapshot at scrape time. It is called from the HTTP
// handler's goroutine, once per scrape.
type Source interface {
	Snapshot() Snapshot
}

// SourceFunc adapts a function to Source.
type SourceFunc func() Snapshot

// Snapshot calls f.
func (f SourceFunc) Snapshot() Snapshot { return f() }

// Info labels the homing_info metric.
type Info struct {
	HostID  uint16
	Name    string
	Address string
	Version string
}

// Metrics is a registry with homing's collector, the convergence histogram and the Go
// runtime and process collectors.
type Metrics struct {
	reg      *prometheus.Registry
	converge prometheus.Histogram
	skew     prometheus.Counter
}

// ConvergeBuckets are the convergence histogram's upper bounds in seconds: 100µs to
// about 6.5s, doubling.
var ConvergeBuckets = prometheus.ExponentialBuckets(100e-6, 2, 17)

// New returns Metrics reading src at every scrape.
func New(src Source, info Info) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.converge = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: Namespace, Subsystem: "gossip", Name: "convergence_delay_seconds",
		Help:    "Delay from a peer's sender timestamp (its oldest record queued) to its records applied in this host's table, per records datagram. Includes clock offset between hosts.",
		Buckets: ConvergeBuckets,
	})
	m.skew = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: Namespace, Subsystem: "gossip", Name: "convergence_negative_total",
		Help: "Records datagrams applied before their sender timestamp (the sender's clock is ahead); observed as 0 in the histogram.",
	})
	m.reg.MustRegister(&collector{src: src, info: info}, m.converge, m.skew,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		versioncollector.NewCollector(Namespace)) // homing_build_info: github.com/prometheus/common/version
	return m
}

// ObserveConvergence records one applied records datagram.
func (m *Metrics) ObserveConvergence(sent, applied time.Time) {
	d := applied.Sub(sent)
	if d < 0 {
		m.skew.Inc()
		d = 0
	}
	m.converge.Observe(d.Seconds())
}

// Registry returns the registry (for tests and for other exporters).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// desc is one metric of the collector.
type desc struct {
	d *prometheus.Desc
	t prometheus.ValueType
}

func newDesc(sub, name, help string, t prometheus.ValueType, labels ...string) desc {
	return desc{prometheus.NewDesc(prometheus.BuildFQName(Namespace, sub, name), help, labels, nil), t}
}

var (
	cnt   = prometheus.CounterValue
	gauge = prometheus.GaugeValue

	dInfo = newDesc("", "info", "Always 1; labels identify the host.", gauge, "host_id", "name", "address", "version")

	dLcRatio   = newDesc("lcore", "busy_ratio", "Busy cycles over all cycles since the lcore started (0..1).", gauge, "lcore")
	dState     = newDesc("", "state", "The host's serving state: 1 for the current one of warming, ready (announcing), draining, drained, stopping.", gauge, "state")
	dAnnounced = newDesc("", "announced", "1 while the host announces its VIPs (ready), 0 while withdrawn.", gauge)
	dOwned     = newDesc("", "owned_sessions", "Sessions this host owns (a drained host is empty at 0).", gauge)
	dBGPUp     = newDesc("bgp", "session_up", "1 while the BGP session to the neighbour is established.", gauge, "neighbor")
	dBGPAdv    = newDesc("bgp", "advertised_prefixes", "Prefixes advertised to the neighbour.", gauge, "neighbor")
	dBGPLoss   = newDesc("bgp", "session_losses_total", "Times the BGP session to the neighbour went down after it had been established.", cnt, "neighbor")

	// table: the gauges the daemon reads beside counters.Table
	dTabEntries = newDesc("table", "entries", "Sessions in the ownership table, by address family.", gauge, "family")
	dTabCap     = newDesc("table", "capacity", "Configured capacity of the ownership table, by address family.", gauge, "family")
	dTabOwner   = newDesc("table", "owner_entries", "Sessions in the ownership table by owner host id (counted by iterating the table when it changed, using at most 1% of a core).", gauge, "owner")

	// gossip: beside gossip.Stats
	dGIncarnated = newDesc("gossip", "incarnation", "This run's incarnation number (unix nanoseconds at start), rounded to a float64: homing_gossip_incarnation_info has it exactly.", gauge)

	allDescs = []desc{dInfo, dState, dAnnounced, dOwned, dBGPUp, dBGPAdv, dBGPLoss, dLcRatio, dTabEntries, dTabCap, dTabOwner, dGIncarnated}
)

// The counter structs, each declared once with its tags (counters.go).
var (
	LcoreCounters    = NewGroup("lcore", counters.Lcore{})
	PortCounters     = NewGroup("port", counters.Port{}, "port")
	TableCounters    = NewGroup("table", counters.Table{})
	GossipCounters   = NewGroup("gossip", gossip.Stats{})
	RelayCounters    = NewGroup("relay", gossip.RelayStats{})
	ProbeCounters    = NewGroup("probe", probe.Stats{})
	UDPCounters      = NewGroup("udp", counters.UDP{})
	QueueRxCounters  = NewGroup("port", counters.QueueRx{}, "port")
	QueueTxCounters  = NewGroup("port", counters.QueueTx{}, "port")
	UDPLearnCounters = NewGroup("udp", counters.UDPLearn{})
)

// Groups are every counter struct the collector exports.
func Groups() []*Group {
	return []*Group{LcoreCounters, PortCounters, TableCounters, GossipCounters, RelayCounters, ProbeCounters, UDPCounters, UDPLearnCounters, QueueRxCounters, QueueTxCounters}
}

// collector reads a Source at every scrape.
type collector struct {
	src  Source
	info Info
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range allDescs {
		ch <- d.d
	}
	for _, g := range Groups() {
		g.Describe(ch)
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	emit := func(d desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d.d, d.t, v, labels...)
	}
	emit(dInfo, 1, strconv.Itoa(int(c.info.HostID)), c.info.Name, c.info.Address, c.info.Version)

	s := c.src.Snapshot()
	if sv := s.Serving; sv != nil {
		for _, st := range sv.States {
			v := 0.0
			if st == sv.State {
				v = 1
			}
			emit(dState, v, st)
		}
		a := 0.0
		if sv.Announced {
			a = 1
		}
		emit(dAnnounced, a)
		emit(dOwned, float64(sv.Owned))
		for _, p := range sv.BGP {
			up := 0.0
			if p.Up {
				up = 1
			}
			emit(dBGPUp, up, p.Address)
			emit(dBGPAdv, float64(p.Advertised), p.Address)
			emit(dBGPLoss, float64(p.Losses), p.Address)
		}
	}
	for i := range s.Lcores {
		l := &s.Lcores[i]
		LcoreCounters.Collect(ch, l)
		ratio := 0.0
		if l.Cycles > 0 {
			ratio = float64(l.BusyCycles) / float64(l.Cycles)
		}
		emit(dLcRatio, ratio, strconv.FormatUint(uint64(l.Lcore), 10))
	}
	for i := range s.Ports {
		PortCounters.Collect(ch, &s.Ports[i].Port, s.Ports[i].Name)
		collectPortExtra(ch, s.Ports[i])
	}
	if t := s.Table; t != nil {
		emit(dTabEntries, float64(t.Entries4), "ipv4")
		emit(dTabEntries, float64(t.Entries6), "ipv6")
		emit(dTabCap, float64(t.Capacity4), "ipv4")
		emit(dTabCap, float64(t.Capacity6), "ipv6")
		for owner, n := range t.ByOwner {
			emit(dTabOwner, float64(n), strconv.Itoa(int(owner)))
		}
		TableCounters.Collect(ch, &t.Table)
	}
	if g := s.Gossip; g != nil {
		GossipCounters.Collect(ch, &g.Stats)
		emit(dGIncarnated, float64(g.Incarnation))
		collectGossipPeers(ch, g)
	}
	if s.UDP != nil {
		UDPCounters.Collect(ch, s.UDP)
	}
	if s.UDPLearn != nil {
		UDPLearnCounters.Collect(ch, s.UDPLearn)
	}
	if p := s.Probe; p != nil {
		ProbeCounters.Collect(ch, p)
	}
	if r := s.Relay; r != nil {
		RelayCounters.Collect(ch, r)
	}
}
