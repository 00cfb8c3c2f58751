package daemon

import (
	"encoding/json"
	"reflect"
	"slices"
	"testing"

	"github.com/homing-dev/homing/metrics"
)

// TestStatsViewHasEveryField: every counter of every counter struct (metrics.Groups:
// gossip.Stats, lcore.Stats, ...) changes homingctl stats (its JSON) when it alone is
// set, so that a counter added to a struct cannot be missing from homingctl stats.
func TestStatsViewHasEveryField(t *testing.T) {
	js := func(s metrics.Snapshot) string {
		b, err := json.Marshal(statsView(s))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	n := 0
	for _, g := range metrics.Groups() {
		base := js(metrics.Snapshot{}.With(g.Zero(g.Fields()[0], 0)))
		for _, f := range g.Fields() {
			n++
			if js(metrics.Snapshot{}.With(g.Zero(f, 1))) == base {
				t.Errorf("%s.%s is not in homingctl stats", g.Type(), f)
			}
		}
	}
	if n < 100 {
		t.Errorf("%d counters", n)
	}
}

// TestStatsViewKeys: homingctl stats keeps the names it had before the counters were
// declared by tags (the JSON of scripts and the docs), and places each where it was.
func TestStatsViewKeys(t *testing.T) {
	var s metrics.Snapshot
	for _, g := range metrics.Groups() {
		s = s.With(g.Zero(g.Fields()[0], 0))
	}
	s.Lcores[0].Lcore = 3
	s.Lcores[0].Redirect, s.Lcores[0].ParkIn, s.Lcores[0].ParkUDPIn, s.Lcores[0].RxNIC = 7, 10, 4, 20
	s.Gossip.AuthFailures, s.Gossip.RepairServeRefused = 5, 6
	v := statsView(s)
	keys := func(m map[string]uint64) map[string]bool {
		out := map[string]bool{}
		for k := range m {
			out[k] = true
		}
		return out
	}
	l := v.Lcores[0]
	if l.Lcore != 3 || l.Redirected != 7 || l.RxNIC != 20 || l.Classes["redirect"] != 7 || l.Park["held_tcp"] != 6 || l.Park["held_udp"] != 4 {
		t.Errorf("lcore %+v", l)
	}
	for name, want := range map[string][]string{
		"classes": {"redirect", "local", "miss", "dead_owner", "syn", "decap", "gue_bad", "other", "fragment", "ip_options",
			"malformed", "no_redirect", "udp_plain", "quic_initial", "too_big"},
		"drops": {"nic_tx_full", "kernel_tx_full", "no_headroom", "too_big"},
		"park":  {"held_tcp", "held_udp", "released_redirect", "released_local", "expired", "full_tcp", "full_udp", "warmup_dropped"},
		"table": {"entries_ipv4", "entries_ipv6", "capacity_ipv4", "capacity_ipv6", "inserts", "updates", "deletes",
			"delete_misses", "full", "errors", "invalid"},
		"gossip": {"datagrams_sent", "bytes_sent", "heartbeats_sent", "records_sent", "send_errors", "datagrams_received",
			"bytes_received", "heartbeats_received", "records_received", "receive_errors", "auth_failures", "sequence_gaps",
			"records_applied", "stale_records", "local_updates", "grace_drops", "queue_overflow", "queue_len", "peers_up",
			"sessions", "repairs_started", "repairs_completed", "repairs_failed", "repairs_served", "digest_mismatches",
			"table_errors", "repair_removed", "repair_records", "repair_auth_failures", "template_errors", "nacks_sent",
			"nack_recovered", "nack_fallbacks", "nack_resent", "sequence_conflicts", "repair_refused_stranger",
			"repair_refused_per_source", "repair_refused_busy", "repair_refused_slow", "repair_refused_rejected"},
		"gossip_rejected": {"bad_magic", "bad_version", "unknown_type", "truncated", "oversize", "auth", "malformed", "own",
			"unknown_host", "mismatch", "replay", "id_conflict", "duplicate_id", "future_incarnation", "outside_window", "unannounced"},
		"probe": {"events_lost", "resyncs", "resync_adds", "resync_deletes", "sessions"},
		"relay": {"forwarded", "send_errors", "received", "relayed", "duplicates", "loops", "auth_failures", "malformed", "replays"},
	} {
		have := keys(map[string]map[string]uint64{"classes": l.Classes, "drops": l.Drops, "park": l.Park, "table": v.Table,
			"gossip": v.Gossip, "gossip_rejected": v.Reject, "probe": v.Probe, "relay": v.Relay}[name])
		for _, k := range want {
			if !have[k] {
				t.Errorf("%s: no %q", name, k)
			}
		}
		if name == "classes" || name == "drops" || name == "park" || name == "gossip_rejected" || name == "probe" || name == "relay" {
			if len(have) != len(want) {
				t.Errorf("%s: %d keys, want %d: %v", name, len(have), len(want), have)
			}
		}
	}
	if v.Gossip["auth_failures"] != 5 || v.Reject["auth"] != 5 || v.Gossip["repair_refused_busy"] != 6 {
		t.Errorf("gossip %v, rejected %v", v.Gossip, v.Reject)
	}
	if _, ok := v.Gossip["bad_magic"]; ok {
		t.Error("a reject reason in the gossip map")
	}
	if want := []string{"busy_cycles", "cycles", "idle_loops", "loops", "sleeps", "template_retries"}; !reflect.DeepEqual(sortedKeys(l.Counters), want) {
		t.Errorf("lcore counters %v, want %v", sortedKeys(l.Counters), want)
	}
	// the port's other counters are its queues'
	if p := v.Ports[0]; p.Name != "nic" || !reflect.DeepEqual(sortedKeys(p.Counters),
		[]string{"q0_rx_bytes", "q0_rx_errors", "q0_rx_packets", "q0_tx_bytes", "q0_tx_packets"}) {
		t.Errorf("port %+v", p)
	}
}

func sortedKeys(m map[string]uint64) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
