package gossip_test

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/homing-dev/homing/gossip"
	"github.com/homing-dev/homing/gossip/gossiptest"
	"github.com/homing-dev/homing/gossip/wire"
)

// Identity and replay (membership.go): a keyed rogue, a clock ahead, duplicate ids, a
// restarted receiver. Every test runs one node on a fake clock and hand-made peers
// whose datagrams are timestamped on that clock.

var clockStart = time.Unix(1_800_000_000, 0)

// fakeNode starts node 1 on a fake clock.
func fakeNode(t *testing.T) (*gossiptest.Hub, *gossiptest.Clock, *member) {
	t.Helper()
	clk := gossiptest.NewClock(clockStart)
	hub, ms := cluster(t, 1, func(c *gossip.Config) { c.Clock = clk })
	return hub, clk, ms[0]
}

// clockPeer is a hand-made peer on clk, its incarnation its start time.
func clockPeer(hub *gossiptest.Hub, clk *gossiptest.Clock, id uint16) *peer {
	p := newPeer(hub, id, testKey)
	p.now, p.inc = clk.Now, uint64(clk.Now().Add(-time.Minute).UnixNano())
	return p
}

// heartbeatAs sends p's heartbeat announcing addr and mac.
func (p *peer) heartbeatAs(addr netip.Addr, mac net.HardwareAddr) {
	hb := wire.Heartbeat{Host: p.id, Incarnation: p.inc, Addr: addr, MAC: mac, TunnelPort: 6080}
	p.send(p.datagram(wire.TypeHeartbeat, wire.AppendHeartbeat(nil, &hb)))
}

func published(m *member, id uint16, inc uint64) func() bool {
	return func() bool { p, ok := m.tmpl.Peer(id); return ok && p.Incarnation == inc }
}

func stat(m *member, f func(gossip.Stats) uint64, want uint64) func() bool {
	return func() bool { return f(m.node.Stats()) >= want }
}

// A keyed rogue claims live host 2's id: from its own address, from 2's address with
// another MAC, with an incarnation of 2^63, and with records of a new incarnation.
// Every claim is refused and counted; 2 stays up with its address, its sessions stay
// and its later datagrams are taken (the attack reset 9 of 30 connections).
func TestRogueClaimsLiveID(t *testing.T) {
	hub, clk, m := fakeNode(t)
	real := clockPeer(hub, clk, 2)
	realMAC := net.HardwareAddr{2, 0, 0, 0, 1, 2}
	real.heartbeat()
	real.records(add(key(1), 2, 10))
	gossiptest.WaitFor(t, wait, "2 up with its session", owned(m.table, key(1), 2))

	rogue := newPeer(hub, 2, testKey)
	rogue.addr = netip.MustParseAddrPort("198.18.51.66:6081")
	rogue.now, rogue.inc = clk.Now, uint64(clk.Now().UnixNano())
	rogue.heartbeatAs(rogue.addr.Addr(), net.HardwareAddr{2, 0, 0, 0, 6, 6}) // its own address and MAC
	rogue.heartbeatAs(real.addr.Addr(), net.HardwareAddr{2, 0, 0, 0, 6, 6})  // 2's address, its MAC
	rogue.heartbeatAs(rogue.addr.Addr(), realMAC)                            // 2's MAC, its address
	gossiptest.WaitFor(t, wait, "3 conflicts", stat(m, func(s gossip.Stats) uint64 { return s.IDConflicts }, 3))
	rogue.records(add(key(1), 2, 99), add(key(2), 2, 99)) // a new incarnation, no heartbeat
	gossiptest.WaitFor(t, wait, "unannounced", stat(m, func(s gossip.Stats) uint64 { return s.Unannounced }, 1))
	rogue.inc = 1 << 63
	rogue.heartbeatAs(real.addr.Addr(), realMAC) // even with 2's address and MAC
	gossiptest.WaitFor(t, wait, "future", stat(m, func(s gossip.Stats) uint64 { return s.FutureIncarnations }, 1))

	p, ok := m.tmpl.Peer(2)
	if !ok || p.Addr != real.addr.Addr() || p.Incarnation != real.inc {
		t.Fatalf("peer 2 is %+v %v after the rogue, want %v incarnation %d", p, ok, real.addr.Addr(), real.inc)
	}
	// The real host goes on: its heartbeats and records are taken, not replays.
	for range 20 {
		clk.Advance(20 * time.Millisecond)
		real.heartbeat()
	}
	real.records(add(key(3), 2, 11))
	gossiptest.WaitFor(t, wait, "2's new session", owned(m.table, key(3), 2))
	s := m.node.Stats()
	if s.Replays != 0 || s.PeersUp != 1 || s.GraceDrops != 0 {
		t.Errorf("real host refused or down: replays %d, peers up %d, grace drops %d", s.Replays, s.PeersUp, s.GraceDrops)
	}
	if o, ok := m.table.Get(key(1)); !ok || o.Host != 2 || o.Epoch != 10 {
		t.Errorf("2's session is %+v %v", o, ok)
	}
	if _, ok := m.table.Get(key(2)); ok {
		t.Error("the rogue's record applied")
	}
	t.Logf("refused: %d id conflicts, %d unannounced, %d future incarnations; peer 2 kept %v", s.IDConflicts, s.Unannounced, s.FutureIncarnations, p.Addr)
}

// An incarnation more than MaxClockSkew ahead is refused, and admitted once the
// receiver's clock catches up: a host whose clock was ahead is not locked out.
func TestIncarnationSkew(t *testing.T) {
	hub, clk, m := fakeNode(t)
	p := clockPeer(hub, clk, 3)
	p.inc = uint64(clk.Now().Add(gossip.DefaultMaxClockSkew + time.Second).UnixNano())
	p.heartbeat()
	gossiptest.WaitFor(t, wait, "refused", stat(m, func(s gossip.Stats) uint64 { return s.FutureIncarnations }, 1))
	if _, ok := m.tmpl.Peer(3); ok {
		t.Fatal("a peer beyond the skew published")
	}
	p.inc = uint64(clk.Now().Add(gossip.DefaultMaxClockSkew - time.Second).UnixNano()) // within
	p.heartbeat()
	gossiptest.WaitFor(t, wait, "within the skew published", published(m, 3, p.inc))

	q := clockPeer(hub, clk, 4)
	q.inc = uint64(clk.Now().Add(gossip.DefaultMaxClockSkew + time.Second).UnixNano())
	q.heartbeat()
	gossiptest.WaitFor(t, wait, "refused", stat(m, func(s gossip.Stats) uint64 { return s.FutureIncarnations }, 2))
	clk.Advance(2 * time.Second)
	q.heartbeat()
	gossiptest.WaitFor(t, wait, "admitted once the clock caught up", published(m, 4, q.inc))
}

// A host whose clock ran ahead, fixed and restarted, comes back with a lower
// incarnation: refused while its old incarnation is live (a duplicate), admitted once
// it is down, without restarting the receiver.
func TestLowerIncarnationRejoins(t *testing.T) {
	hub, clk, m := fakeNode(t)
	p := clockPeer(hub, clk, 2)
	ahead := uint64(clk.Now().Add(5 * time.Second).UnixNano())
	p.inc = ahead
	p.heartbeat()
	gossiptest.WaitFor(t, wait, "up ahead", published(m, 2, ahead))
	p.inc = uint64(clk.Now().UnixNano())
	p.seq = 0
	p.heartbeat()
	gossiptest.WaitFor(t, wait, "refused while up", stat(m, func(s gossip.Stats) uint64 { return s.DuplicateIDs }, 1))
	clk.Advance(time.Second) // DownAfter × HeartbeatInterval = 100 ms
	gossiptest.WaitFor(t, wait, "down", func() bool { _, ok := m.tmpl.Peer(2); return !ok })
	p.heartbeat()
	gossiptest.WaitFor(t, wait, "back with the lower incarnation", published(m, 2, p.inc))
}

// Two hosts configured with one id: a second address heartbeating the id is an id
// conflict; a clone with the same address and MAC shows as an older incarnation still
// heartbeating. Both are refused and counted.
func TestDuplicateIDsReported(t *testing.T) {
	hub, clk, m := fakeNode(t)
	a := clockPeer(hub, clk, 5)
	a.heartbeat()
	gossiptest.WaitFor(t, wait, "5 up", published(m, 5, a.inc))
	other := clockPeer(hub, clk, 5)
	other.addr = netip.MustParseAddrPort("198.18.51.205:6081")
	other.heartbeat()
	gossiptest.WaitFor(t, wait, "conflict", stat(m, func(s gossip.Stats) uint64 { return s.IDConflicts }, 1))
	clone := clockPeer(hub, clk, 5)
	clone.inc = a.inc + 1
	clone.heartbeat()
	gossiptest.WaitFor(t, wait, "the clone, a new incarnation", published(m, 5, clone.inc))
	a.heartbeat()
	gossiptest.WaitFor(t, wait, "duplicate", stat(m, func(s gossip.Stats) uint64 { return s.DuplicateIDs }, 1))
	if s := m.node.Stats(); s.IDConflicts != 1 || s.DuplicateIDs != 1 {
		t.Errorf("%d id conflicts, %d duplicates, want 1 and 1", s.IDConflicts, s.DuplicateIDs)
	}
}

// Old datagrams of a peer replayed to a receiver that holds no state for it (it
// restarted) are refused when older than the window; fresh ones are taken.
func TestReplayToRestartedReceiver(t *testing.T) {
	hub, clk, m := fakeNode(t)
	p := clockPeer(hub, clk, 2)
	p.now = func() time.Time { return clk.Now().Add(-time.Minute) } // recorded a minute ago
	var old [][]byte
	for i := range 5 {
		var body []byte
		body = wire.AppendRecord(body, add(key(i), 2, 10))
		old = append(old, p.datagram(wire.TypeRecords, body))
	}
	for _, d := range old {
		p.send(d)
	}
	gossiptest.WaitFor(t, wait, "replays refused", stat(m, func(s gossip.Stats) uint64 { return s.OutsideWindow }, 5))
	if m.table.Len() != 0 {
		t.Fatalf("replayed records applied: %v", m.table.Snapshot())
	}
	p.now = clk.Now
	p.heartbeat()
	p.records(add(key(9), 2, 11))
	gossiptest.WaitFor(t, wait, "fresh records taken", owned(m.table, key(9), 2))
	for _, d := range old { // now a known peer: old sequence numbers
		p.send(d)
	}
	gossiptest.WaitFor(t, wait, "replays refused", stat(m, func(s gossip.Stats) uint64 { return s.Replays }, 5))
	if s := m.node.Stats(); s.OutsideWindow != 5 || m.table.Len() != 1 {
		t.Errorf("outside window %d, table %v", s.OutsideWindow, m.table.Snapshot())
	}
}

// Rebind forgets a first-contact binding: the host may come back from another
// address. A discovery file's binding is not the operator's command to change.
func TestRebind(t *testing.T) {
	hub, clk, m := fakeNode(t)
	p := clockPeer(hub, clk, 2)
	p.heartbeat()
	gossiptest.WaitFor(t, wait, "2 up", published(m, 2, p.inc))
	moved := netip.MustParseAddr("198.18.51.202")
	mac := net.HardwareAddr{2, 0, 0, 0, 1, 2}
	p.heartbeatAs(moved, mac)
	gossiptest.WaitFor(t, wait, "conflict", stat(m, func(s gossip.Stats) uint64 { return s.IDConflicts }, 1))
	if bound, err := m.node.Rebind(2); !bound || err != nil {
		t.Fatalf("rebind: %v %v", bound, err)
	}
	p.heartbeatAs(moved, mac)
	gossiptest.WaitFor(t, wait, "2 up at its new address", func() bool { q, ok := m.tmpl.Peer(2); return ok && q.Addr == moved })
	if bound, err := m.node.Rebind(7); bound || err != nil {
		t.Errorf("rebind of an unknown id: %v %v", bound, err)
	}
}

// A keyed rogue sends records under live host 2's id and incarnation with sequence
// numbers far ahead: 2's next heartbeat resets the tracking (SeqConflicts) and its
// records are taken again; a replayed heartbeat of 2 does not reset it.
func TestSequencePushedAhead(t *testing.T) {
	hub, clk, m := fakeNode(t)
	real := clockPeer(hub, clk, 2)
	real.heartbeat()
	real.records(add(key(1), 2, 10))
	gossiptest.WaitFor(t, wait, "2 up with its session", owned(m.table, key(1), 2))
	old := real.datagram(wire.TypeHeartbeat, wire.AppendHeartbeat(nil, &wire.Heartbeat{Host: 2, Incarnation: real.inc,
		Addr: real.addr.Addr(), MAC: net.HardwareAddr{2, 0, 0, 0, 1, 2}, TunnelPort: 6080}))
	real.send(old)

	rogue := newPeer(hub, 2, testKey)
	rogue.addr = netip.MustParseAddrPort("198.18.51.66:6081")
	rogue.now, rogue.inc, rogue.seq = clk.Now, real.inc, 1<<40
	rogue.records(add(key(2), 2, 99))
	gossiptest.WaitFor(t, wait, "the rogue's records", owned(m.table, key(2), 2))
	clk.Advance(50 * time.Millisecond)
	real.records(add(key(3), 2, 11)) // refused as a replay: the tracking is ahead
	gossiptest.WaitFor(t, wait, "refused", stat(m, func(s gossip.Stats) uint64 { return s.Replays }, 1))
	real.send(old) // a replayed heartbeat: no reset
	gossiptest.WaitFor(t, wait, "refused", stat(m, func(s gossip.Stats) uint64 { return s.Replays }, 2))
	real.heartbeat()
	gossiptest.WaitFor(t, wait, "reset", stat(m, func(s gossip.Stats) uint64 { return s.SeqConflicts }, 1))
	real.records(add(key(4), 2, 12))
	gossiptest.WaitFor(t, wait, "2's records taken again", owned(m.table, key(4), 2))
	if s := m.node.Stats(); s.SeqConflicts != 1 || s.Replays != 2 {
		t.Errorf("%d conflicts, %d replays; want 1 and 2", s.SeqConflicts, s.Replays)
	}
}
