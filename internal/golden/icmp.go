package golden

import (
	"encoding/binary"
	"net/netip"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/homing-dev/homing/session"
)

// ICMP errors from the Internet about VIP flows, in the base scenario (no MTU budget).
// The router hashes an ICMP error on its own header, so it reaches any host; the data
// plane hands it to the session's owner. Its rules:
//
//	NIC rx, ICMP destination unreachable (3, any code: 4 is fragmentation needed), time
//	exceeded (11) or parameter problem (12) / ICMPv6 destination unreachable (1), packet
//	too big (2), time exceeded (3) or parameter problem (4), to a VIP, quoting an IP
//	header (IPv4 without fragment offset; IPv6 with next header TCP or UDP) whose source
//	is that VIP and at least 4 bytes of its TCP/UDP header: the session is the quote
//	reversed (client -> VIP), looked up like a packet of it:
//	  owner a live peer                                -> Encap (the whole ICMP packet)
//	  owned here, dead owner, not in the table         -> kernel port, unchanged
//	anything else (other types, truncated quotes, IHL or lengths that lie, a quote from
//	another address, quoted fragments, ICMP about ICMP, ICMP to a non-VIP) -> kernel
//	port, unchanged
//
// The quote's own total length is not trusted (quotes are cut): a quote whose IP total
// length exceeds what is quoted is still an error about its session.

// routerAddr4 and routerAddr6 are the Internet routers that send the errors.
var (
	routerAddr4 = netip.MustParseAddr("198.18.200.1")
	routerAddr6 = netip.MustParseAddr("2001:2:200::1")
)

// icmp4Error is an ICMP error from a router to dst with type, code, the 4 bytes after the
// checksum, and quote.
func icmp4Error(dst netip.Addr, typ, code uint8, rest uint32, quote []byte) []byte {
	ip := ip4Layer(routerAddr4, dst, layers.IPProtocolICMPv4, 0x4a4a)
	ip.Flags = 0
	icmp := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, code), Id: uint16(rest >> 16), Seq: uint16(rest)}
	return serialize(ethLayer(self().MAC, RouterMAC, layers.EthernetTypeIPv4), ip, icmp, gopacket.Payload(quote))
}

// icmp6Error is the same for ICMPv6.
func icmp6Error(dst netip.Addr, typ, code uint8, rest uint32, quote []byte) []byte {
	ip := ip6Layer(routerAddr6, dst, layers.IPProtocolICMPv6)
	icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, code)}
	must(icmp.SetNetworkLayerForChecksum(ip))
	body := binary.BigEndian.AppendUint32(nil, rest)
	return serialize(ethLayer(self().MAC, RouterMAC, layers.EthernetTypeIPv6), ip, icmp, gopacket.Payload(append(body, quote...)))
}

// replyPacket is the IP packet the VIP sent for session k (VIP -> client), with payload.
func replyPacket(k session.Key, payload []byte) []byte {
	return clone(ipPacket(seg{k: k, reply: true, flags: fACK | fPSH, seq: 7001, ack: 3001, payload: payload}.frame()))
}

// ICMPCases returns the vectors of ICMP errors about VIP flows (see the rules above),
// freshly built, in input order.
func ICMPCases() []Case {
	var cs []Case
	nic := func(name string, frame []byte, w Want, why string) {
		cs = append(cs, Case{Name: name, In: PortNIC, Frame: clone(frame), Want: w, Why: why})
	}
	const (
		ruleOwner = "ICMP error about a VIP session owned by a live peer: tunnelled to the owner"
		ruleLocal = "ICMP error about a session owned here, unknown or of a dead owner: kernel"
		ruleOther = "not an ICMP error about a VIP session: kernel, byte for byte"
	)
	s1 := replyPacket(S1, fill(1400, 0x31))
	s5 := clone(ipPacket(seg{k: S5, reply: true, payload: dnsQuery}.frame()))
	q8 := func(p []byte) []byte { // IP header + 8 bytes (RFC 792's minimum)
		ihl := int(p[0]&0xf) * 4
		if p[0]>>4 == 6 {
			ihl = 40
		}
		return clone(p[:ihl+8])
	}

	f := icmp4Error(vip4, 3, 4, 1400, q8(s1))
	nic("icmp-frag-needed-s1", f, wantEncap(f, S1, 2), ruleOwner+" (fragmentation needed, 8 bytes quoted)")
	f = icmp4Error(vip4, 3, 4, 1400, s1[:548])
	nic("icmp-frag-needed-s1-576", f, wantEncap(f, S1, 2), ruleOwner+" (quote of 548 bytes)")
	f = icmp4Error(vip4, 3, 1, 0, q8(s1))
	nic("icmp-host-unreachable-s1", f, wantEncap(f, S1, 2), ruleOwner+" (host unreachable)")
	f = icmp4Error(vip4, 11, 0, 0, q8(s1))
	nic("icmp-time-exceeded-s1", f, wantEncap(f, S1, 2), ruleOwner+" (time exceeded)")
	f = icmp4Error(vip4, 12, 0, 0x14000000, q8(s1))
	nic("icmp-parameter-problem-s1", f, wantEncap(f, S1, 2), ruleOwner+" (parameter problem)")
	f = icmp4Error(vip4, 3, 3, 0, s5)
	nic("icmp-port-unreachable-s5", f, wantEncap(f, S5, 2), ruleOwner+" (UDP session)")
	q := q8(s1)
	binary.BigEndian.PutUint16(q[2:], 9000) // the quote claims 9000 bytes: it is cut, as usual
	f = icmp4Error(vip4, 3, 4, 1400, q)
	nic("icmp-quote-total-length-9000", f, wantEncap(f, S1, 2), ruleOwner+" (the quote's total length is not trusted)")
	q = q8(s1)[:20+4]
	f = icmp4Error(vip4, 3, 4, 1400, q)
	nic("icmp-quote-ports-only", f, wantEncap(f, S1, 2), ruleOwner+" (IP header and the ports quoted)")

	f = icmp4Error(vip4, 3, 4, 1400, q8(replyPacket(S3, httpGet1)))
	nic("icmp-frag-needed-s3", f, wantKernel(f), ruleLocal+" (owned here)")
	f = icmp4Error(vip4, 3, 4, 1400, q8(replyPacket(S4, httpGet1)))
	nic("icmp-frag-needed-s4", f, wantKernel(f), ruleLocal+" (unknown)")
	f = icmp4Error(vip4, 3, 4, 1400, q8(replyPacket(S7, httpGet1)))
	nic("icmp-frag-needed-s7", f, wantKernel(f), ruleLocal+" (dead owner)")

	f = icmp4Error(vip4, 3, 4, 1400, q8(s1)[:20+3])
	nic("icmp-quote-truncated", f, wantKernel(f), ruleOther+" (3 bytes of TCP quoted)")
	f = icmp4Error(vip4, 3, 4, 1400, q8(s1)[:12])
	nic("icmp-quote-ip-truncated", f, wantKernel(f), ruleOther+" (12 bytes of IP header quoted)")
	q = q8(s1)
	q[0] = 0x4f // IHL 15: 60 bytes of header, 28 quoted
	f = icmp4Error(vip4, 3, 4, 1400, q)
	nic("icmp-quote-ihl-15", f, wantKernel(f), ruleOther+" (quoted IHL beyond the quote)")
	q = q8(s1)
	q[0] = 0x44
	f = icmp4Error(vip4, 3, 4, 1400, q)
	nic("icmp-quote-ihl-4", f, wantKernel(f), ruleOther+" (quoted IHL 4)")
	q = q8(s1)
	q[0] = 0x65
	f = icmp4Error(vip4, 3, 4, 1400, q)
	nic("icmp-quote-version-6", f, wantKernel(f), ruleOther+" (quoted version 6)")
	q = q8(s1)
	copy(q[12:16], []byte{198, 19, 255, 9})
	f = icmp4Error(vip4, 3, 4, 1400, q)
	nic("icmp-quote-from-other-address", f, wantKernel(f), ruleOther+" (the quote's source is not the VIP the error is sent to)")
	q = q8(s1)
	binary.BigEndian.PutUint16(q[6:], 185) // fragment offset 185 (1480 bytes): no ports here
	f = icmp4Error(vip4, 3, 4, 1400, q)
	nic("icmp-quote-later-fragment", f, wantKernel(f), ruleOther+" (quoted fragment with offset > 0)")
	q = q8(s1)
	q[9] = 1 // quoted protocol ICMP
	f = icmp4Error(vip4, 3, 4, 1400, q)
	nic("icmp-about-icmp", f, wantKernel(f), ruleOther+" (an error about an ICMP message)")
	f = icmp4Error(vip4, 5, 1, 0, q8(s1))
	nic("icmp-redirect", f, wantKernel(f), ruleOther+" (redirect: not an error about the session)")
	f = icmp4Error(self().Addr, 3, 4, 1400, q8(s1))
	nic("icmp-to-host-address", f, wantKernel(f), ruleOther+" (to the host's own address)")
	f = icmp4Error(vip4, 3, 4, 1400, q8(s1))
	binary.BigEndian.PutUint16(f[offIP+2:], 20+8+20+3) // the outer IP length cuts the quote's ports
	fixIPv4Checksum(f, offIP)
	nic("icmp-outer-length-cuts-quote", f, wantKernel(f), ruleOther+" (outer total length leaves 3 bytes of TCP)")

	s2 := replyPacket(S2, fill(1200, 0x32))
	f = icmp6Error(vip6, 2, 0, 1280, s2[:1280-48])
	nic("icmpv6-packet-too-big-s2", f, wantEncap(f, S2, 2), ruleOwner+" (ICMPv6 packet too big)")
	f = icmp6Error(vip6, 1, 4, 0, q8(s2))
	nic("icmpv6-port-unreachable-s2", f, wantEncap(f, S2, 2), ruleOwner+" (ICMPv6 destination unreachable)")
	f = icmp6Error(vip6, 3, 0, 0, q8(s2))
	nic("icmpv6-time-exceeded-s2", f, wantEncap(f, S2, 2), ruleOwner+" (ICMPv6 time exceeded)")
	f = icmp6Error(vip6, 2, 0, 1280, q8(s2)[:40+3])
	nic("icmpv6-quote-truncated", f, wantKernel(f), ruleOther+" (3 bytes of TCP quoted)")
	q = q8(s2)
	q[23] ^= 0x01
	f = icmp6Error(vip6, 2, 0, 1280, q)
	nic("icmpv6-quote-from-other-address", f, wantKernel(f), ruleOther+" (the quote's source is not the VIP)")
	q = q8(s2)
	q[6] = 0 // quoted next header: hop-by-hop options
	f = icmp6Error(vip6, 2, 0, 1280, q)
	nic("icmpv6-quote-extension-header", f, wantKernel(f), ruleOther+" (quoted extension header)")
	f = icmp6Error(vip6, 128, 0, 0x00010001, fill(16, 0x40))
	nic("icmpv6-echo-request-vip", f, wantKernel(f), ruleOther+" (echo request)")
	return cs
}
