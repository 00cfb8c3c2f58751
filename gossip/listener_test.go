package gossip_test

import (
	"context"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/homing-dev/homing/gossip"
	"github.com/homing-dev/homing/gossip/gossiptest"
	"github.com/homing-dev/homing/gossip/wire"
)

// The repair and NACK listener serves only live peers (repairserve.go).

// listenerConfig is repairConfig with the listener's default time to authenticate.
func listenerConfig(t *testing.T, nt *gossiptest.Net, id uint16) gossip.Config {
	c := repairConfig(t, nt, id)
	c.RepairAuthTimeout = gossip.DefaultRepairAuthTimeout
	return c
}

// hold dials addr with d and returns the connection, or nil if the dial failed.
func hold(d gossip.Dialer, addr netip.AddrPort) net.Conn {
	c, err := d.DialContext(context.Background(), "tcp", addr.String())
	if err != nil {
		return nil
	}
	return c
}

// closedWithin reports whether the server closes c (a read fails) within d, and when.
func closedWithin(c net.Conn, d time.Duration) (time.Duration, bool) {
	start := time.Now()
	_ = c.SetReadDeadline(start.Add(d))
	buf := make([]byte, 4096)
	for {
		if _, err := c.Read(buf); err != nil {
			return time.Since(start), err == io.EOF || err == io.ErrClosedPipe
		}
	}
}

func TestListenerClosesStrangers(t *testing.T) {
	hub, nt := gossiptest.NewHub(), gossiptest.NewNet()
	m := start(t, hub, listenerConfig(t, nt, 1))
	addr := netip.AddrPortFrom(netip.MustParseAddr("198.18.50.1"), gossip.DefaultGossipPort)
	for i, d := range []gossip.Dialer{nt.From(netip.MustParseAddr("198.18.100.2")), nt} {
		c := hold(d, addr)
		if c == nil {
			t.Fatal("dial")
		}
		if took, ok := closedWithin(c, 2*time.Second); !ok {
			t.Errorf("stranger %d not closed (%v)", i, took)
		}
		c.Close()
	}
	if s := m.node.Stats(); s.RepairServeStranger != 2 || s.RepairServeRejects != 0 {
		t.Errorf("%d strangers, %d rejects; want 2 and 0", s.RepairServeStranger, s.RepairServeRejects)
	}
}

func TestListenerCutsSlowAuthenticator(t *testing.T) {
	hub, nt := gossiptest.NewHub(), gossiptest.NewNet()
	m := start(t, hub, listenerConfig(t, nt, 1))
	p := newPeer(hub, 2, testKey)
	p.heartbeat()
	gossiptest.WaitFor(t, wait, "2 up", func() bool { return m.node.Stats().PeersUp == 1 })
	c := hold(nt.From(p.addr.Addr()), netip.AddrPortFrom(netip.MustParseAddr("198.18.50.1"), gossip.DefaultGossipPort))
	if c == nil {
		t.Fatal("dial")
	}
	defer c.Close()
	// Read the challenge, and never answer it.
	took, ok := closedWithin(c, 5*time.Second)
	if !ok || took < 150*time.Millisecond || took > 2*time.Second {
		t.Errorf("cut after %v (%v), want about %v", took, ok, gossip.DefaultRepairAuthTimeout)
	}
	gossiptest.WaitFor(t, wait, "counted slow", func() bool { return m.node.Stats().RepairServeSlow == 1 })
	t.Logf("cut after %v", took)
}

func TestListenerPerSourceCap(t *testing.T) {
	hub, nt := gossiptest.NewHub(), gossiptest.NewNet()
	c := repairConfig(t, nt, 1)
	c.RepairAuthTimeout = time.Minute // the held connections stay
	m := start(t, hub, c)
	p := newPeer(hub, 2, testKey)
	p.heartbeat()
	gossiptest.WaitFor(t, wait, "2 up", func() bool { return m.node.Stats().PeersUp == 1 })
	d := nt.From(p.addr.Addr())
	addr := netip.AddrPortFrom(c.Addr, gossip.DefaultGossipPort)
	closed := 0
	for range gossip.DefaultRepairPerSource + 3 {
		cn := hold(d, addr)
		if cn == nil {
			t.Fatal("dial")
		}
		defer cn.Close()
		// A served connection gets its challenge; a refused one is closed.
		if _, _, err := wire.ReadFrame(cn, nil, 0); err != nil {
			closed++
		}
	}
	if s := m.node.Stats(); closed != 3 || s.RepairServePerSource != 3 {
		t.Errorf("%d closed, %d per-source refusals; want 3 and 3", closed, s.RepairServePerSource)
	}
}

// A flood: 12 live peer addresses hammer the listener beyond every cap (keyed rogues
// on the LAN) and a stranger floods it, each redialling as soon as it is closed, while
// host 2 joins and repairs from host 1. The repair succeeds at once: every live peer
// keeps a slot, the others are cut at RepairAuthTimeout. (Before, 36 slots held 5 s
// each by an outsider made a peer's repairs fail 16 times in a row.)
func TestListenerFlood(t *testing.T) {
	hub, nt := gossiptest.NewHub(), gossiptest.NewNet()
	m1 := start(t, hub, listenerConfig(t, nt, 1))
	for j := range 200 {
		if err := m1.node.LocalAdd(key(j)); err != nil {
			t.Fatal(err)
		}
	}
	addr := netip.AddrPortFrom(netip.MustParseAddr("198.18.50.1"), gossip.DefaultGossipPort)
	var dialers []gossip.Dialer
	for id := uint16(10); id < 22; id++ {
		p := newPeer(hub, id, testKey)
		p.heartbeat()
		dialers = append(dialers, nt.From(p.addr.Addr()))
	}
	gossiptest.WaitFor(t, wait, "rogues up", func() bool { return m1.node.Stats().PeersUp == 12 })
	stranger := nt.From(netip.MustParseAddr("198.18.100.2"))

	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var mu sync.Mutex
	attempts := 0
	attack := func(d gossip.Dialer) {
		for ctx.Err() == nil {
			c := hold(d, addr)
			if c == nil {
				return
			}
			mu.Lock()
			attempts++
			mu.Unlock()
			go func() { <-ctx.Done(); c.Close() }()
			// Hold it without reading: the server's challenge blocks until it is cut.
			buf := make([]byte, 1)
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			for ctx.Err() == nil {
				time.Sleep(20 * time.Millisecond)
				if _, err := c.Read(buf); err != nil {
					break
				}
			}
			c.Close()
		}
	}
	for _, d := range dialers {
		for range 6 {
			wg.Go(func() { attack(d) })
		}
	}
	for range 20 {
		wg.Go(func() { attack(stranger) })
	}
	gossiptest.WaitFor(t, wait, "listener saturated", func() bool {
		s := m1.node.Stats()
		return s.RepairServePerSource > 0 && s.RepairServeStranger > 100 && s.RepairServeSlow >= 36
	})

	began := time.Now()
	m2 := start(t, hub, repairConfig(t, nt, 2))
	gossiptest.WaitFor(t, wait, "2 learns 1's sessions", func() bool { return m2.table.Len() == 200 })
	took := time.Since(began)
	stop()
	wg.Wait()
	s1, s2 := m1.node.Stats(), m2.node.Stats()
	if s2.RepairsFailed != 0 || s2.RepairsCompleted == 0 {
		t.Errorf("host 2: %d repairs failed, %d completed", s2.RepairsFailed, s2.RepairsCompleted)
	}
	t.Logf("learnt in %v under %d attack connections: %d strangers closed at accept, %d over the per-source cap, %d over the total, %d cut unauthenticated; host 2: %d repairs, %d failed",
		took, attempts, s1.RepairServeStranger, s1.RepairServePerSource, s1.RepairServeRefused, s1.RepairServeSlow, s2.RepairsCompleted, s2.RepairsFailed)
}
