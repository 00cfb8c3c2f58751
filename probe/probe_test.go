//go:build linux

package probe

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/homing-dev/homing/internal/testenv"
	"github.com/homing-dev/homing/session"
)

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		runHelper()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

var (
	vip4     = netip.MustParseAddr("198.19.255.1")
	nonVIP4  = netip.MustParseAddr("198.18.77.1")
	client4  = netip.MustParseAddr("198.18.100.2")
	vip6     = netip.MustParseAddr("2001:2::1")
	client6  = netip.MustParseAddr("2001:2::100")
	testVIPs = []netip.Prefix{netip.PrefixFrom(vip4, 32), netip.PrefixFrom(vip6, 128)}
)

var nsSeq atomic.Int32

// testNetns creates a network namespace with lo up and the test addresses on lo,
// deleted at cleanup.
func testNetns(t *testing.T) string {
	t.Helper()
	name := fmt.Sprintf("hmg-probe-%d-%d", os.Getpid(), nsSeq.Add(1))
	run(t, "ip", "netns", "add", name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	run(t, "ip", "-n", name, "link", "set", "lo", "up")
	for _, a := range []string{"198.19.255.1/32", "198.18.77.1/32", "198.18.100.2/32"} {
		run(t, "ip", "-n", name, "addr", "add", a, "dev", "lo")
	}
	for _, a := range []string{"2001:2::1/128", "2001:2::100/128"} {
		run(t, "ip", "-n", name, "addr", "add", a, "dev", "lo", "nodad")
	}
	return name
}

// testCgroup creates a cgroup v2 under the unified hierarchy, removed at cleanup
// (after the processes still in it are moved to the root).
func testCgroup(t *testing.T) string {
	t.Helper()
	root, err := CgroupRoot()
	if err != nil {
		testenv.Missing(t, "cgroup v2: "+err.Error())
	}
	dir := filepath.Join(root, fmt.Sprintf("hmg-probe-%d-%d", os.Getpid(), nsSeq.Add(1)))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs")); err == nil {
			for _, pid := range strings.Fields(string(b)) {
				_ = os.WriteFile(filepath.Join(root, "cgroup.procs"), []byte(pid), 0)
			}
		}
		if err := os.Remove(dir); err != nil {
			t.Errorf("remove cgroup: %v", err)
		}
	})
	return dir
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// helperProc is the helper process, in the netns and the cgroup.
type helperProc struct {
	t   *testing.T
	in  io.Writer
	out *bufio.Scanner
}

// vipLab is the setup of the root tests with connections: a netns, a cgroup, and the
// helper process in them listening on the IPv4 VIP, port 8080.
func vipLab(t *testing.T) (ns, cg string, h *helperProc, vip netip.AddrPort) {
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "ip")
	ns, cg = testNetns(t), testCgroup(t)
	h = startHelper(t, ns, cg)
	vip = netip.AddrPortFrom(vip4, 8080)
	h.do("listen %s", vip)
	return ns, cg, h, vip
}

func startHelper(t *testing.T, ns, cgroup string) *helperProc {
	t.Helper()
	cg, err := os.Open(cgroup)
	if err != nil {
		t.Fatal(err)
	}
	defer cg.Close()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", ns, exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cg.Fd())}
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start helper: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	sc := bufio.NewScanner(out)
	sc.Buffer(nil, 1<<20)
	return &helperProc{t: t, in: in, out: sc}
}

func (h *helperProc) do(format string, args ...any) string {
	h.t.Helper()
	cmd := fmt.Sprintf(format, args...)
	if _, err := fmt.Fprintln(h.in, cmd); err != nil {
		h.t.Fatalf("helper %q: %v", cmd, err)
	}
	if !h.out.Scan() {
		h.t.Fatalf("helper %q: no answer (%v)", cmd, h.out.Err())
	}
	reply := h.out.Text()
	if !strings.HasPrefix(reply, "ok") {
		h.t.Fatalf("helper %q: %s", cmd, reply)
	}
	return strings.TrimSpace(strings.TrimPrefix(reply, "ok"))
}

// dial opens n connections and returns their keys (client→VIP).
func (h *helperProc) dial(group string, n int, from netip.Addr, to netip.AddrPort) []session.Key {
	h.t.Helper()
	var keys []session.Key
	for _, pair := range strings.Fields(h.do("dial %s %d %s %s", group, n, from, to)) {
		src, dst, _ := strings.Cut(pair, ">")
		s, err1 := netip.ParseAddrPort(src)
		d, err2 := netip.ParseAddrPort(dst)
		if err1 != nil || err2 != nil {
			h.t.Fatalf("helper answered %q", pair)
		}
		keys = append(keys, session.Key{
			Src: s.Addr().Unmap(), SrcPort: s.Port(),
			Dst: d.Addr().Unmap(), DstPort: d.Port(),
			Proto: session.TCP,
		})
	}
	if len(keys) != n {
		h.t.Fatalf("dialed %d connections, want %d", len(keys), n)
	}
	return keys
}

// collector runs a probe and keeps what it reports.
type collector struct {
	mu     sync.Mutex
	events []Event
	done   chan error
}

func runProbe(t *testing.T, p *Probe) *collector {
	t.Helper()
	c := &collector{done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		c.done <- p.Run(ctx, func(e Event) {
			c.mu.Lock()
			c.events = append(c.events, e)
			c.mu.Unlock()
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-c.done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run returned %v, want context.Canceled", err)
		}
		if err := p.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return c
}

// keys returns the keys of the events of kind k so far, sorted.
func (c *collector) keys(k Kind) []session.Key {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []session.Key
	for _, e := range c.events {
		if e.Kind == k {
			out = append(out, e.Key)
		}
	}
	sortKeys(out)
	return out
}

// waitFor waits until the collector holds at least len(want) events of kind k, then
// until a short quiet period has passed, and requires exactly want.
func (c *collector) waitFor(t *testing.T, what string, k Kind, want []session.Key) {
	t.Helper()
	want = slices.Clone(want)
	sortKeys(want)
	deadline := time.Now().Add(10 * time.Second)
	for len(c.keys(k)) < len(want) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // anything extra would show up now
	got := c.keys(k)
	if !slices.Equal(got, want) {
		t.Fatalf("%s: got %d %s events, want %d\n got: %v\nwant: %v", what, len(got), k, len(want), got, want)
	}
}

func sortedKeys(ks []session.Key) []session.Key {
	ks = slices.Clone(ks)
	sortKeys(ks)
	return ks
}

// index is the position of the first event of kind k for key, or -1.
func (c *collector) index(k Kind, key session.Key) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, e := range c.events {
		if e.Kind == k && e.Key == key {
			return i
		}
	}
	return -1
}

func (c *collector) total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.events)
}

func sortKeys(keys []session.Key) {
	slices.SortFunc(keys, func(a, b session.Key) int { return strings.Compare(a.String(), b.String()) })
}

// inNetns runs f on a thread that is in the network namespace ns.
func inNetns(t *testing.T, ns string, f func()) {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	h, err := netns.GetFromName(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if err := netns.Set(h); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := netns.Set(orig); err != nil {
			panic(fmt.Sprintf("cannot return to the original netns: %v", err))
		}
	}()
	f()
}

// TestProbeSessions runs a server and clients in a netns of their own and in a
// cgroup of their own, and checks what three probes on that cgroup report:
// p filtered to the test netns (the default, Open called in it), q filtered to the
// test process's netns (sees nothing), all with AllNetNS.
func TestProbeSessions(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "ip")
	ns := testNetns(t)
	cg := testCgroup(t)
	h := startHelper(t, ns, cg)

	vip := netip.AddrPortFrom(vip4, 8080)
	dual := netip.AddrPortFrom(vip4, 8081)
	v6 := netip.AddrPortFrom(vip6, 8080)
	other := netip.AddrPortFrom(nonVIP4, 8080)
	h.do("listen %s", vip)
	h.do("listen %s", other)
	h.do("listen %s", v6)
	h.do("listen [::]:8081") // dual stack: IPv4 connections arrive IPv4-mapped

	// Connections that exist before any probe: found by sock_diag.
	old := h.dial("old", 5, client4, vip)

	var p *Probe
	inNetns(t, ns, func() {
		var err error
		p, err = Open(Config{CgroupPath: cg, VIPs: testVIPs, ResyncInterval: 50 * time.Millisecond})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
	})
	q, err := Open(Config{CgroupPath: cg, VIPs: testVIPs})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	all, err := Open(Config{CgroupPath: cg, VIPs: testVIPs, AllNetNS: true})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	pc, qc, ac := runProbe(t, p), runProbe(t, q), runProbe(t, all)
	// Synced closes only once the connections before Open are announced (homingd waits
	// for it before it gossips after a restart).
	select {
	case <-p.Synced():
	case <-time.After(10 * time.Second):
		t.Fatal("Synced not closed 10 s after Run started")
	}
	if want := sortedKeys(old); !slices.Equal(pc.keys(Add), want) {
		t.Errorf("at Synced: Add events %v, want the connections before Open %v", pc.keys(Add), want)
	}
	pc.waitFor(t, "connections before Open", Add, old)

	const n = 50
	added := h.dial("v4", n, client4, vip)
	added = append(added, h.dial("v6", 20, client6, v6)...)
	added = append(added, h.dial("dual", 20, client4, dual)...)
	h.dial("other", n, client4, other)
	pc.waitFor(t, "p", Add, append(slices.Clone(old), added...))
	ac.waitFor(t, "all", Add, added)
	// Every accepted handshake was announced as tentative first (SYN received).
	pc.waitFor(t, "p", Tentative, added)
	for _, k := range added {
		ti, ai := pc.index(Tentative, k), pc.index(Add, k)
		if ti < 0 || ai < 0 || ti > ai {
			t.Fatalf("%v: tentative at %d, add at %d", k, ti, ai)
		}
	}
	for _, k := range pc.keys(Add) {
		if k.Dst != vip4 && k.Dst != vip6 {
			t.Errorf("event for a non-VIP: %v", k)
		}
	}

	var listed []session.Key
	inNetns(t, ns, func() {
		if listed, err = ListEstablished(testVIPs); err != nil {
			t.Fatalf("ListEstablished: %v", err)
		}
	})
	sortKeys(listed)
	want := append(slices.Clone(old), added...)
	sortKeys(want)
	if !slices.Equal(listed, want) {
		t.Fatalf("ListEstablished: got %d, want %d\n got: %v\nwant: %v", len(listed), len(want), listed, want)
	}
	if len(pc.keys(Delete)) != 0 {
		t.Fatalf("deletes before any close: %v", pc.keys(Delete))
	}

	h.do("close old client-first")
	h.do("close v4 server-first")
	h.do("close v6 rst")
	h.do("close dual client-first")
	h.do("close other server-first")
	pc.waitFor(t, "p", Delete, want)
	ac.waitFor(t, "all", Delete, added)

	if n := qc.total(); n != 0 {
		t.Errorf("probe filtered to another netns reported %d events: %v", n, qc.events[:3])
	}
	for name, pr := range map[string]*Probe{"p": p, "q": q, "all": all} {
		if l := pr.Lost(); l != 0 {
			t.Errorf("probe %s lost %d events", name, l)
		}
	}
	inNetns(t, ns, func() {
		if listed, err = ListEstablished(testVIPs); err != nil || len(listed) != 0 {
			t.Fatalf("ListEstablished after close: %v, %v", listed, err)
		}
	})
}

// TestProbeLost overflows a one-page ring buffer before anything reads it: the
// kernel counts the Adds it could not deliver, Run's start-up listing announces
// those connections all the same, and each connection gets exactly one Delete
// when it closes: from the ring, from the sock_diag poll for those whose Add was
// lost, or from a resync for those whose Delete was lost. Close ends Run with
// ErrClosed.
func TestProbeLost(t *testing.T) {
	ns, cg, h, vip := vipLab(t)

	var p *Probe
	inNetns(t, ns, func() {
		var err error
		p, err = Open(Config{CgroupPath: cg, VIPs: testVIPs, RingBytes: os.Getpagesize(), ResyncInterval: 50 * time.Millisecond})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
	})
	defer p.Close()

	const n = 200
	keys := h.dial("all", n, client4, vip)
	// Each connection makes two events (tentative, add): 2n for a ring of ~73.
	lostAdds := p.Lost()
	if lostAdds == 0 || lostAdds >= 2*n {
		t.Fatalf("lost %d of %d events, want some but not all with a one-page ring", lostAdds, 2*n)
	}

	c := &collector{done: make(chan error, 1)}
	go func() {
		c.done <- p.Run(context.Background(), func(e Event) {
			c.mu.Lock()
			c.events = append(c.events, e)
			c.mu.Unlock()
		})
	}()
	c.waitFor(t, "adds", Add, keys)

	h.do("close all client-first")
	c.waitFor(t, "deletes", Delete, keys)
	c.checkStream(t)
	lostDels := p.Lost() - lostAdds
	t.Logf("%d connections: %d tentative/add events lost in the kernel (adds announced from sock_diag), %d deletes lost; %+v",
		n, lostAdds, lostDels, p.Stats())

	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-c.done:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("Run after Close returned %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after Close")
	}
}
