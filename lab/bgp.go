package lab

// The BGP router (Options.BGP): FRR's zebra and bgpd in the router namespace. Every host's
// homingd dials bgpd (a dynamic neighbour of the rack's subnet, AS RouterAS ↔ HostAS) and
// announces the VIP while it is ready; bgpd installs the multipath route that zebra puts
// into the router's kernel, which hashes flows over the hosts as before. A drain is
// `homingctl drain` on the host; the kernel's route follows BGP.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/homing-dev/homing/ctl"
)

// AS numbers of the lab's router and hosts (private, RFC 6996).
const (
	RouterAS = 65000
	HostAS   = 65001
)

// FRRDir is where Debian's frr package keeps its daemons.
const FRRDir = "/usr/lib/frr"

// HostHoldTime is the hosts' BGP hold time in the lab (the minimum, 3 s): a killed
// host's route leaves the router after it.
const HostHoldTime = 3 * time.Second

// frrConf is bgpd's configuration: dynamic neighbours from every rack's subnet, ECMP
// over up to 16 hosts.
func (l *Lab) frrConf() string {
	var b strings.Builder
	fmt.Fprintf(&b, "frr defaults datacenter\nhostname %s\nlog stdout informational\n!\n", l.NS("rtr"))
	fmt.Fprintf(&b, "router bgp %d\n bgp router-id 198.18.0.1\n no bgp ebgp-requires-policy\n no bgp default ipv4-unicast\n", RouterAS)
	b.WriteString(" bgp bestpath as-path multipath-relax\n neighbor HOSTS peer-group\n")
	fmt.Fprintf(&b, " neighbor HOSTS remote-as %d\n neighbor HOSTS timers 1 %d\n", HostAS, int(HostHoldTime/time.Second))
	for r := range l.Racks() {
		fmt.Fprintf(&b, " bgp listen range %s peer-group HOSTS\n", netip.PrefixFrom(l.Gateway(r), l.bits()).Masked())
	}
	fam := "ipv4"
	if l.opts.IPv6 {
		fam = "ipv6"
	}
	fmt.Fprintf(&b, " address-family %s unicast\n  neighbor HOSTS activate\n  maximum-paths 16\n exit-address-family\n!\n", fam)
	return b.String()
}

// startFRR starts zebra and bgpd in the router namespace.
func (l *Lab) startFRR(ctx context.Context) error {
	for _, d := range []string{"zebra", "bgpd"} {
		if _, err := os.Stat(filepath.Join(FRRDir, d)); err != nil {
			return fmt.Errorf("lab: BGP router: %w (Debian package frr)", err)
		}
	}
	// bgpd's own TCP segments leave the router by the bridges: with checksum offload,
	// the hosts' DPDK would read them without their checksum (see txChecksumOff).
	for r := range l.Racks() {
		if err := txChecksumOff(l.NS("rtr"), bridge(r)); err != nil {
			return err
		}
	}
	// FRR's daemons drop to the user frr (root is not in its vty group): they need to
	// reach and write their directory.
	frr, err := user.Lookup("frr")
	if err != nil {
		return fmt.Errorf("lab: BGP router: %w (Debian package frr)", err)
	}
	uid, _ := strconv.Atoi(frr.Uid)
	gid, _ := strconv.Atoi(frr.Gid)
	dir := filepath.Join(l.Dir, "frr")
	if err := os.Chmod(l.Dir, 0o711); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "zebra.conf"), []byte("hostname "+l.NS("rtr")+"\n"), 0o644); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bgpd.conf"), []byte(l.frrConf()), 0o644); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	for _, f := range []string{dir, filepath.Join(dir, "zebra.conf"), filepath.Join(dir, "bgpd.conf")} {
		if err := os.Chown(f, uid, gid); err != nil {
			return fmt.Errorf("lab: %w", err)
		}
	}
	zserv := filepath.Join(dir, "zserv.api")
	common := []string{"-u", "frr", "-g", "frr", "--vty_socket", dir, "-z", zserv, "-P", "0"}
	l.zebra, err = l.start("router zebra", filepath.Join(l.Dir, "zebra.log"), l.NS("rtr"), "", nil,
		filepath.Join(FRRDir, "zebra"), append([]string{"-f", filepath.Join(dir, "zebra.conf"), "-i", filepath.Join(dir, "zebra.pid")}, common...)...)
	if err != nil {
		return err
	}
	for end := time.Now().Add(10 * time.Second); ; {
		if _, err := os.Stat(zserv); err == nil {
			break
		}
		if l.zebra.exited() || time.Now().After(end) {
			return fmt.Errorf("lab: zebra did not start\n%s", Tail(filepath.Join(l.Dir, "zebra.log"), 20))
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
	l.bgpd, err = l.start("router bgpd", filepath.Join(l.Dir, "bgpd.log"), l.NS("rtr"), "", nil,
		filepath.Join(FRRDir, "bgpd"), append([]string{"-f", filepath.Join(dir, "bgpd.conf"), "-i", filepath.Join(dir, "bgpd.pid")}, common...)...)
	if err != nil {
		return err
	}
	l.logf("lab %s: BGP router (FRR bgpd, AS %d) in %s, hosts AS %d, hold time %v", l.ID, RouterAS, l.NS("rtr"), HostAS, HostHoldTime)
	return nil
}

// stopFRR stops bgpd and zebra.
func (l *Lab) stopFRR() error {
	return errors.Join(l.bgpd.stop(5*time.Second), l.zebra.stop(5*time.Second))
}

// bgpConfig sets host n's [bgp] section: the rack's router as neighbour.
func (l *Lab) bgpConfig(n int, f *hostFile) {
	if !l.opts.BGP {
		return
	}
	f.BGP = &hostBGP{LocalAS: HostAS, HoldTime: HostHoldTime.String(), StopLinger: "1s",
		Neighbors: []hostBGPNeighbor{{Address: l.Gateway(l.Rack(n)).String(), AS: RouterAS}}}
	if l.opts.IPv6 {
		f.BGP.RouterID = fmt.Sprintf("198.18.%d.%d", l.Rack(n), 10+n)
	}
}

type hostBGP struct {
	LocalAS    int               `toml:"local_as"`
	RouterID   string            `toml:"router_id,omitempty"`
	HoldTime   string            `toml:"hold_time"`
	StopLinger string            `toml:"stop_linger"`
	Neighbors  []hostBGPNeighbor `toml:"neighbors"`
}

type hostBGPNeighbor struct {
	Address string `toml:"address"`
	AS      int    `toml:"as"`
}

// Drain runs `homingctl drain` on host n (BGP labs): it withdraws the VIP.
func (l *Lab) Drain(ctx context.Context, n int) (ctl.Status, error) {
	return l.call(ctx, n, ctl.CmdDrain)
}

// Undrain runs `homingctl undrain` on host n.
func (l *Lab) Undrain(ctx context.Context, n int) (ctl.Status, error) {
	return l.call(ctx, n, ctl.CmdUndrain)
}

func (l *Lab) call(ctx context.Context, n int, cmd string) (ctl.Status, error) {
	var st ctl.Status
	if l.hosts[n] == nil {
		return st, fmt.Errorf("%w: h%d not started", ErrHost, n)
	}
	c, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err := ctl.Call(c, l.socket(n), cmd, nil, &st)
	return st, err
}

// bgpRoute makes the router's route go to hosts by BGP: every other started host is
// drained (homingctl drain), hosts are undrained, and it waits until the router's kernel
// route is exactly hosts (a host still warming announces when warm).
func (l *Lab) bgpRoute(hosts []int) error {
	ctx := context.Background()
	for _, n := range l.Hosts() {
		var err error
		if slices.Contains(hosts, n) {
			_, err = l.Undrain(ctx, n)
		} else {
			_, err = l.Drain(ctx, n)
		}
		if err != nil {
			return fmt.Errorf("h%d: %w", n, err)
		}
	}
	return l.WaitRoute(ctx, hosts, 30*time.Second)
}

// RouterNexthops are the next hops of the router kernel's route to the VIP, sorted.
func (l *Lab) RouterNexthops() ([]netip.Addr, error) {
	args := []string{"-n", l.NS("rtr"), "-j"}
	if l.opts.IPv6 {
		args = append(args, "-6")
	}
	out, err := exec.Command("ip", append(args, "route", "show", netip.PrefixFrom(l.VIPAddr(), l.hostBits()).String())...).Output()
	if err != nil {
		return nil, fmt.Errorf("lab: router route: %w", err)
	}
	var routes []struct {
		Gateway  string `json:"gateway"`
		Nexthops []struct {
			Gateway string `json:"gateway"`
		} `json:"nexthops"`
		NHID int `json:"nhid"`
	}
	if err := json.Unmarshal(out, &routes); err != nil {
		return nil, fmt.Errorf("lab: router route %q: %w", out, err)
	}
	var hops []netip.Addr
	add := func(s string) {
		if a, err := netip.ParseAddr(s); err == nil {
			hops = append(hops, a)
		}
	}
	for _, r := range routes {
		add(r.Gateway)
		for _, h := range r.Nexthops {
			add(h.Gateway)
		}
		if r.NHID != 0 && r.Gateway == "" && len(r.Nexthops) == 0 {
			g, err := l.groupGateways(r.NHID)
			if err != nil {
				return nil, err
			}
			hops = append(hops, g...)
		}
	}
	slices.SortFunc(hops, netip.Addr.Compare)
	return hops, nil
}

// groupGateways resolves a nexthop object (a group or a single hop) to its gateways.
func (l *Lab) groupGateways(id int) ([]netip.Addr, error) {
	out, err := exec.Command("ip", "-n", l.NS("rtr"), "-j", "nexthop", "show", "id", fmt.Sprint(id)).Output()
	if err != nil {
		return nil, fmt.Errorf("lab: nexthop %d: %w", id, err)
	}
	var nhs []struct {
		Gateway string `json:"gateway"`
		Group   []struct {
			ID int `json:"id"`
		} `json:"group"`
	}
	if err := json.Unmarshal(out, &nhs); err != nil {
		return nil, fmt.Errorf("lab: nexthop %d %q: %w", id, out, err)
	}
	var hops []netip.Addr
	for _, nh := range nhs {
		if a, err := netip.ParseAddr(nh.Gateway); err == nil {
			hops = append(hops, a)
		}
		for _, m := range nh.Group {
			g, err := l.groupGateways(m.ID)
			if err != nil {
				return nil, err
			}
			hops = append(hops, g...)
		}
	}
	return hops, nil
}

// WaitRoute waits until the router's route to the VIP goes to exactly hosts.
func (l *Lab) WaitRoute(ctx context.Context, hosts []int, limit time.Duration) error {
	var want []netip.Addr
	for _, n := range hosts {
		want = append(want, l.HostAddress(n))
	}
	slices.SortFunc(want, netip.Addr.Compare)
	for end := time.Now().Add(limit); ; {
		got, err := l.RouterNexthops()
		if err == nil && slices.Equal(got, want) {
			return nil
		}
		if time.Now().After(end) {
			return fmt.Errorf("%w: router's route to %s goes to %v (err %v), want %v\n%s", ErrTimeout, l.VIPAddr(), got, err, want,
				Tail(filepath.Join(l.Dir, "bgpd.log"), 20))
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
}
