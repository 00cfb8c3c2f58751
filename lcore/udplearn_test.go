//go:build harness

package lcore_test

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"slices"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/homing-dev/homing/internal/golden"
	"github.com/homing-dev/homing/lcore"
	"github.com/homing-dev/homing/quiccid"
	"github.com/homing-dev/homing/session"
)

// kernelUDP is the kernel's UDP packet answering flow k (VIP -> client), payload p.
func kernelUDP(k session.Key, p []byte) []byte {
	eth := &layers.Ethernet{SrcMAC: golden.Self.MAC, DstMAC: golden.RouterMAC, EthernetType: layers.EthernetTypeIPv4}
	udp := &layers.UDP{SrcPort: layers.UDPPort(k.DstPort), DstPort: layers.UDPPort(k.SrcPort)}
	var ip gopacket.SerializableLayer
	if k.Is4() {
		ip4 := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocol(k.Proto), SrcIP: k.Dst.AsSlice(), DstIP: k.Src.AsSlice()}
		_ = udp.SetNetworkLayerForChecksum(ip4)
		ip = ip4
	} else {
		eth.EthernetType = layers.EthernetTypeIPv6
		ip6 := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocol(k.Proto), SrcIP: k.Dst.AsSlice(), DstIP: k.Src.AsSlice()}
		_ = udp.SetNetworkLayerForChecksum(ip6)
		ip = ip6
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		eth, ip, udp, gopacket.Payload(p)); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

func learnKey(src netip.Addr, sport uint16, dst netip.Addr, dport uint16) session.Key {
	return session.Key{Src: src, Dst: dst, SrcPort: sport, DstPort: dport, Proto: session.UDP}
}

var (
	lClient4 = netip.MustParseAddr("198.18.100.2")
	lClient6 = netip.MustParseAddr("2001:2:100::2")
	lVIP4    = golden.VIPs[0]
	lVIP6    = golden.VIPs[1]
)

// TestUDPLearn: the kernel's UDP packets from a VIP session port report their flow
// (client -> VIP) once per refresh tick; everything else (other ports, TCP, other
// sources, later fragments, truncated headers) reports nothing; every packet leaves
// unchanged; a full ring counts its losses and reports them with the next packet.
func TestUDPLearn(t *testing.T) {
	e := setup(t)
	f := e.dp.NewFrames(e.pool)
	defer f.Close()
	if err := f.SetLearn(3); err == nil {
		t.Fatal("a ring of 3 records was accepted")
	}
	if err := f.SetLearn(4); err != nil {
		t.Fatal(err)
	}
	a := learnKey(lClient4, 50000, lVIP4, 4433)
	b := learnKey(lClient6, 50001, lVIP6, 443)
	frag := kernelUDP(learnKey(lClient4, 50002, lVIP4, 4433), []byte("later fragment"))
	frag[14+6] = 0x00
	frag[14+7] = 0x10 // fragment offset 16 (x8 bytes)
	tcp := kernelUDP(learnKey(lClient4, 50003, lVIP4, 4433), []byte("tcp"))
	tcp[14+9] = 6
	notVIP := kernelUDP(learnKey(lClient4, 50004, netip.MustParseAddr("198.18.0.11"), 4433), []byte("host"))
	in := [][]byte{
		kernelUDP(a, []byte("answer 1")),
		kernelUDP(a, []byte("answer 2")), // same tick: filtered
		kernelUDP(b, []byte("answer v6")),
		kernelUDP(learnKey(lClient4, 50005, lVIP4, 53), []byte("plain port")),
		frag, tcp, notVIP,
		kernelUDP(a, nil)[:14+20+4], // truncated UDP header
	}
	out, err := f.RunKernel(in)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != len(in) {
		t.Fatalf("%d outputs for %d frames", len(out), len(in))
	}
	for i := range out {
		if !out[i].ToNIC || !bytes.Equal(out[i].Data, in[i]) {
			t.Fatalf("frame %d changed or not to the NIC", i)
		}
	}
	if got, want := f.Learned(), []session.Key{a, b}; !slices.Equal(got, want) {
		t.Fatalf("learned %v, want %v", got, want)
	}
	if st := f.UDPStats(); st.Reported != 2 || st.RingFull != 0 {
		t.Fatalf("stats %+v", st)
	}
	// The same flows in the same tick: nothing; after a tick: reported again, once.
	if _, err := f.RunKernel(in[:3]); err != nil {
		t.Fatal(err)
	}
	if got := f.Learned(); len(got) != 0 {
		t.Fatalf("learned %v again in the same tick", got)
	}
	f.LearnTick()
	if _, err := f.RunKernel(in[:3]); err != nil {
		t.Fatal(err)
	}
	if got, want := f.Learned(), []session.Key{a, b}; !slices.Equal(got, want) {
		t.Fatalf("after a tick: learned %v, want %v", got, want)
	}
	// Six new flows against a ring of 4: four reported, two lost and counted; they are
	// reported by their next packet once the ring is drained.
	in = nil
	var keys []session.Key
	for p := uint16(51000); p < 51006; p++ {
		k := learnKey(lClient4, p, lVIP4, 4433)
		keys = append(keys, k)
		in = append(in, kernelUDP(k, []byte("x")))
	}
	if _, err := f.RunKernel(in); err != nil {
		t.Fatal(err)
	}
	if st := f.UDPStats(); st.Reported != 8 || st.RingFull != 2 {
		t.Fatalf("ring full: stats %+v", st)
	}
	if got := f.Learned(); !slices.Equal(got, keys[:4]) {
		t.Fatalf("learned %v, want %v", got, keys[:4])
	}
	if _, err := f.RunKernel(in); err != nil {
		t.Fatal(err)
	}
	if got := f.Learned(); !slices.Equal(got, keys[4:]) {
		t.Fatalf("after the drain: learned %v, want %v", got, keys[4:])
	}
	if n := e.pool.InUse(); n != 0 {
		t.Fatalf("%d mbufs leaked", n)
	}
}

// quicShortCID is a short-header packet of n bytes whose DCID starts with cid.
func quicShortCID(cid []byte, n int) []byte {
	p := make([]byte, n)
	p[0] = 0x41
	copy(p[1:], cid)
	for i := 1 + len(cid); i < n; i++ {
		p[i] = byte(i)
	}
	return p
}

// quicLong is a long-header packet: first byte, version, DCID (of length dcil, of
// which cid's bytes fit), SCID, then filler up to n bytes.
func quicLong(first byte, ver uint32, dcil int, cid []byte, n int) []byte {
	p := make([]byte, max(n, 6))
	p[0] = first
	binary.BigEndian.PutUint32(p[1:], ver)
	p[5] = byte(dcil)
	copy(p[6:], cid)
	return p[:n]
}

func cidFor(host uint16) []byte {
	c, err := quiccid.New(host, 8, bytes.NewReader(bytes.Repeat([]byte{0xa7}, 8)))
	if err != nil {
		panic(err)
	}
	return c
}

// quicCIDCases are the QUIC CID routing vectors: a UDP payload and the host the data
// plane reads in it (0: not routable by CID).
func quicCIDCases() []struct {
	name string
	p    []byte
	host uint16
} {
	peer, self, dead := cidFor(2), cidFor(golden.Self.ID), cidFor(golden.DeadPeer)
	v0 := bytes.Clone(peer)
	v0[0] &= 0x3f // layout version 0
	v2 := bytes.Clone(peer)
	v2[0] = v2[0]&0x3f | 0x80 // layout version 2
	return []struct {
		name string
		p    []byte
		host uint16
	}{
		{"short, peer", quicShortCID(peer, 40), 2},
		{"short, smallest", quicShortCID(peer, lcore.QUICShortMin), 2},
		{"short, one byte short", quicShortCID(peer, lcore.QUICShortMin-1), 0},
		{"short, own host", quicShortCID(self, 40), golden.Self.ID},
		{"short, dead host", quicShortCID(dead, 40), golden.DeadPeer},
		{"short, no fixed bit", append([]byte{0x01}, quicShortCID(peer, 40)[1:]...), 0},
		{"short, layout 0", quicShortCID(v0, 40), 0},
		{"short, layout 2", quicShortCID(v2, 40), 0},
		{"v1 handshake", quicLong(0xe0, 1, 8, peer, 60), 2},
		{"v1 handshake, 20-byte DCID", quicLong(0xe0, 1, 20, peer, 60), 2},
		{"v2 handshake", quicLong(0xf0, 0x6b3343cf, 8, peer, 60), 2},
		{"draft-29 handshake", quicLong(0xe0, 0xff00001d, 8, peer, 60), 2},
		{"v1 initial", quicLong(0xc0, 1, 8, peer, 60), 0},
		{"v1 0-RTT", quicLong(0xd0, 1, 8, peer, 60), 0},
		{"v1 retry", quicLong(0xf0, 1, 8, peer, 60), 0},
		{"v2 initial", quicLong(0xd0, 0x6b3343cf, 8, peer, 60), 0},
		{"v2 handshake type of v1", quicLong(0xe0, 0x6b3343cf, 8, peer, 60), 0},
		{"version negotiation", quicLong(0xe0, 0, 8, peer, 60), 0},
		{"handshake, DCID 7 bytes", quicLong(0xe0, 1, 7, peer, 60), 0},
		{"handshake, DCID 21 bytes", quicLong(0xe0, 1, 21, peer, 60), 0},
		{"handshake, DCID cut", quicLong(0xe0, 1, 8, peer, 13), 0},
		{"handshake, DCID exactly", quicLong(0xe0, 1, 8, peer, 14), 2},
		{"long, 5 bytes", quicLong(0xe0, 1, 8, peer, 5), 0},
		{"empty", nil, 0},
	}
}

// TestQUICDCIDHost: the C reading of the CID vectors; each routable one agrees with
// quiccid.Host.
func TestQUICDCIDHost(t *testing.T) {
	for _, c := range quicCIDCases() {
		if got := lcore.QUICDCIDHost(c.p); got != c.host {
			t.Errorf("%s: host %d, want %d", c.name, got, c.host)
		}
	}
}

// TestQUICCIDRoute: on a QUIC port with host-id CIDs, a packet of an unknown flow goes
// where its DCID says: a live peer (encapsulated to it), this host (its kernel), and
// otherwise (a dead host, no host id, a packet not routable by its DCID) it is an
// unknown flow as before (to the kernel here: the runner has no park). A known flow
// follows the table, whatever its DCID; another session port ignores DCIDs.
func TestQUICCIDRoute(t *testing.T) {
	e := setup(t)
	for i, c := range quicCIDCases() {
		k := udpKey(45000+uint16(i), 443)
		frame := udpFrame(k, c.p)
		nic, kernel, st := run(t, e, [][]byte{frame})
		want := c.host
		if want == golden.DeadPeer {
			want = 0
		}
		switch want {
		case 2:
			if len(nic) != 1 || st.Redirect != 1 {
				t.Errorf("%s: not redirected: %+v", c.name, st)
				continue
			}
			checkEncap(t, c.name, nic[0], frame, golden.Peers[0])
		case golden.Self.ID:
			if len(kernel) != 1 || !bytes.Equal(kernel[0], frame) || st.Local != 1 {
				t.Errorf("%s: not to the kernel as local: %+v", c.name, st)
			}
		default:
			// Initials are new connections (class quic_initial), the rest unknown flows.
			if len(kernel) != 1 || !bytes.Equal(kernel[0], frame) || st.Miss+st.QUICInitial != 1 {
				t.Errorf("%s: not a miss: %+v", c.name, st)
			}
		}
		if st.Redirect+st.ToKernel() != st.RxNIC {
			t.Errorf("%s: classes do not add up: %+v", c.name, st)
		}
	}
	// IPv6: the same reading after a 40-byte header.
	for _, c := range []struct {
		p    []byte
		want uint16
	}{{quicShortCID(cidFor(2), 40), 2}, {quicShortCID(cidFor(1), 40), 1}, {quicLong(0xe0, 1, 8, cidFor(2), 60), 2},
		{quicShortCID(cidFor(2), lcore.QUICShortMin-1), 0}} {
		frame := udp6Frame(learnKey(lClient6, 47000, lVIP6, 443), c.p)
		nic, kernel, st := run(t, e, [][]byte{frame})
		switch c.want {
		case 2:
			if len(nic) != 1 || st.Redirect != 1 || !bytes.Equal(nic[0][46:], frame[14:]) {
				t.Errorf("IPv6 %x: not redirected: %+v", c.p[:3], st)
			}
		case 1:
			if len(kernel) != 1 || st.Local != 1 || !bytes.Equal(kernel[0], frame) {
				t.Errorf("IPv6 %x: not local: %+v", c.p[:3], st)
			}
		default:
			if len(kernel) != 1 || st.Miss != 1 {
				t.Errorf("IPv6 %x: not a miss: %+v", c.p[:3], st)
			}
		}
	}
	// An ICMP error about an unknown QUIC flow whose quote reads like a CID of a peer: its
	// key is the quoted flow's, but it is no QUIC packet: a miss, not routed.
	quoted := kernelUDP(udpKey(47100, 443), quicShortCID(cidFor(2), 40))[14:]
	icmp := append([]byte{3, 4, 0, 0, 0, 0, 0x05, 0xa0}, quoted...)
	icmpFrame := func() []byte {
		eth := &layers.Ethernet{SrcMAC: golden.RouterMAC, DstMAC: golden.Self.MAC, EthernetType: layers.EthernetTypeIPv4}
		ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 63, Protocol: layers.IPProtocolICMPv4,
			SrcIP: netip.MustParseAddr("198.18.50.1").AsSlice(), DstIP: lVIP4.AsSlice()}
		buf := gopacket.NewSerializeBuffer()
		if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
			eth, ip, gopacket.Payload(icmp)); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}()
	if _, kernel, st := run(t, e, [][]byte{icmpFrame}); len(kernel) != 1 || st.Miss != 1 || !bytes.Equal(kernel[0], icmpFrame) {
		t.Errorf("ICMP about a QUIC flow: %+v", st)
	}
	// A known flow owned here with a peer's DCID: the table wins.
	peer := quicShortCID(cidFor(2), 40)
	k := udpKey(46000, 443)
	if _, err := e.tbl.ApplyBatch([]session.Update{{Key: k, Owner: session.Owner{Host: golden.Self.ID, Epoch: 1}}}); err != nil {
		t.Fatal(err)
	}
	defer func() { _, _ = e.tbl.ApplyBatch([]session.Update{{Key: k, Delete: true}}) }()
	if _, kernel, st := run(t, e, [][]byte{udpFrame(k, peer)}); len(kernel) != 1 || st.Local != 1 {
		t.Errorf("known flow: %+v", st)
	}
	// Port 4433 is a session port without CIDs: a miss.
	if _, kernel, st := run(t, e, [][]byte{udpFrame(udpKey(46001, 4433), peer)}); len(kernel) != 1 || st.Miss != 1 {
		t.Errorf("port without CIDs: %+v", st)
	}
	// The counters, over a burst of one of each kind.
	f := e.dp.NewFrames(e.pool)
	defer f.Close()
	if _, err := f.Run([][]byte{udpFrame(udpKey(46002, 443), peer), udpFrame(udpKey(46003, 443), quicShortCID(cidFor(1), 40)),
		udpFrame(udpKey(46004, 443), quicShortCID(cidFor(golden.DeadPeer), 40))}); err != nil {
		t.Fatal(err)
	}
	if got, want := f.UDPStats(), (lcore.UDPStats{CIDRedirect: 1, CIDLocal: 1, CIDNotLive: 1}); got != want {
		t.Errorf("counters %+v, want %+v", got, want)
	}
}

// checkEncap checks an encapsulated frame: the template's outer headers to peer p and
// the input's IP packet, unchanged, after them.
func checkEncap(t *testing.T, name string, out, in []byte, p golden.Host) {
	t.Helper()
	pkt := gopacket.NewPacket(out, layers.LayerTypeEthernet, gopacket.Default)
	eth, _ := pkt.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	ip, _ := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	udp, _ := pkt.Layer(layers.LayerTypeUDP).(*layers.UDP)
	if eth == nil || ip == nil || udp == nil || !bytes.Equal(eth.DstMAC, p.MAC) || !ip.DstIP.Equal(p.Addr.AsSlice()) ||
		!ip.SrcIP.Equal(golden.Self.Addr.AsSlice()) || uint16(udp.DstPort) != p.Port || uint16(udp.SrcPort) < golden.SrcPortMin {
		t.Errorf("%s: outer headers wrong: %x", name, out[:46])
		return
	}
	ipLen := int(binary.BigEndian.Uint16(in[16:]))
	if !bytes.Equal(out[42:46], []byte{0, 4, 0, 0}) || len(out) != 46+ipLen || !bytes.Equal(out[46:], in[14:14+ipLen]) {
		t.Errorf("%s: GUE header or inner packet wrong", name)
	}
}

// refDCIDHost is the layout of docs/PROTOCOL.md read in Go: the reference FuzzQUICDCID
// holds the C parser to.
func refDCIDHost(p []byte) uint16 {
	if len(p) == 0 {
		return 0
	}
	var cid []byte
	if p[0]&0x80 == 0 {
		if p[0]&0x40 == 0 || len(p) < 1+quiccid.MinLen+20 {
			return 0
		}
		cid = p[1 : 1+quiccid.MinLen]
	} else {
		if len(p) < 6 {
			return 0
		}
		ver := binary.BigEndian.Uint32(p[1:])
		typ := p[0] >> 4 & 3
		hs := byte(2)
		if ver == 0x6b3343cf {
			hs = 3
		}
		dcil := int(p[5])
		if ver == 0 || typ != hs || dcil < quiccid.MinLen || dcil > quiccid.MaxLen || 6+dcil > len(p) {
			return 0
		}
		cid = p[6 : 6+dcil]
	}
	h, _ := quiccid.Host(cid)
	return h
}

// FuzzQUICDCID: the C reading of a QUIC packet's DCID never reads past the packet and
// agrees with the Go reference.
func FuzzQUICDCID(f *testing.F) {
	for _, c := range quicCIDCases() {
		f.Add(c.p)
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		if got, want := lcore.QUICDCIDHost(p), refDCIDHost(p); got != want {
			t.Fatalf("%x: host %d, want %d", p, got, want)
		}
	})
}

// BenchmarkKernelLearn: a burst of 32 kernel frames (UDP answers of 32 flows from a
// session port) through the kernel side, learning off and on (the flows already
// reported in this tick: the steady state of live flows). The difference is the cost of
// learning; both include the runner's copying of the frames into mbufs.
func BenchmarkKernelLearn(b *testing.B) {
	e := setup(b)
	var in [][]byte
	for p := uint16(52000); p < 52032; p++ {
		in = append(in, kernelUDP(learnKey(lClient4, p, lVIP4, 443), make([]byte, 100)))
	}
	for _, on := range []bool{false, true} {
		b.Run(map[bool]string{false: "off", true: "on"}[on], func(b *testing.B) {
			f := e.dp.NewFrames(e.pool)
			defer f.Close()
			if on {
				if err := f.SetLearn(1024); err != nil {
					b.Fatal(err)
				}
			}
			for b.Loop() {
				if _, err := f.RunKernel(in); err != nil {
					b.Fatal(err)
				}
			}
			if on && len(f.Learned()) != len(in) {
				b.Fatal("not learnt once each")
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(in)), "ns/packet")
		})
	}
}

// udp6Frame is an IPv6 UDP packet of flow k with payload p, from the router.
func udp6Frame(k session.Key, p []byte) []byte {
	eth := &layers.Ethernet{SrcMAC: golden.RouterMAC, DstMAC: golden.Self.MAC, EthernetType: layers.EthernetTypeIPv6}
	ip := &layers.IPv6{Version: 6, HopLimit: 63, NextHeader: layers.IPProtocolUDP, SrcIP: k.Src.AsSlice(), DstIP: k.Dst.AsSlice()}
	udp := &layers.UDP{SrcPort: layers.UDPPort(k.SrcPort), DstPort: layers.UDPPort(k.DstPort)}
	_ = udp.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		eth, ip, udp, gopacket.Payload(p)); err != nil {
		panic(err)
	}
	return buf.Bytes()
}
