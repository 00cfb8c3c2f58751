package gossip

import (
	"net"
	"net/netip"

	"github.com/homing-dev/homing/session"
)

// Conn is the datagram transport gossip runs over: multicast UDP in production
// (ListenMulticast), an in-memory hub in tests (gossiptest.Hub).
//
// Send transmits one datagram to every peer. Recv blocks for the next datagram and
// returns its length and source; a datagram larger than buf is truncated to len(buf)
// (receivers pass a buffer larger than any acceptable datagram to detect oversize).
// After Close, Recv returns net.ErrClosed. Send and Recv may be called concurrently.
type Conn interface {
	Send(b []byte) error
	Recv(buf []byte) (n int, src netip.AddrPort, err error)
	Close() error
}

// Table is the ownership table the node programs (the data plane's rte_hash in the
// daemon). The node calls Apply once per batch: per received datagram, per flush of
// local updates, per expiry sweep. Calls are serialised by the node, in the order the
// node's ownership map took the updates. Apply must not keep the slice after it
// returns: the node reuses it.
type Table interface {
	Apply(updates []session.Update) error
}

// Peer is a host learned from its heartbeats: what a header template toward it needs.
type Peer struct {
	ID uint16
	// Addr is the peer's primary address: the outer destination of tunnels to it.
	Addr netip.Addr
	// AltAddr is the peer's address of the other family, if it announced one.
	AltAddr     netip.Addr
	MAC         net.HardwareAddr
	TunnelPort  uint16
	Domain      string
	Incarnation uint64
}

func (p Peer) equal(q Peer) bool {
	return p.ID == q.ID && p.Addr == q.Addr && p.AltAddr == q.AltAddr &&
		string(p.MAC) == string(q.MAC) && p.TunnelPort == q.TunnelPort &&
		p.Domain == q.Domain && p.Incarnation == q.Incarnation
}

// Templates receives membership changes: Publish when a peer comes up or its
// announcement changes (address, MAC, port, domain, incarnation), Withdraw when it goes
// down. Calls are serialised by the node.
type Templates interface {
	Publish(p Peer) error
	Withdraw(id uint16) error
}
