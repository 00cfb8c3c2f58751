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

// Valid reports whether k can be stored: same-family unmapped addresses, TCP or UDP.
func (k Key) Valid() bool {
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
