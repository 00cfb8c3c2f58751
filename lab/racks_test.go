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

// TestRacks is the two-rack proof: sessions owned in rack A survive the router sending
// them to rack B (tunnelled through the router to their owners' routed addresses, the
// gateway's MAC learned from the neighbour table) and back, with ownership carried across
// by the gossip relays only; a relay of rack B killed, new sessions still reach rack B
// through its other relay, and no connection is reset.
func TestRacks(t *testing.T) {
	requireLab(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	sc := RackScenario{Conns: 500, More: 200, Homingd: buildHomingd(t), Serve: []string{exe}, Log: &lineLog{t: t}}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	r, err := sc.Run(ctx)
	if err != nil {
		t.Fatalf("%v\n%s", err, r.Logs)
	}
	if rest := Remains(r.LabID, r.PIDs); len(rest) > 0 {
		t.Errorf("lab %s left behind: %s", r.LabID, strings.Join(rest, ", "))
	}
	var table bytes.Buffer
	Table(&table, r)
	t.Logf("run in %.0fs:\n%s", r.Elapsed.Seconds(), table.String())
	if len(r.Steps) != 5 {
		t.Fatalf("%d steps, want 5", len(r.Steps))
	}
	for i, st := range r.Steps {
		want := sc.Conns
		if i >= 3 {
			want += sc.More
		}
		if st.Reset != 0 || st.Failed != 0 || st.Corrupted != 0 || st.Alive != want {
			t.Errorf("step %q: %d alive of %d, %d reset, %d failed, %d corrupted bytes", st.Name, st.Alive, want, st.Reset, st.Failed, st.Corrupted)
		}
	}
	// Every packet of rack B's steps crosses the racks.
	for _, i := range []int{1, 3} {
		if st := r.Steps[i]; st.Tunnelled < uint64(sc.Conns) {
			t.Errorf("step %q: %d packets tunnelled, want at least one per connection", st.Name, st.Tunnelled)
		}
	}
	if r.Stalled != 0 {
		t.Errorf("%d connections open but exchanging nothing at the end", r.Stalled)
	}
	if t.Failed() {
		for _, e := range r.Ended {
			t.Log(e)
		}
		t.Logf("host logs:\n%s", r.Logs)
	}
}

// TestRackConfig checks a two-rack lab's host configuration (no root): the relays list
// every relay with its rack, and each host its rack's domain and gateway.
func TestRackConfig(t *testing.T) {
	l := &Lab{ID: "hlab1x1", Dir: "/tmp/hlab1x1-1", keyFile: "/tmp/k", opts: Options{Redirect: true, Racks: 2, Relays: []int{1, 2, 3, 4}}}
	cfg, err := config.Parse([]byte(l.hostConfig(2, "/sys/fs/cgroup/unified/hlab1x1/h2")), "h2.toml")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Host.Domain != "rack-b" || cfg.Host.Gateway.String() != "198.18.1.1" || cfg.Host.Address.String() != "198.18.1.12" || !cfg.IsRelay() {
		t.Errorf("host %+v, relay %v", cfg.Host, cfg.IsRelay())
	}
	var peers []string
	for _, p := range cfg.RelayPeers() {
		peers = append(peers, p.String())
	}
	if got := strings.Join(peers, " "); got != "198.18.0.11:6082 198.18.0.13:6082" {
		t.Errorf("relay peers %s", got)
	}
}
