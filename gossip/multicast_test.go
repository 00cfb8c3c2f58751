package gossip_test

import (
	"context"
	"fmt"
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

// TestMulticastNetns runs three nodes in three network namespaces on one bridge, over
// the real multicast transport.
func TestMulticastNetns(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "ip")
	prefix := fmt.Sprintf("hmg-gossip-%d", os.Getpid())
	br := prefix + "-br"
	ipCmd(t, "netns", "add", br)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", br).Run() })
	ipCmd(t, "-n", br, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0")
	ipCmd(t, "-n", br, "link", "set", "br0", "up")

	const hosts = 3
	group := netip.MustParseAddr("239.77.0.1")
	var ms []*member
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

		cfg := fastConfig(t, uint16(i))
		cfg.Group, cfg.Port, cfg.Interface = group, 6081, "eth0"
		var conn *gossip.MulticastConn
		if err := inNetns(ns, func() error {
			var err error
			conn, err = gossip.ListenMulticast(cfg.MulticastConfig())
			return err
		}); err != nil {
			t.Fatalf("host %d: %v", i, err)
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
				t.Errorf("node %d: %v", i, err)
			}
		}()
		t.Cleanup(m.stop)
		ms = append(ms, m)
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

	if _, err := gossip.ListenMulticast(gossip.MulticastConfig{Group: netip.MustParseAddrPort("198.18.50.1:6081"), Interface: "lo"}); err == nil {
		t.Error("unicast group accepted")
	}
	if _, err := gossip.ListenMulticast(gossip.MulticastConfig{Group: netip.MustParseAddrPort("239.77.0.1:6081"), Interface: "hmg-nonexistent"}); err == nil {
		t.Error("missing interface accepted")
	}
}
