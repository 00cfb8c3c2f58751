// Package lab builds a point of presence (POP) of network namespaces on one machine and
// runs homing in it: the demo (`homing-lab demo`) and the end-to-end test use it.
//
// Topology (addresses in 198.18.0.0/15 only):
//
//	  cli (198.18.100.2) ── vcli ┐
//	                              rtr: br0 198.18.0.1/24, 198.18.100.1/24 on vcli
//	                              │    VIP 198.19.255.1/32 multipath (L4 hash) via 198.18.0.1N
//	        ┌──────── vh1 ── vh2 ── vh3 ── vh4 (enslaved to br0)
//	        │          │      │      │
//	h1..hN: eth0 (the host's NIC, taken by homingd's DPDK net_af_packet; an nftables
//	        netdev ingress drop keeps the kernel off it), homing0 (homingd's TAP: the
//	        host address 198.18.0.1N, the VIP, the default route), an echo service on the
//	        VIP port 80 in the host's own cgroup, which homingd's sock_ops probe watches.
//
// Every name the lab creates carries its id, "hlab<pid>x<seq>": namespaces
// "<id>-rtr", "<id>-cli", "<id>-h<N>", the cgroup directory <cgroup root>/<id>/h<N>, the
// DPDK file prefix "<id>-h<N>" and the temporary directory "<tmp>/<id>-*". Close removes
// all of it; Cleanup removes what a crashed run (a dead <pid>) left behind.
//
// Processes: the lab starts homingd and the echo service of each host with nsenter
// (only the network namespace changes: `ip netns exec` would remount /sys and hide the
// cgroup hierarchy the probe attaches to). Client sockets are created in cli by
// goroutines locked to an OS thread that has entered cli's namespace; a socket keeps
// the namespace it was created in.
package lab

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/homing-dev/homing/ctl"
)

// Addresses of the lab.
var (
	VIP        = netip.MustParseAddr("198.19.255.1")
	RouterLAN  = netip.MustParseAddr("198.18.0.1")
	RouterCLI  = netip.MustParseAddr("198.18.100.1")
	ClientAddr = netip.MustParseAddr("198.18.100.2")
)

// The router's ECMP hash: the L4 5-tuple, computed from the packet's headers with the
// router's seed. Policy 1 (L4) would take the hash a local socket already put on the
// skb (its sk_txhash, carried across the veth from cli) instead of hashing the headers:
// the router's seed would then change nothing, and a client's retransmission timeout
// (which picks a new txhash) would move its connection. Policy 3 with the fields source
// and destination address, protocol, source and destination port (0x37) always hashes
// the headers, as a router does.
const (
	hashPolicy = "3"
	hashFields = "0x0037"
)

// ServicePort is the TCP port of the echo service on the VIP.
const ServicePort = 80

// MaxHosts is the largest number of hosts a lab holds.
const MaxHosts = 9

// Prefix starts every name the lab creates.
const Prefix = "hlab"

// Errors.
var (
	ErrHost    = errors.New("bad host number")
	ErrStarted = errors.New("host already started")
	ErrExited  = errors.New("process exited")
	ErrTimeout = errors.New("timed out")
)

// HostAddr is host n's address on the POP LAN, 198.18.0.1n.
func HostAddr(n int) netip.Addr { return netip.AddrFrom4([4]byte{198, 18, 0, byte(10 + n)}) }

// Options configure a lab.
type Options struct {
	// Homingd is the homingd executable.
	Homingd string
	// Serve is the command line that runs the echo service (see ServeEnv); the lab runs
	// it in the host's network namespace and cgroup, with the namespace's name as one more
	// argument (so that ps tells which lab and host it serves). Default: this executable
	// with the argument "serve" (homing-lab's hidden subcommand).
	Serve []string
	// Redirect is tunnel.redirect of every homingd: false is the plain-ECMP baseline.
	Redirect bool
	// NoTentative sets probe.tentative = false and NoPark tunnel.park_hold = "0" in
	// every homingd, to measure what they do for new connections (see churn.go).
	NoTentative, NoPark bool
	// Log receives the lab's progress lines (nil: none).
	Log io.Writer
	// KeepDir keeps the temporary directory (configs, logs) at Close.
	KeepDir bool
	// IPv6 builds an IPv6 lab: VIP, clients, hosts, tunnels and gossip (see v6.go).
	IPv6 bool
	// Racks is the number of racks (L2 domains, one bridge each) behind the router;
	// 0 means 1. Hosts take the racks in turn (see v6.go).
	Racks int
	// Relays are the hosts that relay gossip between racks (gossip.relays).
	Relays []int
	// BGP runs FRR (zebra, bgpd) in the router namespace: the hosts announce the VIP to
	// it by BGP, the route is what BGP installs, SetRoute drains and undrains hosts.
	BGP bool
	// NoClamp sets tunnel.clamp_mss = false in every homingd: full-size segments then
	// rely on the ICMP too-big path (path MTU discovery).
	NoClamp bool
	// EditConfig, if set, rewrites host n's generated homingd configuration before it is
	// written (the fault tests shorten gossip.grace, shrink table.capacity4, ...).
	EditConfig func(n int, toml string) string
	// QUIC runs a raw-QUIC echo server on the VIP's QUICPort beside every host's echo
	// service, issuing connection IDs that carry the host's id (quic.go).
	QUIC bool
}

var labSeq atomic.Int32

// Lab is one POP. Its methods are not safe for concurrent use.
type Lab struct {
	ID   string // hlab<pid>x<seq>
	Dir  string // temporary directory: configs, key file, logs
	opts Options

	cgroupRoot string // <unified>/<id>
	keyFile    string
	hosts      map[int]*Host
	routed     []int // hosts in the VIP's multipath route
	pids       []int // every process started
	zebra      *proc // Options.BGP: the router's FRR daemons
	bgpd       *proc
	closed     bool
}

// Host is one POP host: its namespace, cgroup, homingd and echo service.
type Host struct {
	N       int
	NS      string
	Cgroup  string
	Config  string
	LogFile string
	homingd *proc
	serve   *proc
}

// proc is a process the lab started.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error // valid after done
	out  *os.File
}

// New builds the router and the client namespaces; hosts come with AddHosts.
func New(opts Options) (l *Lab, err error) {
	if opts.Homingd == "" {
		return nil, errors.New("lab: no homingd executable")
	}
	if len(opts.Serve) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("lab: %w", err)
		}
		opts.Serve = []string{exe, "serve"}
	}
	if opts.Racks < 0 || opts.Racks > MaxRacks {
		return nil, fmt.Errorf("lab: %d racks, want 1..%d", opts.Racks, MaxRacks)
	}
	id := fmt.Sprintf("%s%dx%d", Prefix, os.Getpid(), labSeq.Add(1))
	l = &Lab{ID: id, opts: opts, hosts: map[int]*Host{}}
	defer func() {
		if err != nil {
			l.Close()
			l = nil
		}
	}()
	if l.Dir, err = os.MkdirTemp("", id+"-"); err != nil {
		return l, fmt.Errorf("lab: %w", err)
	}
	root, err := CgroupRoot()
	if err != nil {
		return l, err
	}
	l.cgroupRoot = filepath.Join(root, id)
	if err = os.Mkdir(l.cgroupRoot, 0o755); err != nil {
		return l, fmt.Errorf("lab: cgroup: %w", err)
	}
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	l.keyFile = filepath.Join(l.Dir, "gossip.key")
	if err = os.WriteFile(l.keyFile, []byte("# lab gossip key\n"+hex.EncodeToString(key)+"\n"), 0o600); err != nil {
		return l, fmt.Errorf("lab: %w", err)
	}

	rtr, cli := l.NS("rtr"), l.NS("cli")
	script := l.routerScript(rtr, cli)
	for _, c := range script {
		if err = run(c...); err != nil {
			return l, err
		}
	}
	if err = txChecksumOff(cli, "eth0"); err != nil {
		return l, err
	}
	if opts.BGP {
		if err = l.startFRR(context.Background()); err != nil {
			return l, err
		}
	}
	l.logf("lab %s: router and client namespaces up (files in %s)", id, l.Dir)
	return l, nil
}

// NS is the name of the lab's namespace role ("rtr", "cli", "h1", ...).
func (l *Lab) NS(role string) string { return l.ID + "-" + role }

func (l *Lab) logf(format string, a ...any) {
	if l.opts.Log != nil {
		fmt.Fprintf(l.opts.Log, format+"\n", a...)
	}
}

// Host returns host n, or nil.
func (l *Lab) Host(n int) *Host { return l.hosts[n] }

// Hosts are the started hosts' numbers, in order.
func (l *Lab) Hosts() []int {
	var ns []int
	for n := 1; n <= MaxHosts; n++ {
		if l.hosts[n] != nil {
			ns = append(ns, n)
		}
	}
	return ns
}

// AddHosts creates hosts (each 1..MaxHosts) and starts their homingd and echo
// services, all at once. It returns when every service listens on the VIP and every
// host has learned every other running host from gossip. The new hosts are not in the
// router's route until SetRoute names them.
func (l *Lab) AddHosts(ctx context.Context, ns ...int) error {
	start := time.Now()
	for _, n := range ns {
		if err := l.prepareHost(n); err != nil {
			return err
		}
	}
	for _, n := range ns {
		h := l.hosts[n]
		if err := l.waitStatus(ctx, h, 30*time.Second); err != nil {
			return fmt.Errorf("h%d: homingd: %w\n%s", n, err, Tail(h.LogFile, 20))
		}
		serveLog := filepath.Join(l.Dir, fmt.Sprintf("h%d-serve.log", n))
		env := []string{fmt.Sprintf("%s=%s", ServeEnv, l.Service())}
		if l.opts.QUIC {
			env = append(env, fmt.Sprintf("%s=%d", QUICEnv, n))
		}
		var err error
		if h.serve, err = l.start(fmt.Sprintf("h%d echo", n), serveLog, h.NS, h.Cgroup, env, l.opts.Serve[0],
			append(l.opts.Serve[1:len(l.opts.Serve):len(l.opts.Serve)], h.NS)...); err != nil { // the name, for ps
			return err
		}
		if err = waitLog(ctx, h.serve, serveLog, ServeReady, 10*time.Second); err != nil {
			return fmt.Errorf("h%d: echo service: %w\n%s", n, err, Tail(serveLog, 20))
		}
	}
	if err := l.waitPeers(ctx, 10*time.Second); err != nil {
		return err
	}
	for _, n := range ns {
		l.logf("  h%d up: homingd pid %d, echo service on %s:%d in cgroup %s", n, l.hosts[n].homingd.cmd.Process.Pid,
			l.VIPAddr(), ServicePort, l.hosts[n].Cgroup)
	}
	l.logf("  hosts %v up, gossip membership complete (%.1fs)", ns, time.Since(start).Seconds())
	return nil
}

// prepareHost creates host n's namespace, NIC, drop rule, cgroup and configuration, and
// starts its homingd.
func (l *Lab) prepareHost(n int) (err error) {
	if n < 1 || n > MaxHosts {
		return fmt.Errorf("%w: %d", ErrHost, n)
	}
	if l.hosts[n] != nil {
		return fmt.Errorf("%w: h%d", ErrStarted, n)
	}
	h := &Host{N: n, NS: l.NS(fmt.Sprintf("h%d", n)), Cgroup: filepath.Join(l.cgroupRoot, fmt.Sprintf("h%d", n)),
		Config: filepath.Join(l.Dir, fmt.Sprintf("h%d.toml", n)), LogFile: filepath.Join(l.Dir, fmt.Sprintf("h%d.log", n))}
	l.hosts[n] = h
	rtr, port := l.NS("rtr"), fmt.Sprintf("vh%d", n)
	script := [][]string{
		{"ip", "netns", "add", h.NS},
		{"ip", "-n", h.NS, "link", "set", "lo", "up"},
		{"ip", "-n", rtr, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", h.NS},
		{"ip", "-n", rtr, "link", "set", port, "master", bridge(l.Rack(n)), "up"},
		{"ip", "netns", "exec", h.NS, "sysctl", "-qw", "net.ipv6.conf.eth0.disable_ipv6=1"},
		{"ip", "-n", h.NS, "link", "set", "eth0", "up"},
	}
	for _, c := range script {
		if err = run(c...); err != nil {
			return err
		}
	}
	nft := "add table netdev homing\n" +
		"add chain netdev homing in { type filter hook ingress device eth0 priority 0; policy drop; }\n"
	if err = runIn(nft, "ip", "netns", "exec", h.NS, "nft", "-f", "-"); err != nil {
		return err
	}
	if err = os.Mkdir(h.Cgroup, 0o755); err != nil {
		return fmt.Errorf("h%d: cgroup: %w", n, err)
	}
	cfg := l.hostConfig(n, h.Cgroup)
	if l.opts.EditConfig != nil {
		cfg = l.opts.EditConfig(n, cfg)
	}
	if err = os.WriteFile(h.Config, []byte(cfg), 0o644); err != nil {
		return fmt.Errorf("h%d: %w", n, err)
	}
	h.homingd, err = l.start(fmt.Sprintf("h%d homingd", n), h.LogFile, h.NS, "", nil, l.opts.Homingd, "-config", h.Config)
	return err
}

// waitStatus waits until host h's homingd answers on its control socket: it has
// configured its kernel interface (address, VIP, routes) and started gossip and the probe.
func (l *Lab) waitStatus(ctx context.Context, h *Host, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		_, err := l.Status(ctx, h.N)
		if err == nil {
			return nil
		}
		if h.homingd.exited() {
			return fmt.Errorf("%w: %v", ErrExited, h.homingd.err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: control socket: %v", ErrTimeout, err)
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
}

// waitPeers waits until every running host's gossip sees every other host up (each has
// the others' MACs for its tunnel templates), asking each homingd for its status.
func (l *Lab) waitPeers(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		want := len(l.Hosts()) - 1
		missing := ""
		for _, n := range l.Hosts() {
			st, err := l.Status(ctx, n)
			if err != nil {
				return fmt.Errorf("h%d: %w", n, err)
			}
			if st.PeersUp < want {
				missing += fmt.Sprintf(" h%d sees %d of %d peers;", n, st.PeersUp, want)
			}
		}
		if missing == "" {
			return nil
		}
		if err := l.Check(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: gossip membership incomplete:%s", ErrTimeout, missing)
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
}

// start runs a command in namespace ns (and cgroup dir cgroup if not empty), its output
// appended to logFile.
func (l *Lab) start(name, logFile, ns, cgroup string, env []string, exe string, args ...string) (*proc, error) {
	out, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	cmd := exec.Command("nsenter", append([]string{"--net=" + netnsPath(ns), "--", exe}, args...)...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = append(os.Environ(), env...)
	// SIGTERM if this process dies: homingd then removes its TAP and runtime files.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if cgroup != "" {
		cg, err := os.Open(cgroup)
		if err != nil {
			out.Close()
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		defer cg.Close()
		cmd.SysProcAttr.UseCgroupFD = true
		cmd.SysProcAttr.CgroupFD = int(cg.Fd())
	}
	if err := cmd.Start(); err != nil {
		out.Close()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{}), out: out}
	l.pids = append(l.pids, cmd.Process.Pid)
	go func() { // process reaper
		p.err = cmd.Wait()
		out.Close()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, waits up to grace, then SIGKILL.
func (p *proc) stop(grace time.Duration) error {
	if p == nil || p.exited() {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
	}
	_ = p.cmd.Process.Kill()
	<-p.done
	return fmt.Errorf("%s: killed after %v", p.name, grace)
}

// waitLog waits until file contains want, the process exits, or the time is up.
func waitLog(ctx context.Context, p *proc, file, want string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		if b, err := os.ReadFile(file); err == nil && bytes.Contains(b, []byte(want)) {
			return nil
		}
		if p.exited() {
			return fmt.Errorf("%w: %v", ErrExited, p.err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w waiting for %q", ErrTimeout, want)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Check reports a host process that has exited.
func (l *Lab) Check() error {
	var errs []error
	for _, n := range l.Hosts() {
		h := l.hosts[n]
		for _, p := range []*proc{h.homingd, h.serve} {
			if p != nil && p.exited() {
				errs = append(errs, fmt.Errorf("%s: %w: %v", p.name, ErrExited, p.err))
			}
		}
	}
	return errors.Join(errs...)
}

// SetRoute makes the router's route to the VIP a multipath route over the given hosts
// (ip route replace): leaving a running host out drains it.
func (l *Lab) SetRoute(hosts []int) error {
	for _, n := range hosts {
		if l.hosts[n] == nil {
			return fmt.Errorf("%w: h%d not started", ErrHost, n)
		}
	}
	if l.opts.BGP {
		if err := l.bgpRoute(hosts); err != nil {
			return err
		}
	} else if err := run(l.routeArgs(hosts)...); err != nil {
		return err
	}
	l.routed = append(l.routed[:0], hosts...)
	return nil
}

// PIDs are the processes the lab started (homingd and echo services).
func (l *Lab) PIDs() []int { return append([]int(nil), l.pids...) }

// Routed are the hosts of the VIP's route.
func (l *Lab) Routed() []int { return append([]int(nil), l.routed...) }

// Rehash sets a new net.ipv4.fib_multipath_hash_seed on the router, as after a router
// restart: most flows move to another host.
func (l *Lab) Rehash(seed uint32) error {
	return run("ip", "netns", "exec", l.NS("rtr"), "sysctl", "-qw",
		"net.ipv4.fib_multipath_hash_seed="+strconv.FormatUint(uint64(seed), 10))
}

// Close stops every process and removes every namespace, cgroup, runtime file and (unless
// KeepDir) the temporary directory. It is idempotent.
func (l *Lab) Close() error {
	if l.closed {
		return nil
	}
	l.closed = true
	var errs []error
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, h := range l.hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var es []error
			if err := h.serve.stop(2 * time.Second); err != nil {
				es = append(es, err)
			}
			if err := h.homingd.stop(10 * time.Second); err != nil {
				es = append(es, fmt.Errorf("%w\n%s", err, Tail(h.LogFile, 10)))
			}
			mu.Lock()
			errs = append(errs, es...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if err := l.stopFRR(); err != nil {
		errs = append(errs, err)
	}
	// Whatever still runs in the lab's namespaces (nothing, normally) goes too.
	if err := removeLab(l.ID, l.cgroupRoot); err != nil {
		errs = append(errs, err)
	}
	if l.Dir != "" && !l.opts.KeepDir {
		if err := os.RemoveAll(l.Dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func netnsPath(ns string) string { return filepath.Join(netnsDir, ns) }

const netnsDir = "/var/run/netns"

// run runs a command and returns its output in the error.
func run(args ...string) error { return runIn("", args...) }

func runIn(stdin string, args ...string) error {
	cmd := exec.Command(args[0], args[1:]...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// Tail returns the last n lines of a file (for failure reports).
func Tail(file string, n int) string {
	b, err := os.ReadFile(file)
	if err != nil {
		return fmt.Sprintf("(%s: %v)", file, err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "  " + filepath.Base(file) + ": " + strings.Join(lines, "\n  "+filepath.Base(file)+": ")
}

// Status asks host n's homingd for its status over its control socket.
func (l *Lab) Status(ctx context.Context, n int) (ctl.Status, error) {
	var st ctl.Status
	h := l.hosts[n]
	if h == nil {
		return st, fmt.Errorf("%w: h%d not started", ErrHost, n)
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	err := ctl.Call(ctx, l.socket(n), ctl.CmdStatus, nil, &st)
	return st, err
}

// Redirected is the number of packets every host's data plane has tunnelled to another
// host so far.
func (l *Lab) Redirected(ctx context.Context) (uint64, error) {
	t, err := l.Tunnel(ctx)
	return t.Redirected, err
}

// TunnelCounts are the data planes' tunnel counters, summed over every host.
type TunnelCounts struct {
	Redirected uint64 // packets tunnelled to another host
	TooBig     uint64 // packets too big for the tunnel (class too_big)
	ICMPTooBig uint64 // ICMP too-big replies sent to clients
	DropTooBig uint64 // too big and not answered
	MSSClamped uint64 // SYN-ACK MSS options lowered
}

// Tunnel sums the tunnel counters of every host's data plane so far.
func (l *Lab) Tunnel(ctx context.Context) (TunnelCounts, error) {
	var sum TunnelCounts
	for _, n := range l.Hosts() {
		var st ctl.Stats
		c, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := ctl.Call(c, l.socket(n), ctl.CmdStats, nil, &st)
		cancel()
		if err != nil {
			return sum, fmt.Errorf("h%d: %w", n, err)
		}
		for _, lc := range st.Lcores {
			sum.Redirected += lc.Redirected
			sum.TooBig += lc.Classes["too_big"]
			sum.ICMPTooBig += lc.ICMPTooBig
			sum.DropTooBig += lc.Drops["too_big"]
			sum.MSSClamped += lc.MSSClamped
		}
	}
	return sum, nil
}

// ClientPMTU is the path MTU the client's kernel has learned for the VIP (from ICMP
// too-big errors), or 0 if it has none cached.
func (l *Lab) ClientPMTU() (int, error) {
	out, err := exec.Command("ip", "-n", l.NS("cli"), "route", "get", l.VIPAddr().String()).CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("ip route get: %v: %s", err, out)
	}
	f := strings.Fields(string(out))
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "mtu" {
			return strconv.Atoi(f[i+1])
		}
	}
	return 0, nil
}

// WaitSessions waits until the tables of hosts hold at least want sessions each, or
// limit passes. It returns each host's count either way, and ErrTimeout in the second case.
func (l *Lab) WaitSessions(ctx context.Context, hosts []int, want int, limit time.Duration) (map[int]int, error) {
	deadline := time.Now().Add(limit)
	got := map[int]int{}
	for {
		done := true
		for _, n := range hosts {
			st, err := l.Status(ctx, n)
			if err != nil {
				return got, fmt.Errorf("h%d: %w", n, err)
			}
			got[n] = st.Sessions4 + st.Sessions6
			if got[n] < want {
				done = false
			}
		}
		if done {
			return got, nil
		}
		if time.Now().After(deadline) {
			return got, fmt.Errorf("%w: sessions per host %v, want %d", ErrTimeout, got, want)
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return got, err
		}
	}
}

func (l *Lab) socket(n int) string { return filepath.Join(l.Dir, fmt.Sprintf("h%d.sock", n)) }
