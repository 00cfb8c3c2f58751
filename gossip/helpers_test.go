package gossip

import (
	"github.com/homing-dev/homing/gossip/wire"
	"net"
	"net/netip"

	"github.com/homing-dev/homing/session"
)

// Test helpers shared by the node's tests (the wire package's tests have their own).

func key4(i int) session.Key {
	return session.Key{
		Src: netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}), Dst: netip.MustParseAddr("198.19.255.1"),
		SrcPort: uint16(1024 + i), DstPort: 443, Proto: session.TCP,
	}
}

func key6(i int) session.Key {
	return session.Key{
		Src: netip.MustParseAddr("2001:db8::1").Next().Next(), Dst: netip.MustParseAddr("2001:db8:ffff::1"),
		SrcPort: uint16(1024 + i), DstPort: 443, Proto: session.UDP,
	}
}

// seal builds a sealed datagram with body under ring.
func seal(ring *wire.KeyRing, h wire.Header, body []byte) wire.Datagram {
	d := make(wire.Datagram, wire.Overhead+len(body))
	copy(d[wire.HeaderLen:], body)
	wire.NewSealer(ring).Seal(d, h)
	return d
}

func testHeartbeat() wire.Heartbeat {
	return wire.Heartbeat{
		Host: 3, Incarnation: 42, Addr: netip.MustParseAddr("198.18.0.13"),
		AltAddr: netip.MustParseAddr("2001:db8::13"), MAC: net.HardwareAddr{2, 0, 0, 0, 0, 0x13},
		TunnelPort: 6080, Domain: "pop1-a",
	}
}

// ownerOf is k's owner in the map (zero if absent).
func (n *Node) ownerOf(k session.Key) session.Owner {
	e, _ := n.owners.get(k)
	return e.owner
}
