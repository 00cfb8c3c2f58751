package golden

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/homing-dev/homing/session"
)

// The MTU budget scenario: the same hosts, VIPs and sessions, with the NIC's MTU set
// (tunnel overhead 32 bytes: the scenario's tunnels are IPv4), the SYN-ACK MSS clamp on,
// and ICMP replies allowed. Its rules:
//
//	NIC rx, TCP/UDP to a VIP owned by a live peer:
//	  inner packet + 32 <= MTU                               -> Encap -> NIC port
//	  longer, IPv4 with DF, or IPv6                          -> Reply -> NIC port: ICMP
//	    fragmentation needed (3/4) / ICMPv6 packet too big (2/0) from the VIP to the
//	    client, next-hop MTU = MTU - 32, Ethernet addresses swapped, quoting the packet
//	    up to 576 (IPv4) / 1280 (IPv6) bytes
//	  longer, IPv4 without DF                                 -> Encap of each fragment
//	    (RFC 791: fragments of MTU - 32 bytes at most, payload in 8-byte units; the
//	    first keeps the header but for length, MF and checksum)
//	  (sessions owned here or unknown are not checked: the kernel's)
//	kernel rx, TCP SYN-ACK from a VIP with an MSS option above the clamp
//	  (IPv4 VIP: MTU - 20 - 20 - 32; IPv6 VIP: MTU - 40 - 20 - 32)
//	                                                          -> Rewrite -> NIC port: the
//	    MSS lowered to the clamp, TCP checksum valid; everything else unchanged
const (
	// MTU is the NIC MTU of the MTU budget scenario.
	MTU = 1500
	// Overhead is the tunnel's overhead in the scenario: outer IPv4, UDP, GUE.
	Overhead = 32
	// MSS4 and MSS6 are the scenario's SYN-ACK MSS clamps.
	MSS4 = MTU - 20 - 20 - Overhead
	MSS6 = MTU - 40 - 20 - Overhead
)

// Kinds of the MTU budget scenario.
const (
	Reply   Kind = iota + 16 // NIC rx -> rewritten into an ICMP error to the sender -> NIC port
	Drop                     // NIC rx -> nothing (GUE refusals too: Want.Counter)
	Rewrite                  // kernel rx -> changed as Want.Frame says -> NIC port
)

func init() {
	kindNames[Reply] = "reply"
	kindNames[Drop] = "drop"
	kindNames[Rewrite] = "rewrite"
}

// MTUCases returns the vectors of the MTU budget scenario (see MTU), freshly built, in
// input order.
func MTUCases() []Case {
	var cs []Case
	add := func(name string, in Port, frame []byte, w Want, why string) {
		cs = append(cs, Case{Name: name, In: in, Frame: clone(frame), Want: w, Why: why})
	}
	nic := func(name string, frame []byte, w Want, why string) { add(name, PortNIC, frame, w, why) }
	const (
		ruleFits  = "inner packet + tunnel overhead <= MTU: encapsulated"
		ruleICMP  = "too big for the tunnel, DF (or IPv6): ICMP to the client, from the VIP"
		ruleFrag  = "too big for the tunnel, IPv4 without DF: fragmented (8-byte units), each fragment tunnelled"
		ruleLocal = "not tunnelled: the kernel's, whatever its size"
		ruleClamp = "SYN-ACK from a VIP: MSS lowered to what fits through the tunnel"
		ruleKeep  = "kernel rx not a SYN-ACK from a VIP with a larger MSS: unchanged"
	)
	v4 := MTU - Overhead - 40 // TCP payload of the largest IPv4 packet that fits

	f := seg{k: S1, flags: fACK, seq: 10000, ack: 5001, payload: fill(v4, 0x11)}.frame()
	nic("s1-fits-exactly", f, wantEncap(f, S1, 2), ruleFits+" (1500-byte outer packet)")

	f = seg{k: S1, flags: fACK, seq: 20000, ack: 5001, payload: fill(v4+1, 0x12)}.frame()
	nic("s1-one-byte-too-big", f, wantReply(f), ruleICMP)

	f = seg{k: S1, flags: fACK | fPSH, seq: 30000, ack: 5001, payload: fill(1460, 0x13)}.frame()
	nic("s1-full-size", f, wantReply(f), ruleICMP+" (a client's full-size segment)")

	f = seg{k: S1, flags: fACK, seq: 40000, ack: 5001, payload: fill(1460, 0x14)}.frame()
	f[offIP+6] &^= 0x40 // no DF
	fixIPv4Checksum(f, offIP)
	nic("s1-full-size-no-df", f, wantFragments(f, S1, 2), ruleFrag)

	f = seg{k: S5, payload: fill(3000, 0x1a)}.frame()
	f[offIP+6] &^= 0x40
	fixIPv4Checksum(f, offIP)
	nic("s5-udp-jumbo-no-df", f, wantFragments(f, S5, 2), ruleFrag+" (3 fragments)")

	f = seg{k: S5, payload: fill(1460, 0x15)}.frame()
	nic("s5-udp-too-big", f, wantReply(f), ruleICMP+" (UDP)")

	v6 := MTU - Overhead - 60
	f = seg{k: S2, flags: fACK, seq: 50000, ack: 9001, payload: fill(v6, 0x16)}.frame()
	nic("s2-fits-exactly", f, wantEncap(f, S2, 2), ruleFits+" (inner IPv6)")

	f = seg{k: S2, flags: fACK, seq: 60000, ack: 9001, payload: fill(1440, 0x17)}.frame()
	nic("s2-full-size", f, wantReply(f), ruleICMP+" (ICMPv6 packet too big, quote cut at 1280)")

	f = seg{k: S3, flags: fACK, seq: 70000, ack: 7001, payload: fill(1460, 0x18)}.frame()
	nic("s3-owned-here-full-size", f, wantKernel(f), ruleLocal)

	f = seg{k: S4, flags: fACK, seq: 80000, ack: 8001, payload: fill(1460, 0x19)}.frame()
	nic("s4-unknown-full-size", f, wantKernel(f), ruleLocal)

	// Kernel side: SYN-ACKs.
	tap := func(name string, in, out []byte, why string) {
		w := Want{Kind: Rewrite, Frame: clone(out)}
		if bytes.Equal(in, out) {
			w.Kind = ToNIC
		}
		add(name, PortKernel, in, w, why)
	}
	mss := func(v uint16) layers.TCPOption {
		return layers.TCPOption{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: []byte{byte(v >> 8), byte(v)}}
	}
	nop := layers.TCPOption{OptionType: layers.TCPOptionKindNop, OptionLength: 1}
	sackOK := layers.TCPOption{OptionType: layers.TCPOptionKindSACKPermitted, OptionLength: 2}
	ts := layers.TCPOption{OptionType: layers.TCPOptionKindTimestamps, OptionLength: 10, OptionData: []byte{0, 0, 0x12, 0x34, 0, 0, 0x56, 0x78}}
	ws := layers.TCPOption{OptionType: layers.TCPOptionKindWindowScale, OptionLength: 3, OptionData: []byte{7}}
	linux := func(v uint16) []layers.TCPOption { return []layers.TCPOption{mss(v), sackOK, ts, nop, ws} }

	k3 := S3
	tap("kernel-syn-ack-mss-1460", synAck(k3, linux(1460)), synAck(k3, linux(MSS4)), ruleClamp+" (Linux's options)")
	tap("kernel-syn-ack6-mss-1440", synAck(S2, linux(1440)), synAck(S2, linux(MSS6)), ruleClamp+" (IPv6 VIP)")
	odd := func(v uint16) []layers.TCPOption { return []layers.TCPOption{nop, mss(v), nop, nop, nop} }
	tap("kernel-syn-ack-mss-odd-offset", synAck(k3, odd(1460)), synAck(k3, odd(MSS4)), ruleClamp+" (MSS at an odd offset)")
	tap("kernel-syn-ack-mss-small", synAck(k3, linux(1200)), synAck(k3, linux(1200)), ruleKeep+" (MSS below the clamp)")
	tap("kernel-syn-ack-mss-equal", synAck(k3, linux(MSS4)), synAck(k3, linux(MSS4)), ruleKeep+" (MSS at the clamp)")
	notVIP := key(session.TCP, client4, 40001, self().Addr, 22)
	tap("kernel-syn-ack-not-vip", synAck(notVIP, linux(1460)), synAck(notVIP, linux(1460)), ruleKeep+" (from the host address)")
	ack := seg{k: S3, reply: true, flags: fACK, seq: 7001, ack: 3001, payload: fill(1460, 0x20)}.frame()
	tap("kernel-full-size-reply", ack, ack, ruleKeep+" (not a SYN-ACK)")
	bad := synAck(k3, []layers.TCPOption{nop, mss(1460), nop, nop, nop})
	bad[offIP+20+20+2] = 9 // the MSS option claims 9 bytes: beyond the header
	tap("kernel-syn-ack-bad-option-length", bad, bad, ruleKeep+" (option length beyond the header)")
	return cs
}

// synAck is a SYN-ACK of session k from the VIP (the kernel's reply) with options opts.
func synAck(k session.Key, opts []layers.TCPOption) []byte {
	ip, _, et := seg{k: k, reply: true}.layers()
	t := &layers.TCP{SrcPort: layers.TCPPort(k.DstPort), DstPort: layers.TCPPort(k.SrcPort), Seq: 7000, Ack: 3001,
		SYN: true, ACK: true, Window: 65160, Options: opts}
	must(t.SetNetworkLayerForChecksum(ip.(gopacket.NetworkLayer)))
	return serialize(ethLayer(RouterMAC, self().MAC, et), ip, t)
}

// wantFragments: frame's IPv4 packet (without DF) cut into fragments that fit the tunnel,
// each encapsulated to owner.
func wantFragments(frame []byte, k session.Key, owner uint16) Want {
	h, _ := hostByID(owner)
	pkt := ipPacket(frame)
	hdr, payload := pkt[:20], pkt[20:]
	fp := (MTU - Overhead - 20) / 8 * 8
	var outs [][]byte
	for off := 0; off < len(payload); off += fp {
		n := min(fp, len(payload)-off)
		f := append(clone(hdr), payload[off:off+n]...)
		binary.BigEndian.PutUint16(f[2:], uint16(20+n))
		fo := uint16(off / 8)
		if off+n < len(payload) {
			fo |= 0x2000 // MF
		}
		binary.BigEndian.PutUint16(f[6:], fo)
		fixIPv4Checksum(f, 0)
		outs = append(outs, encapFrame(h, f))
	}
	return Want{Kind: Encap, Owner: owner, Session: k, Inner: clone(pkt), Frame: outs[0], More: outs[1:]}
}

// wantReply is the ICMP error the scenario sends back for frame, too big for its tunnel.
func wantReply(frame []byte) Want {
	pkt := ipPacket(frame)
	dst, src := net.HardwareAddr(frame[6:12]), net.HardwareAddr(frame[0:6])
	if pkt[0]>>4 == 4 {
		quote := pkt[:min(len(pkt), 576-28)]
		client, vip := netip.AddrFrom4([4]byte(pkt[12:16])), netip.AddrFrom4([4]byte(pkt[16:20]))
		ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolICMPv4,
			SrcIP: vip.AsSlice(), DstIP: client.AsSlice()}
		icmp := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeDestinationUnreachable,
			layers.ICMPv4CodeFragmentationNeeded), Seq: MTU - Overhead}
		return Want{Kind: Reply, Frame: serialize(ethLayer(dst, src, layers.EthernetTypeIPv4), ip, icmp, gopacket.Payload(quote))}
	}
	quote := pkt[:min(len(pkt), 1280-48)]
	client, vip := netip.AddrFrom16([16]byte(pkt[8:24])), netip.AddrFrom16([16]byte(pkt[24:40]))
	ip := &layers.IPv6{Version: 6, NextHeader: layers.IPProtocolICMPv6, HopLimit: 64, SrcIP: vip.AsSlice(), DstIP: client.AsSlice()}
	icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypePacketTooBig, 0)}
	must(icmp.SetNetworkLayerForChecksum(ip))
	body := binary.BigEndian.AppendUint32(nil, MTU-Overhead)
	return Want{Kind: Reply, Frame: serialize(ethLayer(dst, src, layers.EthernetTypeIPv6), ip, icmp, gopacket.Payload(append(body, quote...)))}
}

// CheckOne compares what the pipeline made of case c's frame (nic and kernel: its outputs
// on each port) with c.Want, byte for byte (Encap: but the UDP source port, which must
// be in SrcPortMin..SrcPortMax).
func CheckOne(c Case, nic, kernel [][]byte) error {
	var want, got [][]byte
	switch c.Want.Out() {
	case PortNIC:
		want, got = [][]byte{c.Want.Frame}, nic
		if len(kernel) != 0 {
			return fmt.Errorf("%s: %d frames to the kernel, want none", c.Name, len(kernel))
		}
	default:
		want, got = [][]byte{c.Want.Frame}, kernel
		if len(nic) != 0 {
			return fmt.Errorf("%s: %d frames to the NIC, want none", c.Name, len(nic))
		}
	}
	want = append(want, c.Want.More...)
	if c.Want.Kind == Drop {
		want = nil
	}
	if len(got) != len(want) {
		return fmt.Errorf("%s (%s): %d frames out, want %d", c.Name, c.Want.Kind, len(got), len(want))
	}
	var sport []byte
	for i := range want {
		g, w := clone(got[i]), want[i]
		if c.Want.Kind == Encap && len(g) >= offUDPSport+2 {
			sp := g[offUDPSport : offUDPSport+2]
			if binary.BigEndian.Uint16(sp) < SrcPortMin {
				return fmt.Errorf("%s: UDP source port %d below %d", c.Name, binary.BigEndian.Uint16(sp), SrcPortMin)
			}
			if sport != nil && !bytes.Equal(sp, sport) {
				return fmt.Errorf("%s: frame %d has UDP source port %x, frame 0 %x: one flow, one port", c.Name, i, sp, sport)
			}
			sport = clone(sp)
			g[offUDPSport], g[offUDPSport+1] = w[offUDPSport], w[offUDPSport+1]
		}
		if !bytes.Equal(g, w) {
			first := layers.LayerTypeEthernet
			var b bytes.Buffer
			for _, p := range diffProblems(c.Name, c.Want.Out(), i, "", w, g, first) {
				fmt.Fprintln(&b, p.String())
			}
			return fmt.Errorf("%s (%s, %s): output %d differs (%d bytes, want %d):\n%s", c.Name, c.Want.Kind, c.Why, i, len(g), len(w), b.String())
		}
	}
	return nil
}
