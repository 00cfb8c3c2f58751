package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/homing-dev/homing/ctl"
)

// ctlRun runs homingctl in-process.
func ctlRun(args ...string) (stdout, stderr string, code int) {
	var o, e bytes.Buffer
	code = run(args, &o, &e)
	return o.String(), e.String(), code
}

// fakeDaemon answers like homingd with canned data.
func fakeDaemon(t *testing.T) string {
	path := filepath.Join(t.TempDir(), "ctl.sock")
	owner := uint16(2)
	s, err := ctl.Listen(path, ctl.HandlerFunc(func(_ context.Context, r ctl.Request) (any, error) {
		switch r.Cmd {
		case ctl.CmdStatus:
			return ctl.Status{Version: "v9.9.9-fake", PID: 42, Incarnation: 1795649042780952014, HostID: 1, Name: "h1", Address: "198.18.0.11", MAC: "02:00:00:00:00:11", Gossip: true,
				PeersUp: 1, Sessions4: 3, Capacity4: 1024, LogLevel: "info", VIPs: []string{"198.19.255.1/32"}}, nil
		case ctl.CmdPeers:
			return []ctl.Peer{{ID: 2, Address: "198.18.0.12", MAC: "02:00:00:00:00:12", TunnelPort: 6080, Source: "static", Up: true, Sessions: 2}}, nil
		case ctl.CmdLookup:
			var a ctl.LookupArgs
			if err := r.Decode(&a); err != nil {
				return nil, err
			}
			return ctl.Lookup{Session: a.Proto + " " + a.Client + " -> " + a.VIP, Found: true, Owner: 2, Epoch: 1, Verdict: "redirect to host 2"}, nil
		case ctl.CmdSessions:
			var a ctl.SessionsArgs
			if err := r.Decode(&a); err != nil {
				return nil, err
			}
			if a.Owner == nil || *a.Owner != owner || a.VIP != "198.19.255.1" || a.Limit != 1 {
				return nil, fmt.Errorf("unexpected arguments %+v", a)
			}
			return ctl.Sessions{Sessions: []ctl.Session{{Proto: "udp", Client: "198.18.0.1:40000", VIP: "198.19.255.1:5300", Owner: 2, Epoch: 1}}, Matched: 2, Truncated: true}, nil
		case ctl.CmdStats:
			return ctl.Stats{Lcores: []ctl.LcoreStats{{Lcore: 1, RxNIC: 21, Redirected: 7, Classes: map[string]uint64{"redirect": 7}, Drops: map[string]uint64{"nic_tx_full": 0}, BusyRatio: 0.5,
				Counters: map[string]uint64{"idle_loops": 9}}},
				Ports: []ctl.PortStats{{Name: "nic", RxPackets: 21, Counters: map[string]uint64{"rx_later": 2}}}, Table: map[string]uint64{"inserts": 3}}, nil
		}
		return nil, fmt.Errorf("%w %q", ctl.ErrUnknownCommand, r.Cmd)
	}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return path
}

func TestOutputForms(t *testing.T) {
	sock := fakeDaemon(t)
	cases := []struct {
		args []string
		text []string // regexps the table output must match
		json string   // a field the JSON must carry
	}{
		{[]string{"status"}, []string{`host\s+1 \(h1\)\s+198\.18\.0\.11`, `gossip\s+on, incarnation 1795649042780952014, 1 peers up`, `table\s+3 IPv4 of 1024`}, "host_id"},
		{[]string{"peers"}, []string{`ID\s+ADDRESS\s+MAC`, `(?m)^2\s+198\.18\.0\.12\s+02:00:00:00:00:12\s+6080\s+static\s+yes\s+2$`}, "tunnel_port"},
		{[]string{"lookup", "udp", "198.18.0.1:40000", "198.19.255.1:5300"}, []string{`owner\s+host 2 \(epoch 1\)`, `verdict\s+redirect to host 2`}, "verdict"},
		{[]string{"sessions", "--owner", "2", "--vip=198.19.255.1", "--limit", "1"}, []string{`udp\s+198\.18\.0\.1:40000\s+198\.19\.255\.1:5300\s+2\s+1`, `2 sessions match, 1 shown`}, "matched"},
		{[]string{"stats"}, []string{`(?m)^1\s+21\s+0\s+0\s+0\s+7\s+0\s+0\s+50\.0%$`, `(?m)^redirect\s+7$`, `inserts\s+3`,
			`(?m)^idle loops\s+9$`, `(?m)^port nic\n\s+rx later\s+2$`}, "lcores"},
	}
	for _, c := range cases {
		out, errOut, code := ctlRun(append([]string{"--socket", sock}, c.args...)...)
		if code != 0 {
			t.Errorf("%v: exit %d: %s", c.args, code, errOut)
			continue
		}
		for _, re := range c.text {
			if !regexp.MustCompile(re).MatchString(out) {
				t.Errorf("%v: output does not match %s:\n%s", c.args, re, out)
			}
		}
		// --json anywhere on the line.
		out, errOut, code = ctlRun(append(append([]string{"--socket", sock}, c.args...), "--json")...)
		var v any
		if code != 0 || json.Unmarshal([]byte(out), &v) != nil || !strings.Contains(out, `"`+c.json+`"`) {
			t.Errorf("%v --json: exit %d, %s\n%s", c.args, code, errOut, out)
		}
	}
}

func TestNotRunning(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "none.sock")
	for _, args := range [][]string{{"status"}, {"--json", "peers"}} {
		out, errOut, code := ctlRun(append([]string{"--socket", sock}, args...)...)
		if code != 1 || out != "" || strings.TrimSpace(errOut) != "homingctl: homingd is not running (no socket at "+sock+")" {
			t.Fatalf("%v: exit %d, stdout %q, stderr %q", args, code, out, errOut)
		}
	}
}

func TestUsage(t *testing.T) {
	for _, args := range [][]string{{}, {"bogus"}, {"lookup", "tcp"}, {"status", "extra"}, {"--owner", "x", "sessions"}, {"--frob"},
		{"lookup", "icmp", "198.18.0.1:1", "198.19.255.1:80"}, {"lookup", "tcp", "198.18.0.1", "198.19.255.1:80"},
		{"lookup", "udp", "198.18.0.1:1", "vip:80"}, {"lookup", "tcp", "[2001:2::1]:1", "198.19.255.1:80"},
		{"sessions", "--vip", "not-an-address"}, {"sessions", "--limit", "-2"}, {"--timeout", "soon", "status"},
		{"rebind"}, {"rebind", "0"}, {"rebind", "host2"}, {"rebind", "65536"}, {"rebind", "1", "2"}} {
		_, errOut, code := ctlRun(args...)
		if code != 2 || !strings.Contains(errOut, "usage: homingctl") {
			t.Errorf("%v: exit %d, %q", args, code, errOut)
		}
	}
	start := time.Now()
	_, errOut, code := ctlRun("--socket", filepath.Join(t.TempDir(), "x.sock"), "--timeout", "1s", "status")
	if code != 1 || time.Since(start) > 5*time.Second {
		t.Fatalf("exit %d after %v: %s", code, time.Since(start), errOut)
	}
}

// TestJSONExactNumbers: --json prints 64-bit numbers as the daemon sent them (a float64
// would print the incarnation 1795649042780952014 as 1795649042780952000).
func TestJSONExactNumbers(t *testing.T) {
	sock := fakeDaemon(t)
	out, errOut, code := ctlRun("--socket", sock, "--json", "status")
	if code != 0 || !strings.Contains(out, `"incarnation": 1795649042780952014,`) {
		t.Errorf("exit %d, %s\n%s", code, errOut, out)
	}
}
