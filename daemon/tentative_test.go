package daemon

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/homing-dev/homing/config"
	"github.com/homing-dev/homing/gossip"
	"github.com/homing-dev/homing/gossip/gossiptest"
	"github.com/homing-dev/homing/gossip/wire"
	"github.com/homing-dev/homing/probe"
	"github.com/homing-dev/homing/session"
)

// Tentative claims without DPDK: the daemon's control plane (localEvent, expireTentative)
// over gossip nodes on the in-memory hub. Host 1 is the daemon under test; host 2 is a
// peer that must learn (and unlearn) host 1's claims.

const tentLifetime = 3 * time.Second

// tentNode starts a gossip node with test-sized timers on hub.
func tentNode(t *testing.T, hub *gossiptest.Hub, id uint16) (*gossip.Node, *gossiptest.Table) {
	t.Helper()
	keys, err := wire.NewKeyRing(bytes.Repeat([]byte{0x5a}, 32), nil)
	if err != nil {
		t.Fatal(err)
	}
	tb := gossiptest.NewTable()
	n, err := gossip.New(gossip.Config{
		HostID: id, Addr: netip.AddrFrom4([4]byte{198, 18, 50, byte(id)}), MAC: net.HardwareAddr{2, 0, 0, 0, 0, byte(id)},
		Domain: "lab", Keys: keys, HeartbeatInterval: 20 * time.Millisecond, DownAfter: 50, Grace: time.Minute,
		Linger: time.Minute, FlushDelay: time.Millisecond,
	}, hub.Conn(), tb, gossiptest.NewTemplates())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { // gossip node
		defer close(done)
		if err := n.Run(ctx); err != nil && ctx.Err() == nil {
			t.Errorf("node %d: %v", id, err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return n, tb
}

// tentDaemon is a Daemon with only what localEvent and expireTentative use: the config,
// a logger and a control plane whose gossip node is host 1 on the hub. tentative false
// is probe.tentative = false.
func tentDaemon(t *testing.T, hub *gossiptest.Hub, tentative bool) (*Daemon, *gossiptest.Table) {
	t.Helper()
	node, tb := tentNode(t, hub, 1)
	cfg := config.Default()
	cfg.Host.ID = 1
	cfg.Probe.Tentative = tentative
	cfg.Probe.TentativeLifetime = tentLifetime
	d := &Daemon{Config: cfg, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), ctl: &control{node: node}}
	if tentative {
		d.ctl.tentative = make(map[session.Key]time.Time)
	}
	return d, tb
}

func tentKey(i int) session.Key {
	return session.Key{Src: netip.AddrFrom4([4]byte{198, 18, 100, 2}), Dst: netip.MustParseAddr("198.19.255.1"),
		SrcPort: uint16(40000 + i), DstPort: 80, Proto: session.TCP}
}

func ev(kind probe.Kind, k session.Key) probe.Event {
	return probe.Event{Kind: kind, Key: k, Cookie: 1}
}

func owner(n *gossip.Node, k session.Key) (uint16, uint64) {
	o, ok := n.Owner(k)
	if !ok {
		return 0, 0
	}
	return o.Host, o.Epoch
}

func pending(d *Daemon) int {
	d.ctl.tentMu.Lock()
	defer d.ctl.tentMu.Unlock()
	return len(d.ctl.tentative)
}

// TestTentativeExpires: a handshake that never completes (a Tentative event and no Add)
// is claimed at once, announced to the peer, and withdrawn everywhere once
// probe.tentative_lifetime has passed, not before.
func TestTentativeExpires(t *testing.T) {
	hub := gossiptest.NewHub()
	d, own := tentDaemon(t, hub, true)
	_, peer := tentNode(t, hub, 2)
	k := tentKey(1)
	start := time.Now()
	d.localEvent(ev(probe.Tentative, k))
	if h, _ := owner(d.ctl.node, k); h != 1 {
		t.Fatalf("after the tentative event: owner %d, want 1", h)
	}
	gossiptest.WaitFor(t, 5*time.Second, "the own table to hold the claim", func() bool {
		o, ok := own.Get(k)
		return ok && o.Host == 1
	})
	gossiptest.WaitFor(t, 5*time.Second, "the peer to learn the tentative claim", func() bool {
		o, ok := peer.Get(k)
		return ok && o.Host == 1
	})

	d.expireTentative(start.Add(tentLifetime - time.Millisecond))
	if h, _ := owner(d.ctl.node, k); h != 1 || pending(d) != 1 {
		t.Fatalf("just before the lifetime: owner %d, %d pending; want the claim to stand", h, pending(d))
	}
	d.expireTentative(time.Now().Add(tentLifetime))
	if h, _ := owner(d.ctl.node, k); h != 0 {
		t.Fatalf("after the lifetime: owner %d, want none", h)
	}
	if pending(d) != 0 {
		t.Fatalf("after the lifetime: %d pending", pending(d))
	}
	gossiptest.WaitFor(t, 5*time.Second, "the own table to drop the expired claim", func() bool {
		_, ok := own.Get(k)
		return !ok
	})
	// Withdrawn without the linger (a minute here): the peer forgets it at once.
	gossiptest.WaitFor(t, 5*time.Second, "the peer to drop the expired claim", func() bool {
		_, ok := peer.Get(k)
		return !ok
	})
	// Expiring again does nothing.
	d.expireTentative(time.Now().Add(2 * tentLifetime))
}

// TestTentativeConfirmed: the Add of the completed handshake confirms the claim (same
// owner, same epoch: nothing new is announced) and the expiry leaves it alone.
func TestTentativeConfirmed(t *testing.T) {
	hub := gossiptest.NewHub()
	d, _ := tentDaemon(t, hub, true)
	_, peer := tentNode(t, hub, 2)
	k := tentKey(2)
	d.localEvent(ev(probe.Tentative, k))
	_, epoch := owner(d.ctl.node, k)
	// A retransmitted SYN reports the request socket again: no second claim.
	d.localEvent(ev(probe.Tentative, k))
	if _, e := owner(d.ctl.node, k); e != epoch {
		t.Fatalf("a repeated tentative event re-claimed: epoch %d, then %d", epoch, e)
	}
	d.localEvent(ev(probe.Add, k))
	if h, e := owner(d.ctl.node, k); h != 1 || e != epoch {
		t.Fatalf("after the add: owner %d epoch %d, want 1 and the tentative epoch %d", h, e, epoch)
	}
	if pending(d) != 0 {
		t.Fatalf("%d tentative claims pending after the add", pending(d))
	}
	d.expireTentative(time.Now().Add(10 * tentLifetime))
	if h, _ := owner(d.ctl.node, k); h != 1 {
		t.Fatalf("a confirmed claim expired: owner %d", h)
	}
	gossiptest.WaitFor(t, 5*time.Second, "the peer to learn the session", func() bool {
		o, ok := peer.Get(k)
		return ok && o.Host == 1 && o.Epoch == epoch
	})
}

// TestTentativeLateAdd: a handshake that completes after its claim expired is claimed
// again by its Add, with a newer epoch.
func TestTentativeLateAdd(t *testing.T) {
	hub := gossiptest.NewHub()
	d, _ := tentDaemon(t, hub, true)
	k := tentKey(3)
	d.localEvent(ev(probe.Tentative, k))
	_, epoch := owner(d.ctl.node, k)
	d.expireTentative(time.Now().Add(tentLifetime))
	if h, _ := owner(d.ctl.node, k); h != 0 {
		t.Fatalf("owner %d after expiry", h)
	}
	d.localEvent(ev(probe.Add, k))
	if h, e := owner(d.ctl.node, k); h != 1 || e <= epoch {
		t.Fatalf("late add: owner %d epoch %d, want 1 and an epoch after %d", h, e, epoch)
	}
}

// TestTentativeTakenOver: when another host claims the session later (the client's SYN
// retried through another host), the expiry of the old tentative claim must not
// withdraw the new owner's entry.
func TestTentativeTakenOver(t *testing.T) {
	hub := gossiptest.NewHub()
	d, own := tentDaemon(t, hub, true)
	other, _ := tentNode(t, hub, 2)
	k := tentKey(4)
	d.localEvent(ev(probe.Tentative, k))
	_, epoch := owner(d.ctl.node, k)
	gossiptest.WaitFor(t, 5*time.Second, "host 2 to learn the claim", func() bool {
		h, _ := owner(other, k)
		return h == 1
	})
	time.Sleep(time.Millisecond) // a later epoch
	if err := other.LocalAdd(k); err != nil {
		t.Fatal(err)
	}
	gossiptest.WaitFor(t, 5*time.Second, "host 1 to learn host 2's claim", func() bool {
		h, e := owner(d.ctl.node, k)
		return h == 2 && e > epoch
	})
	d.expireTentative(time.Now().Add(tentLifetime))
	if h, _ := owner(d.ctl.node, k); h != 2 {
		t.Fatalf("after host 1's expiry: owner %d, want 2", h)
	}
	time.Sleep(20 * time.Millisecond) // the node's table writes
	if o, ok := own.Get(k); !ok || o.Host != 2 {
		t.Fatalf("host 1's table: %v %v, want owner 2", o, ok)
	}
}

// TestTentativeOff: with probe.tentative = false a Tentative event claims nothing; the
// Add claims the session.
func TestTentativeOff(t *testing.T) {
	hub := gossiptest.NewHub()
	d, own := tentDaemon(t, hub, false)
	k := tentKey(5)
	d.localEvent(ev(probe.Tentative, k))
	time.Sleep(20 * time.Millisecond) // a table write would have happened by now
	if h, _ := owner(d.ctl.node, k); h != 0 || own.Len() != 0 {
		t.Fatalf("tentative off: owner %d, %d table entries after a tentative event", h, own.Len())
	}
	d.localEvent(ev(probe.Add, k))
	if h, _ := owner(d.ctl.node, k); h != 1 {
		t.Fatalf("tentative off: owner %d after the add, want 1", h)
	}
	d.expireTentative(time.Now().Add(tentLifetime)) // nothing to expire, nothing breaks
	if h, _ := owner(d.ctl.node, k); h != 1 {
		t.Fatalf("tentative off: owner %d after an expiry pass", h)
	}
}

// TestTentativeMany: of many handshakes in flight, only those without an Add are
// withdrawn at expiry.
func TestTentativeMany(t *testing.T) {
	hub := gossiptest.NewHub()
	d, own := tentDaemon(t, hub, true)
	const n = 200
	for i := range n {
		d.localEvent(ev(probe.Tentative, tentKey(100+i)))
	}
	for i := 0; i < n; i += 2 {
		d.localEvent(ev(probe.Add, tentKey(100+i)))
	}
	if pending(d) != n/2 {
		t.Fatalf("%d pending, want %d", pending(d), n/2)
	}
	gossiptest.WaitFor(t, 5*time.Second, "the own table to hold every claim", func() bool { return own.Len() == n })
	d.expireTentative(time.Now().Add(tentLifetime))
	for i := range n {
		h, _ := owner(d.ctl.node, tentKey(100+i))
		if want := map[bool]uint16{true: 1, false: 0}[i%2 == 0]; h != want {
			t.Fatalf("session %d: owner %d, want %d", i, h, want)
		}
	}
	if pending(d) != 0 {
		t.Fatalf("after expiry: %d pending", pending(d))
	}
	gossiptest.WaitFor(t, 5*time.Second, "the own table to drop the expired claims", func() bool { return own.Len() == n/2 })
}
