package gossip_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/homing-dev/homing/gossip"
	"github.com/homing-dev/homing/gossip/gossiptest"
	"github.com/homing-dev/homing/internal/testenv"
)

// ipCmd runs ip(8) with args.
func ipCmd(t testing.TB, args ...string) {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// inNetns runs f on an OS thread switched into the named network namespace. Sockets
// opened by f stay in that namespace.
func inNetns(name string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		h, err := netns.GetFromName(name)
		if err != nil {
			errc <- err
			return
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			errc <- err
			return
		}
		ferr := f()
		if err := netns.Set(orig); err != nil {
			errc <- fmt.Errorf("restore netns: %w", err) // the thread stays locked and dies
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// bridgeLab creates hosts network namespaces with eth0 on one bridge, host i at
// 198.18.50.i/24, and returns their names.
func bridgeLab(t testing.TB, hosts int) []string {
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "ip")
	prefix := fmt.Sprintf("hmg-gossip-%d-%s", os.Getpid(), strings.ToLower(t.Name()[4:8]))
	br := prefix + "-br"
	ipCmd(t, "netns", "add", br)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", br).Run() })
	ipCmd(t, "-n", br, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0")
	ipCmd(t, "-n", br, "link", "set", "br0", "up")
	var names []string
	for i := 1; i <= hosts; i++ {
		ns := fmt.Sprintf("%s-h%d", prefix, i)
		ipCmd(t, "netns", "add", ns)
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
		veth := fmt.Sprintf("v%d", i)
		ipCmd(t, "-n", br, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
		ipCmd(t, "-n", br, "link", "set", veth, "master", "br0", "up")
		ipCmd(t, "-n", ns, "addr", "add", fmt.Sprintf("198.18.50.%d/24", i), "dev", "eth0")
		ipCmd(t, "-n", ns, "link", "set", "eth0", "up")
		ipCmd(t, "-n", ns, "link", "set", "lo", "up")
		names = append(names, ns)
	}
	return names
}

// startNetns runs a node with cfg in namespace ns over real multicast (and, with
// cfg.Repair, a TCP repair listener on its address and a dialer in ns).
func startNetns(t testing.TB, ns string, cfg gossip.Config) *member {
	var conn *gossip.MulticastConn
	if err := inNetns(ns, func() error {
		var err error
		if conn, err = gossip.ListenMulticast(cfg.MulticastConfig()); err != nil {
			return err
		}
		if cfg.Repair {
			cfg.RepairListener, err = gossip.ListenRepair(netip.AddrPortFrom(cfg.Addr, cfg.Port))
		}
		return err
	}); err != nil {
		t.Fatalf("host %d: %v", cfg.HostID, err)
	}
	if cfg.Repair {
		cfg.RepairDialer = nsDialer(ns)
	}
	m := &member{table: gossiptest.NewTable(), tmpl: gossiptest.NewTemplates(), done: make(chan struct{})}
	var err error
	if m.node, err = gossip.New(cfg, conn, m.table, m.tmpl); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	go func() {
		defer close(m.done)
		if err := m.node.Run(ctx); err != nil {
			t.Errorf("node %d: %v", cfg.HostID, err)
		}
	}()
	t.Cleanup(m.stop)
	return m
}

// nsDialer dials TCP from a network namespace.
type nsDialer string

func (ns nsDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := inNetns(string(ns), func() error {
		var err error
		c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// TestMulticastNetns runs three nodes in three network namespaces on one bridge, over
// the real multicast transport, and a fourth that signs under another key: a session
// announced by one node reaches the other two; the fourth's datagrams are rejected and
// counted and its session reaches nobody; a node that stops heartbeating goes down and
// its sessions go after the grace.
func TestMulticastNetns(t *testing.T) {
	const hosts = 3
	group := netip.MustParseAddr("239.77.0.1")
	var ms []*member
	names := bridgeLab(t, hosts+1)
	for i, ns := range names[:hosts] {
		cfg := fastConfig(t, uint16(i+1))
		cfg.Group, cfg.Port, cfg.Interface = group, 6081, "eth0"
		cfg.Grace = 2 * time.Second // room to see the session survive the down before the grace
		ms = append(ms, startNetns(t, ns, cfg))
	}

	for _, m := range ms {
		gossiptest.WaitFor(t, 10*time.Second, "peers up over multicast", func() bool { return m.node.Stats().PeersUp == hosts-1 })
	}
	p, _ := ms[0].tmpl.Peer(2)
	if p.Addr != netip.MustParseAddr("198.18.50.2") || len(p.MAC) != 6 {
		t.Errorf("peer 2 as seen by 1: %+v", p)
	}
	k := key(42)
	if err := ms[0].node.LocalAdd(k); err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		gossiptest.WaitFor(t, 10*time.Second, "session over multicast", owned(m.table, k, 1))
	}
	for _, m := range ms {
		s := m.node.Stats()
		if s.OwnDatagrams != 0 {
			t.Errorf("node %d heard itself %d times (multicast loopback must be off)", m.node.HostID(), s.OwnDatagrams)
		}
		if s.AuthFailures+s.Malformed+s.Truncated+s.Oversize != 0 {
			t.Errorf("node %d rejects: %+v", m.node.HostID(), s)
		}
	}

	// A node under the wrong key: everything it sends is rejected and counted.
	rogueCfg := fastConfig(t, hosts+1)
	rogueCfg.Group, rogueCfg.Port, rogueCfg.Interface = group, 6081, "eth0"
	rogueCfg.Keys = ring(t, bytes.Repeat([]byte{0xab}, 32))
	rogue := startNetns(t, names[hosts], rogueCfg)
	rk := key(43)
	if err := rogue.node.LocalAdd(rk); err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		gossiptest.WaitFor(t, 10*time.Second, "wrong-key datagrams counted", func() bool { return m.node.Stats().AuthFailures >= 3 })
		if _, ok := m.table.Get(rk); ok {
			t.Fatalf("node %d applied a session announced under the wrong key", m.node.HostID())
		}
		if s := m.node.Stats(); s.PeersUp != hosts-1 {
			t.Fatalf("node %d: %d peers up: the wrong-key node must not count", m.node.HostID(), s.PeersUp)
		}
	}
	rogue.stop()

	// Node 3 stops heartbeating: down at the others, its session gone after the grace.
	k3 := key(44)
	if err := ms[2].node.LocalAdd(k3); err != nil {
		t.Fatal(err)
	}
	for _, m := range ms[:2] {
		gossiptest.WaitFor(t, 10*time.Second, "node 3's session", owned(m.table, k3, 3))
	}
	ms[2].stop()
	gossiptest.WaitFor(t, 10*time.Second, "node 3 down", func() bool {
		return ms[0].node.Stats().PeersUp == hosts-2 && ms[1].node.Stats().PeersUp == hosts-2
	})
	for _, m := range ms[:2] {
		if _, ok := m.table.Get(k3); !ok {
			t.Fatalf("node %d dropped node 3's session before the grace", m.node.HostID())
		}
	}
	for _, m := range ms[:2] {
		gossiptest.WaitFor(t, 10*time.Second, "node 3's session dropped after the grace", absent(m.table, k3))
		if _, ok := m.tmpl.Peer(3); ok {
			t.Fatalf("node %d kept node 3's template", m.node.HostID())
		}
	}

	if _, err := gossip.ListenMulticast(gossip.MulticastConfig{Group: netip.MustParseAddrPort("198.18.50.1:6081"), Interface: "lo"}); err == nil {
		t.Error("unicast group accepted")
	}
	if _, err := gossip.ListenMulticast(gossip.MulticastConfig{Group: netip.MustParseAddrPort("239.77.0.1:6081"), Interface: "hmg-nonexistent"}); err == nil {
		t.Error("missing interface accepted")
	}
}

// TestRepairNetns: three hosts on a bridge, real multicast and TCP repair; the third
// starts after the first two announced their sessions and learns every one by repair.
func TestRepairNetns(t *testing.T) {
	const perHost = 2000
	names := bridgeLab(t, 3)
	cfg := func(id uint16) gossip.Config {
		c := fastConfig(t, id)
		c.Group, c.Port, c.Interface = netip.MustParseAddr("239.77.0.2"), 6081, "eth0"
		c.Repair, c.RepairInterval = true, 100*time.Millisecond
		return c
	}
	var ms []*member
	for i := range 2 {
		ms = append(ms, startNetns(t, names[i], cfg(uint16(i+1))))
	}
	for i, m := range ms {
		for j := range perHost {
			if err := m.node.LocalAdd(key(i<<16 | j)); err != nil {
				t.Fatal(err)
			}
		}
	}
	converged(t, ms, 2*perHost, 10*time.Second)
	late := startNetns(t, names[2], cfg(3))
	ms = append(ms, late)
	took := converged(t, ms, 2*perHost, 10*time.Second)
	s := late.node.Stats()
	if s.RepairsCompleted < 2 || s.RepairRecords < 2*perHost || s.RecordsReceived != 0 {
		t.Errorf("late joiner stats %+v", s)
	}
	for _, m := range ms[:2] {
		if s := m.node.Stats(); s.RepairsServed == 0 || s.RepairServeRejects+s.RepairServeErrors != 0 {
			t.Errorf("node %d: served %d, rejected %d, errors %d", m.node.HostID(), s.RepairsServed, s.RepairServeRejects, s.RepairServeErrors)
		}
	}
	t.Logf("late joiner learnt %d sessions over TCP repair %v after its start (%d repairs, %d bytes)",
		late.table.Len(), took.Round(time.Millisecond), s.RepairsCompleted, s.RepairBytes)
}
