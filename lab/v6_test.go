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

// TestPOP6 is the ECMP scenario of TestPOP on an IPv6 POP: IPv6 VIP, clients and
// hosts (no IPv4 address on them), so that the router's multipath route, neighbour
// discovery through the exception path, the probe, the tables, gossip (an ff02:: group
// and repair) and the tunnels (IPv6 outer headers) are all IPv6. 1000 connections keep
// every byte through a drain, a return, a new host and a router rehash; the drain must
// tunnel packets (the scenario moves connections).
func TestPOP6(t *testing.T) {
	requireLab(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	sc := Scenario{Conns: 1000, Homingd: buildHomingd(t), Serve: []string{exe}, Log: &lineLog{t: t}, IPv6: true}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	r, err := sc.Run(ctx, true)
	if err != nil {
		t.Fatalf("%v\n%s", err, r.Logs)
	}
	if rest := Remains(r.LabID, r.PIDs); len(rest) > 0 {
		t.Errorf("lab %s left behind: %s", r.LabID, strings.Join(rest, ", "))
	}
	var table bytes.Buffer
	Table(&table, r)
	t.Logf("run in %.0fs:\n%s", r.Elapsed.Seconds(), table.String())
	checkHoming(t, r, sc.Conns)
}

// checkHoming checks a homing run of the ECMP scenario: every connection and upload
// alive and intact after every step, none stalled, nothing too big for the tunnel with
// the MSS clamp on, and packets tunnelled during the drain.
func checkHoming(t *testing.T, r *Result, conns int) {
	t.Helper()
	if len(r.Steps) != 5 {
		t.Fatalf("%d steps, want 5", len(r.Steps))
	}
	for _, st := range r.Steps {
		if st.Reset != 0 || st.Failed != 0 || st.Corrupted != 0 || st.Alive != conns {
			t.Errorf("step %q: %d alive of %d, %d stalled, %d reset, %d failed, %d corrupted bytes; want every connection alive and intact",
				st.Name, st.Alive, conns, st.Stalled, st.Reset, st.Failed, st.Corrupted)
		}
	}
	for _, st := range r.Steps {
		if st.UpReset != 0 || st.UpFailed != 0 || st.UpCorrupted != 0 || st.UpAlive != r.Uploads || st.UpStalled != 0 || st.UpBlocks == 0 {
			t.Errorf("step %q: uploads %d alive of %d, %d stalled, %d reset, %d failed, %d corrupted bytes, %d blocks; want every upload alive, moving and intact",
				st.Name, st.UpAlive, r.Uploads, st.UpStalled, st.UpReset, st.UpFailed, st.UpCorrupted, st.UpBlocks)
		}
		if !r.NoClamp && st.TooBig != 0 {
			t.Errorf("step %q: %d packets too big for the tunnel with the MSS clamp on", st.Name, st.TooBig)
		}
	}
	if r.Stalled != 0 || r.UpStalled != 0 {
		t.Errorf("%d connections and %d uploads open but exchanging nothing at the end", r.Stalled, r.UpStalled)
	}
	if st := r.Steps[1]; st.Tunnelled == 0 {
		t.Errorf("step %q: no packet tunnelled", st.Name)
	}
	if t.Failed() {
		for _, e := range r.Ended {
			t.Log(e)
		}
		t.Logf("host logs:\n%s", r.Logs)
	}
}

// TestHostConfig6 checks the configuration of a host of an IPv6 lab with two racks
// (no root needed): IPv6 addresses, VIP, gossip group and routes, the rack's domain and
// gateway.
func TestHostConfig6(t *testing.T) {
	l := &Lab{ID: "hlab1x1", Dir: "/tmp/hlab1x1-1", keyFile: "/tmp/hlab1x1-1/gossip.key",
		opts: Options{Redirect: true, IPv6: true, Racks: 2}}
	for n, want := range map[int]struct{ addr, gw, domain string }{
		1: {"2001:2::11", "2001:2::1", "rack-a"},
		2: {"2001:2:0:1::12", "2001:2:0:1::1", "rack-b"},
		3: {"2001:2::13", "2001:2::1", "rack-a"},
	} {
		cfg, err := config.Parse([]byte(l.hostConfig(n, "/sys/fs/cgroup/unified/hlab1x1/h1")), "h.toml")
		if err != nil {
			t.Fatal(err)
		}
		h := cfg.Host
		if h.Address.String() != want.addr || h.Gateway.String() != want.gw || h.Domain != want.domain || !h.IsVIP(VIP6) || h.IsVIP(VIP) {
			t.Errorf("h%d: address %v, gateway %v, domain %q, VIPs %v; want %s, %s, %s, %v", n, h.Address, h.Gateway, h.Domain, h.VIPs,
				want.addr, want.gw, want.domain, VIP6)
		}
		if cfg.Gossip.Group != Group6 || cfg.Table.Capacity6 < 1000 {
			t.Errorf("h%d: gossip group %v, capacity6 %d", n, cfg.Gossip.Group, cfg.Table.Capacity6)
		}
		k := cfg.Kernel
		if len(k.Addresses) != 1 || k.Addresses[0].String() != want.addr+"/64" || len(k.Routes) != 1 ||
			k.Routes[0].To.String() != "::/0" || k.Routes[0].Via.String() != want.gw {
			t.Errorf("h%d: kernel %+v", n, k)
		}
	}
	if got := strings.Join(l.routeArgs([]int{1, 2}), " "); got != "ip -n hlab1x1-rtr -6 route replace 2001:2:ff::1/128 nexthop via 2001:2::11 dev br0 nexthop via 2001:2:0:1::12 dev br1" {
		t.Errorf("route: %s", got)
	}
}
