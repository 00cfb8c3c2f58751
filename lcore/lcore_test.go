//go:build harness

package lcore_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/homing-dev/homing/dpdk"
	"github.com/homing-dev/homing/internal/golden"
	"github.com/homing-dev/homing/internal/testenv"
	"github.com/homing-dev/homing/lcore"
	"github.com/homing-dev/homing/session"
	"github.com/homing-dev/homing/table"
)

// env is the package's one EAL, table and data plane (EAL starts once per process),
// programmed with the golden scenario.
type env struct {
	pool *dpdk.Mempool
	tbl  *table.Table
	dp   *lcore.DataPlane
}

var (
	shared  *env
	initErr error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if shared != nil {
		shared.dp.Close()
		shared.tbl.Close()
		shared.pool.Free()
		_ = dpdk.Cleanup()
	}
	os.Exit(code)
}

func setup(t testing.TB) *env {
	t.Helper()
	testenv.RequireRoot(t)
	if shared != nil || initErr != nil {
		if initErr != nil {
			t.Fatal(initErr)
		}
		return shared
	}
	initErr = func() error {
		if err := dpdk.Init(dpdk.EALConfig{FilePrefix: fmt.Sprintf("hmg-lcore-%d", os.Getpid()),
			MemoryMB: 128, Workers: 1, LogLevel: "error"}); err != nil {
			return err
		}
		e := &env{}
		var err error
		if e.pool, err = dpdk.NewMempool("lcore-test", 4095, 0, 0, -1); err != nil {
			return err
		}
		if e.tbl, err = table.New("lcore-test", 1024, 1024, -1); err != nil {
			return err
		}
		if e.dp, err = newGoldenDP(e.tbl); err != nil {
			return err
		}
		shared = e
		return nil
	}()
	if initErr != nil {
		t.Fatal(initErr)
	}
	return shared
}

// goldenUDPPorts are the golden data plane's UDP session ports (no golden case uses
// them; the fuzzers' seeds do).
var goldenUDPPorts = []lcore.UDPPort{{Port: 4433}, {Port: 443, QUIC: true, CID: true}, {Port: 4434, QUIC: true, CIDLen: 4}}

// udpSeeds are fuzz seeds for the UDP session and QUIC classification.
func udpSeeds() [][]byte {
	return [][]byte{udpFrame(udpKey(41000, 443), quicV1Initial), udpFrame(udpKey(41001, 443), quicV2Initial),
		udpFrame(udpKey(41002, 443), quicShort), udpFrame(udpKey(41003, 4433), []byte("session")),
		udpFrame(udpKey(41004, 53), []byte("plain")), udpFrame(udpKey(41005, 443), quicShortCID(cidFor(2), 40)),
		udpFrame(udpKey(41006, 443), quicShortCID(cidFor(1), 40)), udpFrame(udpKey(41007, 443), quicLong(0xe0, 1, 8, cidFor(2), 60)),
		// learnt CIDs (port 4434, 4 bytes: fuzzCIDs)
		udpFrame(udpKey(41008, 4434), quicShortCID(fuzzCIDs[0], 40)), udpFrame(udpKey(41009, 4434), quicShortCID(fuzzCIDs[1], 25)),
		udpFrame(udpKey(41010, 4434), quicLong(0xe0, 1, 4, fuzzCIDs[0], 30)), udpFrame(udpKey(41011, 4434), quicShortCID([]byte{9, 9, 9, 9}, 40))}
}

// fuzzCIDs are learnt CIDs on port 4434 that FuzzClassifier puts in the table: owned by
// peer 2 and by this host.
var fuzzCIDs = [][]byte{{0xc1, 0xd2, 0xe3, 0xf4}, {0, 0, 0, 1}}

// newGoldenDP builds a data plane for the golden scenario on tbl, with the GUE
// scenario's IPv6 tunnel addresses (golden.Self6; golden.Peer6, peer 2's Alt), which no
// case of the base scenario uses.
func newGoldenDP(tbl *table.Table) (*lcore.DataPlane, error) {
	var vips []netip.Prefix
	for _, v := range golden.VIPs {
		vips = append(vips, netip.PrefixFrom(v, v.BitLen()))
	}
	dp, err := lcore.New(lcore.Config{SelfID: golden.Self.ID, Self4: golden.Self.Addr, Self6: golden.Self6,
		TunnelPort: golden.Self.Port, VIPs: vips, Table: tbl.Ptr(), UDPPorts: goldenUDPPorts})
	if err != nil {
		return nil, err
	}
	for _, p := range golden.Peers {
		if err := dp.SetTemplate(goldenTemplate(p)); err != nil {
			return nil, err
		}
	}
	var ups []session.Update
	for _, s := range golden.Sessions {
		ups = append(ups, session.Update{Key: s.Key, Owner: session.Owner{Host: s.Owner, Epoch: 1}})
	}
	return dp, tbl.Apply(ups)
}

// goldenTemplate is peer p's template in the golden scenario (peer 2 with its IPv6
// address as Alt).
func goldenTemplate(p golden.Host) lcore.Template {
	t := lcore.Template{ID: p.ID, SrcMAC: golden.Self.MAC, DstMAC: p.MAC, Src: golden.Self.Addr, Dst: p.Addr, TunnelPort: p.Port}
	if p.ID == 2 {
		t.Alt = golden.Peer6
	}
	return t
}

// sumGUERefused is the sum of the GUE refusals by reason.
func sumGUERefused(st lcore.Stats) uint64 {
	var n uint64
	for _, v := range st.GUERefused() {
		n += v
	}
	return n
}

// run sends the NIC-side golden frames through the pipeline without ports.
func run(t testing.TB, e *env, frames [][]byte) (nic, kernel [][]byte, st lcore.Stats) {
	t.Helper()
	return runSide(t, e, e.dp, false, frames)
}

// TestGoldenFrames checks every NIC-side golden case through the classifier, lookup and
// encapsulation in one burst-driven call (the port-level run is in daemon's tests).
// Frames are sent one per burst so that the two outputs' relative order is irrelevant.
func TestGoldenFrames(t *testing.T) {
	e := setup(t)
	var in [][]byte
	for _, c := range golden.Cases() {
		if c.In == golden.PortNIC {
			in = append(in, c.Frame)
		}
	}
	nic, kernel, st := run(t, e, in)
	// Kernel-side inputs are forwarded unchanged by the poll loop, not by this entry
	// point: append them as the loop would so that Check sees a complete run.
	for _, c := range golden.Cases() {
		if c.In == golden.PortKernel {
			nic = append(nic, c.Frame)
		}
	}
	if err := golden.Check(nic, kernel); err != nil {
		t.Fatal(err)
	}
	if st.RxNIC != uint64(len(in)) {
		t.Fatalf("rx_nic %d, want %d", st.RxNIC, len(in))
	}
	if sum := st.Redirect + st.ToKernel() + st.GUEBad; sum != st.RxNIC {
		t.Fatalf("classes add up to %d of %d packets: %+v", sum, st.RxNIC, st)
	}
	want := golden.WantCounters(golden.Cases())
	for r, n := range st.GUERefused() {
		if n != want[r] {
			t.Errorf("GUE refused %s: %d, want %d", r, n, want[r])
		}
	}
	if st.Redirect == 0 || st.Decap == 0 || st.SYN == 0 || st.Malformed == 0 || st.Frag == 0 || st.IPOpt == 0 ||
		st.Miss == 0 || st.Local == 0 || st.DeadOwner == 0 || st.GUEBad == 0 || st.Other == 0 {
		t.Fatalf("a class was never hit: %+v", st)
	}
}

// TestTemplateWithdraw: once a peer's template is withdrawn its sessions go to the
// kernel unchanged; republished, they are redirected again.
func TestTemplateWithdraw(t *testing.T) {
	e := setup(t)
	frame := dataFrame(golden.S1, []byte("hello"))
	e.dp.ClearTemplate(2)
	if e.dp.TemplateValid(2) {
		t.Fatal("template 2 still valid after ClearTemplate")
	}
	nic, kernel, st := run(t, e, [][]byte{frame})
	if len(nic) != 0 || len(kernel) != 1 || !bytes.Equal(kernel[0], frame) || st.DeadOwner != 1 {
		t.Fatalf("withdrawn: nic %d kernel %d stats %+v\n in %x\nout %x", len(nic), len(kernel), st, frame, kernel)
	}
	if err := e.dp.SetTemplate(goldenTemplate(golden.Peers[0])); err != nil {
		t.Fatal(err)
	}
	nic, _, st = run(t, e, [][]byte{frame})
	if len(nic) != 1 || st.Redirect != 1 {
		t.Fatalf("republished: nic %d stats %+v", len(nic), st)
	}
}

// TestIPv6Outer: a peer reached over IPv6 gets an IPv6 outer header with a valid UDP
// checksum.
func TestIPv6Outer(t *testing.T) {
	e := setup(t)
	const id = 9
	src, dst := netip.MustParseAddr("2001:2::11"), netip.MustParseAddr("2001:2::19")
	if err := e.dp.SetTemplate(lcore.Template{ID: id, SrcMAC: golden.Self.MAC, DstMAC: golden.RouterMAC,
		Src: src, Dst: dst, TunnelPort: 7000}); err != nil {
		t.Fatal(err)
	}
	k := golden.S4
	k.SrcPort = 41009
	if _, err := e.tbl.ApplyBatch([]session.Update{{Key: k, Owner: session.Owner{Host: id, Epoch: 1}}}); err != nil {
		t.Fatal(err)
	}
	frame := dataFrame(k, []byte("over v6"))
	nic, _, _ := run(t, e, [][]byte{frame})
	if len(nic) != 1 {
		t.Fatalf("%d NIC outputs", len(nic))
	}
	p := gopacket.NewPacket(nic[0], layers.LayerTypeEthernet, gopacket.Default)
	ip6, _ := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
	udp, _ := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
	if ip6 == nil || udp == nil || !bytes.Equal(ip6.SrcIP, src.AsSlice()) || !bytes.Equal(ip6.DstIP, dst.AsSlice()) || udp.DstPort != 7000 {
		t.Fatalf("outer headers: %v", p)
	}
	// Verify the UDP checksum over the pseudo-header.
	l4 := nic[0][14+40:]
	sum := uint32(0)
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(binary.BigEndian.Uint16(b[i:]))
		}
		if len(b)%2 == 1 {
			sum += uint32(b[len(b)-1]) << 8
		}
	}
	add(src.AsSlice())
	add(dst.AsSlice())
	sum += uint32(len(l4)) + 17
	add(l4)
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	if sum != 0xffff {
		t.Fatalf("UDP checksum does not verify (sum %#x)", sum)
	}
	inner := nic[0][14+40+8+4:]
	if !bytes.Equal(inner, frame[14:]) || nic[0][14+40+8+1] != 4 {
		t.Fatal("inner packet or GUE protocol wrong")
	}
	e.dp.ClearTemplate(id)
	if _, err := e.tbl.ApplyBatch([]session.Update{{Key: k, Delete: true}}); err != nil {
		t.Fatal(err)
	}
}

func dataFrame(k session.Key, payload []byte) []byte {
	eth := &layers.Ethernet{SrcMAC: golden.RouterMAC, DstMAC: golden.Self.MAC, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 63, Protocol: layers.IPProtocolTCP, SrcIP: k.Src.AsSlice(), DstIP: k.Dst.AsSlice()}
	tcp := &layers.TCP{SrcPort: layers.TCPPort(k.SrcPort), DstPort: layers.TCPPort(k.DstPort), ACK: true, PSH: true, Seq: 1, Ack: 1, Window: 500}
	_ = tcp.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		eth, ip, tcp, gopacket.Payload(payload)); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

// FuzzClassifier feeds arbitrary frames to the pipeline: it must never crash, every frame
// must come out exactly once (or be counted as dropped), and a frame that is not
// redirected or decapsulated must come out byte for byte.
func FuzzClassifier(f *testing.F) {
	for _, s := range append(golden.FuzzSeeds(), udpSeeds()...) {
		f.Add(s)
	}
	for _, c := range append(golden.ICMPCases(), golden.GUECases()...) {
		f.Add(c.Frame)
	}
	e := setup(f)
	var ups []session.Update
	for i, o := range []uint16{2, golden.Self.ID} {
		k, _ := session.CIDKey(fuzzCIDs[i], 4434)
		ups = append(ups, session.Update{Key: k, Owner: session.Owner{Host: o, Epoch: 1}})
	}
	if _, err := e.tbl.ApplyBatch(ups); err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() {
		for i := range ups {
			ups[i].Delete = true
		}
		_, _ = e.tbl.ApplyBatch(ups)
	})
	f.Fuzz(func(t *testing.T, frame []byte) {
		if len(frame) > 2000 {
			return
		}
		e := setup(t)
		nic, kernel, st := run(t, e, [][]byte{frame})
		if len(nic)+len(kernel)+int(st.DropHeadroom+st.GUEBad) != 1 {
			t.Fatalf("%d outputs for one frame: %+v", len(nic)+len(kernel), st)
		}
		if st.Redirect+st.ToKernel()+st.GUEBad != 1 {
			t.Fatalf("not counted exactly once: %+v", st)
		}
		if st.GUEBad != sumGUERefused(st) {
			t.Fatalf("GUE refused %d, by reason %v", st.GUEBad, st.GUERefused())
		}
		if len(kernel) == 1 && st.Decap == 0 && !bytes.Equal(kernel[0], frame) {
			t.Fatalf("kernel output differs from input:\n in %x\nout %x", frame, kernel[0])
		}
		if len(nic) == 1 {
			// Encapsulated: the inner packet is the input without Ethernet (and padding).
			if len(nic[0]) < 46 || !bytes.HasPrefix(frame[14:], nic[0][46:]) {
				t.Fatalf("encapsulated output does not carry the input")
			}
		}
	})
}

// TestNoRedirect: with redirection off, a peer's session goes to the kernel unchanged and
// is counted; decapsulation still works.
func TestNoRedirect(t *testing.T) {
	e := setup(t)
	tbl, err := table.New("lcore-noredir", 64, 64, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer tbl.Close()
	var vips []netip.Prefix
	for _, v := range golden.VIPs {
		vips = append(vips, netip.PrefixFrom(v, v.BitLen()))
	}
	dp, err := lcore.New(lcore.Config{SelfID: golden.Self.ID, Self4: golden.Self.Addr, TunnelPort: golden.Self.Port,
		VIPs: vips, Table: tbl.Ptr(), NoRedirect: true})
	if err != nil {
		t.Fatal(err)
	}
	defer dp.Close()
	p := golden.Peers[0]
	if err := dp.SetTemplate(lcore.Template{ID: p.ID, SrcMAC: golden.Self.MAC, DstMAC: p.MAC, Src: golden.Self.Addr, Dst: p.Addr, TunnelPort: p.Port}); err != nil {
		t.Fatal(err)
	}
	if _, err := tbl.ApplyBatch([]session.Update{{Key: golden.S1, Owner: session.Owner{Host: 2, Epoch: 1}}}); err != nil {
		t.Fatal(err)
	}
	frame := dataFrame(golden.S1, []byte("plain ecmp"))
	f := dp.NewFrames(e.pool)
	defer f.Close()
	out, err := f.Run([][]byte{frame})
	if err != nil {
		t.Fatal(err)
	}
	if st := f.Stats(); len(out) != 1 || out[0].ToNIC || !bytes.Equal(out[0].Data, frame) || st.NoRedirect != 1 {
		t.Fatalf("outputs %d, stats %+v", len(out), st)
	}
}

// parkFrames is a test runner whose lcore parks up to 4 packets for hold.
func parkFrames(t *testing.T, hold time.Duration) (*env, *lcore.Frames) {
	e := setup(t)
	f := e.dp.NewFrames(e.pool)
	t.Cleanup(f.Close)
	if err := f.SetPark(hold, 4); err != nil {
		t.Fatal(err)
	}
	return e, f
}

// parkKey is golden.S4 from another client port.
func parkKey(port uint16) session.Key {
	k := golden.S4
	k.SrcPort = port
	return k
}

// TestPark: a packet of an unknown VIP session is held; it is released to its owner as
// soon as the session shows up, to the kernel when the hold time is over, and straight
// to the kernel when the park is full.
func TestPark(t *testing.T) {
	const hold = 20 * time.Millisecond
	e, f := parkFrames(t, hold)
	// Six packets of unknown sessions: four are parked, two go to the kernel (park full).
	var in [][]byte
	for p := uint16(42000); p < 42006; p++ {
		in = append(in, dataFrame(parkKey(p), []byte("parked")))
	}
	out, err := f.Run(in)
	if err != nil {
		t.Fatal(err)
	}
	st := f.Stats()
	if len(out) != 2 || f.Parked() != 4 || st.ParkIn != 4 || st.ParkFull != 2 || st.Miss != 2 {
		t.Fatalf("outputs %d parked %d stats %+v", len(out), f.Parked(), st)
	}
	// Nothing changed and nothing expired: nothing released.
	if rel := f.Service(false); len(rel) != 0 {
		t.Fatalf("released %d without a table change", len(rel))
	}
	// Two sessions show up: one owned by the live peer, one owned here.
	if _, err := e.tbl.ApplyBatch([]session.Update{
		{Key: parkKey(42000), Owner: session.Owner{Host: 2, Epoch: 1}},
		{Key: parkKey(42001), Owner: session.Owner{Host: golden.Self.ID, Epoch: 1}},
	}); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_, _ = e.tbl.ApplyBatch([]session.Update{{Key: parkKey(42000), Delete: true}, {Key: parkKey(42001), Delete: true}})
	}()
	rel := f.Service(false)
	if len(rel) != 2 || !rel[0].ToNIC || rel[1].ToNIC || !bytes.Equal(rel[1].Data, in[1]) || !bytes.Equal(rel[0].Data[46:], in[0][14:]) {
		t.Fatalf("after the table change: %d released", len(rel))
	}
	st = f.Stats()
	if st.ParkRedirect != 1 || st.ParkLocal != 1 || st.Redirect != 1 || st.Local != 1 || f.Parked() != 2 {
		t.Fatalf("stats %+v parked %d", st, f.Parked())
	}
	// The other two expire after the hold time, in order, unchanged.
	time.Sleep(hold + 5*time.Millisecond)
	rel = f.Service(false)
	if len(rel) != 2 || rel[0].ToNIC || !bytes.Equal(rel[0].Data, in[2]) || !bytes.Equal(rel[1].Data, in[3]) {
		t.Fatalf("expiry: %d released", len(rel))
	}
	st = f.Stats()
	if st.ParkExpired != 2 || st.Miss != 4 || f.Parked() != 0 {
		t.Fatalf("stats %+v", st)
	}
	if got := st.Redirect + st.ToKernel(); got != st.RxNIC {
		t.Fatalf("%d of %d packets counted", got, st.RxNIC)
	}
}

// TestParkWarming: while the daemon warms up, parked packets are held past the hold
// time (released as soon as their session shows up) and a full park drops new packets
// instead of handing them to the kernel (which would reset them); when the warm-up ends,
// the held packets whose session is still unknown go to the kernel, in order.
func TestParkWarming(t *testing.T) {
	const hold = 20 * time.Millisecond
	e, f := parkFrames(t, hold)
	e.dp.SetWarming(true)
	defer e.dp.SetWarming(false)
	var in [][]byte
	for p := uint16(43000); p < 43006; p++ {
		in = append(in, dataFrame(parkKey(p), []byte("warming")))
	}
	out, err := f.Run(in)
	if err != nil {
		t.Fatal(err)
	}
	st := f.Stats()
	if len(out) != 0 || f.Parked() != 4 || st.ParkFull != 2 || st.ParkWarmDrop != 2 || st.ToKernel() != 0 {
		t.Fatalf("outputs %d parked %d stats %+v", len(out), f.Parked(), st)
	}
	time.Sleep(hold + 5*time.Millisecond)
	if rel := f.Service(false); len(rel) != 0 {
		t.Fatalf("released %d after the hold time while warming", len(rel))
	}
	if _, err := e.tbl.ApplyBatch([]session.Update{{Key: parkKey(43001), Owner: session.Owner{Host: 2, Epoch: 1}}}); err != nil {
		t.Fatal(err)
	}
	defer func() { _, _ = e.tbl.ApplyBatch([]session.Update{{Key: parkKey(43001), Delete: true}}) }()
	if rel := f.Service(false); len(rel) != 1 || !rel[0].ToNIC || !bytes.Equal(rel[0].Data[46:], in[1][14:]) {
		t.Fatalf("after the table change while warming: %d released", len(rel))
	}
	e.dp.SetWarming(false)
	rel := f.Service(false)
	if len(rel) != 3 || rel[0].ToNIC || !bytes.Equal(rel[0].Data, in[0]) || !bytes.Equal(rel[1].Data, in[2]) || !bytes.Equal(rel[2].Data, in[3]) {
		t.Fatalf("after the warm-up: %d released", len(rel))
	}
	st = f.Stats()
	if st.ParkExpired != 3 || f.Parked() != 0 || st.Redirect+st.ToKernel()+st.ParkWarmDrop != st.RxNIC {
		t.Fatalf("stats %+v", st)
	}
}

// udpFrame is a UDP packet of session k with payload p, from the router.
func udpFrame(k session.Key, p []byte) []byte {
	eth := &layers.Ethernet{SrcMAC: golden.RouterMAC, DstMAC: golden.Self.MAC, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 63, Protocol: layers.IPProtocolUDP, SrcIP: k.Src.AsSlice(), DstIP: k.Dst.AsSlice()}
	udp := &layers.UDP{SrcPort: layers.UDPPort(k.SrcPort), DstPort: layers.UDPPort(k.DstPort)}
	_ = udp.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		eth, ip, udp, gopacket.Payload(p)); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

// udpKey is an unknown UDP flow to the VIP's port dport.
func udpKey(sport, dport uint16) session.Key {
	k := golden.S5
	k.SrcPort, k.DstPort = sport, dport
	return k
}

// QUIC long-header first bytes: version 1 Initial (type 0), version 2 Initial (type 1)
// and version 2 0-RTT (type 0).
var (
	quicV1Initial = []byte{0xc3, 0, 0, 0, 1, 8, 1, 2, 3, 4, 5, 6, 7, 8}
	quicV2Initial = []byte{0xd3, 0x6b, 0x33, 0x43, 0xcf, 8, 1, 2, 3, 4, 5, 6, 7, 8}
	quicV2ZeroRTT = []byte{0xc3, 0x6b, 0x33, 0x43, 0xcf, 8, 1, 2, 3, 4, 5, 6, 7, 8}
	quicShort     = []byte{0x43, 1, 2, 3, 4, 5, 6, 7, 8, 9}
)

// TestParkUDP: only traffic that can have an owner elsewhere waits in the park. UDP to
// a VIP port that is not declared a session port goes to the kernel at once (a DNS
// answer must not wait park_hold); a declared port's unknown flows are parked, within
// their share of the park, so that a UDP burst leaves TCP its slots; on a QUIC port a
// long-header Initial goes to the kernel like a SYN.
func TestParkUDP(t *testing.T) {
	e := setup(t)
	var vips []netip.Prefix
	for _, v := range golden.VIPs {
		vips = append(vips, netip.PrefixFrom(v, v.BitLen()))
	}
	dp, err := lcore.New(lcore.Config{SelfID: golden.Self.ID, Self4: golden.Self.Addr, TunnelPort: golden.Self.Port,
		VIPs: vips, Table: e.tbl.Ptr(), UDPPorts: goldenUDPPorts})
	if err != nil {
		t.Fatal(err)
	}
	defer dp.Close()
	p := golden.Peers[0]
	if err := dp.SetTemplate(lcore.Template{ID: p.ID, SrcMAC: golden.Self.MAC, DstMAC: p.MAC, Src: golden.Self.Addr, Dst: p.Addr, TunnelPort: p.Port}); err != nil {
		t.Fatal(err)
	}
	f := dp.NewFrames(e.pool)
	defer f.Close()
	if err := f.SetParkShare(time.Hour, 6, 2); err != nil {
		t.Fatal(err)
	}
	if err := f.SetParkShare(time.Hour, 6, 6); err == nil {
		t.Fatal("a UDP share of the whole park was accepted")
	}

	// Plain UDP (port 53 is not declared): to the kernel unchanged, never parked.
	plain := udpFrame(udpKey(40000, 53), []byte("dns query"))
	out, err := f.Run([][]byte{plain})
	if err != nil {
		t.Fatal(err)
	}
	st := f.Stats()
	if len(out) != 1 || out[0].ToNIC || !bytes.Equal(out[0].Data, plain) || st.UDPPlain != 1 || st.ParkIn != 0 || st.Miss != 0 {
		t.Fatalf("plain UDP: outputs %d, stats %+v", len(out), st)
	}

	// QUIC Initials (v1, v2) go to the kernel like SYNs; a v2 0-RTT, a short header and
	// a truncated long header of unknown flows are parked, as is a UDP session port's.
	var in [][]byte
	for i, p := range [][]byte{quicV1Initial, quicV2Initial} {
		in = append(in, udpFrame(udpKey(41000+uint16(i), 443), p))
	}
	out, err = f.Run(in)
	if err != nil {
		t.Fatal(err)
	}
	st = f.Stats()
	if len(out) != 2 || out[0].ToNIC || out[1].ToNIC || !bytes.Equal(out[0].Data, in[0]) || st.QUICInitial != 2 || st.ParkIn != 0 {
		t.Fatalf("QUIC Initials: outputs %d, stats %+v", len(out), st)
	}
	// Three UDP session packets against a share of 2: two parked, one to the kernel.
	in = [][]byte{udpFrame(udpKey(42000, 443), quicV2ZeroRTT), udpFrame(udpKey(42001, 443), quicShort),
		udpFrame(udpKey(42002, 443), quicV1Initial[:4])}
	out, err = f.Run(in)
	if err != nil {
		t.Fatal(err)
	}
	st = f.Stats()
	if len(out) != 1 || out[0].ToNIC || !bytes.Equal(out[0].Data, in[2]) || f.Parked() != 2 ||
		st.ParkUDPIn != 2 || st.ParkUDPFull != 1 || st.ParkFull != 1 || st.Miss != 1 {
		t.Fatalf("UDP share: outputs %d, parked %d, stats %+v", len(out), f.Parked(), st)
	}
	// TCP keeps its 4 slots although UDP wants more: 4 parked, the fifth to the kernel.
	in = nil
	for p := uint16(43000); p < 43005; p++ {
		in = append(in, dataFrame(parkKey(p), []byte("tcp")))
	}
	in = append(in, udpFrame(udpKey(44000, 4433), []byte("more udp")))
	out, err = f.Run(in)
	if err != nil {
		t.Fatal(err)
	}
	st = f.Stats()
	if len(out) != 2 || f.Parked() != 6 || st.ParkIn != 6 || st.ParkUDPIn != 2 || st.ParkFull != 3 || st.ParkUDPFull != 2 {
		t.Fatalf("TCP share: outputs %d, parked %d, stats %+v", len(out), f.Parked(), st)
	}
	// A parked UDP flow whose owner shows up is released to it; its slot is UDP's again.
	if _, err := e.tbl.ApplyBatch([]session.Update{{Key: udpKey(42001, 443), Owner: session.Owner{Host: p.ID, Epoch: 1}}}); err != nil {
		t.Fatal(err)
	}
	defer func() { _, _ = e.tbl.ApplyBatch([]session.Update{{Key: udpKey(42001, 443), Delete: true}}) }()
	out = f.Service(false)
	st = f.Stats()
	if len(out) != 1 || !out[0].ToNIC || st.ParkRedirect != 1 || f.Parked() != 5 {
		t.Fatalf("release: outputs %d, parked %d, stats %+v", len(out), f.Parked(), st)
	}
	out, err = f.Run([][]byte{udpFrame(udpKey(44001, 4433), []byte("again"))})
	if err != nil {
		t.Fatal(err)
	}
	if st = f.Stats(); len(out) != 0 || f.Parked() != 6 || st.ParkUDPIn != 3 {
		t.Fatalf("UDP slot after release: outputs %d, parked %d, stats %+v", len(out), f.Parked(), st)
	}
	if st.ToKernel()+st.Redirect+uint64(f.Parked()) != st.RxNIC {
		t.Fatalf("classes do not add up to rx: %+v, parked %d", st, f.Parked())
	}
}
