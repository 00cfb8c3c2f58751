package gossip

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// MulticastConfig says where gossip is multicast.
type MulticastConfig struct {
	// Group is the multicast group and UDP port, e.g. 239.255.77.1:6081 or [ff02::77]:6081.
	Group netip.AddrPort
	// Interface is the name of the interface the group is joined on and sent out of.
	Interface string
	// TTL is the multicast TTL (hop limit); 0 means 1 (the POP LAN only).
	TTL int
	// ReadBuffer is the socket receive buffer size in bytes; 0 means 4 MiB.
	ReadBuffer int
}

// ErrNotMulticast is returned for a group address that is not a multicast address.
var ErrNotMulticast = errors.New("not a multicast group")

// MulticastConn is the production Conn: a UDP socket bound to the group's port, joined
// to the group on one interface, sending to the group out of that interface with
// multicast loopback off (a host never hears itself).
//
// The socket belongs to the network namespace of the thread that opened it; tests open
// it from a thread switched into a namespace and use it from any goroutine afterwards.
type MulticastConn struct {
	c   *net.UDPConn
	dst netip.AddrPort
}

// ListenMulticast opens a MulticastConn.
func ListenMulticast(cfg MulticastConfig) (*MulticastConn, error) {
	g := cfg.Group.Addr()
	if !g.IsMulticast() {
		return nil, fmt.Errorf("group %v: %w", g, ErrNotMulticast)
	}
	ifi, err := net.InterfaceByName(cfg.Interface)
	if err != nil {
		return nil, fmt.Errorf("gossip interface %q: %w", cfg.Interface, err)
	}
	ttl := cfg.TTL
	if ttl <= 0 {
		ttl = 1
	}
	network := "udp4"
	bind := cfg.Group
	if g.Is6() {
		network = "udp6"
		bind = netip.AddrPortFrom(g.WithZone(ifi.Name), cfg.Group.Port())
	}
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	// Binding to the group address (not the wildcard) keeps unicast to the port out.
	pc, err := lc.ListenPacket(context.Background(), network, bind.String())
	if err != nil {
		return nil, fmt.Errorf("gossip listen %s: %w", bind, err)
	}
	c := pc.(*net.UDPConn)
	fail := func(what string, err error) (*MulticastConn, error) {
		c.Close()
		return nil, fmt.Errorf("gossip %s on %s: %w", what, ifi.Name, err)
	}
	rb := cfg.ReadBuffer
	if rb <= 0 {
		rb = 4 << 20
	}
	if err := c.SetReadBuffer(rb); err != nil {
		return fail("read buffer", err)
	}
	gaddr := &net.UDPAddr{IP: g.AsSlice()}
	if g.Is4() {
		p := ipv4.NewPacketConn(c)
		if err := p.JoinGroup(ifi, gaddr); err != nil {
			return fail("join group "+g.String(), err)
		}
		if err := p.SetMulticastInterface(ifi); err != nil {
			return fail("multicast interface", err)
		}
		if err := p.SetMulticastTTL(ttl); err != nil {
			return fail("multicast TTL", err)
		}
		if err := p.SetMulticastLoopback(false); err != nil {
			return fail("multicast loopback", err)
		}
	} else {
		p := ipv6.NewPacketConn(c)
		if err := p.JoinGroup(ifi, gaddr); err != nil {
			return fail("join group "+g.String(), err)
		}
		if err := p.SetMulticastInterface(ifi); err != nil {
			return fail("multicast interface", err)
		}
		if err := p.SetMulticastHopLimit(ttl); err != nil {
			return fail("multicast hop limit", err)
		}
		if err := p.SetMulticastLoopback(false); err != nil {
			return fail("multicast loopback", err)
		}
	}
	return &MulticastConn{c: c, dst: bind}, nil
}

// Send multicasts b to the group.
func (m *MulticastConn) Send(b []byte) error {
	_, err := m.c.WriteToUDPAddrPort(b, m.dst)
	return err
}

// Recv reads the next datagram.
func (m *MulticastConn) Recv(buf []byte) (int, netip.AddrPort, error) {
	return m.c.ReadFromUDPAddrPort(buf)
}

// Close closes the socket (leaving the group).
func (m *MulticastConn) Close() error { return m.c.Close() }

// LocalAddr returns the socket's bound address.
func (m *MulticastConn) LocalAddr() net.Addr { return m.c.LocalAddr() }
