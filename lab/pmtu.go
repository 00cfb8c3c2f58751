package lab

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/homing-dev/homing/ctl"
)

// PMTUResult is the outcome of RunRouterMTU.
type PMTUResult struct {
	LabID    string
	PIDs     []int
	Uploads  Counts       // the upload connections at the end
	Blocks   uint64       // blocks echoed intact while the router's MTU was low
	Tunnel   TunnelCounts // the hosts' tunnel counters over that time
	HostPMTU map[int]int  // the path MTU each host's kernel learned for the client (0: none)
	Owners   map[int]int  // upload sessions per owner host
	Logs     string       // tails of the hosts' logs, when something failed
}

// RunRouterMTU shows path MTU discovery behind ECMP. It builds an IPv4 lab of hosts hosts
// with uploads upload connections, drains h1 (it keeps running and owning its sessions;
// the router sends it nothing more), then gives the router's route to the client an MTU
// of mtu: the echoed 64 KiB blocks (full-size segments from the VIP, DF set) no longer
// fit, and the router answers each with ICMP fragmentation needed to the VIP, which it
// routes like any packet to the VIP: never to h1. The run lasts d; every upload must go
// on, h1's too: its kernel can only learn the smaller path MTU from errors the other
// hosts tunnel to it.
func RunRouterMTU(ctx context.Context, o Options, hosts, uploads, mtu int, d time.Duration) (res *PMTUResult, err error) {
	t0 := time.Now()
	res = &PMTUResult{HostPMTU: map[int]int{}, Owners: map[int]int{}}
	l, err := New(o)
	if err != nil {
		return res, err
	}
	res.LabID = l.ID
	defer func() {
		res.Logs, res.PIDs, _ = l.end(&err, err != nil, t0, o.Log)
	}()
	ns := make([]int, hosts)
	for i := range ns {
		ns[i] = i + 1
	}
	if err = l.AddHosts(ctx, ns...); err != nil {
		return res, err
	}
	if err = l.SetRoute(ns); err != nil {
		return res, err
	}
	up, err := DialSize(ctx, l.NS("cli"), l.Service().String(), uploads, 4, UploadLen)
	if err != nil {
		return res, fmt.Errorf("connect uploads: %w", err)
	}
	up.Start()
	defer up.Stop()
	if _, err = l.WaitSessions(ctx, ns, uploads, 10*time.Second); err != nil {
		return res, fmt.Errorf("sessions: %w", err)
	}
	for _, c := range up.Conns {
		var lk ctl.Lookup
		err := ctl.Call(ctx, l.socket(ns[0]), ctl.CmdLookup, ctl.LookupArgs{Proto: "tcp", Client: c.Local, VIP: l.Service().String()}, &lk)
		if err == nil && lk.Found {
			res.Owners[int(lk.Owner)]++
		}
	}
	if err = l.SetRoute(ns[1:]); err != nil {
		return res, err
	}
	// The router answers with ICMP as fast as it must (its default is one per second and
	// destination: every error here goes to the VIP).
	rtr := l.NS("rtr")
	if err = run("ip", "netns", "exec", rtr, "sysctl", "-qw", "net.ipv4.icmp_ratelimit=0"); err != nil {
		return res, err
	}
	client := strings.TrimSuffix(l.Client().String(), "2") + "0/24"
	if err = run("ip", "-n", rtr, "route", "replace", client, "dev", "vcli", "proto", "kernel", "scope", "link",
		"src", l.routerCLI().String(), "mtu", strconv.Itoa(mtu)); err != nil {
		return res, err
	}
	logTo(o.Log, "  router: h1 drained, route to %s with MTU %d; %d uploads for %v", client, mtu, uploads, d)
	before := up.Counts()
	tun0, _ := l.Tunnel(ctx)
	if err = sleep(ctx, d); err != nil {
		return res, err
	}
	res.Uploads = up.Counts()
	res.Blocks = res.Uploads.Exchanges - before.Exchanges
	tun, _ := l.Tunnel(ctx)
	res.Tunnel = TunnelCounts{Redirected: tun.Redirected - tun0.Redirected}
	for _, n := range ns {
		if res.HostPMTU[n], err = hostPMTU(l.NS(fmt.Sprintf("h%d", n)), l.Client().String()); err != nil {
			return res, err
		}
	}
	logTo(o.Log, "  uploads: %d alive, %d stalled, %d reset, %d failed; %d blocks; hosts' path MTU to the client %v; owners %v",
		res.Uploads.Alive, res.Uploads.Stalled, res.Uploads.Reset, res.Uploads.Failed, res.Blocks, res.HostPMTU, res.Owners)
	return res, l.Check()
}

// hostPMTU is the path MTU the kernel of namespace ns has cached for dst (0: none).
func hostPMTU(ns, dst string) (int, error) {
	out, err := exec.Command("ip", "-n", ns, "route", "get", dst).CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("ip route get in %s: %v: %s", ns, err, out)
	}
	f := strings.Fields(string(out))
	if i := slices.Index(f, "mtu"); i >= 0 && i+1 < len(f) {
		return strconv.Atoi(f[i+1])
	}
	return 0, nil
}
