package golden

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/homing-dev/homing/session"
)

// TCP flag bits (the TCP header's byte 13).
const (
	fFIN = 0x01
	fSYN = 0x02
	fRST = 0x04
	fPSH = 0x08
	fACK = 0x10
)

var serializeOpts = gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}

// serialize builds a frame with gopacket (lengths and checksums computed). gopacket pads
// an Ethernet frame shorter than 60 bytes with zeros, as a NIC does.
func serialize(ls ...gopacket.SerializableLayer) []byte {
	buf := gopacket.NewSerializeBuffer()
	must(gopacket.SerializeLayers(buf, serializeOpts, ls...))
	return clone(buf.Bytes())
}

func ethLayer(dst, src net.HardwareAddr, t layers.EthernetType) *layers.Ethernet {
	return &layers.Ethernet{DstMAC: dst, SrcMAC: src, EthernetType: t}
}

func ip4Layer(src, dst netip.Addr, proto layers.IPProtocol, id uint16) *layers.IPv4 {
	return &layers.IPv4{
		Version: 4, IHL: 5, Id: id, Flags: layers.IPv4DontFragment, TTL: 63,
		Protocol: proto, SrcIP: src.AsSlice(), DstIP: dst.AsSlice(),
	}
}

func ip6Layer(src, dst netip.Addr, nh layers.IPProtocol) *layers.IPv6 {
	return &layers.IPv6{
		Version: 6, FlowLabel: 0x12345, NextHeader: nh, HopLimit: 63,
		SrcIP: src.AsSlice(), DstIP: dst.AsSlice(),
	}
}

func tcpLayer(sport, dport uint16, flags uint8, seq, ack uint32) *layers.TCP {
	t := &layers.TCP{
		SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), Seq: seq, Ack: ack,
		FIN: flags&fFIN != 0, SYN: flags&fSYN != 0, RST: flags&fRST != 0,
		PSH: flags&fPSH != 0, ACK: flags&fACK != 0, Window: 502,
	}
	if t.SYN {
		t.Window = 64240
		t.Options = []layers.TCPOption{{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: []byte{0x05, 0xb4}}}
	}
	return t
}

// seg describes one TCP or UDP packet of a session, in either direction.
type seg struct {
	k        session.Key // client -> VIP
	reply    bool        // VIP -> client (kernel side)
	flags    uint8
	seq, ack uint32
	payload  []byte
	tos      uint8
	dst, src net.HardwareAddr // default: RouterMAC -> Self.MAC (reply: reversed)
}

// layers returns the IP and L4 layers (with checksum pseudo-header set) of s.
func (s seg) layers() (ip gopacket.SerializableLayer, l4 gopacket.SerializableLayer, et layers.EthernetType) {
	src, dst, sport, dport := s.k.Src, s.k.Dst, s.k.SrcPort, s.k.DstPort
	if s.reply {
		src, dst, sport, dport = dst, src, dport, sport
	}
	proto := layers.IPProtocol(s.k.Proto)
	var nl gopacket.NetworkLayer
	if s.k.Is4() {
		v4 := ip4Layer(src, dst, proto, uint16(sport)^uint16(s.seq))
		v4.TOS = s.tos
		ip, nl, et = v4, v4, layers.EthernetTypeIPv4
	} else {
		v6 := ip6Layer(src, dst, proto)
		v6.TrafficClass = s.tos
		ip, nl, et = v6, v6, layers.EthernetTypeIPv6
	}
	switch s.k.Proto {
	case session.TCP:
		t := tcpLayer(sport, dport, s.flags, s.seq, s.ack)
		must(t.SetNetworkLayerForChecksum(nl))
		l4 = t
	case session.UDP:
		u := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}
		must(u.SetNetworkLayerForChecksum(nl))
		l4 = u
	default:
		panic("golden: seg proto")
	}
	return ip, l4, et
}

func (s seg) macs() (dst, src net.HardwareAddr) {
	dst, src = self().MAC, RouterMAC
	if s.reply {
		dst, src = src, dst
	}
	if s.dst != nil {
		dst = s.dst
	}
	if s.src != nil {
		src = s.src
	}
	return dst, src
}

// frame is s as an Ethernet frame.
func (s seg) frame() []byte {
	ip, l4, et := s.layers()
	dst, src := s.macs()
	return serialize(ethLayer(dst, src, et), ip, l4, gopacket.Payload(s.payload))
}

// ipv4Frame builds an Ethernet + IPv4 frame with an arbitrary payload after the header.
func ipv4Frame(dst, src net.HardwareAddr, ip *layers.IPv4, payload []byte) []byte {
	return serialize(ethLayer(dst, src, layers.EthernetTypeIPv4), ip, gopacket.Payload(payload))
}

// gueFrame is a GUE datagram from peer 2 to dst:dport carrying payload after the 4 bytes
// of hdr. A zero UDP checksum, as GUE senders commonly use, unless withCsum.
func gueFrame(dst netip.Addr, dport uint16, hdr [4]byte, payload []byte, withCsum bool) []byte {
	p := peer2()
	return gueFrameFrom(p.Addr, p.MAC, dst, dport, hdr, payload, withCsum)
}

// gueFrameFrom is the same from src (MAC srcMAC), outer IPv4 or IPv6 (as src and dst;
// over IPv6 the UDP checksum is always computed).
func gueFrameFrom(src netip.Addr, srcMAC net.HardwareAddr, dst netip.Addr, dport uint16, hdr [4]byte, payload []byte, withCsum bool) []byte {
	udp := &layers.UDP{SrcPort: 51000, DstPort: layers.UDPPort(dport)}
	body := gopacket.Payload(append(hdr[:], payload...))
	if src.Is6() {
		ip := ip6Layer(src, dst, layers.IPProtocolUDP)
		ip.HopLimit, ip.FlowLabel = 64, 0
		must(udp.SetNetworkLayerForChecksum(ip))
		return serialize(ethLayer(self().MAC, srcMAC, layers.EthernetTypeIPv6), ip, udp, body)
	}
	ip := ip4Layer(src, dst, layers.IPProtocolUDP, 0)
	ip.TTL = 64
	if withCsum {
		must(udp.SetNetworkLayerForChecksum(ip))
		return serialize(ethLayer(self().MAC, srcMAC, layers.EthernetTypeIPv4), ip, udp, body)
	}
	buf := gopacket.NewSerializeBuffer()
	must(body.SerializeTo(buf, gopacket.SerializeOptions{FixLengths: true}))
	must(udp.SerializeTo(buf, gopacket.SerializeOptions{FixLengths: true}))
	must(ip.SerializeTo(buf, serializeOpts))
	must(ethLayer(self().MAC, srcMAC, layers.EthernetTypeIPv4).SerializeTo(buf, serializeOpts))
	return clone(buf.Bytes())
}

// Want constructors.

func wantKernel(frame []byte) Want { return Want{Kind: ToKernel, Frame: clone(frame)} }

func wantNIC(frame []byte) Want { return Want{Kind: ToNIC, Frame: clone(frame)} }

// wantDrop: nothing out, the refusal counter counter moved by one.
func wantDrop(counter string) Want { return Want{Kind: Drop, Counter: counter} }

func wantEncap(frame []byte, k session.Key, owner uint16) Want {
	h, ok := hostByID(owner)
	if !ok {
		panic(fmt.Sprintf("golden: encap to host %d, which is not live", owner))
	}
	inner := clone(ipPacket(frame))
	return Want{Kind: Encap, Owner: owner, Session: k, Inner: inner, Frame: encapFrame(h, inner)}
}

// wantDecap: the outer Ethernet addresses, the inner family's EtherType, the inner packet.
func wantDecap(frame, inner []byte) Want {
	et := layers.EthernetTypeIPv4
	if inner[0]>>4 == 6 {
		et = layers.EthernetTypeIPv6
	}
	out := append(clone(frame[:12]), byte(et>>8), byte(et))
	out = append(out, inner...)
	return Want{Kind: Decap, Inner: clone(inner), Frame: out}
}

var (
	httpGet1 = []byte("GET /video/seg-0001.ts HTTP/1.1\r\nHost: cdn.example\r\n\r\n")
	httpGet2 = []byte("GET /video/seg-0002.ts HTTP/1.1\r\nHost: cdn.example\r\nRange: bytes=0-\r\n\r\n")
	dnsQuery = []byte{0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0,
		3, 'c', 'd', 'n', 7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 0, 0x00, 0x01, 0x00, 0x01}
)

func fill(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*7)
	}
	return b
}

// Cases returns the golden vectors, freshly built (the caller may modify them), in their
// input order: the NIC-port cases in this order make nic-in.pcap, the kernel-port cases
// kernel-in.pcap. The list is deterministic.
func Cases() []Case {
	var cs []Case
	add := func(name string, in Port, frame []byte, w Want, why string) {
		cs = append(cs, Case{Name: name, In: in, Frame: clone(frame), Want: w, Why: why})
	}
	nic := func(name string, frame []byte, w Want, why string) { add(name, PortNIC, frame, w, why) }
	s := self()
	p := peer2()

	const (
		ruleSYN     = "TCP SYN without ACK goes to the kernel, whoever owns the session"
		ruleEncap   = "TCP/UDP to a VIP owned by a live peer is encapsulated to it"
		ruleLocal   = "a session owned here goes to the kernel"
		ruleUnknown = "a session not in the table is local: kernel"
		ruleDead    = "a session owned by a peer without a template goes to the kernel"
		ruleDecap   = "GUE from a live peer to this host's address and tunnel port is decapsulated to the kernel"
		ruleGUEBad  = "GUE from a live peer with an invalid GUE header is dropped"
		ruleOther   = "not a lookup candidate: kernel, byte for byte"
		ruleBad     = "malformed: kernel, byte for byte"
		ruleTAP     = "kernel rx goes to the NIC unchanged"
	)

	// The sessions.
	s1syn := seg{k: S1, flags: fSYN, seq: 1000}.frame()
	nic("s1-syn", s1syn, wantKernel(s1syn), ruleSYN)

	s1d1 := seg{k: S1, flags: fACK | fPSH, seq: 1001, ack: 5001, payload: httpGet1}.frame()
	nic("s1-data-1", s1d1, wantEncap(s1d1, S1, 2), ruleEncap)

	s3 := seg{k: S3, flags: fACK | fPSH, seq: 3001, ack: 7001, payload: httpGet1}.frame()
	nic("s3-owned-here", s3, wantKernel(s3), ruleLocal)

	s2syn := seg{k: S2, flags: fSYN, seq: 2000}.frame()
	nic("s2-syn", s2syn, wantKernel(s2syn), ruleSYN)

	s2d := seg{k: S2, flags: fACK | fPSH, seq: 2001, ack: 9001, payload: httpGet1}.frame()
	nic("s2-data", s2d, wantEncap(s2d, S2, 2), ruleEncap+" (inner IPv6: GUE protocol 41)")

	s1d2 := seg{k: S1, flags: fACK | fPSH, seq: 1001 + uint32(len(httpGet1)), ack: 5001, payload: httpGet2}.frame()
	nic("s1-data-2", s1d2, wantEncap(s1d2, S1, 2), ruleEncap+" (same UDP source port as s1-data-1)")

	// 14 + 20 + 20 + 2 = 56 bytes: a NIC pads to 60; the padding must not be carried.
	s1pad := seg{k: S1, flags: fACK | fPSH, seq: 1200, ack: 5001, payload: []byte("ok")}.frame()
	copy(s1pad[56:], []byte{0xa5, 0xa5, 0xa5, 0xa5})
	nic("s1-data-padded", s1pad, wantEncap(s1pad, S1, 2), ruleEncap+"; Ethernet padding is not carried")

	s4 := seg{k: S4, flags: fACK | fPSH, seq: 4001, ack: 8001, payload: httpGet1}.frame()
	nic("s4-unknown", s4, wantKernel(s4), ruleUnknown)

	s5 := seg{k: S5, payload: dnsQuery}.frame()
	nic("s5-udp", s5, wantEncap(s5, S5, 2), ruleEncap+" (UDP)")

	s7 := seg{k: S7, flags: fACK | fPSH, seq: 7001, ack: 9901, payload: httpGet1}.frame()
	nic("s7-dead-owner", s7, wantKernel(s7), ruleDead)

	s1sa := seg{k: S1, flags: fSYN | fACK, seq: 1000, ack: 5000}.frame()
	nic("s1-syn-ack", s1sa, wantEncap(s1sa, S1, 2), ruleEncap+" (SYN with ACK is not a new connection)")

	s1tos := seg{k: S1, flags: fACK | fPSH, seq: 1300, ack: 5001, payload: httpGet2, tos: 0x2a}.frame()
	nic("s1-data-tos", s1tos, wantEncap(s1tos, S1, 2), ruleEncap+"; the outer TOS is 0, the inner one is carried")

	s1full := seg{k: S1, flags: fACK, seq: 1400, ack: 5001, payload: fill(1460, 0x30)}.frame()
	nic("s1-data-1514", s1full, wantEncap(s1full, S1, 2), ruleEncap+" (full-size frame)")

	s1rst := seg{k: S1, flags: fRST | fACK, seq: 2900, ack: 5001}.frame()
	nic("s1-rst-ack", s1rst, wantEncap(s1rst, S1, 2), ruleEncap)

	s2tr := append(seg{k: S2, flags: fACK, seq: 2100, ack: 9001, payload: []byte("x")}.frame(), 0xde, 0xad, 0xbe, 0xef)
	nic("s2-data-trailer", s2tr, wantEncap(s2tr, S2, 2), ruleEncap+"; bytes after the IPv6 payload length are not carried")

	s1fin := seg{k: S1, flags: fFIN | fACK, seq: 3000, ack: 5001}.frame()
	nic("s1-fin-ack", s1fin, wantEncap(s1fin, S1, 2), ruleEncap+" (54 bytes, zero-padded to 60)")

	// Tunnel traffic.
	inner4 := ipPacket(seg{k: key(session.TCP, client4, 40011, vip4, 80), flags: fACK | fPSH, seq: 11, ack: 22, payload: httpGet1}.frame())
	inner6 := ipPacket(seg{k: key(session.TCP, client6, 40012, vip6, 80), flags: fACK | fPSH, seq: 33, ack: 44, payload: httpGet2}.frame())
	inner4ack := ipPacket(seg{k: key(session.TCP, client4, 40013, vip4, 80), flags: fACK, seq: 55, ack: 66}.frame())
	gue4 := [4]byte{0, gueProtoIPv4, 0, 0}
	gue6 := [4]byte{0, gueProtoIPv6, 0, 0}

	g := gueFrame(s.Addr, s.Port, gue4, inner4, false)
	nic("gue-inner-ipv4", g, wantDecap(g, inner4), ruleDecap)

	g = gueFrame(s.Addr, s.Port, gue6, inner6, true)
	nic("gue-inner-ipv6", g, wantDecap(g, inner6), ruleDecap+" (EtherType 0x86dd)")

	g = append(gueFrame(s.Addr, s.Port, gue4, inner4ack, false), 0x11, 0x22, 0x33, 0x44)
	nic("gue-trailer", g, wantDecap(g, inner4ack), ruleDecap+"; bytes after the outer IPv4 total length are dropped")

	g = gueFrame(netip.MustParseAddr("198.18.0.99"), s.Port, gue4, inner4, false)
	nic("gue-other-address", g, wantKernel(g), "GUE to another address is not ours: kernel")

	g = gueFrameFrom(netip.MustParseAddr("198.18.0.66"), mac(0x66), s.Addr, s.Port, gue4, inner4, false)
	nic("gue-unknown-source", g, wantDrop("unknown_source"), "GUE from an address that is no live peer's is dropped")

	innerSSH := ipPacket(seg{k: key(session.TCP, client4, 40014, s.Addr, 22), flags: fSYN, seq: 77}.frame())
	g = gueFrame(s.Addr, s.Port, gue4, innerSSH, false)
	nic("gue-inner-not-vip", g, wantDrop("inner_not_vip"), "GUE from a live peer whose inner packet is not to a VIP (a SYN to the host's SSH port) is dropped")

	g = gueFrame(s.Addr, s.Port+1, gue4, inner4, false)
	nic("gue-wrong-port", g, wantKernel(g), "UDP to our address on another port is not a tunnel: kernel")

	g = gueFrame(s.Addr, s.Port, [4]byte{0x40, gueProtoIPv4, 0, 0}, inner4, false)
	nic("gue-version-1", g, wantDrop("malformed"), ruleGUEBad+" (version 1)")

	g = gueFrame(s.Addr, s.Port, [4]byte{0x20, gueProtoIPv4, 0, 0}, inner4, false)
	nic("gue-control", g, wantDrop("malformed"), ruleGUEBad+" (control message, C=1)")

	g = gueFrame(s.Addr, s.Port, [4]byte{0x01, gueProtoIPv4, 0, 0}, append([]byte{0, 0, 0, 0}, inner4...), false)
	nic("gue-hlen-1", g, wantDrop("malformed"), ruleGUEBad+" (optional fields, Hlen 1)")

	g = gueFrame(s.Addr, s.Port, [4]byte{0, gueProtoIPv4, 0x80, 0x00}, inner4, false)
	nic("gue-flags", g, wantDrop("malformed"), ruleGUEBad+" (flags not zero)")

	innerUDP := ipPacket(seg{k: S5, payload: dnsQuery}.frame())[20:]
	g = gueFrame(s.Addr, s.Port, [4]byte{0, 17, 0, 0}, innerUDP, false)
	nic("gue-proto-17", g, wantDrop("malformed"), ruleGUEBad+" (protocol 17 is not an IP packet)")

	g = gueFrame(s.Addr, s.Port, gue4, inner4[:30], false)
	nic("gue-inner-truncated", g, wantDrop("inner_malformed"), "inner IPv4 total length beyond the datagram: dropped")

	g = gueFrame(s.Addr, s.Port, gue4, inner6, false)
	nic("gue-inner-family-mismatch", g, wantDrop("inner_malformed"), "GUE protocol 4 with an IPv6 inner packet: dropped")

	g = gueFrame(s.Addr, s.Port, [4]byte{0, gueProtoIPv4, 0, 0}, nil, false)
	g = append(g[:offIP+20+8], 0x00, gueProtoIPv4) // a 2-byte UDP payload
	binary.BigEndian.PutUint16(g[offIP+2:], 20+8+2)
	binary.BigEndian.PutUint16(g[offUDPLen:], 8+2)
	fixIPv4Checksum(g, offIP)
	g = pad60(g)
	nic("gue-short", g, wantDrop("malformed"), "UDP to the tunnel port too short for a GUE header: dropped")

	// Other protocols.
	arpReq := serialize(ethLayer(layers.EthernetBroadcast, RouterMAC, layers.EthernetTypeARP), &layers.ARP{
		AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
		Operation: layers.ARPRequest, SourceHwAddress: RouterMAC, SourceProtAddress: []byte{198, 18, 0, 1},
		DstHwAddress: make([]byte, 6), DstProtAddress: s.Addr.AsSlice(),
	})
	nic("arp-request", arpReq, wantKernel(arpReq), ruleOther)

	icmpEcho := func(dst netip.Addr) []byte {
		return serialize(ethLayer(s.MAC, RouterMAC, layers.EthernetTypeIPv4),
			ip4Layer(client4, dst, layers.IPProtocolICMPv4, 0x4242),
			&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0), Id: 77, Seq: 1},
			gopacket.Payload(fill(32, 0x61)))
	}
	f := icmpEcho(s.Addr)
	nic("icmp-echo-self", f, wantKernel(f), ruleOther)
	f = icmpEcho(vip4)
	nic("icmp-echo-vip", f, wantKernel(f), ruleOther+" (ICMP to a VIP is not looked up)")

	routerLL := netip.MustParseAddr("fe80::fe")
	ns6 := ip6Layer(routerLL, netip.MustParseAddr("ff02::1:ff00:1"), layers.IPProtocolICMPv6)
	ns6.HopLimit = 255
	icmp6 := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeNeighborSolicitation, 0)}
	must(icmp6.SetNetworkLayerForChecksum(ns6))
	f = serialize(ethLayer(net.HardwareAddr{0x33, 0x33, 0xff, 0, 0, 1}, RouterMAC, layers.EthernetTypeIPv6), ns6, icmp6,
		&layers.ICMPv6NeighborSolicitation{TargetAddress: vip6.AsSlice(), Options: layers.ICMPv6Options{
			{Type: layers.ICMPv6OptSourceAddress, Data: RouterMAC}}})
	nic("icmpv6-neighbor-solicitation", f, wantKernel(f), ruleOther)

	// IPv4 fragments and options of S1.
	fragIP := ip4Layer(client4, vip4, layers.IPProtocolTCP, 0x7777)
	fragIP.Flags = layers.IPv4MoreFragments
	fragTCP := tcpLayer(S1.SrcPort, S1.DstPort, fACK|fPSH, 1500, 5001)
	must(fragTCP.SetNetworkLayerForChecksum(fragIP))
	f = serialize(ethLayer(s.MAC, RouterMAC, layers.EthernetTypeIPv4), fragIP, fragTCP, gopacket.Payload(fill(68, 0x10))) // 88 bytes of IP payload
	nic("s1-fragment-first", f, wantKernel(f), ruleOther+" (fragment, MF set)")

	fragIP = ip4Layer(client4, vip4, layers.IPProtocolTCP, 0x7777)
	fragIP.Flags, fragIP.FragOffset = 0, 11 // 88 bytes in: the TCP header of the first fragment is elsewhere
	f = ipv4Frame(s.MAC, RouterMAC, fragIP, fill(40, 0x20))
	nic("s1-fragment-later", f, wantKernel(f), ruleOther+" (fragment, offset > 0)")

	optIP := ip4Layer(client4, vip4, layers.IPProtocolTCP, 0x1111)
	optIP.Options = []layers.IPv4Option{{OptionType: 148, OptionLength: 4, OptionData: []byte{0, 0}}} // router alert
	optTCP := tcpLayer(S1.SrcPort, S1.DstPort, fACK|fPSH, 1600, 5001)
	must(optTCP.SetNetworkLayerForChecksum(optIP))
	f = serialize(ethLayer(s.MAC, RouterMAC, layers.EthernetTypeIPv4), optIP, optTCP, gopacket.Payload(httpGet1))
	nic("s1-ipv4-options", f, wantKernel(f), ruleOther+" (IPv4 options, IHL 6)")

	hbhIP := ip6Layer(client6, vip6, layers.IPProtocolIPv6HopByHop)
	hbhTCP := tcpLayer(S2.SrcPort, S2.DstPort, fACK|fPSH, 2200, 9001)
	must(hbhTCP.SetNetworkLayerForChecksum(hbhIP))
	hbh := gopacket.Payload{byte(layers.IPProtocolTCP), 0, 1, 4, 0, 0, 0, 0} // next TCP, PadN(4)
	f = serialize(ethLayer(s.MAC, RouterMAC, layers.EthernetTypeIPv6), hbhIP, hbh, hbhTCP, gopacket.Payload(httpGet1))
	nic("s2-hop-by-hop", f, wantKernel(f), ruleOther+" (IPv6 extension header)")

	// Truncated and malformed frames, most of them S1's 5-tuple, so that a lax parser
	// would look them up and encapsulate them.
	f = clone(s1d1[:10])
	nic("truncated-10", f, wantKernel(f), ruleBad)
	f = clone(s1d1[:offIP+12])
	nic("truncated-ipv4-12", f, wantKernel(f), ruleBad+" (IPv4 header incomplete)")

	f = clone(s1d1[:offIP+20+10])
	binary.BigEndian.PutUint16(f[offIP+2:], 30)
	fixIPv4Checksum(f, offIP)
	f = pad60(f)
	nic("truncated-tcp", f, wantKernel(f), ruleBad+" (TCP header cut at 10 bytes)")

	f = seg{k: S1, flags: fACK | fPSH, seq: 1700, ack: 5001, payload: httpGet1}.frame()
	binary.BigEndian.PutUint16(f[offIP+2:], binary.BigEndian.Uint16(f[offIP+2:])+100)
	fixIPv4Checksum(f, offIP)
	nic("ipv4-length-beyond-frame", f, wantKernel(f), ruleBad+" (IPv4 total length > frame)")

	f = seg{k: S1, flags: fACK, seq: 1800, ack: 5001}.frame()
	binary.BigEndian.PutUint16(f[offIP+2:], 20)
	fixIPv4Checksum(f, offIP)
	nic("ipv4-length-20-tcp", f, wantKernel(f), ruleBad+" (IPv4 total length 20 leaves no room for TCP)")

	f = seg{k: S5, payload: dnsQuery}.frame()
	binary.BigEndian.PutUint16(f[offIP+2:], 24)
	fixIPv4Checksum(f, offIP)
	nic("ipv4-length-24-udp", f, wantKernel(f), ruleBad+" (IPv4 total length 24 cuts the UDP header)")

	f = seg{k: S1, flags: fACK | fPSH, seq: 1900, ack: 5001, payload: httpGet1}.frame()
	f[offIP] = 0x44
	fixIPv4Checksum(f, offIP)
	nic("ipv4-ihl-4", f, wantKernel(f), ruleBad+" (IHL 4)")

	f = seg{k: S1, flags: fACK | fPSH, seq: 1950, ack: 5001, payload: httpGet1}.frame()
	f[offIP] = 0x65
	fixIPv4Checksum(f, offIP)
	nic("ipv4-version-6", f, wantKernel(f), ruleBad+" (EtherType IPv4, version 6)")

	f = seg{k: S2, flags: fACK | fPSH, seq: 2300, ack: 9001, payload: httpGet1}.frame()
	f[offIP] = 0x40 | f[offIP]&0x0f
	nic("ipv6-version-4", f, wantKernel(f), ruleBad+" (EtherType IPv6, version 4)")

	f = seg{k: S2, flags: fACK | fPSH, seq: 2400, ack: 9001, payload: httpGet1}.frame()
	binary.BigEndian.PutUint16(f[offIP+4:], binary.BigEndian.Uint16(f[offIP+4:])+100)
	nic("ipv6-length-beyond-frame", f, wantKernel(f), ruleBad+" (IPv6 payload length > frame)")

	// Other frames.
	vlanIP, vlanTCP, _ := seg{k: S1, flags: fACK | fPSH, seq: 2000, ack: 5001}.layers()
	f = serialize(ethLayer(s.MAC, RouterMAC, layers.EthernetTypeDot1Q),
		&layers.Dot1Q{VLANIdentifier: 100, Type: layers.EthernetTypeIPv4}, vlanIP, vlanTCP, gopacket.Payload(httpGet1))
	nic("vlan-s1-data", f, wantKernel(f), ruleOther+" (802.1Q tagged)")

	lldp := []byte{
		0x02, 0x07, 0x04, 0x02, 0, 0, 0, 0, 0xfe, // chassis id: MAC
		0x04, 0x04, 0x05, 'p', '1', '7', // port id: interface name
		0x06, 0x02, 0x00, 0x78, // TTL 120
		0x00, 0x00, // end
	}
	f = serialize(ethLayer(net.HardwareAddr{0x01, 0x80, 0xc2, 0, 0, 0x0e}, RouterMAC, layers.EthernetTypeLinkLayerDiscovery), gopacket.Payload(lldp))
	nic("lldp", f, wantKernel(f), ruleOther+" (EtherType 0x88cc)")

	gossipFrame := func(from Host) []byte {
		ip := ip4Layer(from.Addr, netip.MustParseAddr("239.193.0.1"), layers.IPProtocolUDP, 0x0101)
		ip.TTL, ip.Flags = 1, 0
		udp := &layers.UDP{SrcPort: 6081, DstPort: 6081}
		must(udp.SetNetworkLayerForChecksum(ip))
		return serialize(ethLayer(net.HardwareAddr{0x01, 0x00, 0x5e, 0x41, 0x00, 0x01}, from.MAC, layers.EthernetTypeIPv4),
			ip, udp, gopacket.Payload(append([]byte("HMG1"), fill(60, 0x70)...)))
	}
	f = gossipFrame(p)
	nic("gossip-multicast", f, wantKernel(f), ruleOther+" (multicast gossip)")

	f = seg{k: key(session.TCP, client4, 40001, s.Addr, 22), flags: fACK | fPSH, seq: 1, ack: 1, payload: []byte("SSH-2.0-x\r\n")}.frame()
	nic("tcp-not-vip", f, wantKernel(f), ruleOther+" (TCP to a non-VIP address)")

	// Kernel (TAP) side.
	tap := func(name string, frame []byte) { add(name, PortKernel, frame, wantNIC(frame), ruleTAP) }
	tap("kernel-arp-reply", serialize(ethLayer(RouterMAC, s.MAC, layers.EthernetTypeARP), &layers.ARP{
		AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
		Operation: layers.ARPReply, SourceHwAddress: s.MAC, SourceProtAddress: s.Addr.AsSlice(),
		DstHwAddress: RouterMAC, DstProtAddress: []byte{198, 18, 0, 1},
	}))
	tap("kernel-icmp-echo-reply", serialize(ethLayer(RouterMAC, s.MAC, layers.EthernetTypeIPv4),
		ip4Layer(s.Addr, client4, layers.IPProtocolICMPv4, 0x5151),
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoReply, 0), Id: 77, Seq: 1},
		gopacket.Payload(fill(32, 0x61))))
	tap("kernel-tcp-vip-reply", seg{k: S3, reply: true, flags: fACK | fPSH, seq: 7001, ack: 3001 + uint32(len(httpGet1)), payload: httpGet2}.frame())
	tap("kernel-tcp6-vip-reply", seg{k: S2, reply: true, flags: fSYN | fACK, seq: 9000, ack: 2001}.frame())
	tap("kernel-gossip", gossipFrame(s))
	return cs
}

// pad60 zero-pads a frame to the Ethernet minimum of 60 bytes (without FCS).
func pad60(f []byte) []byte {
	for len(f) < 60 {
		f = append(f, 0)
	}
	return f
}

// FuzzSeeds returns every input frame of Cases (both ports), for seeding the corpus of a
// classifier's fuzz test.
func FuzzSeeds() [][]byte {
	var out [][]byte
	for _, c := range Cases() {
		out = append(out, c.Frame)
	}
	return out
}
