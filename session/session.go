// Package session defines the session key that every part of homing agrees on: the
// client→VIP direction of a TCP or UDP 5-tuple, and the ownership record attached to it.
package session

import (
	"fmt"
	"net/netip"
)

// Protocol numbers used in keys.
const (
	TCP uint8 = 6
	UDP uint8 = 17
	// QUICCID marks a QUIC connection ID stored as a key (CIDKey): 253, an experimental
	// protocol number (RFC 3692), never a real packet's.
	QUICCID uint8 = 253
)

// Key is a session in the client→VIP direction. Src is the client, Dst the VIP.
// Both addresses are of the same family; IPv4 addresses are never 4-in-6 mapped.
type Key struct {
	Src     netip.Addr
	Dst     netip.Addr
	SrcPort uint16
	DstPort uint16
	Proto   uint8
}

// Is4 reports whether k is an IPv4 session.
func (k Key) Is4() bool { return k.Src.Is4() }

// Valid reports whether k can be stored: same-family unmapped addresses, TCP or UDP;
// or a connection-ID key as CIDKey makes it.
func (k Key) Valid() bool {
	if k.Proto == QUICCID {
		_, ok := k.CID()
		return ok
	}
	if !k.Src.IsValid() || !k.Dst.IsValid() || k.Src.Is4In6() || k.Dst.Is4In6() {
		return false
	}
	if k.Src.Is4() != k.Dst.Is4() {
		return false
	}
	return k.Proto == TCP || k.Proto == UDP
}

func (k Key) String() string {
	p := "tcp"
	switch k.Proto {
	case TCP:
	case UDP:
		p = "udp"
	case QUICCID:
		if cid, ok := k.CID(); ok {
			return fmt.Sprintf("quic-cid %x -> :%d", cid, k.DstPort)
		}
		p = "quic-cid"
	default:
		p = fmt.Sprintf("proto%d", k.Proto)
	}
	return fmt.Sprintf("%s %s -> %s", p, netip.AddrPortFrom(k.Src, k.SrcPort), netip.AddrPortFrom(k.Dst, k.DstPort))
}

// Owner is the value stored for a session: the owning host and the epoch of the claim.
// A newer epoch wins over an older one. Epochs are 48 bits wide in the data plane.
type Owner struct {
	Host  uint16
	Epoch uint64
}

// MaxEpoch is the largest epoch the data plane can store.
const MaxEpoch = 1<<48 - 1

// MaxHostID is the largest host id: host ids are 1..MaxHostID. The data plane keeps one
// header template slot per id (lcore's HOMING_MAX_HOSTS = MaxHostID+1 slots, checked by
// lcore's TestMaxHosts); the configuration and a gossip node refuse ids above it.
const MaxHostID = 4095

// Update is one change to a table: set k's owner, or delete k.
type Update struct {
	Key    Key
	Owner  Owner
	Delete bool
}

// QUIC connection-ID keys (docs/PROTOCOL.md, "QUIC connection IDs"): a connection ID
// that a server chose, learnt on a VIP's UDP port, is stored, gossiped and expired as a
// session key of its own, IPv6 family, proto QUICCID:
//
//	Src      CID bytes 0..15, zero-padded
//	Dst      CID bytes 16..19, zero-padded, then the CID's length (byte 4), then zeros
//	SrcPort  0
//	DstPort  the VIP port
//
// The length makes the mapping exact: two CIDs that differ only by trailing zero bytes
// are different keys. CIDs are MinCIDLen..MaxCIDLen bytes.
const (
	MinCIDLen = 4
	MaxCIDLen = 20
)

// CIDKey is the key of connection ID cid on VIP port port; false if cid's length is
// out of MinCIDLen..MaxCIDLen.
func CIDKey(cid []byte, port uint16) (Key, bool) {
	if len(cid) < MinCIDLen || len(cid) > MaxCIDLen {
		return Key{}, false
	}
	var s, d [16]byte
	n := copy(s[:], cid)
	copy(d[:4], cid[n:])
	d[4] = byte(len(cid))
	return Key{Src: netip.AddrFrom16(s), Dst: netip.AddrFrom16(d), DstPort: port, Proto: QUICCID}, true
}

// CID returns the connection ID of a key made by CIDKey; false if k is not one (any
// other proto, family, port or padding).
func (k Key) CID() ([]byte, bool) {
	if k.Proto != QUICCID || !k.Src.Is6() || !k.Dst.Is6() || k.Src.Zone() != "" || k.Dst.Zone() != "" || k.SrcPort != 0 {
		return nil, false
	}
	s, d := k.Src.As16(), k.Dst.As16()
	n := int(d[4])
	if n < MinCIDLen || n > MaxCIDLen {
		return nil, false
	}
	cid := append(s[:], d[:4]...)
	for _, b := range append(cid[n:], d[5:]...) {
		if b != 0 {
			return nil, false
		}
	}
	return cid[:n], true
}
