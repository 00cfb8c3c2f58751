package gossip

import (
	"context"
	"errors"
	"fmt"
	"github.com/homing-dev/homing/gossip/wire"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// Relays carry gossip across L2 domains (racks) without multicast routing (patent FIG. 2
// and FIG. 7). Each domain has a few relay hosts (two, so that one may fail). A relay
// watches its node's datagrams, sent and received, and forwards those of senders of its
// own domain (the domain their heartbeats announce) to the relays of every other domain
// by unicast, each in an envelope sealed with the POP key. A relay that receives an
// envelope checks it, checks the datagram inside (sealed by its original sender), and
// multicasts that datagram unchanged in its own domain, where nodes take it as if its
// sender were local.
//
//	domain A                                                  domain B
//	node ─multicast─▶ relay A1 ─┬─envelope (unicast)─▶ relay B1 ─multicast─▶ nodes
//	                  relay A2 ─┘                    ▶ relay B2 ─multicast─▶ nodes
//
// No loops: a relay forwards only datagrams whose sender's domain is its own (a datagram
// of an unknown sender, whose heartbeat it has not seen, is not forwarded), and
// re-multicasts only datagrams of other domains; an envelope is never forwarded again.
// No duplicates applied twice: a relay re-multicasts a datagram (sender, incarnation,
// sequence number) once however many relays sent it, and a node drops a datagram it has
// seen through the other relay of its domain as a replay (its sequence number is not
// above the highest seen). A relay's failure: every relay of a domain forwards
// everything to every relay of the others, so any one relay per domain suffices.
//
// The envelope is a Datagram of type TypeRelay: the header's sender, incarnation and
// sequence number are the relay's own (per relay, increasing: a replayed envelope is
// dropped), its body the relayed datagram, its tag the POP key's like any datagram's.
//
// Goroutines: "relay receiver" (Relay.Run). Observe runs in the node's sender and
// receiver goroutines (through the Conn of Tee). Relay.mu protects the domains, the
// dedup windows, the envelope sequence and the MAC states.

// DefaultRelayPort is the UDP port of the relays.
const DefaultRelayPort = 6082

// dedupWindow is how far behind the highest sequence number of a sender a relayed
// datagram may arrive and still be re-multicast once.
const dedupWindow = 64

// PacketConn is the relays' unicast socket: *net.UDPConn through UDPPacketConn, or a
// fake in tests.
type PacketConn interface {
	WriteTo(b []byte, to netip.AddrPort) error
	ReadFrom(buf []byte) (int, netip.AddrPort, error)
	Close() error
}

// RelayConfig configures a Relay.
type RelayConfig struct {
	// HostID, Domain: this host's id and domain.
	HostID uint16
	Domain string
	// Incarnation of the relay's envelopes; 0: the start time in unix nanoseconds.
	Incarnation uint64
	// Keys seal and check envelopes and check relayed datagrams; nil needs Insecure.
	Keys     *wire.KeyRing
	Insecure bool
	// MaxDatagram bounds the relayed datagrams (default DefaultMaxDatagram).
	MaxDatagram int
	// Peers are the relays of the other domains.
	Peers []netip.AddrPort
	// Unicast receives envelopes and sends them to Peers.
	Unicast PacketConn
	// Local multicasts relayed datagrams in this domain (Send only). The local node must
	// receive them too: a multicast socket with loopback on (MulticastSender).
	Local Conn
	// Logger receives rare events; nil discards.
	Logger *slog.Logger
}

// RelayStats are a relay's counters, with their metric tags (metrics/counters.go).
type RelayStats struct {
	Forwarded    uint64 `metric:"forwarded_envelopes_total" help:"Envelopes sent to the other domains' relays (one per datagram and peer relay)."`
	SendErrors   uint64 `metric:"send_errors_total" help:"Envelopes that could not be sent."`
	Received     uint64 `metric:"received_envelopes_total" help:"Envelopes received from other domains' relays."`
	Relayed      uint64 `metric:"relayed_datagrams_total" help:"Datagrams of other domains multicast in this domain."`
	Duplicates   uint64 `metric:"dropped_envelopes_total{reason=duplicate}" help:"Envelopes or relayed datagrams dropped, by reason (duplicate: already multicast through another relay; loop: this domain's own; auth; malformed; replay)."`
	Loops        uint64 `metric:"dropped_envelopes_total{reason=loop}"`      // relayed datagrams of this domain's senders, dropped
	AuthFailures uint64 `metric:"dropped_envelopes_total{reason=auth}"`      // envelopes or relayed datagrams with a bad tag
	Malformed    uint64 `metric:"dropped_envelopes_total{reason=malformed}"` // envelopes that do not decode, or from an unknown address
	Replays      uint64 `metric:"dropped_envelopes_total{reason=replay}"`    // envelopes with an old sequence number
}

// Relay forwards a domain's gossip to the other domains and multicasts theirs.
type Relay struct {
	cfg   RelayConfig
	log   *slog.Logger
	stats RelayStats // atomic

	mu      sync.Mutex
	domains map[uint16]string // sender host id → domain, from heartbeats
	seen    map[uint16]*dedup // per relayed sender
	relays  map[netip.Addr]*dedup
	seq     uint64
	sealer  *wire.Sealer
	opener  *wire.Opener
	env     []byte
	peers   map[netip.Addr]bool
}

// dedup tracks one sender's sequence numbers: the highest and a bitmap of the
// dedupWindow below it (bit i: highest-i seen).
type dedup struct {
	inc, highest uint64
	bits         uint64
}

// fresh reports whether (inc, seq) is new, and records it.
func (d *dedup) fresh(inc, seq uint64) bool {
	switch {
	case inc > d.inc:
		d.inc, d.highest, d.bits = inc, seq, 1
		return true
	case inc < d.inc:
		return false
	case seq > d.highest:
		shift := seq - d.highest
		if shift >= dedupWindow {
			d.bits = 0
		} else {
			d.bits <<= shift
		}
		d.bits |= 1
		d.highest = seq
		return true
	}
	back := d.highest - seq
	if back >= dedupWindow || d.bits&(1<<back) != 0 {
		return false
	}
	d.bits |= 1 << back
	return true
}

// NewRelay returns a relay; Run starts its receiver.
func NewRelay(cfg RelayConfig) (*Relay, error) {
	if cfg.Keys == nil && !cfg.Insecure {
		return nil, wire.ErrNoKey
	}
	if cfg.HostID == 0 || !wire.ValidDomain(cfg.Domain) || cfg.Unicast == nil || cfg.Local == nil {
		return nil, fmt.Errorf("relay of host %d, domain %q: %w", cfg.HostID, cfg.Domain, ErrConfig)
	}
	if cfg.MaxDatagram == 0 {
		cfg.MaxDatagram = DefaultMaxDatagram
	}
	if cfg.Incarnation == 0 {
		cfg.Incarnation = uint64(time.Now().UnixNano())
	}
	r := &Relay{cfg: cfg, log: cfg.Logger, domains: map[uint16]string{cfg.HostID: cfg.Domain},
		seen: map[uint16]*dedup{}, relays: map[netip.Addr]*dedup{}, sealer: wire.NewSealer(cfg.Keys),
		opener: wire.NewOpener(cfg.Keys, cfg.MaxDatagram), peers: map[netip.Addr]bool{}}
	if r.log == nil {
		r.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	for _, p := range cfg.Peers {
		r.peers[p.Addr().Unmap()] = true
	}
	return r, nil
}

// Stats returns a snapshot of the counters.
func (r *Relay) Stats() RelayStats { return loadCounters(&r.stats) }

// Tee returns a Conn that passes every datagram the node sends or receives on c to
// Observe.
func (r *Relay) Tee(c Conn) Conn { return &teeConn{Conn: c, r: r} }

type teeConn struct {
	Conn
	r *Relay
}

func (t *teeConn) Send(b []byte) error {
	err := t.Conn.Send(b)
	t.r.Observe(b)
	return err
}

func (t *teeConn) Recv(buf []byte) (int, netip.AddrPort, error) {
	n, from, err := t.Conn.Recv(buf)
	if err == nil {
		t.r.Observe(buf[:n])
	}
	return n, from, err
}

// Observe takes a datagram of this domain's multicast (sent or received by the node):
// it learns senders' domains from heartbeats and forwards the datagrams of this
// domain's senders to the peer relays. It does not keep b.
func (r *Relay) Observe(b []byte) {
	d := wire.Datagram(b)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.opener.Open(d) != nil {
		return // the node counts it
	}
	h := d.Header()
	dom, known := r.learnLocked(d, h)
	if !known || dom != r.cfg.Domain || len(r.cfg.Peers) == 0 {
		return
	}
	r.seq++
	n := wire.Overhead + len(b)
	if cap(r.env) < n {
		r.env = make([]byte, n)
	}
	env := wire.Datagram(r.env[:n])
	copy(env[wire.HeaderLen:], b)
	r.sealer.Seal(env, wire.Header{Type: wire.TypeRelay, Sender: r.cfg.HostID, Incarnation: r.cfg.Incarnation, Seq: r.seq,
		Timestamp: time.Now().UnixNano()})
	for _, p := range r.cfg.Peers {
		if err := r.cfg.Unicast.WriteTo(env, p); err != nil {
			inc(&r.stats.SendErrors)
			continue
		}
		inc(&r.stats.Forwarded)
	}
}

// learnLocked records the domain a heartbeat announces and returns the sender's domain.
func (r *Relay) learnLocked(d wire.Datagram, h wire.Header) (string, bool) {
	if h.Type == wire.TypeHeartbeat {
		if hb, err := wire.ParseHeartbeat(d.Body()); err == nil && hb.Host == h.Sender {
			r.domains[h.Sender] = hb.Domain
		}
	}
	dom, ok := r.domains[h.Sender]
	return dom, ok
}

// Run receives envelopes until ctx is done, then closes the unicast socket.
func (r *Relay) Run(ctx context.Context) error {
	go func() { // closer
		<-ctx.Done()
		r.cfg.Unicast.Close()
	}()
	buf := make([]byte, wire.MaxDatagramLen+wire.Overhead+1)
	for {
		n, from, err := r.cfg.Unicast.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			r.log.Warn("relay receive", "err", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		r.handle(buf[:n], from)
	}
}

// errRelay is the reason an envelope is dropped.
var errRelay = errors.New("relay envelope")

// openEnvelope checks an envelope's framing and tag and returns the datagram inside.
func (r *Relay) openEnvelope(env wire.Datagram) (wire.Datagram, error) {
	if len(env) < wire.Overhead+wire.HeaderLen || env.Magic() != wire.Magic || env.Version() != wire.Version || env.Type() != wire.TypeRelay ||
		len(env) != wire.Overhead+env.BodyLen() {
		return nil, fmt.Errorf("%w: framing: %w", errRelay, wire.ErrMalformed)
	}
	if !r.opener.Verify(env) {
		return nil, fmt.Errorf("%w from host %d: %w", errRelay, env.Sender(), wire.ErrBadTag)
	}
	return env.Body(), nil
}

// SetKeys replaces the keys envelopes are sealed and checked with, and relayed
// datagrams checked with, from now on (see Node.SetKeys).
func (r *Relay) SetKeys(ring *wire.KeyRing) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ring == nil || r.cfg.Keys == nil {
		return ErrInsecure
	}
	r.cfg.Keys, r.sealer, r.opener = ring, wire.NewSealer(ring), wire.NewOpener(ring, r.cfg.MaxDatagram)
	return nil
}

// handle takes one envelope from a peer relay.
func (r *Relay) handle(b []byte, from netip.AddrPort) {
	inc(&r.stats.Received)
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.peers[from.Addr().Unmap()] {
		inc(&r.stats.Malformed)
		return
	}
	env := wire.Datagram(b)
	d, err := r.openEnvelope(env)
	if err != nil {
		if errors.Is(err, wire.ErrBadTag) {
			inc(&r.stats.AuthFailures)
		} else {
			inc(&r.stats.Malformed)
		}
		return
	}
	rs := r.relays[from.Addr()]
	if rs == nil {
		rs = &dedup{}
		r.relays[from.Addr()] = rs
	}
	if !rs.fresh(env.Incarnation(), env.Seq()) {
		inc(&r.stats.Replays)
		return
	}
	if err := r.opener.Open(d); err != nil {
		if errors.Is(err, wire.ErrBadTag) {
			inc(&r.stats.AuthFailures)
		} else {
			inc(&r.stats.Malformed)
		}
		return
	}
	h := d.Header()
	if dom, known := r.learnLocked(d, h); !known || dom == r.cfg.Domain {
		// This domain's own gossip coming back, or a sender announcing no domain yet
		// (records before its first heartbeat: the node's repair covers them).
		inc(&r.stats.Loops)
		return
	}
	s := r.seen[h.Sender]
	if s == nil {
		s = &dedup{}
		r.seen[h.Sender] = s
	}
	if !s.fresh(h.Incarnation, h.Seq) {
		inc(&r.stats.Duplicates)
		return
	}
	if err := r.cfg.Local.Send(d); err != nil {
		inc(&r.stats.SendErrors)
		return
	}
	inc(&r.stats.Relayed)
}

// UDPPacketConn adapts a *net.UDPConn to PacketConn.
type UDPPacketConn struct{ *net.UDPConn }

func (u UDPPacketConn) WriteTo(b []byte, to netip.AddrPort) error {
	_, err := u.WriteToUDPAddrPort(b, to)
	return err
}

func (u UDPPacketConn) ReadFrom(buf []byte) (int, netip.AddrPort, error) {
	n, from, err := u.ReadFromUDPAddrPort(buf)
	return n, netip.AddrPortFrom(from.Addr().Unmap(), from.Port()), err
}

// ListenRelay opens a relay's unicast socket on addr (this host's address and the relay
// port).
func ListenRelay(addr netip.AddrPort) (UDPPacketConn, error) {
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
	if err != nil {
		return UDPPacketConn{}, fmt.Errorf("relay listen %s: %w", addr, err)
	}
	return UDPPacketConn{c}, nil
}

// MulticastSender sends to a group out of one interface with multicast loopback on, so
// that the host's own gossip socket hears what it sends: a relay's local Conn.
type MulticastSender struct {
	c   *net.UDPConn
	dst netip.AddrPort
}

// NewMulticastSender opens a MulticastSender for cfg (Group, Interface, TTL).
func NewMulticastSender(cfg MulticastConfig) (*MulticastSender, error) {
	g := cfg.Group.Addr()
	if !g.IsMulticast() {
		return nil, fmt.Errorf("group %v: %w", g, ErrNotMulticast)
	}
	ifi, err := net.InterfaceByName(cfg.Interface)
	if err != nil {
		return nil, fmt.Errorf("relay interface %q: %w", cfg.Interface, err)
	}
	ttl := max(cfg.TTL, 1)
	network, dst := "udp4", cfg.Group
	if g.Is6() {
		network, dst = "udp6", netip.AddrPortFrom(g.WithZone(ifi.Name), cfg.Group.Port())
	}
	c, err := net.ListenUDP(network, nil)
	if err != nil {
		return nil, fmt.Errorf("relay sender: %w", err)
	}
	fail := func(what string, err error) (*MulticastSender, error) {
		c.Close()
		return nil, fmt.Errorf("relay sender %s on %s: %w", what, ifi.Name, err)
	}
	if g.Is4() {
		p := ipv4.NewPacketConn(c)
		if err := p.SetMulticastInterface(ifi); err != nil {
			return fail("multicast interface", err)
		}
		if err := p.SetMulticastTTL(ttl); err != nil {
			return fail("multicast TTL", err)
		}
		if err := p.SetMulticastLoopback(true); err != nil {
			return fail("multicast loopback", err)
		}
	} else {
		p := ipv6.NewPacketConn(c)
		if err := p.SetMulticastInterface(ifi); err != nil {
			return fail("multicast interface", err)
		}
		if err := p.SetMulticastHopLimit(ttl); err != nil {
			return fail("multicast hop limit", err)
		}
		if err := p.SetMulticastLoopback(true); err != nil {
			return fail("multicast loopback", err)
		}
	}
	return &MulticastSender{c: c, dst: dst}, nil
}

// Send multicasts b.
func (m *MulticastSender) Send(b []byte) error {
	_, err := m.c.WriteToUDPAddrPort(b, m.dst)
	return err
}

// Recv is not supported: a MulticastSender only sends.
func (m *MulticastSender) Recv([]byte) (int, netip.AddrPort, error) {
	return 0, netip.AddrPort{}, syscall.EOPNOTSUPP
}

// Close closes the socket.
func (m *MulticastSender) Close() error { return m.c.Close() }
