// Package gossiptest provides in-memory fakes for the gossip boundaries: a Hub of fake
// Conns standing in for the multicast group, a Table and a Templates store, a Net of
// streams for the repair exchange and a fake Clock that moves when the test says, so that
// whole multi-node control planes run in one test process.
package gossiptest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/homing-dev/homing/gossip"
	"github.com/homing-dev/homing/session"
)

// Hub is a fake multicast group: what one of its Conns sends, every other open Conn
// receives (a sender does not hear itself, as with multicast loopback off).
type Hub struct {
	mu    sync.Mutex // protects conns, drop and next
	conns []*Conn
	drop  func(from, to netip.AddrPort, b []byte) bool
	next  int

	delivered, dropped, overflowed atomic.Uint64
}

// NewHub returns an empty hub.
func NewHub() *Hub { return &Hub{} }

// DefaultQueue is the receive queue of a Conn, in datagrams (a socket buffer).
const DefaultQueue = 8192

// Conn returns a new Conn on the hub with the next address 198.18.50.N:6081.
func (h *Hub) Conn() *Conn {
	h.mu.Lock()
	h.next++
	a := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, 50, byte(h.next)}), 6081)
	h.mu.Unlock()
	return h.ConnAt(a, DefaultQueue)
}

// ConnAt returns a new Conn with source address addr and a receive queue of queue
// datagrams; datagrams arriving at a full queue are dropped and counted.
func (h *Hub) ConnAt(addr netip.AddrPort, queue int) *Conn {
	c := &Conn{hub: h, addr: addr, ch: make(chan []byte, queue), closed: make(chan struct{})}
	h.mu.Lock()
	h.conns = append(h.conns, c)
	h.mu.Unlock()
	return c
}

// SetDrop installs a loss function: a datagram from → to is dropped when it returns
// true. nil delivers everything.
func (h *Hub) SetDrop(f func(from, to netip.AddrPort, b []byte) bool) {
	h.mu.Lock()
	h.drop = f
	h.mu.Unlock()
}

// Inject delivers b, as if sent from from, to every open Conn but one at from.
func (h *Hub) Inject(from netip.AddrPort, b []byte) {
	h.mu.Lock()
	conns, drop := h.conns, h.drop
	h.mu.Unlock()
	for _, c := range conns {
		if c.addr == from || c.isClosed() {
			continue
		}
		if drop != nil && drop(from, c.addr, b) {
			h.dropped.Add(1)
			continue
		}
		select {
		case c.ch <- packet(from, b):
			h.delivered.Add(1)
		default:
			h.overflowed.Add(1)
		}
	}
}

// Counts returns the datagrams delivered, dropped by the loss function, and dropped at
// full receive queues.
func (h *Hub) Counts() (delivered, dropped, overflowed uint64) {
	return h.delivered.Load(), h.dropped.Load(), h.overflowed.Load()
}

// packet prefixes the copied datagram with its source, so that Recv can report it.
func packet(from netip.AddrPort, b []byte) []byte {
	a := from.Addr().As16()
	p := make([]byte, 18+len(b))
	copy(p, a[:])
	p[16], p[17] = byte(from.Port()>>8), byte(from.Port())
	copy(p[18:], b)
	return p
}

// Conn is a fake gossip.Conn on a Hub.
type Conn struct {
	hub    *Hub
	addr   netip.AddrPort
	ch     chan []byte
	closed chan struct{}
	once   sync.Once
}

var _ gossip.Conn = (*Conn)(nil)

// Addr returns the Conn's source address.
func (c *Conn) Addr() netip.AddrPort { return c.addr }

func (c *Conn) isClosed() bool {
	select {
	case <-c.closed:
		return true
	default:
		return false
	}
}

// Send delivers a copy of b to every other open Conn of the hub.
func (c *Conn) Send(b []byte) error {
	if c.isClosed() {
		return net.ErrClosed
	}
	c.hub.Inject(c.addr, b)
	return nil
}

// Recv returns the next datagram, truncated to len(buf).
func (c *Conn) Recv(buf []byte) (int, netip.AddrPort, error) {
	select {
	case p := <-c.ch:
		a := netip.AddrFrom16([16]byte(p[:16])).Unmap()
		n := copy(buf, p[18:])
		return n, netip.AddrPortFrom(a, uint16(p[16])<<8|uint16(p[17])), nil
	case <-c.closed:
		return 0, netip.AddrPort{}, net.ErrClosed
	}
}

// Close makes Recv return net.ErrClosed; the Conn receives nothing more.
func (c *Conn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}

// Table is a fake gossip.Table: a map, with an optional hook called after each Apply.
type Table struct {
	mu      sync.Mutex // protects m, applies, onApply
	m       map[session.Key]session.Owner
	applies int
	onApply func([]session.Update)
}

var _ gossip.Table = (*Table)(nil)

// NewTable returns an empty table.
func NewTable() *Table { return &Table{m: make(map[session.Key]session.Owner)} }

// NewTableSize returns an empty table allocated for n entries (as the data plane's
// table is: benchmarks measure gossip, not map growth).
func NewTableSize(n int) *Table { return &Table{m: make(map[session.Key]session.Owner, n)} }

// OnApply sets a function called with each batch after it is applied (the slice is
// only valid during the call).
func (t *Table) OnApply(f func([]session.Update)) {
	t.mu.Lock()
	t.onApply = f
	t.mu.Unlock()
}

// Apply applies a batch.
func (t *Table) Apply(ups []session.Update) error {
	t.mu.Lock()
	for _, u := range ups {
		if u.Delete {
			delete(t.m, u.Key)
		} else {
			t.m[u.Key] = u.Owner
		}
	}
	t.applies++
	f := t.onApply
	t.mu.Unlock()
	if f != nil {
		f(ups)
	}
	return nil
}

// Get returns k's owner.
func (t *Table) Get(k session.Key) (session.Owner, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	o, ok := t.m[k]
	return o, ok
}

// Len returns the number of entries.
func (t *Table) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m)
}

// Applies returns the number of Apply calls.
func (t *Table) Applies() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.applies
}

// Snapshot returns a copy of the entries.
func (t *Table) Snapshot() map[session.Key]session.Owner {
	t.mu.Lock()
	defer t.mu.Unlock()
	return maps.Clone(t.m)
}

// Templates is a fake gossip.Templates recording the published peers and the calls.
type Templates struct {
	mu     sync.Mutex // protects peers and events
	peers  map[uint16]gossip.Peer
	events []string
}

var _ gossip.Templates = (*Templates)(nil)

// NewTemplates returns an empty store.
func NewTemplates() *Templates { return &Templates{peers: make(map[uint16]gossip.Peer)} }

// Publish records p.
func (s *Templates) Publish(p gossip.Peer) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.peers[p.ID] = p
	s.events = append(s.events, fmt.Sprintf("publish %d", p.ID))
	return nil
}

// Withdraw forgets id.
func (s *Templates) Withdraw(id uint16) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.peers, id)
	s.events = append(s.events, fmt.Sprintf("withdraw %d", id))
	return nil
}

// Peer returns the published peer id.
func (s *Templates) Peer(id uint16) (gossip.Peer, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.peers[id]
	return p, ok
}

// Events returns the calls so far ("publish N", "withdraw N").
func (s *Templates) Events() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.events...)
}

// WaitFor polls cond until it holds, failing tb after timeout.
func WaitFor(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(time.Millisecond)
	}
}

// Net is an in-memory stream network for the repair exchange: Listen registers a
// listener at an address, DialContext (Net is a gossip.Dialer) connects to it with a
// net.Pipe. Dialing an address nobody listens on is refused.
type Net struct {
	mu        sync.Mutex // protects listeners and refuse
	listeners map[netip.AddrPort]*Listener
	refuse    func(to netip.AddrPort) bool
	dials     atomic.Uint64
	ports     atomic.Uint32 // ephemeral ports of From's connections
}

var _ gossip.Dialer = (*Net)(nil)

// NewNet returns an empty network.
func NewNet() *Net { return &Net{listeners: make(map[netip.AddrPort]*Listener)} }

// ErrRefused is returned by DialContext when nobody listens at the address.
var ErrRefused = errors.New("gossiptest: connection refused")

// Listen returns a listener at addr, replacing any listener there.
func (nt *Net) Listen(addr netip.AddrPort) *Listener {
	l := &Listener{net: nt, addr: addr, ch: make(chan net.Conn), closed: make(chan struct{})}
	nt.mu.Lock()
	nt.listeners[addr] = l
	nt.mu.Unlock()
	return l
}

// SetRefuse installs a function that refuses dials to the addresses it returns true for
// (nil: refuse none).
func (nt *Net) SetRefuse(f func(to netip.AddrPort) bool) {
	nt.mu.Lock()
	nt.refuse = f
	nt.mu.Unlock()
}

// Dials returns the number of DialContext calls.
func (nt *Net) Dials() uint64 { return nt.dials.Load() }

// DialContext connects to the listener at address ("ip:port"); network is ignored. Its
// connections have no IP source address (net.Pipe's): a node's repair listener, which
// serves only live peers' addresses, closes them; From dials from an address.
func (nt *Net) DialContext(ctx context.Context, _, address string) (net.Conn, error) {
	return nt.dial(ctx, netip.Addr{}, address)
}

// From returns a Dialer on nt whose connections come from src: the listener's end
// reports src, with a port of its own per connection, as the remote address.
func (nt *Net) From(src netip.Addr) gossip.Dialer { return fromDialer{nt, src} }

type fromDialer struct {
	nt  *Net
	src netip.Addr
}

func (d fromDialer) DialContext(ctx context.Context, _, address string) (net.Conn, error) {
	return d.nt.dial(ctx, d.src, address)
}

// addrConn is one end of a pipe with the addresses of a TCP connection.
type addrConn struct {
	net.Conn
	local, remote net.Addr
}

func (c addrConn) LocalAddr() net.Addr  { return c.local }
func (c addrConn) RemoteAddr() net.Addr { return c.remote }

func (nt *Net) dial(ctx context.Context, src netip.Addr, address string) (net.Conn, error) {
	nt.dials.Add(1)
	to, err := netip.ParseAddrPort(address)
	if err != nil {
		return nil, err
	}
	nt.mu.Lock()
	l, refuse := nt.listeners[to], nt.refuse
	nt.mu.Unlock()
	if l == nil || (refuse != nil && refuse(to)) {
		return nil, fmt.Errorf("dial %s: %w", to, ErrRefused)
	}
	var client, server net.Conn = net.Pipe()
	if src.IsValid() {
		from := net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, uint16(32768+nt.ports.Add(1)%28000)))
		toA := net.TCPAddrFromAddrPort(to)
		client, server = addrConn{client, from, toA}, addrConn{server, toA, from}
	}
	select {
	case l.ch <- server:
		return client, nil
	case <-l.closed:
		return nil, fmt.Errorf("dial %s: %w", to, ErrRefused)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Listener is a net.Listener on a Net.
type Listener struct {
	net    *Net
	addr   netip.AddrPort
	ch     chan net.Conn
	closed chan struct{}
	once   sync.Once
}

var _ net.Listener = (*Listener)(nil)

// Accept waits for the next connection.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

// Close stops the listener.
func (l *Listener) Close() error {
	l.once.Do(func() {
		close(l.closed)
		l.net.mu.Lock()
		if l.net.listeners[l.addr] == l {
			delete(l.net.listeners, l.addr)
		}
		l.net.mu.Unlock()
	})
	return nil
}

// Addr returns the listener's address.
func (l *Listener) Addr() net.Addr { return net.TCPAddrFromAddrPort(l.addr) }
