package wire

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
)

// A heartbeat body announces a host (patent FIG. 4):
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|            host id            |       tunnel UDP port         |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                          MAC (6 bytes)                        |
//	+                               +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                               |     flags     |  domain len   |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                                                               |
//	+                   incarnation (64 bits)                       +
//	|                                                               |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|        digest: session count (32 bits, if flag 0x08)          |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|        digest: sum of session hashes (64 bits, if flag 0x08)   |
//	+                                                               +
//	|                                                               |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|        IPv4 address (4 bytes, if flag 0x01)                   |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|        IPv6 address (16 bytes, if flag 0x02)                  |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|        domain (domain len bytes, printable ASCII)             |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// flags: 0x01 IPv4 address present, 0x02 IPv6 address present, 0x04 the IPv6 address is
// the primary (tunnel) address, 0x08 a digest of the sender's own sessions is present
// (see Digest); other bits must be zero. The primary address must be present. Host id
// and incarnation repeat the header's and must equal them.
const (
	hbHostOff     = 0
	hbPortOff     = 2
	hbMACOff      = 4
	hbFlagsOff    = 10
	hbDomainLnOff = 11
	hbIncOff      = 12
	hbFixedLen    = 20

	hbHas4     = 0x01
	hbHas6     = 0x02
	hbPrimary6 = 0x04
	hbDigest   = 0x08

	// MaxDomainLen is the longest domain name a heartbeat carries.
	MaxDomainLen = 63
)

// Heartbeat is the decoded body of a heartbeat datagram.
type Heartbeat struct {
	Host        uint16
	Incarnation uint64
	// Addr is the primary address: the outer destination of tunnels to this host.
	Addr netip.Addr
	// AltAddr is an optional address of the other family.
	AltAddr    netip.Addr
	MAC        net.HardwareAddr // 6 bytes
	TunnelPort uint16
	Domain     string
	// Digest, if HasDigest, summarises the sessions the sender owned when every record
	// it sent before this heartbeat was sent (see Node's sender).
	Digest    Digest
	HasDigest bool
}

// Check reports whether h can be encoded.
func (h *Heartbeat) Check() error {
	if !h.Addr.IsValid() || h.Addr.Is4In6() {
		return fmt.Errorf("heartbeat address %v: %w", h.Addr, ErrMalformed)
	}
	if h.AltAddr.IsValid() && (h.AltAddr.Is4() == h.Addr.Is4() || h.AltAddr.Is4In6()) {
		return fmt.Errorf("heartbeat second address %v must be of the other family: %w", h.AltAddr, ErrMalformed)
	}
	if len(h.MAC) != 6 {
		return fmt.Errorf("heartbeat MAC %v: %w", h.MAC, ErrMalformed)
	}
	if !ValidDomain(h.Domain) {
		return fmt.Errorf("heartbeat domain %q: %w", h.Domain, ErrMalformed)
	}
	return nil
}

// ValidDomain reports whether s can be a heartbeat's domain: at most MaxDomainLen
// printable ASCII bytes, no blank.
func ValidDomain(s string) bool {
	if len(s) > MaxDomainLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// Len returns the encoded size of h.
func (h *Heartbeat) Len() int {
	n := hbFixedLen + len(h.Domain)
	if h.HasDigest {
		n += DigestLen
	}
	for _, a := range []netip.Addr{h.Addr, h.AltAddr} {
		if a.Is4() {
			n += 4
		} else if a.IsValid() {
			n += 16
		}
	}
	return n
}

// AppendHeartbeat appends h's encoding to b. h must pass Check.
func AppendHeartbeat(b []byte, h *Heartbeat) []byte {
	var v4, v6 netip.Addr
	var flags uint8
	for _, a := range []netip.Addr{h.Addr, h.AltAddr} {
		if a.Is4() {
			v4, flags = a, flags|hbHas4
		} else if a.IsValid() {
			v6, flags = a, flags|hbHas6
		}
	}
	if h.Addr.Is6() {
		flags |= hbPrimary6
	}
	if h.HasDigest {
		flags |= hbDigest
	}
	b = binary.BigEndian.AppendUint16(b, h.Host)
	b = binary.BigEndian.AppendUint16(b, h.TunnelPort)
	b = append(b, h.MAC[:6]...)
	b = append(b, flags, uint8(len(h.Domain)))
	b = binary.BigEndian.AppendUint64(b, h.Incarnation)
	if h.HasDigest {
		b = binary.BigEndian.AppendUint32(b, h.Digest.Count)
		b = binary.BigEndian.AppendUint64(b, h.Digest.Sum)
	}
	if v4.IsValid() {
		b = appendAddr(b, v4)
	}
	if v6.IsValid() {
		b = appendAddr(b, v6)
	}
	return append(b, h.Domain...)
}

// ParseHeartbeat decodes a heartbeat body. Errors wrap ErrMalformed.
func ParseHeartbeat(b []byte) (Heartbeat, error) {
	var h Heartbeat
	if len(b) < hbFixedLen {
		return h, fmt.Errorf("heartbeat of %d bytes: %w", len(b), ErrMalformed)
	}
	flags := b[hbFlagsOff]
	if flags&^(hbHas4|hbHas6|hbPrimary6|hbDigest) != 0 {
		return h, fmt.Errorf("heartbeat flags %#02x: %w", flags, ErrMalformed)
	}
	want := hbFixedLen + int(b[hbDomainLnOff])
	if flags&hbHas4 != 0 {
		want += 4
	}
	if flags&hbHas6 != 0 {
		want += 16
	}
	if flags&hbDigest != 0 {
		want += DigestLen
	}
	if len(b) != want {
		return h, fmt.Errorf("heartbeat of %d bytes, fields say %d: %w", len(b), want, ErrMalformed)
	}
	h.Host = binary.BigEndian.Uint16(b[hbHostOff:])
	h.TunnelPort = binary.BigEndian.Uint16(b[hbPortOff:])
	h.MAC = net.HardwareAddr(append([]byte(nil), b[hbMACOff:hbMACOff+6]...))
	h.Incarnation = binary.BigEndian.Uint64(b[hbIncOff:])
	p := b[hbFixedLen:]
	if flags&hbDigest != 0 {
		h.HasDigest = true
		h.Digest = Digest{Count: binary.BigEndian.Uint32(p), Sum: binary.BigEndian.Uint64(p[4:])}
		p = p[DigestLen:]
	}
	var v4, v6 netip.Addr
	if flags&hbHas4 != 0 {
		v4, p = netip.AddrFrom4([4]byte(p[:4])), p[4:]
	}
	if flags&hbHas6 != 0 {
		v6, p = netip.AddrFrom16([16]byte(p[:16])), p[16:]
		if v6.Is4In6() {
			return h, fmt.Errorf("heartbeat IPv6 address %v is IPv4-mapped: %w", v6, ErrMalformed)
		}
	}
	if flags&hbPrimary6 != 0 {
		h.Addr, h.AltAddr = v6, v4
	} else {
		h.Addr, h.AltAddr = v4, v6
	}
	if !h.Addr.IsValid() {
		return h, fmt.Errorf("heartbeat without its primary address: %w", ErrMalformed)
	}
	h.Domain = string(p)
	if !ValidDomain(h.Domain) {
		return h, fmt.Errorf("heartbeat domain %q: %w", h.Domain, ErrMalformed)
	}
	return h, nil
}
