package gossip_test

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/homing-dev/homing/gossip"
	"github.com/homing-dev/homing/gossip/gossiptest"
	"github.com/homing-dev/homing/gossip/wire"
)

// udpNet is a fake unicast network between relays.
type udpNet struct {
	mu    sync.Mutex // protects socks and sent
	socks map[netip.AddrPort]*udpSock
	sent  []udpPacket
}

type udpPacket struct {
	from, to netip.AddrPort
	b        []byte
}

type udpSock struct {
	n      *udpNet
	addr   netip.AddrPort
	ch     chan udpPacket
	closed chan struct{}
	once   sync.Once
}

func (n *udpNet) listen(a netip.AddrPort) *udpSock {
	s := &udpSock{n: n, addr: a, ch: make(chan udpPacket, 4096), closed: make(chan struct{})}
	n.mu.Lock()
	n.socks[a] = s
	n.mu.Unlock()
	return s
}

func (n *udpNet) packets() []udpPacket {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]udpPacket(nil), n.sent...)
}

func (s *udpSock) WriteTo(b []byte, to netip.AddrPort) error {
	p := udpPacket{from: s.addr, to: to, b: append([]byte(nil), b...)}
	s.n.mu.Lock()
	s.n.sent = append(s.n.sent, p)
	dst := s.n.socks[to]
	s.n.mu.Unlock()
	if dst == nil {
		return nil // lost, as UDP to a dead host
	}
	select {
	case <-dst.closed:
	case dst.ch <- p:
	default:
	}
	return nil
}

func (s *udpSock) ReadFrom(buf []byte) (int, netip.AddrPort, error) {
	select {
	case <-s.closed:
		return 0, netip.AddrPort{}, net.ErrClosed
	case p := <-s.ch:
		return copy(buf, p.b), p.from, nil
	}
}

func (s *udpSock) Close() error {
	s.once.Do(func() { close(s.closed) })
	s.n.mu.Lock()
	delete(s.n.socks, s.addr)
	s.n.mu.Unlock()
	return nil
}

// rackMember is a node of a rack, with its relay if it is one.
type rackMember struct {
	*member
	relay  *gossip.Relay
	domain string
}

// startRackNode starts node id of domain dom on hub; if peers is not nil it is a relay
// with unicast socket addr that forwards to peers.
func startRackNode(t *testing.T, hub *gossiptest.Hub, un *udpNet, id uint16, dom string, addr netip.AddrPort, peers []netip.AddrPort) *rackMember {
	t.Helper()
	cfg := fastConfig(t, id)
	cfg.Domain = dom
	cfg.Addr = addr.Addr()
	cfg.Repair = false // relays alone must carry everything
	m := &member{table: gossiptest.NewTable(), tmpl: gossiptest.NewTemplates(), conn: hub.Conn(), done: make(chan struct{})}
	rm := &rackMember{member: m, domain: dom}
	var conn gossip.Conn = m.conn
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	if peers != nil {
		var err error
		rm.relay, err = gossip.NewRelay(gossip.RelayConfig{HostID: id, Domain: dom, Keys: ring(t, testKey), Peers: peers,
			Unicast: un.listen(addr), Local: hub.Conn()})
		if err != nil {
			t.Fatal(err)
		}
		conn = rm.relay.Tee(m.conn)
		wg.Go(func() {
			if err := rm.relay.Run(ctx); err != nil {
				t.Errorf("relay %d: %v", id, err)
			}
		})
	}
	var err error
	m.node, err = gossip.New(cfg, conn, m.table, m.tmpl)
	if err != nil {
		t.Fatal(err)
	}
	m.cancel = cancel
	wg.Go(func() {
		if err := m.node.Run(ctx); err != nil {
			t.Errorf("node %d: %v", id, err)
		}
	})
	go func() { wg.Wait(); close(m.done) }()
	t.Cleanup(func() {
		select {
		case <-m.done:
		default:
			m.stop()
		}
	})
	return rm
}

// TestRelays: two racks of three hosts, two relays each, no multicast between them.
// Ownership and membership cross both ways through the relays; relays never forward a
// datagram of another rack (no loop); each relay multicasts a datagram once although
// both relays of the other rack sent it; a rack's failed relay, and then one of each
// rack, leave the other relays carrying everything.
func TestRelays(t *testing.T) {
	un := &udpNet{socks: map[netip.AddrPort]*udpSock{}}
	hubA, hubB := gossiptest.NewHub(), gossiptest.NewHub()
	ap := func(s string) netip.AddrPort {
		return netip.AddrPortFrom(netip.MustParseAddr(s), gossip.DefaultRelayPort)
	}
	relaysA := []netip.AddrPort{ap("198.18.0.11"), ap("198.18.0.12")}
	relaysB := []netip.AddrPort{ap("198.18.1.14"), ap("198.18.1.15")}
	a1 := startRackNode(t, hubA, un, 1, "rack-a", relaysA[0], relaysB)
	a2 := startRackNode(t, hubA, un, 2, "rack-a", relaysA[1], relaysB)
	a3 := startRackNode(t, hubA, un, 3, "rack-a", ap("198.18.0.13"), nil)
	b1 := startRackNode(t, hubB, un, 4, "rack-b", relaysB[0], relaysA)
	b2 := startRackNode(t, hubB, un, 5, "rack-b", relaysB[1], relaysA)
	b3 := startRackNode(t, hubB, un, 6, "rack-b", ap("198.18.1.16"), nil)
	all := []*rackMember{a1, a2, a3, b1, b2, b3}
	for _, m := range all {
		gossiptest.WaitFor(t, wait, "every peer up", func() bool { return m.node.Stats().PeersUp == 5 })
	}
	// b3 learned a3 (a non-relay of the other rack) with its domain and address.
	if p, ok := b3.tmpl.Peer(3); !ok || p.Domain != "rack-a" || p.Addr != netip.MustParseAddr("198.18.0.13") {
		t.Errorf("peer 3 on host 6: %+v %v", p, ok)
	}

	const n = 300
	for i := range n {
		if err := a3.node.LocalAdd(key(i)); err != nil {
			t.Fatal(err)
		}
		if err := b3.node.LocalAdd(key6(i)); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range all {
		gossiptest.WaitFor(t, wait, "both racks' sessions everywhere", func() bool { return m.table.Len() == 2*n })
	}
	for _, m := range []*rackMember{b1, b2, b3} {
		if o, _ := m.table.Get(key(7)); o.Host != 3 {
			t.Errorf("host %d: key 7 owned by %d, want 3", m.node.HostID(), o.Host)
		}
	}

	// No loop: every envelope a relay sent carries a datagram of its own rack.
	rackOf := map[uint16]string{1: "rack-a", 2: "rack-a", 3: "rack-a", 4: "rack-b", 5: "rack-b", 6: "rack-b"}
	relayRack := map[netip.AddrPort]string{relaysA[0]: "rack-a", relaysA[1]: "rack-a", relaysB[0]: "rack-b", relaysB[1]: "rack-b"}
	for _, p := range un.packets() {
		inner := wire.Datagram(wire.Datagram(p.b).Body())
		if rackOf[inner.Sender()] != relayRack[p.from] || relayRack[p.to] == relayRack[p.from] {
			t.Fatalf("relay %v sent host %d's datagram to %v", p.from, inner.Sender(), p.to)
		}
	}
	// No duplicate multicast: each relay received every datagram twice (from both
	// relays of the other rack) and multicast it once.
	for _, r := range []*rackMember{a1, a2, b1, b2} {
		st := r.relay.Stats()
		if st.Relayed == 0 || st.Duplicates == 0 || st.Duplicates > st.Relayed+st.Relayed/10+5 || st.AuthFailures != 0 || st.Malformed != 0 {
			t.Errorf("relay %d: %+v", r.node.HostID(), st)
		}
	}
	// The copy relayed by the second relay of a rack reaches the nodes as a replay.
	if st := b3.node.Stats(); st.Replays == 0 || st.AuthFailures != 0 {
		t.Errorf("host 6: replays %d, auth failures %d", st.Replays, st.AuthFailures)
	}

	// Relay a1 fails: a3's new sessions still reach rack B (through a2).
	a1.stop()
	for i := n; i < n+50; i++ {
		if err := a3.node.LocalAdd(key(i)); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range []*rackMember{b1, b2, b3} {
		gossiptest.WaitFor(t, wait, "rack A's sessions in rack B without relay 1", owned(m.table, key(n+49), 3))
	}
	// Relay b1 fails too: a2 → b2 carries both ways.
	b1.stop()
	for i := n; i < n+50; i++ {
		if err := a3.node.LocalDelete(key(i)); err != nil {
			t.Fatal(err)
		}
		if err := b3.node.LocalAdd(key6(i)); err != nil {
			t.Fatal(err)
		}
	}
	gossiptest.WaitFor(t, wait, "rack A's deletes in rack B through a2 and b2", absent(b3.table, key(n+49)))
	gossiptest.WaitFor(t, wait, "rack B's sessions in rack A through b2 and a2", owned(a3.table, key6(n+49), 6))
	// The survivors still see each other up across the racks.
	time.Sleep(200 * time.Millisecond)
	if st := b3.node.Stats(); st.PeersUp != 3 {
		t.Errorf("host 6 sees %d peers up, want 3 (2, 3, 5)", st.PeersUp)
	}
}

// TestRelayRejects: envelopes from unknown addresses, with a bad tag, replayed, or
// carrying a datagram of the relay's own rack are dropped and counted.
func TestRelayRejects(t *testing.T) {
	un := &udpNet{socks: map[netip.AddrPort]*udpSock{}}
	hub := gossiptest.NewHub()
	peer := netip.MustParseAddrPort("198.18.0.11:6082")
	self := netip.MustParseAddrPort("198.18.1.14:6082")
	local := hub.Conn()
	r, err := gossip.NewRelay(gossip.RelayConfig{HostID: 4, Domain: "rack-b", Keys: ring(t, testKey), Peers: []netip.AddrPort{peer},
		Unicast: un.listen(self), Local: hub.Conn()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = r.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	// A sender relay of rack A: its own Relay seals envelopes that we capture.
	un2 := &udpNet{socks: map[netip.AddrPort]*udpSock{}}
	capture := un2.listen(self)
	sender, err := gossip.NewRelay(gossip.RelayConfig{HostID: 1, Domain: "rack-a", Keys: ring(t, testKey),
		Peers: []netip.AddrPort{self}, Unicast: un2.listen(peer), Local: gossiptest.NewHub().Conn()})
	if err != nil {
		t.Fatal(err)
	}
	hb := heartbeatDatagram(t, 1, "rack-a", 1)
	sender.Observe(hb)
	env := (<-capture.ch).b
	from := un.listen(peer)
	send := func(b []byte) { _ = from.WriteTo(b, self) }

	send(env)
	gossiptest.WaitFor(t, wait, "relayed", func() bool { return r.Stats().Relayed == 1 })
	buf := make([]byte, 2000)
	if n, _, err := local.Recv(buf); err != nil || string(buf[:n]) != string(hb) {
		t.Fatalf("multicast %d bytes, %v: not the relayed heartbeat", n, err)
	}
	send(env) // replayed envelope
	bad := append([]byte(nil), env...)
	bad[len(bad)-1] ^= 1
	send(bad)
	stranger := un.listen(netip.MustParseAddrPort("198.18.9.9:6082"))
	_ = stranger.WriteTo(env, self)
	send([]byte("HRxx"))
	// A datagram of rack B (the relay's own) sent back: a loop.
	sender.Observe(heartbeatDatagram(t, 1, "rack-a", 2)) // still rack A: relayed
	send((<-capture.ch).b)
	gossiptest.WaitFor(t, wait, "counted", func() bool {
		st := r.Stats()
		return st.Replays == 1 && st.AuthFailures == 1 && st.Malformed == 2 && st.Relayed == 2
	})
	own := heartbeatDatagram(t, 5, "rack-b", 1)
	r.Observe(own) // learnt: host 5 is of rack B
	sender2, _ := gossip.NewRelay(gossip.RelayConfig{HostID: 2, Domain: "rack-b", Insecure: false, Keys: ring(t, testKey),
		Peers: []netip.AddrPort{self}, Unicast: un2.listen(peer), Local: gossiptest.NewHub().Conn()})
	sender2.Observe(own)
	send((<-capture.ch).b)
	gossiptest.WaitFor(t, wait, "loop counted", func() bool { return r.Stats().Loops == 1 })
	if st := r.Stats(); st.Relayed != 2 {
		t.Errorf("stats %+v", st)
	}
}

// heartbeatDatagram is host id's sealed heartbeat of domain dom, sequence seq.
func heartbeatDatagram(t *testing.T, id uint16, dom string, seq uint64) []byte {
	t.Helper()
	h := wire.Heartbeat{Host: id, Incarnation: 1, Addr: netip.AddrFrom4([4]byte{198, 18, 0, byte(10 + id)}),
		MAC: net.HardwareAddr{2, 0, 0, 0, 0, byte(id)}, TunnelPort: 6080, Domain: dom}
	body := wire.AppendHeartbeat(nil, &h)
	d := make(wire.Datagram, wire.Overhead+len(body))
	copy(d[wire.HeaderLen:], body)
	wire.NewSealer(ring(t, testKey)).Seal(d, wire.Header{Type: wire.TypeHeartbeat, Sender: id, Incarnation: 1, Seq: seq})
	return d
}
