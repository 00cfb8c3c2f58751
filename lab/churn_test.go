package lab

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/homing-dev/homing/config"
)

// TestRaceSwitches checks that Options.NoTentative and NoPark reach the host
// configuration, and that the zero Options keep homing's defaults (no root needed).
func TestRaceSwitches(t *testing.T) {
	for _, c := range []struct{ noTent, noPark bool }{{false, false}, {true, false}, {false, true}, {true, true}} {
		l := &Lab{ID: "hlab1x1", Dir: "/tmp/hlab1x1-1", keyFile: "/tmp/hlab1x1-1/gossip.key",
			opts: Options{Redirect: true, NoTentative: c.noTent, NoPark: c.noPark}}
		cfg, err := config.Parse([]byte(l.hostConfig(1, "/sys/fs/cgroup/unified/hlab1x1/h1")), "h1.toml")
		if err != nil {
			t.Fatalf("%+v: %v", c, err)
		}
		wantHold := config.DefaultParkHold
		if c.noPark {
			wantHold = 0
		}
		if cfg.Probe.Tentative == c.noTent || cfg.Tunnel.ParkHold != wantHold || !cfg.Tunnel.Redirect {
			t.Errorf("%+v: probe.tentative %v, tunnel.park_hold %v, redirect %v", c, cfg.Probe.Tentative,
				cfg.Tunnel.ParkHold, cfg.Tunnel.Redirect)
		}
		if cfg.Probe.TentativeLifetime != config.DefaultTentativeLifetime || cfg.Tunnel.ParkSize != config.DefaultParkSize {
			t.Errorf("%+v: tentative_lifetime %v, park_size %d", c, cfg.Probe.TentativeLifetime, cfg.Tunnel.ParkSize)
		}
	}
	// Churn.ParkHold, through Options.EditConfig.
	l := &Lab{ID: "hlab1x1", Dir: "/tmp/hlab1x1-1", keyFile: "/tmp/hlab1x1-1/gossip.key", opts: Options{Redirect: true}}
	cfg, err := config.Parse([]byte(parkHold(50*time.Millisecond)(1, l.hostConfig(1, "/sys/fs/cgroup/unified/hlab1x1/h1"))), "h1.toml")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Tunnel.ParkHold != 50*time.Millisecond || !cfg.Tunnel.Redirect || !cfg.Probe.Tentative {
		t.Errorf("park hold edit: park_hold %v, redirect %v, tentative %v", cfg.Tunnel.ParkHold, cfg.Tunnel.Redirect, cfg.Probe.Tentative)
	}
}

// TestChurn is the proof of issue 7: new connections open continuously (500 per second,
// at least 300 required, each with three checked exchanges and a clean close) while the
// router gets a new hash seed every 400 ms and h1 is drained and restored. With both
// mechanisms on (tentative claims, the park) no connection breaks; with both switched off
// (tunnel.redirect still on) connections are reset in the same run, so the test can
// fail. Nothing of either lab is left afterwards.
//
// The park holds packets for 50 ms here, not the 2 ms default: the park must outlast the
// gossip lag (from a host's probe event to a peer's table), and in this lab, on two cores
// shared by three daemons, the clients and the other packages' tests, that lag measured
// 4 ms at the median, 14 ms at the 99th percentile and 28 ms at most (time from the
// client's connect to the session in all three tables, under a load average of 8-15).
// With 2 ms a few connections of several thousand are reset here.
func TestChurn(t *testing.T) {
	requireLab(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ch := Churn{Rate: 500, Duration: 12 * time.Second, RehashEvery: 400 * time.Millisecond, Drain: true,
		ParkHold: 50 * time.Millisecond, Homingd: buildHomingd(t), Serve: []string{exe}, Log: &lineLog{t: t}}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var runs []*ChurnResult
	for _, m := range []RaceMode{{}, {NoTentative: true, NoPark: true}} {
		r, err := ch.Run(ctx, m)
		runs = append(runs, r)
		if err != nil {
			t.Fatalf("%s: %v\n%s", m, err, r.Logs)
		}
		if rest := Remains(r.LabID, r.PIDs); len(rest) > 0 {
			t.Errorf("lab %s left behind: %s", r.LabID, strings.Join(rest, ", "))
		}
	}
	var table bytes.Buffer
	ChurnTable(&table, runs...)
	t.Logf("churn:\n%s", table.String())
	on, off := runs[0], runs[1]
	for _, r := range runs {
		if r.Rate < 300 {
			t.Errorf("%s: %.0f connections per second, want at least 300", r.Mode, r.Rate)
		}
		if r.Rehashes < 15 || r.Drains != 2 {
			t.Errorf("%s: %d rehashes, %d drains and restores; want at least 15 and 2", r.Mode, r.Rehashes, r.Drains)
		}
		if r.Corrupted != 0 {
			t.Errorf("%s: %d corrupted bytes", r.Mode, r.Corrupted)
		}
		if r.Tunnelled == 0 {
			t.Errorf("%s: no packet tunnelled: the ECMP changes moved no connection", r.Mode)
		}
	}
	if on.Broken() != 0 || on.Completed != on.Opened {
		t.Errorf("both on: %d of %d connections completed; %d handshakes failed, %d reset, %d other errors; want all",
			on.Completed, on.Opened, on.Handshake, on.Reset, on.Failed)
		for _, e := range on.Errors {
			t.Log(e)
		}
		t.Logf("host logs:\n%s", on.Logs)
	}
	// The switches reach the data planes: the park holds packets only when on (at least
	// the final ACKs that reach their owner before its own claim does).
	if on.ParkIn == 0 || off.ParkIn != 0 {
		t.Errorf("packets parked: %d with the park on, %d with it off; want some and none", on.ParkIn, off.ParkIn)
	}
	// Without the mechanisms the races must show, or the proof proves nothing.
	if off.Broken() == 0 {
		t.Errorf("both off: no connection broke: the scenario does not open the races")
	}
	for _, e := range off.Errors[:min(3, len(off.Errors))] {
		t.Logf("both off: %s", e)
	}
}

// TestChurnObserve checks what a churn run adds to a host configuration (its metrics
// endpoint on the host address, debug logging) and the reading of the park's counters.
func TestChurnObserve(t *testing.T) {
	l := &Lab{ID: "hlab1x1", Dir: "/tmp/hlab1x1-1", keyFile: "/tmp/hlab1x1-1/gossip.key", opts: Options{Redirect: true}}
	cfg, err := config.Parse([]byte(churnObserve(2, l.hostConfig(2, "/sys/fs/cgroup/unified/hlab1x1/h2"))), "h2.toml")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Metrics.Listen != "198.18.0.12:9370" || cfg.Log.Level != "debug" {
		t.Errorf("metrics.listen %q, log.level %v", cfg.Metrics.Listen, cfg.Log.Level)
	}
	text := `# HELP homing_lcore_parked_packets_total Packets held.
# TYPE homing_lcore_parked_packets_total counter
homing_lcore_parked_packets_total{lcore="1"} 10
homing_lcore_parked_packets_total{lcore="2"} 5
homing_lcore_unparked_packets_total{lcore="1",outcome="expired"} 2
homing_lcore_unparked_packets_total{lcore="1",outcome="local"} 3
homing_lcore_unparked_packets_total{lcore="1",outcome="redirect"} 9
homing_lcore_unparked_packets_total{lcore="2",outcome="redirect"} 1e+06
homing_lcore_park_full_total{lcore="1"} 0
homing_lcore_redirected_packets_total{lcore="1"} 77
`
	got := parkCounters(text)
	want := map[string]uint64{parkIn: 15, parkExpired: 2, parkLocal: 3, parkRedirect: 1000009, parkFull: 0}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %d, want %d", k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("counters %v", got)
	}
}
