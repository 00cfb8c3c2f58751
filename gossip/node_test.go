package gossip_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/homing-dev/homing/gossip"
	"github.com/homing-dev/homing/gossip/gossiptest"
	"github.com/homing-dev/homing/gossip/wire"
	"github.com/homing-dev/homing/session"
)

var (
	testKey = bytes.Repeat([]byte{0x5a}, 32)
	badKey  = bytes.Repeat([]byte{0xa5}, 32)
)

func ring(t testing.TB, k []byte) *wire.KeyRing {
	r, err := wire.NewKeyRing(k, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func key(i int) session.Key {
	return session.Key{
		Src: netip.AddrFrom4([4]byte{198, 18, 100 + byte(i>>16), byte(i >> 8)}), Dst: netip.MustParseAddr("198.19.255.1"),
		SrcPort: uint16(i), DstPort: 443, Proto: session.TCP,
	}
}

func key6(i int) session.Key {
	a := netip.MustParseAddr("2001:db8:100::").As16()
	a[14], a[15] = byte(i>>8), byte(i)
	return session.Key{Src: netip.AddrFrom16(a), Dst: netip.MustParseAddr("2001:db8:ffff::1"), SrcPort: 40000, DstPort: 443, Proto: session.TCP}
}

// member is one node of a test cluster.
type member struct {
	node   *gossip.Node
	table  *gossiptest.Table
	tmpl   *gossiptest.Templates
	conn   *gossiptest.Conn
	cancel context.CancelFunc
	done   chan struct{}
}

func (m *member) stop() {
	m.cancel()
	<-m.done
}

// fastConfig is a config with test-sized timers.
func fastConfig(t testing.TB, id uint16) gossip.Config {
	return gossip.Config{
		HostID: id, Addr: netip.AddrFrom4([4]byte{198, 18, 50, byte(id)}),
		MAC: net.HardwareAddr{2, 0, 0, 0, 0, byte(id)}, Domain: "lab",
		Keys: ring(t, testKey), HeartbeatInterval: 20 * time.Millisecond, DownAfter: 5,
		Grace: 300 * time.Millisecond, Linger: 50 * time.Millisecond, FlushDelay: time.Millisecond,
	}
}

func start(t testing.TB, hub *gossiptest.Hub, cfg gossip.Config) *member {
	t.Helper()
	m := &member{table: gossiptest.NewTable(), tmpl: gossiptest.NewTemplates(), conn: hub.Conn(), done: make(chan struct{})}
	var err error
	m.node, err = gossip.New(cfg, m.conn, m.table, m.tmpl)
	if err != nil {
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

func cluster(t testing.TB, n int, mod func(*gossip.Config)) (*gossiptest.Hub, []*member) {
	hub := gossiptest.NewHub()
	var ms []*member
	for i := 1; i <= n; i++ {
		cfg := fastConfig(t, uint16(i))
		if mod != nil {
			mod(&cfg)
		}
		ms = append(ms, start(t, hub, cfg))
	}
	return hub, ms
}

func owned(tb *gossiptest.Table, k session.Key, host uint16) func() bool {
	return func() bool { o, ok := tb.Get(k); return ok && o.Host == host }
}

func absent(tb *gossiptest.Table, k session.Key) func() bool {
	return func() bool { _, ok := tb.Get(k); return !ok }
}

const wait = 5 * time.Second

func TestClusterAnnounceAndDelete(t *testing.T) {
	var mu sync.Mutex
	var samples []gossip.ConvergeSample
	_, ms := cluster(t, 3, func(c *gossip.Config) {
		c.OnConverge = func(s gossip.ConvergeSample) { mu.Lock(); samples = append(samples, s); mu.Unlock() }
	})
	for _, m := range ms {
		gossiptest.WaitFor(t, wait, "peers up", func() bool { return m.node.Stats().PeersUp == 2 })
	}
	p, ok := ms[1].tmpl.Peer(1)
	if !ok || p.Addr != netip.MustParseAddr("198.18.50.1") || p.TunnelPort != gossip.DefaultTunnelPort ||
		p.Domain != "lab" || p.Incarnation != ms[0].node.Incarnation() || !bytes.Equal(p.MAC, net.HardwareAddr{2, 0, 0, 0, 0, 1}) {
		t.Errorf("peer 1 as published on node 2: %+v, %v", p, ok)
	}

	k4, k6 := key(1), key6(1)
	for _, k := range []session.Key{k4, k6} {
		if err := ms[0].node.LocalAdd(k); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range ms {
		gossiptest.WaitFor(t, wait, "IPv4 session owned by 1", owned(m.table, k4, 1))
		gossiptest.WaitFor(t, wait, "IPv6 session owned by 1", owned(m.table, k6, 1))
	}
	o1, _ := ms[0].table.Get(k4)
	o2, _ := ms[2].table.Get(k4)
	if o1 != o2 || o1.Epoch == 0 {
		t.Errorf("owner in own table %+v, in peer's %+v", o1, o2)
	}

	start := time.Now()
	if err := ms[0].node.LocalDelete(k4); err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		gossiptest.WaitFor(t, wait, "delete", absent(m.table, k4))
	}
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Errorf("delete applied after %v, before the 50ms linger", d)
	}
	if _, ok := ms[1].table.Get(k6); !ok {
		t.Error("IPv6 session lost")
	}
	mu.Lock()
	for _, c := range samples {
		if c.From != 1 || c.Records < 1 || c.Applied.Before(c.Sent) || c.Applied.Sub(c.Sent) > wait {
			t.Errorf("convergence sample %+v", c)
		}
	}
	if len(samples) < 4 { // two peers, at least the add and the delete datagrams
		t.Errorf("%d convergence samples", len(samples))
	}
	mu.Unlock()
	s := ms[1].node.Stats()
	if s.RecordsApplied != 3 || s.AuthFailures != 0 || s.Replays != 0 || s.DatagramsReceived == 0 {
		t.Errorf("node 2 stats %+v", s)
	}
}

func TestWrongKeyRejected(t *testing.T) {
	hub, ms := cluster(t, 3, nil)
	intruder := start(t, hub, func() gossip.Config {
		c := fastConfig(t, 9)
		c.Keys = ring(t, badKey)
		return c
	}())
	if err := intruder.node.LocalAdd(key(5)); err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		gossiptest.WaitFor(t, wait, "auth failures", func() bool { return m.node.Stats().AuthFailures >= 5 })
		s := m.node.Stats()
		if _, ok := m.table.Get(key(5)); ok || s.PeersUp != 2 || s.RecordsReceived != 0 {
			t.Errorf("node %d accepted the intruder: %+v", m.node.HostID(), s)
		}
		if _, ok := m.tmpl.Peer(9); ok {
			t.Errorf("node %d published the intruder", m.node.HostID())
		}
	}
	// The intruder rejects the others just the same.
	if s := intruder.node.Stats(); s.AuthFailures == 0 || s.PeersUp != 0 {
		t.Errorf("intruder stats %+v", s)
	}
}

func TestPeerDownAndGrace(t *testing.T) {
	_, ms := cluster(t, 3, func(c *gossip.Config) { c.Grace = 300 * time.Millisecond })
	for _, m := range ms {
		gossiptest.WaitFor(t, wait, "peers up", func() bool { return m.node.Stats().PeersUp == 2 })
	}
	k := key(7)
	if err := ms[2].node.LocalAdd(k); err != nil {
		t.Fatal(err)
	}
	for _, m := range ms[:2] {
		gossiptest.WaitFor(t, wait, "session of 3", owned(m.table, k, 3))
	}
	ms[2].stop()
	stopped := time.Now()
	for _, m := range ms[:2] {
		gossiptest.WaitFor(t, wait, "peer 3 down", func() bool { return m.node.Stats().PeersUp == 1 })
		if _, ok := m.tmpl.Peer(3); ok {
			t.Errorf("node %d: template of 3 not withdrawn", m.node.HostID())
		}
		if !slices.Contains(m.tmpl.Events(), "withdraw 3") {
			t.Errorf("node %d events %v", m.node.HostID(), m.tmpl.Events())
		}
	}
	if _, ok := ms[0].table.Get(k); !ok {
		t.Fatalf("session of 3 dropped before the grace (%v after stop)", time.Since(stopped))
	}
	for _, m := range ms[:2] {
		gossiptest.WaitFor(t, wait, "session of 3 dropped", absent(m.table, k))
		if s := m.node.Stats(); s.GraceDrops != 1 {
			t.Errorf("node %d grace drops %d", m.node.HostID(), s.GraceDrops)
		}
	}
	if d := time.Since(stopped); d < 300*time.Millisecond {
		t.Errorf("dropped %v after stop, grace is 300ms", d)
	}
}

func TestPeerBackWithinGrace(t *testing.T) {
	hub, ms := cluster(t, 2, func(c *gossip.Config) { c.Grace = time.Hour })
	gossiptest.WaitFor(t, wait, "peers up", func() bool { return ms[0].node.Stats().PeersUp == 1 })
	k := key(8)
	if err := ms[1].node.LocalAdd(k); err != nil {
		t.Fatal(err)
	}
	gossiptest.WaitFor(t, wait, "session of 2", owned(ms[0].table, k, 2))
	// Partition: 1 hears nothing from 2 until 2 is down, then heal.
	from2 := ms[1].conn.Addr()
	var mu sync.Mutex
	cut := true
	hub.SetDrop(func(from, _ netip.AddrPort, _ []byte) bool { mu.Lock(); defer mu.Unlock(); return cut && from == from2 })
	gossiptest.WaitFor(t, wait, "peer 2 down", func() bool { return ms[0].node.Stats().PeersUp == 0 })
	mu.Lock()
	cut = false
	mu.Unlock()
	gossiptest.WaitFor(t, wait, "peer 2 up again", func() bool { return ms[0].node.Stats().PeersUp == 1 })
	if ev := ms[0].tmpl.Events(); !slices.Equal(ev, []string{"publish 2", "withdraw 2", "publish 2"}) {
		t.Errorf("template events %v", ev)
	}
	if s := ms[0].node.Stats(); s.SeqGaps == 0 {
		t.Errorf("no sequence gap counted across the partition: %+v", s)
	}
	if _, ok := ms[0].table.Get(k); !ok {
		t.Error("session dropped although the peer came back with the same incarnation")
	}
}

// peer is a hand-driven sender for injecting crafted datagrams.
type peer struct {
	hub  *gossiptest.Hub
	addr netip.AddrPort
	id   uint16
	inc  uint64
	seq  uint64
	seal *wire.Sealer
	now  func() time.Time // the timestamps' clock (default time.Now)
}

func newPeer(hub *gossiptest.Hub, id uint16, k []byte) *peer {
	r, _ := wire.NewKeyRing(k, nil)
	return &peer{hub: hub, addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, 51, byte(id)}), 6081), id: id, inc: 1, seal: wire.NewSealer(r), now: time.Now}
}

func (p *peer) datagram(typ wire.Type, body []byte) wire.Datagram {
	p.seq++
	d := make(wire.Datagram, wire.Overhead+len(body))
	copy(d[wire.HeaderLen:], body)
	p.seal.Seal(d, wire.Header{Type: typ, Sender: p.id, Incarnation: p.inc, Seq: p.seq, Timestamp: p.now().UnixNano()})
	return d
}

func (p *peer) send(d []byte) { p.hub.Inject(p.addr, d) }

func (p *peer) records(rs ...wire.Record) {
	var body []byte
	for _, r := range rs {
		body = wire.AppendRecord(body, r)
	}
	p.send(p.datagram(wire.TypeRecords, body))
}

func (p *peer) heartbeat() {
	hb := wire.Heartbeat{Host: p.id, Incarnation: p.inc, Addr: p.addr.Addr(), MAC: net.HardwareAddr{2, 0, 0, 0, 1, byte(p.id)}, TunnelPort: 6080}
	p.send(p.datagram(wire.TypeHeartbeat, wire.AppendHeartbeat(nil, &hb)))
}

func add(k session.Key, host uint16, epoch uint64) wire.Record {
	return wire.Record{Op: wire.OpAdd, Key: k, Owner: session.Owner{Host: host, Epoch: epoch}}
}

func del(k session.Key, host uint16) wire.Record {
	return wire.Record{Op: wire.OpDelete, Key: k, Owner: session.Owner{Host: host}}
}

func TestRejectsCounted(t *testing.T) {
	hub, ms := cluster(t, 1, func(c *gossip.Config) { c.MaxDatagram = 1000 })
	m := ms[0]
	p := newPeer(hub, 20, testKey)
	wrong := newPeer(hub, 21, badKey)
	rec := wire.AppendRecord(nil, add(key(1), 20, 5))

	flip := func(d wire.Datagram, off int, v byte) []byte { d[off] = v; return d }
	p.send(flip(p.datagram(wire.TypeRecords, rec), 0, 'X'))  // bad magic
	p.send(flip(p.datagram(wire.TypeRecords, rec), 2, 9))    // version
	p.send(p.datagram(3, rec))                               // unknown type
	p.send(p.datagram(wire.TypeRecords, rec)[:40])           // truncated
	p.send(p.datagram(wire.TypeRecords, make([]byte, 1000))) // over the configured max
	p.send(make([]byte, 9100))                               // jumbo
	wrong.send(wrong.datagram(wire.TypeRecords, rec))        // bad tag
	p.send(p.datagram(wire.TypeRecords, append(rec, 0x07)))  // malformed record
	p.send(p.datagram(wire.TypeHeartbeat, []byte{1, 2, 3}))  // malformed heartbeat
	own := newPeer(hub, 1, testKey)                          // our own host id
	own.records(add(key(2), 1, 5))                           //
	good := p.datagram(wire.TypeRecords, rec)
	p.send(good) // accepted
	p.send(good) // replay
	p.seq = good.Seq() + 5
	p.records(add(key(3), 20, 5), add(key(4), 19, 5)) // gap of 5 + a foreign record
	p.inc = 0                                         //
	p.records(add(key(5), 20, 9))                     // older incarnation
	gossiptest.WaitFor(t, wait, "all datagrams handled", func() bool { return m.node.Stats().DatagramsReceived == 14 })
	s := m.node.Stats()
	want := gossip.Stats{
		BadMagic: 1, BadVersion: 1, UnknownType: 1, Truncated: 1, Oversize: 2, AuthFailures: 1,
		Malformed: 2, OwnDatagrams: 1, Replays: 2, SeqGaps: 5, ForeignRecords: 1, RecordsApplied: 2,
	}
	got := gossip.Stats{
		BadMagic: s.BadMagic, BadVersion: s.BadVersion, UnknownType: s.UnknownType, Truncated: s.Truncated,
		Oversize: s.Oversize, AuthFailures: s.AuthFailures, Malformed: s.Malformed, OwnDatagrams: s.OwnDatagrams,
		Replays: s.Replays, SeqGaps: s.SeqGaps, ForeignRecords: s.ForeignRecords, RecordsApplied: s.RecordsApplied,
	}
	if got != want {
		t.Errorf("counters\n got %+v\nwant %+v", got, want)
	}
	if m.table.Len() != 2 {
		t.Errorf("table %v", m.table.Snapshot())
	}
}

func TestConflictRules(t *testing.T) {
	// A fake clock: the linger below ends when the test advances it.
	clk := gossiptest.NewClock(time.Unix(1_700_000_000, 0))
	hub, ms := cluster(t, 1, func(c *gossip.Config) { c.Clock = clk })
	tb := ms[0].table
	a, b := newPeer(hub, 10, testKey), newPeer(hub, 11, testKey)
	a.now, b.now = clk.Now, clk.Now
	k := key(1)
	// A heartbeat of a third peer after each step's datagram marks it handled: the
	// receiver takes datagrams in order and counts a heartbeat when it is done with it
	// (DatagramsReceived counts a datagram when its handling starts).
	marker := newPeer(hub, 12, testKey)
	marker.now = clk.Now
	step := func(what string, send func(), want session.Owner, present bool) {
		t.Helper()
		before := ms[0].node.Stats().HeartbeatsReceived
		send()
		marker.heartbeat()
		gossiptest.WaitFor(t, wait, what, func() bool { return ms[0].node.Stats().HeartbeatsReceived > before })
		o, ok := tb.Get(k)
		if ok != present || (ok && o != want) {
			t.Errorf("%s: table has %+v %v, want %+v %v", what, o, ok, want, present)
		}
		if no, nok := ms[0].node.Owner(k); nok != ok || no != o {
			t.Errorf("%s: node view %+v %v differs from table %+v %v", what, no, nok, o, ok)
		}
	}
	step("first claim", func() { a.records(add(k, 10, 100)) }, session.Owner{Host: 10, Epoch: 100}, true)
	step("older epoch loses", func() { b.records(add(k, 11, 99)) }, session.Owner{Host: 10, Epoch: 100}, true)
	step("newer epoch wins", func() { b.records(add(k, 11, 101)) }, session.Owner{Host: 11, Epoch: 101}, true)
	step("equal epoch, lower id wins", func() { a.records(add(k, 10, 101)) }, session.Owner{Host: 10, Epoch: 101}, true)
	step("equal epoch, higher id loses", func() { b.records(add(k, 11, 101)) }, session.Owner{Host: 10, Epoch: 101}, true)
	step("repeat is idempotent", func() { a.records(add(k, 10, 101)) }, session.Owner{Host: 10, Epoch: 101}, true)
	step("delete by non-owner ignored", func() { b.records(del(k, 11)) }, session.Owner{Host: 10, Epoch: 101}, true)
	step("delete by owner", func() { a.records(del(k, 10)) }, session.Owner{}, false)
	step("delete of absent key", func() { a.records(del(k, 10)) }, session.Owner{}, false)
	if s := ms[0].node.Stats(); s.StaleRecords != 4 || s.RecordsApplied != 4 {
		t.Errorf("stale %d applied %d, want 4 and 4", s.StaleRecords, s.RecordsApplied)
	}

	// A local claim takes a fresh epoch and wins over a peer's; the peer's later claim
	// with a newer epoch takes it back, and the lingering local delete does not remove it.
	// (k3, a local session closed after k2, is the mark that the linger of k2 is over.)
	k2, k3 := key(2), key(3)
	step2 := func() { a.records(add(k2, 10, wire.EpochAt(clk.Now().Add(-time.Second)))) }
	step2()
	gossiptest.WaitFor(t, wait, "peer claim", owned(tb, k2, 10))
	for _, k := range []session.Key{k2, k3} {
		if err := ms[0].node.LocalAdd(k); err != nil {
			t.Fatal(err)
		}
	}
	gossiptest.WaitFor(t, wait, "local claim", owned(tb, k2, 1))
	for _, k := range []session.Key{k2, k3} {
		if err := ms[0].node.LocalDelete(k); err != nil {
			t.Fatal(err)
		}
	}
	a.records(add(k2, 10, wire.EpochAt(clk.Now().Add(time.Second))))
	gossiptest.WaitFor(t, wait, "newer peer claim", owned(tb, k2, 10))
	clk.Advance(100 * time.Millisecond) // past the 50ms linger
	gossiptest.WaitFor(t, wait, "the linger of k3 (after k2's)", absent(tb, k3))
	if o, ok := tb.Get(k2); !ok || o.Host != 10 {
		t.Errorf("after linger: %+v %v, want owner 10", o, ok)
	}
}

// TestLingerCancel: a session re-added during its linger is not deleted when the
// linger ends. The nodes share a fake clock, which moves when the test says: by a
// millisecond each time a wait polls (heartbeats, flush slots), and past the linger at
// once. k2, closed after k, marks the end of k's linger.
func TestLingerCancel(t *testing.T) {
	clk := gossiptest.NewClock(time.Unix(1_700_000_000, 0))
	hub, ms := cluster(t, 2, func(c *gossip.Config) {
		c.Linger, c.Clock = 150*time.Millisecond, clk
		c.DownAfter = 1 << 20 // the clock jumps: no peer goes down meanwhile
	})
	rt := tapRecords(t, hub.Conn())
	tick := func(cond func() bool) func() bool {
		return func() bool { clk.Advance(time.Millisecond); return cond() }
	}
	k, k2 := key(3), key(4)
	for _, k := range []session.Key{k, k2} {
		if err := ms[0].node.LocalAdd(k); err != nil {
			t.Fatal(err)
		}
	}
	gossiptest.WaitFor(t, wait, "add", tick(func() bool { return owned(ms[1].table, k, 1)() && owned(ms[1].table, k2, 1)() }))
	o1, _ := ms[1].table.Get(k)
	for _, k := range []session.Key{k, k2} {
		if err := ms[0].node.LocalDelete(k); err != nil {
			t.Fatal(err)
		}
	}
	clk.Advance(20 * time.Millisecond)
	if err := ms[0].node.LocalAdd(k); err != nil { // re-added during the linger
		t.Fatal(err)
	}
	clk.Advance(300 * time.Millisecond)
	gossiptest.WaitFor(t, wait, "k2's delete", tick(func() bool {
		return absent(ms[1].table, k2)() && slices.ContainsFunc(rt.keys(wire.OpDelete), func(d session.Key) bool { return d == k2 })
	}))
	for _, m := range ms {
		o, ok := m.table.Get(k)
		if !ok || o.Host != 1 || o.Epoch <= o1.Epoch {
			t.Errorf("node %d: %+v %v, want owner 1 with an epoch above %d", m.node.HostID(), o, ok, o1.Epoch)
		}
	}
	deletes := 0
	for _, d := range rt.keys(wire.OpDelete) {
		if d == k {
			deletes++
		}
	}
	if deletes != 0 {
		t.Errorf("%d deletes announced after a cancelled linger", deletes)
	}
	// Deleting a session owned by someone else does nothing.
	if err := ms[1].node.LocalDelete(k); err != nil {
		t.Fatal(err)
	}
	if err := ms[0].node.LocalDelete(session.Key{}); !errors.Is(err, gossip.ErrInvalidKey) {
		t.Errorf("invalid key: %v", err)
	}
}

// recordTap collects the records datagrams a node sends.
type recordTap struct {
	mu    sync.Mutex
	dgs   []wire.Datagram
	times []time.Time
}

func tapRecords(t testing.TB, c *gossiptest.Conn) *recordTap {
	rt := &recordTap{}
	op := wire.NewOpener(ring(t, testKey), 0)
	go func() {
		buf := make([]byte, 9216)
		for {
			n, _, err := c.Recv(buf)
			if err != nil {
				return
			}
			d := wire.Datagram(bytes.Clone(buf[:n]))
			if op.Open(d) != nil || d.Type() != wire.TypeRecords {
				continue
			}
			rt.mu.Lock()
			rt.dgs = append(rt.dgs, d)
			rt.times = append(rt.times, time.Now())
			rt.mu.Unlock()
		}
	}()
	t.Cleanup(func() { c.Close() })
	return rt
}

func (rt *recordTap) get() ([]wire.Datagram, []time.Time) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return slices.Clone(rt.dgs), slices.Clone(rt.times)
}

func (rt *recordTap) count() int { d, _ := rt.get(); return len(d) }

// keys returns the keys of the records of op seen so far, in order.
func (rt *recordTap) keys(op wire.Op) []session.Key {
	dgs, _ := rt.get()
	var ks []session.Key
	for _, d := range dgs {
		rs, _ := wire.ParseRecords(nil, d.Body(), d.Sender(), d.Timestamp())
		for _, r := range rs {
			if r.Op == op {
				ks = append(ks, r.Key)
			}
		}
	}
	return ks
}

func nrecs(t testing.TB, d wire.Datagram) int {
	rs, err := wire.ParseRecords(nil, d.Body(), d.Sender(), d.Timestamp())
	if err != nil {
		t.Fatal(err)
	}
	return len(rs)
}

func TestFlushOnSize(t *testing.T) {
	hub, ms := cluster(t, 1, func(c *gossip.Config) { c.FlushDelay, c.FixedFlush = time.Hour, true })
	rt := tapRecords(t, hub.Conn())
	// Compact IPv4 adds to one VIP: the first 15 bytes, the others 8 (same destination,
	// 1-byte epoch delta).
	const first, next = 15, 8
	perDatagram := 1 + (gossip.DefaultMaxDatagram-wire.Overhead-first)/next // 168
	for i := range perDatagram + 1 {
		if err := ms[0].node.LocalAdd(key(i)); err != nil {
			t.Fatal(err)
		}
	}
	gossiptest.WaitFor(t, wait, "a full datagram", func() bool { return rt.count() >= 1 })
	time.Sleep(50 * time.Millisecond)
	dgs, _ := rt.get()
	if len(dgs) != 1 {
		t.Fatalf("%d datagrams, want 1 (the rest waits for the hour-long delay)", len(dgs))
	}
	// Full: no further record (8 bytes at least) fits. An epoch delta can take a second
	// byte when adds are more than 4 ms apart (a slow machine), so a record or two fewer.
	if n := nrecs(t, dgs[0]); n < perDatagram-2 || n > perDatagram || len(dgs[0])+next <= gossip.DefaultMaxDatagram {
		t.Errorf("datagram of %d bytes with %d records, want a full one of about %d records", len(dgs[0]), n, perDatagram)
	}
	if len(dgs[0]) > gossip.DefaultMaxDatagram {
		t.Errorf("datagram of %d bytes", len(dgs[0]))
	}
	if ql := ms[0].node.Stats().QueueLen; ql != 0 {
		t.Errorf("queue length %d, want 0 (the 169th record is in the open datagram)", ql)
	}
}

func TestFlushOnDelay(t *testing.T) {
	hub, ms := cluster(t, 1, func(c *gossip.Config) { c.FlushDelay, c.FixedFlush = 40*time.Millisecond, true })
	rt := tapRecords(t, hub.Conn())
	t0 := time.Now()
	for i := range 3 {
		if err := ms[0].node.LocalAdd(key(i)); err != nil {
			t.Fatal(err)
		}
	}
	gossiptest.WaitFor(t, wait, "a datagram", func() bool { return rt.count() >= 1 })
	dgs, times := rt.get()
	if d := times[0].Sub(t0); d < 40*time.Millisecond {
		t.Errorf("flushed after %v, before the 40ms delay", d)
	}
	if len(dgs) != 1 || nrecs(t, dgs[0]) != 3 {
		t.Errorf("%d datagrams, first with %d records; want 1 with 3", len(dgs), nrecs(t, dgs[0]))
	}
	if ts := time.Unix(0, dgs[0].Timestamp()); ts.Before(t0) || ts.After(times[0]) {
		t.Errorf("timestamp %v not between the first LocalAdd %v and receipt %v", ts, t0, times[0])
	}
}

func TestRateBoundAndOverflow(t *testing.T) {
	// The sender holds at most two datagrams' worth of records (one sent, one open)
	// before it waits 50ms for a token, so that most of 600 records meet a full queue.
	const rate, queue, total = 20, 200, 600
	hub, ms := cluster(t, 1, func(c *gossip.Config) {
		c.MaxRate, c.MaxBurst, c.MaxQueue, c.FlushDelay = rate, 1, queue, time.Millisecond
	})
	rt := tapRecords(t, hub.Conn())
	t0 := time.Now()
	var refused int
	for i := range total {
		err := ms[0].node.LocalAdd(key(i))
		if errors.Is(err, gossip.ErrQueueFull) {
			refused++
		} else if err != nil {
			t.Fatal(err)
		}
	}
	s := ms[0].node.Stats()
	if refused == 0 || s.QueueOverflow != uint64(refused) {
		t.Errorf("refused %d, overflow counter %d", refused, s.QueueOverflow)
	}
	if s.LocalUpdates != total {
		t.Errorf("local updates %d, want %d (the own table takes every session)", s.LocalUpdates, total)
	}
	gossiptest.WaitFor(t, wait, "own table", func() bool { return ms[0].table.Len() == total })
	sent := total - refused
	gossiptest.WaitFor(t, wait, "queued records sent", func() bool {
		n := 0
		dgs, _ := rt.get()
		for _, d := range dgs {
			n += nrecs(t, d)
		}
		return n == sent
	})
	dgs, times := rt.get()
	// 1 token at start, then one per 50ms.
	if min := time.Duration(len(dgs)-1) * time.Second / rate; times[len(times)-1].Sub(t0) < min*9/10 {
		t.Errorf("%d datagrams in %v at %d/s", len(dgs), times[len(times)-1].Sub(t0), rate)
	}
	if ms[0].node.Stats().QueueLen != 0 {
		t.Errorf("queue not drained")
	}
}

func TestDiscoveryFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hosts")
	write := func(s string) {
		t.Helper()
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	write("# id address mac\n1 198.18.50.1\n2 198.18.50.2 02:00:00:00:00:02\n")
	hub := gossiptest.NewHub()
	cfg := fastConfig(t, 1)
	cfg.DiscoveryFile, cfg.DiscoveryPoll = path, 20*time.Millisecond
	m := start(t, hub, cfg)
	start(t, hub, fastConfig(t, 2))
	start(t, hub, fastConfig(t, 3))
	impostor := newPeer(hub, 2, testKey) // host 2's id with the wrong address
	impostor.inc = 1 << 62
	gossiptest.WaitFor(t, wait, "host 2 up", func() bool { _, ok := m.tmpl.Peer(2); return ok })
	gossiptest.WaitFor(t, wait, "host 3 ignored", func() bool { return m.node.Stats().UnknownHost > 3 })
	if _, ok := m.tmpl.Peer(3); ok {
		t.Error("unlisted host 3 published")
	}
	impostor.heartbeat()
	gossiptest.WaitFor(t, wait, "mismatch", func() bool { return m.node.Stats().Mismatch >= 1 })

	write("1 198.18.50.1\n3 198.18.50.3\n")
	gossiptest.WaitFor(t, wait, "host 3 up", func() bool { _, ok := m.tmpl.Peer(3); return ok })
	gossiptest.WaitFor(t, wait, "host 2 withdrawn", func() bool { _, ok := m.tmpl.Peer(2); return !ok })

	write("1 198.18.50.1\n3 bogus\n")
	gossiptest.WaitFor(t, wait, "parse error counted", func() bool { return m.node.Stats().DiscoveryErrors >= 1 })
	if _, ok := m.tmpl.Peer(3); !ok {
		t.Error("a broken file changed membership")
	}

	cfg.DiscoveryFile = filepath.Join(t.TempDir(), "missing")
	if _, err := gossip.New(cfg, hub.Conn(), gossiptest.NewTable(), gossiptest.NewTemplates()); !errors.Is(err, gossip.ErrDiscovery) {
		t.Errorf("missing discovery file at start: %v", err)
	}
}

func TestRestartNewIncarnation(t *testing.T) {
	hub, ms := cluster(t, 2, func(c *gossip.Config) { c.Grace = 200 * time.Millisecond })
	kOld, kKept := key(1), key(2)
	for _, k := range []session.Key{kOld, kKept} {
		if err := ms[1].node.LocalAdd(k); err != nil {
			t.Fatal(err)
		}
	}
	gossiptest.WaitFor(t, wait, "sessions of 2", func() bool { return ms[0].table.Len() == 2 })
	ms[1].stop()
	// Host 2 restarts at once (before it is seen down) and announces only kKept again.
	cfg := fastConfig(t, 2)
	cfg.Incarnation = ms[1].node.Incarnation() + 1
	again := start(t, hub, cfg)
	if err := again.node.LocalAdd(kKept); err != nil {
		t.Fatal(err)
	}
	gossiptest.WaitFor(t, wait, "new incarnation published", func() bool {
		p, ok := ms[0].tmpl.Peer(2)
		return ok && p.Incarnation == cfg.Incarnation
	})
	gossiptest.WaitFor(t, wait, "old incarnation's session dropped", absent(ms[0].table, kOld))
	if _, ok := ms[0].table.Get(kKept); !ok {
		t.Error("re-announced session dropped with the old incarnation")
	}
}

func TestConfig(t *testing.T) {
	hub := gossiptest.NewHub()
	cfg := fastConfig(t, 1)
	cfg.Keys = nil
	if _, err := gossip.New(cfg, hub.Conn(), gossiptest.NewTable(), gossiptest.NewTemplates()); !errors.Is(err, wire.ErrNoKey) {
		t.Errorf("no key: %v", err)
	}
	cfg.Insecure = true
	if _, err := gossip.New(cfg, hub.Conn(), gossiptest.NewTable(), gossiptest.NewTemplates()); err != nil {
		t.Errorf("insecure: %v", err)
	}
	for name, mod := range map[string]func(*gossip.Config){
		"host 0":      func(c *gossip.Config) { c.HostID = 0 },
		"no address":  func(c *gossip.Config) { c.Addr = netip.Addr{} },
		"short MAC":   func(c *gossip.Config) { c.MAC = c.MAC[:5] },
		"tiny max":    func(c *gossip.Config) { c.MaxDatagram = 60 },
		"jumbo max":   func(c *gossip.Config) { c.MaxDatagram = 9001 },
		"same family": func(c *gossip.Config) { c.AltAddr = netip.MustParseAddr("198.18.0.9") },
	} {
		c := fastConfig(t, 1)
		mod(&c)
		if _, err := gossip.New(c, hub.Conn(), gossiptest.NewTable(), gossiptest.NewTemplates()); !errors.Is(err, gossip.ErrConfig) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestInsecureCluster(t *testing.T) {
	_, ms := cluster(t, 2, func(c *gossip.Config) { c.Keys, c.Insecure = nil, true })
	if err := ms[0].node.LocalAdd(key(1)); err != nil {
		t.Fatal(err)
	}
	gossiptest.WaitFor(t, wait, "session", owned(ms[1].table, key(1), 1))
}

// TestAdaptiveFlush: with the adaptive flush (the default), a record that finds the link idle goes out at
// once despite an hour-long FlushDelay; records that follow within the delay wait for
// it (batching only while datagrams go out back to back).
func TestAdaptiveFlush(t *testing.T) {
	hub, ms := cluster(t, 1, func(c *gossip.Config) { c.FlushDelay = time.Hour })
	rt := tapRecords(t, hub.Conn())
	if err := ms[0].node.LocalAdd(key(1)); err != nil {
		t.Fatal(err)
	}
	gossiptest.WaitFor(t, wait, "the first record at once", func() bool { return rt.count() >= 1 })
	for i := range 3 {
		if err := ms[0].node.LocalAdd(key(2 + i)); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(50 * time.Millisecond)
	dgs, _ := rt.get()
	if len(dgs) != 1 || nrecs(t, dgs[0]) != 1 {
		t.Fatalf("%d datagrams, want 1 with 1 record (the next 3 wait for the delay)", len(dgs))
	}
	if ql := ms[0].node.Stats().QueueLen; ql != 0 {
		t.Errorf("queue length %d, want 0 (the 3 records are in the open datagram)", ql)
	}
}

// TestHeartbeatsWhileRateLimited: a sender with a backlog longer than DownAfter
// heartbeat intervals, waiting for tokens on its precise timer, keeps sending
// heartbeats: its peers never take it down. (Before the fix: 0 heartbeats during the
// backlog, and the peer down.)
func TestHeartbeatsWhileRateLimited(t *testing.T) {
	_, ms := cluster(t, 2, func(c *gossip.Config) {
		// ~4 records a datagram, 1000 datagrams/s: 6000 records are 1.5 s of backlog,
		// waits of 1 ms between tokens (the precise timer's range).
		c.MaxRate, c.MaxBurst, c.MaxQueue, c.MaxDatagram = 1000, 1, 1<<16, wire.Overhead+wire.RecordAdd6Len
		// Down after 25 intervals (500 ms): a loaded machine's stalls (-race, 2 cores
		// shared) took 100 ms; a sender without heartbeats in its backlog still goes
		// down within the second the test watches.
		c.HeartbeatInterval, c.DownAfter, c.Grace = 20*time.Millisecond, 25, 10*time.Second
	})
	for _, m := range ms {
		gossiptest.WaitFor(t, wait, "peer up", func() bool { return m.node.Stats().PeersUp == 1 })
	}
	hb0 := ms[0].node.Stats().HeartbeatsSent
	for i := range 6000 {
		if err := ms[0].node.LocalAdd(key(i)); err != nil {
			t.Fatal(err)
		}
	}
	t0 := time.Now()
	for time.Since(t0) < time.Second {
		if ms[1].node.Stats().PeersUp != 1 {
			t.Fatalf("node 2 took node 1 down %v into node 1's backlog", time.Since(t0).Round(time.Millisecond))
		}
		time.Sleep(10 * time.Millisecond)
	}
	s := ms[0].node.Stats()
	if hb := s.HeartbeatsSent - hb0; hb < 25 || s.QueueLen == 0 {
		t.Errorf("%d heartbeats in 1 s of backlog (interval 20 ms); %d records still queued", hb, s.QueueLen)
	}
}
