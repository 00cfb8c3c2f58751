package metrics

import (
	"io"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/homing-dev/homing/gossip"
	"github.com/homing-dev/homing/internal/counters"
	"github.com/homing-dev/homing/probe"
)

// value returns the value of the metric name whose labels include want, or -1.
func value(t *testing.T, reg prometheus.Gatherer, name string, want map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, lp := range m.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			for k, v := range want {
				if got[k] != v {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return -1
}

func fakeSnapshot() Snapshot {
	l := counters.Lcore{Lcore: 1, RxNIC: 100, FromKernel: 20, TxNIC: 30, TxTAP: 90, BusyCycles: 250, Cycles: 1000,
		Redirect: 10, Decap: 4, Other: 86, DropNICTx: 2, GUEUnknownSource: 6}
	return Snapshot{
		Lcores: []counters.Lcore{l, {Lcore: 2}},
		Ports:  []Port{{Name: "nic", Port: counters.Port{RxPackets: 100, RxBytes: 6400}}, {Name: "kernel", Port: counters.Port{TxPackets: 90}}},
		Table: &Table{Entries4: 3, Capacity4: 1024, Capacity6: 64, Table: counters.Table{Inserts: 5, Deletes: 2, Full: 1},
			ByOwner: map[uint16]int{1: 1, 2: 2}},
		Gossip: &Gossip{Stats: gossip.Stats{DatagramsSent: 7, BytesSent: 700, DatagramsReceived: 9, BytesReceived: 900,
			AuthFailures: 3, BadMagic: 1, SeqGaps: 4, RecordsApplied: 11, PeersUp: 2,
			RepairServeStranger: 1278, RepairServeSlow: 2}},
		Probe:    &probe.Stats{Lost: 6, Resyncs: 2, ResyncAdds: 5, ResyncDeletes: 1, Sessions: 40},
		UDP:      &counters.UDP{Reported: 9, CIDRedirect: 2},
		UDPLearn: &counters.UDPLearn{Learned: 4, Refreshed: 5, Expired: 1, Flows: 3},
		Relay:    &gossip.RelayStats{Forwarded: 12, Received: 8, Relayed: 7, Duplicates: 3, Replays: 1},
		Serving: &Serving{State: "draining", States: []string{"warming", "ready", "draining", "drained", "stopping"},
			Owned: 42, BGP: []BGPPeer{{Address: "198.18.0.1", Up: true, Advertised: 1, Losses: 2}}},
	}
}

func TestCollector(t *testing.T) {
	m := New(SourceFunc(fakeSnapshot), Info{HostID: 1, Name: "h1", Address: "198.18.0.11", Version: "test"})
	reg := m.Registry()
	cases := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"homing_info", map[string]string{"host_id": "1", "name": "h1"}, 1},
		{"homing_state", map[string]string{"state": "draining"}, 1},
		{"homing_state", map[string]string{"state": "ready"}, 0},
		{"homing_announced", nil, 0},
		{"homing_owned_sessions", nil, 42},
		{"homing_bgp_session_up", map[string]string{"neighbor": "198.18.0.1"}, 1},
		{"homing_bgp_advertised_prefixes", map[string]string{"neighbor": "198.18.0.1"}, 1},
		{"homing_bgp_session_losses_total", map[string]string{"neighbor": "198.18.0.1"}, 2},
		{"homing_lcore_received_packets_total", map[string]string{"lcore": "1", "port": "nic"}, 100},
		{"homing_lcore_received_packets_total", map[string]string{"lcore": "1", "port": "kernel"}, 20},
		{"homing_lcore_sent_packets_total", map[string]string{"lcore": "1", "port": "nic"}, 30},
		{"homing_lcore_sent_packets_total", map[string]string{"lcore": "1", "port": "kernel"}, 90},
		{"homing_lcore_redirected_packets_total", map[string]string{"lcore": "1"}, 10},
		{"homing_lcore_decapsulated_packets_total", map[string]string{"lcore": "1"}, 4},
		{"homing_lcore_classified_packets_total", map[string]string{"lcore": "1", "class": "other"}, 86},
		{"homing_lcore_classified_packets_total", map[string]string{"lcore": "1", "class": "syn"}, 0},
		{"homing_lcore_classified_packets_total", map[string]string{"lcore": "2", "class": "redirect"}, 0},
		{"homing_lcore_dropped_packets_total", map[string]string{"lcore": "1", "reason": "nic_tx_full"}, 2},
		{"homing_lcore_gue_refused_total", map[string]string{"lcore": "1", "reason": "unknown_source"}, 6},
		{"homing_lcore_busy_ratio", map[string]string{"lcore": "1"}, 0.25},
		{"homing_lcore_busy_ratio", map[string]string{"lcore": "2"}, 0},
		{"homing_port_received_packets_total", map[string]string{"port": "nic"}, 100},
		{"homing_port_received_bytes_total", map[string]string{"port": "nic"}, 6400},
		{"homing_port_sent_packets_total", map[string]string{"port": "kernel"}, 90},
		{"homing_table_entries", map[string]string{"family": "ipv4"}, 3},
		{"homing_table_capacity", map[string]string{"family": "ipv6"}, 64},
		{"homing_table_owner_entries", map[string]string{"owner": "2"}, 2},
		{"homing_table_inserts_total", nil, 5},
		{"homing_table_deletes_total", nil, 2},
		{"homing_table_full_total", nil, 1},
		{"homing_gossip_sent_datagrams_total", nil, 7},
		{"homing_gossip_sent_bytes_total", nil, 700},
		{"homing_gossip_received_datagrams_total", nil, 9},
		{"homing_gossip_received_bytes_total", nil, 900},
		{"homing_gossip_rejected_datagrams_total", map[string]string{"reason": "auth"}, 3},
		{"homing_gossip_auth_failures_total", nil, 3},
		{"homing_gossip_repair_serve_refused_total", map[string]string{"reason": "stranger"}, 1278},
		{"homing_gossip_repair_serve_refused_total", map[string]string{"reason": "slow"}, 2},
		{"homing_gossip_sequence_gaps_total", nil, 4},
		{"homing_gossip_records_applied_total", nil, 11},
		{"homing_gossip_peers_up", nil, 2},
		{"homing_probe_events_lost_total", nil, 6},
		{"homing_probe_resyncs_total", nil, 2},
		{"homing_probe_resync_adds_total", nil, 5},
		{"homing_probe_resync_deletes_total", nil, 1},
		{"homing_probe_sessions", nil, 40},
		{"homing_relay_forwarded_envelopes_total", nil, 12},
		{"homing_relay_received_envelopes_total", nil, 8},
		{"homing_relay_relayed_datagrams_total", nil, 7},
		{"homing_relay_dropped_envelopes_total", map[string]string{"reason": "duplicate"}, 3},
		{"homing_relay_dropped_envelopes_total", map[string]string{"reason": "replay"}, 1},
	}
	for _, c := range cases {
		if got := value(t, reg, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
}

// TestLint runs promlint (names, units, HELP) over everything the collector exports.
func TestLint(t *testing.T) {
	m := New(SourceFunc(fakeSnapshot), Info{HostID: 1})
	m.ObserveConvergence(time.Now(), time.Now())
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "go_") || strings.HasPrefix(p.Metric, "process_") {
			continue
		}
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
}

func TestNoGossipNoTable(t *testing.T) {
	m := New(SourceFunc(func() Snapshot { return Snapshot{} }), Info{})
	if v := value(t, m.Registry(), "homing_gossip_peers_up", nil); v != -1 {
		t.Fatalf("gossip metrics exported without gossip: %v", v)
	}
	if v := value(t, m.Registry(), "homing_info", nil); v != 1 {
		t.Fatalf("homing_info = %v", v)
	}
}

func TestConvergence(t *testing.T) {
	m := New(SourceFunc(func() Snapshot { return Snapshot{} }), Info{})
	now := time.Now()
	m.ObserveConvergence(now.Add(-3*time.Millisecond), now)
	m.ObserveConvergence(now.Add(-time.Second), now)
	m.ObserveConvergence(now.Add(time.Millisecond), now) // sender clock ahead
	reg := m.Registry()
	if n := value(t, reg, "homing_gossip_convergence_delay_seconds", nil); n != 3 {
		t.Fatalf("histogram count %v, want 3", n)
	}
	if n := value(t, reg, "homing_gossip_convergence_negative_total", nil); n != 1 {
		t.Fatalf("negative count %v, want 1", n)
	}
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != "homing_gossip_convergence_delay_seconds" {
			continue
		}
		h := mf.GetMetric()[0].GetHistogram()
		if s := h.GetSampleSum(); s < 1.003-1e-6 || s > 1.003+1e-6 {
			t.Fatalf("sum %v, want 1.003", s)
		}
		for _, b := range h.GetBucket() {
			if b.GetUpperBound() == 0.0032 && b.GetCumulativeCount() != 2 { // 0, 3ms
				t.Fatalf("bucket le=0.0032 has %d, want 2", b.GetCumulativeCount())
			}
		}
	}
}

// TestScrapeReadsSource checks that the source is read at every scrape and only then.
func TestScrapeReadsSource(t *testing.T) {
	var calls atomic.Int64
	m := New(SourceFunc(func() Snapshot { calls.Add(1); return fakeSnapshot() }), Info{})
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	if calls.Load() != 0 {
		t.Fatal("source read before any scrape")
	}
	for i := 1; i <= 2; i++ {
		resp, err := srv.Client().Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(b), `homing_lcore_redirected_packets_total{lcore="1"} 10`) {
			t.Fatalf("scrape lacks the redirect counter:\n%s", b)
		}
		if calls.Load() != int64(i) {
			t.Fatalf("%d scrapes read the source %d times", i, calls.Load())
		}
	}
}
