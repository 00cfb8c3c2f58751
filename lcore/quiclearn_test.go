//go:build harness

package lcore_test

import (
	"bytes"
	"encoding/binary"
	"slices"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"testing"

	"github.com/homing-dev/homing/internal/golden"
	"github.com/homing-dev/homing/lcore"
	"github.com/homing-dev/homing/session"
)

// quicPort is the golden QUIC port whose servers' 4-byte CIDs are learnt (CIDLen).
const quicPort = 4434

// quicServerLong is a server's long-header packet: first byte, version, the client's
// DCID (8 bytes), an SCID length byte and scid (cut to fit), then filler up to n bytes.
func quicServerLong(first byte, ver uint32, scil byte, scid []byte, n int) []byte {
	p := make([]byte, max(n, 7+8+len(scid)))
	p[0] = first
	binary.BigEndian.PutUint32(p[1:], ver)
	p[5] = 8
	copy(p[6:], "clientid")
	p[14] = scil
	copy(p[15:], scid)
	return p[:n]
}

func cidKey(t testing.TB, cid []byte, port uint16) session.Key {
	t.Helper()
	k, ok := session.CIDKey(cid, port)
	if !ok {
		t.Fatalf("CIDKey(%x)", cid)
	}
	return k
}

// TestQUICLearnSCID: on a port with a CID length, the kernel's long-header Initial and
// Handshake packets (v1, v2) report the SCID of that length right after their flow;
// other lengths, Retry, Version Negotiation, 0-RTT, short headers, cut packets and a
// port without a CID length report the flow only. Frames leave unchanged.
func TestQUICLearnSCID(t *testing.T) {
	e := setup(t)
	f := e.dp.NewFrames(e.pool)
	defer f.Close()
	if err := f.SetLearn(64); err != nil {
		t.Fatal(err)
	}
	scid := []byte{0xc1, 0xd2, 0xe3, 0xf4}
	scid2 := []byte{0x00, 0x00, 0x00, 0x01}
	long8 := []byte{1, 2, 3, 4, 5, 6, 7, 8}
	type tc struct {
		name string
		k    session.Key
		p    []byte
		cid  []byte // learnt, or nil
	}
	fl := func(port uint16, dport uint16) session.Key { return learnKey(lClient4, port, lVIP4, dport) }
	cases := []tc{
		{"v1 initial", fl(50100, quicPort), quicServerLong(0xc0, 1, 4, scid, 1200), scid},
		{"v1 handshake, same CID, same tick", fl(50100, quicPort), quicServerLong(0xe0, 1, 4, scid, 60), nil},
		{"v2 handshake", fl(50101, quicPort), quicServerLong(0xf0, 0x6b3343cf, 4, scid2, 60), scid2},
		{"v2 initial", fl(50102, quicPort), quicServerLong(0xd0, 0x6b3343cf, 4, []byte{9, 9, 9, 9}, 60), []byte{9, 9, 9, 9}},
		{"SCID exactly at the end", fl(50103, quicPort), quicServerLong(0xe0, 1, 4, []byte{8, 8, 8, 8}, 19), []byte{8, 8, 8, 8}},
		{"SCID cut", fl(50104, quicPort), quicServerLong(0xe0, 1, 4, []byte{7, 7, 7, 7}, 18), nil},
		{"SCID of 8 bytes", fl(50105, quicPort), quicServerLong(0xe0, 1, 8, long8, 60), nil},
		{"SCID of 3 bytes", fl(50106, quicPort), quicServerLong(0xe0, 1, 3, scid, 60), nil},
		{"v1 retry", fl(50107, quicPort), quicServerLong(0xf0, 1, 4, scid, 60), nil},
		{"v1 0-RTT", fl(50108, quicPort), quicServerLong(0xd0, 1, 4, scid, 60), nil},
		{"version negotiation", fl(50109, quicPort), quicServerLong(0xc0, 0, 4, scid, 60), nil},
		{"short header", fl(50110, quicPort), quicShortCID(scid, 60), nil},
		{"DCID longer than 20", fl(50111, quicPort), func() []byte { p := quicServerLong(0xe0, 1, 4, scid, 60); p[5] = 21; return p }(), nil},
		{"port without a CID length", fl(50112, 443), quicServerLong(0xc0, 1, 4, scid, 60), nil},
		{"IPv6 initial", learnKey(lClient6, 50113, lVIP6, quicPort), quicServerLong(0xc0, 1, 4, []byte{6, 6, 6, 6}, 80), []byte{6, 6, 6, 6}},
	}
	var in [][]byte
	var want []session.Key
	for i, c := range cases {
		in = append(in, kernelUDP(c.k, c.p))
		if i == 1 {
			continue // reported with the CID of case 0 in this tick: filtered
		}
		want = append(want, c.k)
		if c.cid != nil {
			want = append(want, cidKey(t, c.cid, c.k.DstPort))
		}
	}
	out, err := f.RunKernel(in)
	if err != nil {
		t.Fatal(err)
	}
	for i := range out {
		if !out[i].ToNIC || !bytes.Equal(out[i].Data, in[i]) {
			t.Fatalf("frame %d changed or not to the NIC", i)
		}
	}
	got := f.Learned()
	if !slices.Equal(got, want) {
		t.Fatalf("learned\n%v\nwant\n%v", got, want)
	}
	if st := f.UDPStats(); st.CIDLearn != 5 || st.Reported != uint64(len(want)-5) {
		t.Fatalf("stats %+v", st)
	}
	// A new tick: the server's next Handshake reports the CID with its flow again.
	f.LearnTick()
	if _, err := f.RunKernel(in[1:2]); err != nil {
		t.Fatal(err)
	}
	if got, want := f.Learned(), []session.Key{fl(50100, quicPort), cidKey(t, scid, quicPort)}; !slices.Equal(got, want) {
		t.Fatalf("after a tick: %v, want %v", got, want)
	}
}

// TestQUICLearntCIDRoute: on a port with a CID length, a packet of an unknown flow whose
// DCID is a learnt CID (a key in the table) goes to that key's owner as a table hit
// would: a live peer (encapsulated, inner packet unchanged), this host (its kernel), a
// dead owner (the kernel, class dead_owner). An unknown CID, a packet too short for the
// CID length, a Handshake with another DCID length, an Initial, a port without a CID
// length and a known flow (the table wins) are not routed by it. IPv6 flows use the same
// keys.
func TestQUICLearntCIDRoute(t *testing.T) {
	e := setup(t)
	peerCID, selfCID, deadCID, unknown := []byte{0xc1, 0xd2, 0xe3, 0xf4}, []byte{0, 0, 0, 1}, []byte{0xde, 0xad, 0, 0}, []byte{9, 9, 9, 9}
	var ups []session.Update
	for _, o := range []struct {
		cid  []byte
		host uint16
	}{{peerCID, 2}, {selfCID, golden.Self.ID}, {deadCID, golden.DeadPeer}} {
		ups = append(ups, session.Update{Key: cidKey(t, o.cid, quicPort), Owner: session.Owner{Host: o.host, Epoch: 1}})
	}
	known := udpKey(46100, quicPort)
	ups = append(ups, session.Update{Key: known, Owner: session.Owner{Host: golden.Self.ID, Epoch: 1}})
	if _, err := e.tbl.ApplyBatch(ups); err != nil {
		t.Fatal(err)
	}
	defer func() {
		for i := range ups {
			ups[i].Delete = true
		}
		_, _ = e.tbl.ApplyBatch(ups)
	}()
	const (
		redirect = iota
		local
		dead
		miss
		initial
	)
	hs := func(dcil int, cid []byte, n int) []byte { return quicLong(0xe0, 1, dcil, cid, n) }
	cases := []struct {
		name  string
		frame []byte
		want  int
	}{
		{"short, peer's CID", udpFrame(udpKey(46000, quicPort), quicShortCID(peerCID, 60)), redirect},
		{"short, smallest", udpFrame(udpKey(46001, quicPort), quicShortCID(peerCID, 1+4+20)), redirect},
		{"short, one byte short", udpFrame(udpKey(46002, quicPort), quicShortCID(peerCID, 1+4+20-1)), miss},
		{"short, no fixed bit", udpFrame(udpKey(46003, quicPort), append([]byte{0x01}, quicShortCID(peerCID, 60)[1:]...)), miss},
		{"short, own CID", udpFrame(udpKey(46004, quicPort), quicShortCID(selfCID, 60)), local},
		{"short, dead owner's CID", udpFrame(udpKey(46005, quicPort), quicShortCID(deadCID, 60)), dead},
		{"short, unknown CID", udpFrame(udpKey(46006, quicPort), quicShortCID(unknown, 60)), miss},
		{"handshake, 4-byte DCID", udpFrame(udpKey(46007, quicPort), hs(4, peerCID, 60)), redirect},
		{"v2 handshake", udpFrame(udpKey(46008, quicPort), quicLong(0xf0, 0x6b3343cf, 4, peerCID, 60)), redirect},
		{"handshake, DCID cut", udpFrame(udpKey(46009, quicPort), hs(4, peerCID, 9)), miss},
		{"handshake, 8-byte DCID", udpFrame(udpKey(46010, quicPort), hs(8, append(bytes.Clone(peerCID), 0, 0, 0, 0), 60)), miss},
		{"0-RTT", udpFrame(udpKey(46011, quicPort), quicLong(0xd0, 1, 4, peerCID, 60)), miss},
		{"initial", udpFrame(udpKey(46012, quicPort), quicLong(0xc0, 1, 4, peerCID, 1200)), initial},
		{"port without a CID length", udpFrame(udpKey(46013, 4433), quicShortCID(peerCID, 60)), miss},
		{"known flow, peer's CID", udpFrame(known, quicShortCID(peerCID, 60)), local},
		{"IPv6, peer's CID", udp6Frame(learnKey(lClient6, 46014, lVIP6, quicPort), quicShortCID(peerCID, 60)), redirect},
		{"IPv6, own CID", udp6Frame(learnKey(lClient6, 46015, lVIP6, quicPort), quicShortCID(selfCID, 60)), local},
	}
	for _, c := range cases {
		nic, kernel, st := run(t, e, [][]byte{c.frame})
		switch c.want {
		case redirect:
			if len(nic) != 1 || st.Redirect != 1 {
				t.Errorf("%s: not redirected: %+v", c.name, st)
				continue
			}
			if c.frame[12] == 0x86 { // IPv6 inner, IPv4 tunnel
				if !bytes.Equal(nic[0][46:], c.frame[14:]) {
					t.Errorf("%s: inner packet changed", c.name)
				}
				continue
			}
			checkEncap(t, c.name, nic[0], c.frame, golden.Peers[0])
		case local:
			if len(kernel) != 1 || !bytes.Equal(kernel[0], c.frame) || st.Local != 1 {
				t.Errorf("%s: not local: %+v", c.name, st)
			}
		case dead:
			if len(kernel) != 1 || !bytes.Equal(kernel[0], c.frame) || st.DeadOwner != 1 {
				t.Errorf("%s: not dead owner: %+v", c.name, st)
			}
		case miss:
			if len(kernel) != 1 || !bytes.Equal(kernel[0], c.frame) || st.Miss != 1 {
				t.Errorf("%s: not a miss: %+v", c.name, st)
			}
		case initial:
			if len(kernel) != 1 || st.QUICInitial != 1 {
				t.Errorf("%s: not an initial: %+v", c.name, st)
			}
		}
	}
	// The counters over one burst: 2 redirects, 1 local, 1 dead owner (a hit the table
	// would also send to the kernel: counted as redirect/local neither), 1 miss; packets
	// not parsed as a CID of the length are not counted.
	f := e.dp.NewFrames(e.pool)
	defer f.Close()
	if _, err := f.Run([][]byte{cases[0].frame, cases[7].frame, cases[4].frame, cases[5].frame, cases[6].frame, cases[2].frame}); err != nil {
		t.Fatal(err)
	}
	if got, want := f.UDPStats(), (lcore.UDPStats{CIDHitRedir: 2, CIDHitLocal: 1, CIDMiss: 1}); got != want {
		t.Errorf("counters %+v, want %+v", got, want)
	}
}

// refQUICCID is docs/PROTOCOL.md's reading of a QUIC packet on a port with CIDs of want
// bytes, in Go: a server's SCID (server) or a client's DCID to look up. The reference
// FuzzQUICLearntCID holds the C parsers to.
func refQUICCID(p []byte, want int, server bool) []byte {
	if len(p) == 0 || want == 0 {
		return nil
	}
	if p[0]&0x80 == 0 {
		if server || p[0]&0x40 == 0 || len(p) < 1+want+4+16 {
			return nil
		}
		return p[1 : 1+want]
	}
	if len(p) < 6 {
		return nil
	}
	ver := binary.BigEndian.Uint32(p[1:])
	typ := p[0] >> 4 & 3
	ini, hs := byte(0), byte(2)
	if ver == 0x6b3343cf {
		ini, hs = 1, 3
	}
	if ver == 0 {
		return nil
	}
	dcil := int(p[5])
	if !server {
		if typ != hs || dcil != want || 6+want > len(p) {
			return nil
		}
		return p[6 : 6+want]
	}
	if (typ != ini && typ != hs) || dcil > 20 || 7+dcil+want > len(p) || int(p[6+dcil]) != want {
		return nil
	}
	return p[7+dcil : 7+dcil+want]
}

// FuzzQUICLearntCID: the C readings of a server's SCID and a client's DCID (for a CID
// length of 1..20) never read past the packet and agree with the Go reference.
func FuzzQUICLearntCID(f *testing.F) {
	scid := []byte{0xc1, 0xd2, 0xe3, 0xf4}
	for _, p := range [][]byte{
		quicServerLong(0xc0, 1, 4, scid, 60), quicServerLong(0xe0, 1, 4, scid, 19), quicServerLong(0xf0, 0x6b3343cf, 4, scid, 40),
		quicServerLong(0xf0, 1, 4, scid, 60), quicServerLong(0xe0, 1, 8, scid, 60), quicShortCID(scid, 25), quicShortCID(scid, 24),
		quicLong(0xe0, 1, 4, scid, 10), quicLong(0xd0, 1, 4, scid, 60), quicLong(0xe0, 0, 4, scid, 60),
	} {
		f.Add(p, uint8(4))
	}
	f.Add(quicServerLong(0xc0, 1, 20, bytes.Repeat([]byte{7}, 20), 60), uint8(20))
	f.Fuzz(func(t *testing.T, p []byte, want uint8) {
		w := int(want%20) + 1
		if got, ref := lcore.QUICSCID(p, w), refQUICCID(p, w, true); !bytes.Equal(got, ref) {
			t.Fatalf("%x, SCID of %d: %x, want %x", p, w, got, ref)
		}
		if got, ref := lcore.QUICDCID(p, w), refQUICCID(p, w, false); !bytes.Equal(got, ref) {
			t.Fatalf("%x, DCID of %d: %x, want %x", p, w, got, ref)
		}
	})
}

// gueFrom is frame's IP packet tunnelled to this host by peer 2 (GUE, IPv4 outer,
// inner IPv4).
func gueFrom(t *testing.T, frame []byte) []byte {
	t.Helper()
	p := golden.Peers[0]
	eth := &layers.Ethernet{SrcMAC: p.MAC, DstMAC: golden.Self.MAC, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: p.Addr.AsSlice(), DstIP: golden.Self.Addr.AsSlice()}
	udp := &layers.UDP{SrcPort: 51000, DstPort: layers.UDPPort(golden.Self.Port)}
	_ = udp.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		eth, ip, udp, gopacket.Payload(append([]byte{0, 4, 0, 0}, frame[14:]...))); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	b[14+20+6], b[14+20+7] = 0, 0 // no UDP checksum, as homing sends
	return b
}

// TestQUICLearnClientDCID: on a port with a CID length, the DCID of a client's packet
// that this host's kernel gets as its own (a table hit owned here, a GUE packet from a
// peer, a packet routed here by a learnt CID) is reported with its flow: the CIDs a
// server issues after its handshake are learnt when clients use them. Packets of
// unknown flows, of flows owned elsewhere, of another port, or without a DCID of the
// length report nothing.
func TestQUICLearnClientDCID(t *testing.T) {
	e := setup(t)
	own, peer := udpKey(46200, quicPort), udpKey(46201, quicPort)
	ownOther := udpKey(46202, 4433)
	selfCID := []byte{0, 0, 0, 1}
	ups := []session.Update{
		{Key: own, Owner: session.Owner{Host: golden.Self.ID, Epoch: 1}},
		{Key: peer, Owner: session.Owner{Host: 2, Epoch: 1}},
		{Key: ownOther, Owner: session.Owner{Host: golden.Self.ID, Epoch: 1}},
		{Key: cidKey(t, selfCID, quicPort), Owner: session.Owner{Host: golden.Self.ID, Epoch: 1}},
	}
	if _, err := e.tbl.ApplyBatch(ups); err != nil {
		t.Fatal(err)
	}
	defer func() {
		for i := range ups {
			ups[i].Delete = true
		}
		_, _ = e.tbl.ApplyBatch(ups)
	}()
	f := e.dp.NewFrames(e.pool)
	defer f.Close()
	if err := f.SetLearn(64); err != nil {
		t.Fatal(err)
	}
	a, b, c, d := []byte{0xa1, 0xa2, 0xa3, 0xa4}, []byte{0xb1, 0xb2, 0xb3, 0xb4}, []byte{0xc1, 0xc2, 0xc3, 0xc4}, []byte{0xd1, 0xd2, 0xd3, 0xd4}
	tunnelled := udpKey(46203, quicPort) // unknown here: its owner's peer sent it
	routed := udpKey(46204, quicPort)    // unknown flow, DCID learnt here
	in := [][]byte{
		udpFrame(own, quicShortCID(a, 60)),                     // reported
		udpFrame(own, quicShortCID(a, 60)),                     // same tick: filtered
		udpFrame(own, quicLong(0xe0, 1, 4, b, 60)),             // Handshake: reported
		udpFrame(own, quicShortCID(c, 24)),                     // one byte short: nothing
		udpFrame(peer, quicShortCID(c, 60)),                    // redirected: nothing
		udpFrame(udpKey(46205, quicPort), quicShortCID(c, 60)), // unknown flow: nothing
		udpFrame(ownOther, quicShortCID(c, 60)),                // port without a length
		gueFrom(t, udpFrame(tunnelled, quicShortCID(d, 60))),   // decapsulated: reported
		udpFrame(routed, quicShortCID(selfCID, 60)),            // routed here by a CID: reported
		udpFrame(own, quicLong(0xc0, 1, 4, c, 1200)),           // Initial: to the kernel unlooked-up: nothing
	}
	out, err := f.Run(in)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != len(in) {
		t.Fatalf("%d outputs for %d frames", len(out), len(in))
	}
	want := []session.Key{own, cidKey(t, a, quicPort), own, cidKey(t, b, quicPort), tunnelled, cidKey(t, d, quicPort),
		routed, cidKey(t, selfCID, quicPort)}
	if got := f.Learned(); !slices.Equal(got, want) {
		t.Fatalf("learned\n%v\nwant\n%v", got, want)
	}
	if st := f.UDPStats(); st.CIDClient != 4 || st.CIDHitLocal != 1 {
		t.Fatalf("stats %+v", st)
	}
	if n := e.pool.InUse(); n != 0 {
		t.Fatalf("%d mbufs leaked", n)
	}
}
