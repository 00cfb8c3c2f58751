package golden

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// Layout of an encapsulated frame (outer IPv4, no options, GUE variant 0 without
// optional fields), the only one this scenario expects:
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+---------------------------------------------------------------+
//	|  0: Ethernet dst (owner MAC), 6: src (own MAC), 12: 0x0800    |
//	+---------------------------------------------------------------+
//	| 14: IPv4  45 00 | total len | id 0 | DF | TTL 64 | 17 | csum  |
//	|     26: src (own address)         30: dst (owner address)     |
//	+---------------------------------------------------------------+
//	| 34: UDP   src port (flow hash) | 36: dst port (owner's port)  |
//	|     38: length                 | 40: checksum 0               |
//	+---------------------------------------------------------------+
//	| 42: GUE   0x00 | proto 4/41 | flags 0x0000                    |
//	+---------------------------------------------------------------+
//	| 46: inner IP packet, exactly its own length                   |
//	+---------------------------------------------------------------+
const (
	offEthType  = 12
	offIP       = 14
	offIPLen    = 16
	offIPCsum   = 24
	offUDP      = 34
	offUDPSport = 34
	offUDPLen   = 38
	offGUE      = 42
	offInner    = 46
)

// GUE protocol numbers of the inner packet.
const (
	gueProtoIPv4 = 4
	gueProtoIPv6 = 41
)

// Decapsulation errors (reported inside Check problems).
var (
	errNotEncap = errors.New("not a GUE-encapsulated frame")
	errBadInner = errors.New("bad inner packet")
)

// ipPacket returns the IP packet a frame carries, without its Ethernet header and without
// any Ethernet padding: IPv4 total length, IPv6 40 + payload length. It is used on the
// well-formed frames of the scenario only.
func ipPacket(frame []byte) []byte {
	p := frame[offIP:]
	switch binary.BigEndian.Uint16(frame[offEthType:]) {
	case uint16(layers.EthernetTypeIPv4):
		return p[:binary.BigEndian.Uint16(p[2:])]
	case uint16(layers.EthernetTypeIPv6):
		return p[:40+int(binary.BigEndian.Uint16(p[4:]))]
	}
	panic("golden: ipPacket on a non-IP frame")
}

// encapFrame builds, with gopacket, the frame the pipeline must emit for inner sent to
// owner, with UDP source port 0 (the one field left to the data plane).
func encapFrame(owner Host, inner []byte) []byte {
	proto := byte(gueProtoIPv4)
	if inner[0]>>4 == 6 {
		proto = gueProtoIPv6
	}
	s := self()
	eth := &layers.Ethernet{DstMAC: owner.MAC, SrcMAC: s.MAC, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{
		Version: 4, IHL: 5, TOS: 0, Id: 0, Flags: layers.IPv4DontFragment, TTL: 64,
		Protocol: layers.IPProtocolUDP, SrcIP: s.Addr.AsSlice(), DstIP: owner.Addr.AsSlice(),
	}
	udp := &layers.UDP{SrcPort: 0, DstPort: layers.UDPPort(owner.Port)}
	gue := append([]byte{0x00, proto, 0x00, 0x00}, inner...)

	// The UDP checksum stays 0: serialize it without ComputeChecksums, and the IPv4
	// header (whose checksum covers only itself) with it.
	buf := gopacket.NewSerializeBuffer()
	lengths := gopacket.SerializeOptions{FixLengths: true}
	both := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	must(gopacket.Payload(gue).SerializeTo(buf, lengths))
	must(udp.SerializeTo(buf, lengths))
	must(ip.SerializeTo(buf, both))
	must(eth.SerializeTo(buf, both))
	return clone(buf.Bytes())
}

// decapGUE strips the outer headers of an encapsulated frame as this package expects
// them (Ethernet, IPv4 without options, UDP, GUE variant 0 without optional fields) and
// returns the GUE protocol and the inner IP packet, trimmed to the UDP payload. It checks
// the structure only; Check compares the field values.
func decapGUE(frame []byte) (proto byte, inner []byte, err error) {
	if len(frame) < offInner {
		return 0, nil, fmt.Errorf("%w: %d bytes, less than the %d of the outer headers", errNotEncap, len(frame), offInner)
	}
	if et := binary.BigEndian.Uint16(frame[offEthType:]); et != uint16(layers.EthernetTypeIPv4) {
		return 0, nil, fmt.Errorf("%w: EtherType %#04x", errNotEncap, et)
	}
	ip := frame[offIP:]
	if ip[0] != 0x45 {
		return 0, nil, fmt.Errorf("%w: IPv4 version/IHL byte %#02x, want 0x45", errNotEncap, ip[0])
	}
	if ip[9] != byte(layers.IPProtocolUDP) {
		return 0, nil, fmt.Errorf("%w: IP protocol %d", errNotEncap, ip[9])
	}
	if ff := binary.BigEndian.Uint16(ip[6:]); ff&0x3fff != 0 {
		return 0, nil, fmt.Errorf("%w: fragment (flags/offset %#04x)", errNotEncap, ff)
	}
	total := int(binary.BigEndian.Uint16(ip[2:]))
	if total < offInner-offIP || total > len(ip) {
		return 0, nil, fmt.Errorf("%w: IPv4 total length %d for %d bytes after Ethernet", errNotEncap, total, len(ip))
	}
	udpLen := int(binary.BigEndian.Uint16(frame[offUDPLen:]))
	if udpLen != total-20 {
		return 0, nil, fmt.Errorf("%w: UDP length %d, IPv4 total length %d - 20 = %d", errNotEncap, udpLen, total, total-20)
	}
	gue := frame[offGUE:]
	if gue[0] != 0 || gue[2] != 0 || gue[3] != 0 {
		return 0, nil, fmt.Errorf("%w: GUE header % x, want 00 pp 00 00", errNotEncap, gue[:4])
	}
	proto = gue[1]
	inner = frame[offInner : offIP+total]
	switch proto {
	case gueProtoIPv4:
		if len(inner) < 20 || inner[0]>>4 != 4 {
			return proto, inner, fmt.Errorf("%w: GUE protocol 4 but inner packet is not IPv4", errBadInner)
		}
		if n := int(binary.BigEndian.Uint16(inner[2:])); n != len(inner) {
			return proto, inner, fmt.Errorf("%w: inner IPv4 total length %d, %d bytes carried", errBadInner, n, len(inner))
		}
	case gueProtoIPv6:
		if len(inner) < 40 || inner[0]>>4 != 6 {
			return proto, inner, fmt.Errorf("%w: GUE protocol 41 but inner packet is not IPv6", errBadInner)
		}
		if n := 40 + int(binary.BigEndian.Uint16(inner[4:])); n != len(inner) {
			return proto, inner, fmt.Errorf("%w: inner IPv6 length 40+%d, %d bytes carried", errBadInner, n-40, len(inner))
		}
	default:
		return proto, inner, fmt.Errorf("%w: GUE protocol %d", errNotEncap, proto)
	}
	return proto, inner, nil
}

// ipv4Checksum is the Internet checksum of an IPv4 header with its checksum field taken
// as zero.
func ipv4Checksum(h []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(h); i += 2 {
		if i == 10 {
			continue
		}
		sum += uint32(h[i])<<8 | uint32(h[i+1])
	}
	if len(h)%2 == 1 {
		sum += uint32(h[len(h)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// fixIPv4Checksum recomputes the header checksum of the IPv4 packet of an Ethernet frame
// (header length taken from its IHL, at least 20 bytes), so that a deliberately broken
// field is the frame's only defect.
func fixIPv4Checksum(frame []byte, ipOff int) {
	hl := int(frame[ipOff]&0x0f) * 4
	if hl < 20 {
		hl = 20
	}
	binary.BigEndian.PutUint16(frame[ipOff+10:], ipv4Checksum(frame[ipOff:ipOff+hl]))
}

func must(err error) {
	if err != nil {
		panic("golden: " + err.Error())
	}
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }

// hostByID is the live peer with id, if any.
func hostByID(id uint16) (Host, bool) {
	for _, h := range []Host{peer2()} {
		if h.ID == id {
			return h, true
		}
	}
	return Host{}, false
}
