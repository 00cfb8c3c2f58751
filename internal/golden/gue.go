package golden

import (
	"encoding/binary"
	"net"
	"net/netip"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/homing-dev/homing/session"
)

// The GUE scenario: the base scenario with this host also a tunnel endpoint over IPv6
// (Self6) and peer 2 announcing an IPv6 address (Peer6), published with its template.
// Only the POP's live peers may use the tunnel, and only for what a peer tunnels. Its
// rules:
//
//	NIC rx, UDP to Self.Addr or Self6 on the tunnel port:
//	  outer source not a live peer's tunnel address (Peers[].Addr, Peer6)
//	                                            -> Drop, counter unknown_source
//	  GUE header invalid (version, C, Hlen, flags, protocol not 4/41), UDP length
//	    invalid                                 -> Drop, malformed
//	  inner IP header truncated or inconsistent, inner IPv4 options, inner TCP/UDP
//	    header cut, an ICMP error whose quote is no TCP/UDP header from the VIP
//	                                            -> Drop, inner_malformed
//	  inner protocol not TCP or UDP, and not an ICMP error (3, 11, 12) / ICMPv6 error
//	    (1-4): router advertisements, redirects, echo, IGMP, extension headers
//	                                            -> Drop, inner_proto
//	  inner destination not a VIP (the host's address, a multicast group, ...)
//	                                            -> Drop, inner_not_vip
//	  otherwise (TCP/UDP to a VIP, a fragment of one, an ICMP error about a VIP
//	    flow)                                   -> Decap -> kernel port
//
// The checks run in that order: a frame is counted for the first rule it breaks.
var (
	// Self6 is this host's IPv6 tunnel address in the GUE scenario.
	Self6 = netip.MustParseAddr("2001:2::11")
	// Peer6 is peer 2's IPv6 address (its template's Alt) in the GUE scenario.
	Peer6 = netip.MustParseAddr("2001:2::12")
	// Rogue4 and Rogue6 are a host on the POP LAN that is no peer.
	Rogue4 = netip.MustParseAddr("198.18.0.66")
	Rogue6 = netip.MustParseAddr("2001:2::66")
)

// GUE refusal counters (Want.Counter of the GUE scenario's Drop cases).
const (
	GUEUnknownSource  = "unknown_source"
	GUEMalformed      = "malformed"
	GUEInnerMalformed = "inner_malformed"
	GUEInnerProto     = "inner_proto"
	GUEInnerNotVIP    = "inner_not_vip"
)

// GUECases returns the vectors of the GUE scenario (see Self6), freshly built, in input
// order, over an outer IPv4 and an outer IPv6 header each.
func GUECases() []Case {
	var cs []Case
	nic := func(name string, frame []byte, w Want, why string) {
		cs = append(cs, Case{Name: name, In: PortNIC, Frame: clone(frame), Want: w, Why: why})
	}
	s, p := self(), peer2()
	gue4 := [4]byte{0, gueProtoIPv4, 0, 0}
	gue6 := [4]byte{0, gueProtoIPv6, 0, 0}
	hdr := func(inner []byte) [4]byte {
		if inner[0]>>4 == 6 {
			return gue6
		}
		return gue4
	}
	gossip4 := netip.MustParseAddr("239.193.0.1")

	// The inner packets.
	tcp4 := ipPacket(seg{k: key(session.TCP, client4, 40021, vip4, 80), flags: fACK | fPSH, seq: 1, ack: 2, payload: httpGet1}.frame())
	udp6 := ipPacket(seg{k: key(session.UDP, client6, 40022, vip6, 443), payload: dnsQuery}.frame())
	icmpErr4 := ipPacket(icmp4Error(vip4, 3, 4, 1400, replyPacket(S1, nil)[:28]))
	icmpErr6 := ipPacket(icmp6Error(vip6, 2, 0, 1280, replyPacket(S2, nil)[:48]))
	fragIP := ip4Layer(client4, vip4, layers.IPProtocolTCP, 0x7777)
	fragIP.Flags, fragIP.FragOffset = 0, 11
	frag4 := ipPacket(ipv4Frame(s.MAC, RouterMAC, fragIP, fill(40, 0x20)))
	synHost := ipPacket(seg{k: key(session.TCP, client4, 40023, s.Addr, 22), flags: fSYN, seq: 9}.frame())
	synHost6 := ipPacket(seg{k: key(session.TCP, client6, 40024, Self6, 22), flags: fSYN, seq: 9}.frame())
	gossipUDP := gossipInner(client4, gossip4)
	ra := routerAdvert()
	redirect := icmpRedirect(s.Addr)
	redirectVIP := icmpRedirect(vip4)
	echoVIP := ipPacket(icmp4Echo(vip4))
	cutTCP := clone(tcp4[:30]) // the inner header claims 30 bytes: 10 of TCP
	binary.BigEndian.PutUint16(cutTCP[2:], 30)
	fixIPv4Checksum(cutTCP, 0)
	cutTCP6 := clone(ipPacket(seg{k: key(session.TCP, client6, 40025, vip6, 80), flags: fACK, seq: 5, ack: 6}.frame())[:40+12])
	binary.BigEndian.PutUint16(cutTCP6[4:], 12)
	badQuote := ipPacket(icmp4Error(vip4, 3, 4, 1400, replyPacket(S1, nil)[:20+3]))
	optIP := ip4Layer(client4, vip4, layers.IPProtocolTCP, 0x1111)
	optIP.Options = []layers.IPv4Option{{OptionType: 148, OptionLength: 4, OptionData: []byte{0, 0}}}
	optTCP := tcpLayer(40026, 80, fACK, 1, 1)
	must(optTCP.SetNetworkLayerForChecksum(optIP))
	opts4 := ipPacket(serialize(ethLayer(s.MAC, RouterMAC, layers.EthernetTypeIPv4), optIP, optTCP))
	hbhIP := ip6Layer(client6, vip6, layers.IPProtocolIPv6HopByHop)
	hbhTCP := tcpLayer(40027, 80, fACK, 1, 1)
	must(hbhTCP.SetNetworkLayerForChecksum(hbhIP))
	hbh6 := ipPacket(serialize(ethLayer(s.MAC, RouterMAC, layers.EthernetTypeIPv6), hbhIP,
		gopacket.Payload{byte(layers.IPProtocolTCP), 0, 1, 4, 0, 0, 0, 0}, hbhTCP))
	igmpIP := ip4Layer(client4, vip4, layers.IPProtocolIGMP, 0x2222)
	igmp := ipPacket(ipv4Frame(s.MAC, RouterMAC, igmpIP, []byte{0x11, 0x64, 0xee, 0x9b, 0, 0, 0, 0}))

	const (
		ruleDecap   = "GUE from a live peer, inner TCP/UDP to a VIP or an ICMP error about a VIP flow: decapsulated"
		ruleSource  = "GUE from an address that is no live peer's tunnel address: dropped"
		ruleNotVIP  = "GUE from a live peer, inner packet not to a VIP: dropped"
		ruleProto   = "GUE from a live peer, inner packet neither TCP/UDP nor an ICMP error: dropped"
		ruleInner   = "GUE from a live peer, inner packet truncated or inconsistent: dropped"
		ruleGUE     = "GUE header invalid: dropped"
		ruleNotOurs = "UDP to another port of this host: not GUE, kernel"
	)
	for _, o := range []struct {
		name      string
		src, dst  netip.Addr
		rogue     netip.Addr
		internet  netip.Addr
		withCsum  bool
		multicast netip.Addr
	}{
		{"gue4", p.Addr, s.Addr, Rogue4, client4, false, gossip4},
		{"gue6", Peer6, Self6, Rogue6, client6, true, netip.MustParseAddr("ff02::1")},
	} {
		from := func(src netip.Addr, h [4]byte, inner []byte) []byte {
			m := p.MAC
			if src != o.src {
				m = mac(0x66)
			}
			return gueFrameFrom(src, m, o.dst, s.Port, h, inner, o.withCsum)
		}
		peer := func(inner []byte) []byte { return from(o.src, hdr(inner), inner) }
		n := func(s string) string { return o.name + "-" + s }

		f := peer(tcp4)
		nic(n("peer-tcp-vip"), f, wantDecap(f, tcp4), ruleDecap)
		f = peer(udp6)
		nic(n("peer-udp-vip6"), f, wantDecap(f, udp6), ruleDecap+" (inner IPv6 UDP)")
		f = peer(icmpErr4)
		nic(n("peer-icmp-frag-needed"), f, wantDecap(f, icmpErr4), ruleDecap+" (ICMP fragmentation needed about S1)")
		f = peer(icmpErr6)
		nic(n("peer-icmpv6-too-big"), f, wantDecap(f, icmpErr6), ruleDecap+" (ICMPv6 packet too big about S2)")
		f = peer(frag4)
		nic(n("peer-fragment"), f, wantDecap(f, frag4), ruleDecap+" (a later fragment of a too-big packet without DF)")

		nic(n("rogue-tcp-vip"), from(o.rogue, gue4, tcp4), wantDrop(GUEUnknownSource), ruleSource+" (a host on the LAN)")
		nic(n("internet-syn-host"), from(o.internet, gue4, synHost), wantDrop(GUEUnknownSource), ruleSource+" (a client on the Internet, inner SYN to SSH)")
		nic(n("rogue-router-advert"), from(o.rogue, gue6, ra), wantDrop(GUEUnknownSource), ruleSource+" (inner router advertisement)")

		nic(n("peer-syn-host"), peer(synHost), wantDrop(GUEInnerNotVIP), ruleNotVIP+" (a SYN to the host's SSH port)")
		nic(n("peer-syn-host6"), peer(synHost6), wantDrop(GUEInnerNotVIP), ruleNotVIP+" (a SYN to the host's IPv6 SSH port)")
		nic(n("peer-gossip-multicast"), peer(gossipUDP), wantDrop(GUEInnerNotVIP), ruleNotVIP+" (UDP to the gossip group)")
		nic(n("peer-router-advert"), peer(ra), wantDrop(GUEInnerProto), ruleProto+" (ICMPv6 router advertisement)")
		nic(n("peer-icmp-redirect"), peer(redirect), wantDrop(GUEInnerProto), ruleProto+" (ICMP redirect to the host)")
		nic(n("peer-icmp-redirect-vip"), peer(redirectVIP), wantDrop(GUEInnerProto), ruleProto+" (ICMP redirect to a VIP)")
		nic(n("peer-icmp-echo-vip"), peer(echoVIP), wantDrop(GUEInnerProto), ruleProto+" (echo request to a VIP)")
		nic(n("peer-igmp"), peer(igmp), wantDrop(GUEInnerProto), ruleProto+" (IGMP)")
		nic(n("peer-hop-by-hop"), peer(hbh6), wantDrop(GUEInnerProto), ruleProto+" (IPv6 extension header)")
		nic(n("peer-tcp-truncated"), peer(cutTCP), wantDrop(GUEInnerMalformed), ruleInner+" (TCP header cut at 10 bytes)")
		nic(n("peer-tcp6-truncated"), peer(cutTCP6), wantDrop(GUEInnerMalformed), ruleInner+" (IPv6, TCP header cut at 12 bytes)")
		nic(n("peer-inner-length-beyond"), peer(tcp4[:60]), wantDrop(GUEInnerMalformed), ruleInner+" (inner total length beyond the datagram)")
		nic(n("peer-icmp-quote-truncated"), peer(badQuote), wantDrop(GUEInnerMalformed), ruleInner+" (ICMP quote of 3 bytes of TCP)")
		nic(n("peer-ipv4-options"), peer(opts4), wantDrop(GUEInnerMalformed), ruleInner+" (inner IPv4 options)")
		nic(n("peer-gue-version-1"), from(o.src, [4]byte{0x40, gueProtoIPv4, 0, 0}, tcp4), wantDrop(GUEMalformed), ruleGUE+" (version 1)")
		f = gueFrameFrom(o.src, p.MAC, o.dst, s.Port+1, gue4, tcp4, o.withCsum)
		nic(n("peer-other-port"), f, wantKernel(f), ruleNotOurs)
	}
	return cs
}

// gossipInner is a UDP datagram from src to the gossip group and port.
func gossipInner(src, group netip.Addr) []byte {
	ip := ip4Layer(src, group, layers.IPProtocolUDP, 0x0101)
	ip.TTL, ip.Flags = 1, 0
	udp := &layers.UDP{SrcPort: 6081, DstPort: 6081}
	must(udp.SetNetworkLayerForChecksum(ip))
	return ipPacket(serialize(ethLayer(net.HardwareAddr{0x01, 0x00, 0x5e, 0x41, 0x00, 0x01}, RouterMAC, layers.EthernetTypeIPv4),
		ip, udp, gopacket.Payload(append([]byte("HMG1"), fill(60, 0x70)...))))
}

// routerAdvert is an ICMPv6 router advertisement to all nodes offering a default route
// and a global prefix (2001:2:66::/64) for address autoconfiguration.
func routerAdvert() []byte {
	ip := ip6Layer(netip.MustParseAddr("fe80::66"), netip.MustParseAddr("ff02::1"), layers.IPProtocolICMPv6)
	ip.HopLimit, ip.FlowLabel = 255, 0
	icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeRouterAdvertisement, 0)}
	must(icmp.SetNetworkLayerForChecksum(ip))
	prefix := []byte{64, 0xc0, 0, 0, 0x1c, 0x20, 0, 0, 0x1c, 0x20, 0, 0, 0, 0} // /64, L+A, lifetimes 7200
	prefix = append(prefix, netip.MustParseAddr("2001:2:66::").AsSlice()...)
	ra := &layers.ICMPv6RouterAdvertisement{HopLimit: 64, RouterLifetime: 1800, Options: layers.ICMPv6Options{
		{Type: layers.ICMPv6OptSourceAddress, Data: mac(0x66)},
		{Type: layers.ICMPv6OptPrefixInfo, Data: prefix},
	}}
	return ipPacket(serialize(ethLayer(net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1}, mac(0x66), layers.EthernetTypeIPv6), ip, icmp, ra))
}

// icmpRedirect is an ICMP host redirect to dst: send client4's packets to Rogue4.
func icmpRedirect(dst netip.Addr) []byte {
	return ipPacket(icmp4Error(dst, 5, 1, binary.BigEndian.Uint32(Rogue4.AsSlice()), replyPacket(S1, nil)[:28]))
}

// icmp4Echo is an ICMP echo request from client4 to dst.
func icmp4Echo(dst netip.Addr) []byte {
	return serialize(ethLayer(self().MAC, RouterMAC, layers.EthernetTypeIPv4),
		ip4Layer(client4, dst, layers.IPProtocolICMPv4, 0x4242),
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0), Id: 77, Seq: 1},
		gopacket.Payload(fill(32, 0x61)))
}
