//go:build harness

package lcore_test

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/homing-dev/homing/dpdk"
	"github.com/homing-dev/homing/internal/golden"
	"github.com/homing-dev/homing/lcore"
	"github.com/homing-dev/homing/table"
)

// newMTUDP builds a data plane for golden's MTU budget scenario on tbl (which holds the
// golden sessions): NIC MTU golden.MTU, MSS clamp on, ICMP at rate/burst.
func newMTUDP(t *testing.T, tbl *table.Table, rate, burst int) *lcore.DataPlane {
	t.Helper()
	var vips []netip.Prefix
	for _, v := range golden.VIPs {
		vips = append(vips, netip.PrefixFrom(v, v.BitLen()))
	}
	dp, err := lcore.New(lcore.Config{SelfID: golden.Self.ID, Self4: golden.Self.Addr, TunnelPort: golden.Self.Port,
		VIPs: vips, Table: tbl.Ptr(), MTU: golden.MTU, ClampMSS: true, ICMPRate: rate, ICMPBurst: burst})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dp.Close)
	for _, p := range golden.Peers {
		if err := dp.SetTemplate(lcore.Template{ID: p.ID, SrcMAC: golden.Self.MAC, DstMAC: p.MAC,
			Src: golden.Self.Addr, Dst: p.Addr, TunnelPort: p.Port}); err != nil {
			t.Fatal(err)
		}
	}
	return dp
}

func runSide(t testing.TB, e *env, dp *lcore.DataPlane, kernelSide bool, frames [][]byte) (nic, kernel [][]byte, st lcore.Stats) {
	t.Helper()
	f := dp.NewFrames(e.pool)
	defer f.Close()
	run := f.Run
	if kernelSide {
		run = f.RunKernel
	}
	out, err := run(frames)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range out {
		if o.ToNIC {
			nic = append(nic, o.Data)
		} else {
			kernel = append(kernel, o.Data)
		}
	}
	if n := e.pool.InUse(); n != 0 {
		t.Fatalf("%d mbufs leaked", n)
	}
	return nic, kernel, f.Stats()
}

// TestMTUBudget runs every vector of golden's MTU budget scenario: encapsulated frames
// that fit, ICMP errors for those that do not, drops, and the SYN-ACK MSS clamp, each
// byte for byte, and the counters they move.
func TestMTUBudget(t *testing.T) {
	e := setup(t)
	dp := newMTUDP(t, e.tbl, 1000, 1000)
	var sum lcore.Stats
	want := map[golden.Kind]int{}
	fragmented, frags := 0, 0
	for _, c := range golden.MTUCases() {
		nic, kernel, st := runSide(t, e, dp, c.In == golden.PortKernel, [][]byte{c.Frame})
		if err := golden.CheckOne(c, nic, kernel); err != nil {
			t.Error(err)
		}
		sum = sum.Add(st)
		want[c.Want.Kind]++
		if len(c.Want.More) > 0 {
			fragmented++
			frags += 1 + len(c.Want.More)
		}
	}
	if int(sum.ICMPTooBig) != want[golden.Reply] || int(sum.DropTooBig) != want[golden.Drop] ||
		int(sum.TooBig) != want[golden.Reply]+want[golden.Drop]+fragmented || int(sum.MSSClamped) != want[golden.Rewrite] ||
		int(sum.FragTunnelled) != frags {
		t.Errorf("counters: too big %d (answered %d, dropped %d, fragments %d), MSS clamped %d; want %d answered, %d dropped, %d fragments, %d clamped",
			sum.TooBig, sum.ICMPTooBig, sum.DropTooBig, sum.FragTunnelled, sum.MSSClamped, want[golden.Reply], want[golden.Drop], frags, want[golden.Rewrite])
	}
	if got := sum.Redirect + sum.TooBig + sum.ToKernel() + sum.GUEBad; got != sum.RxNIC {
		t.Errorf("classes add up to %d of %d packets: %+v", got, sum.RxNIC, sum)
	}
}

// TestICMPRateLimit: with a rate of 1/s and a burst of 2, three too-big packets in a row
// get two ICMP replies; the third is dropped and counted.
func TestICMPRateLimit(t *testing.T) {
	e := setup(t)
	dp := newMTUDP(t, e.tbl, 1, 2)
	var frames [][]byte
	var c golden.Case
	for _, x := range golden.MTUCases() {
		if x.Name == "s1-full-size" {
			c = x
		}
	}
	for range 3 {
		frames = append(frames, c.Frame)
	}
	nic, kernel, st := runSide(t, e, dp, false, frames)
	if len(nic) != 2 || len(kernel) != 0 || st.ICMPTooBig != 2 || st.DropTooBig != 1 || st.TooBig != 3 {
		t.Fatalf("%d to the NIC, %d to the kernel, stats %+v; want 2 replies and 1 drop", len(nic), len(kernel), st)
	}
	for _, f := range nic {
		if !bytes.Equal(f, c.Want.Frame) {
			t.Fatalf("reply differs from the golden one")
		}
	}
	// ICMP off: every too-big packet is dropped.
	off := newMTUDP(t, e.tbl, 0, 0)
	nic, _, st = runSide(t, e, off, false, frames)
	if len(nic) != 0 || st.DropTooBig != 3 {
		t.Fatalf("ICMP off: %d replies, stats %+v", len(nic), st)
	}
}

// FuzzMTUBudget feeds arbitrary frames to the MTU budget scenario's data plane, from the
// NIC (first byte even) or from the kernel (odd): every NIC frame comes out once or is
// counted as dropped, an ICMP reply is a well-formed too-big error within its size limit;
// a kernel frame comes out once, of the same length, changed (if at all) only in one MSS
// option and the TCP checksum, and counted.
func FuzzMTUBudget(f *testing.F) {
	for _, c := range append(golden.MTUCases(), golden.ICMPCases()...) {
		f.Add(byte(c.In), c.Frame)
	}
	for _, s := range golden.FuzzSeeds() {
		f.Add(byte(0), s)
		f.Add(byte(1), s)
	}
	f.Fuzz(func(t *testing.T, side byte, frame []byte) {
		if len(frame) > 2000 {
			return
		}
		e := setup(t)
		dp := newMTUDP(t, e.tbl, 1000000, 1000000)
		kernelSide := side&1 == 1
		nic, kernel, st := runSide(t, e, dp, kernelSide, [][]byte{frame})
		if kernelSide {
			if len(nic) != 1 || len(kernel) != 0 || len(nic[0]) != len(frame) {
				t.Fatalf("kernel side: %d to the NIC, %d to the kernel", len(nic), len(kernel))
			}
			var diff []int
			for i := range frame {
				if frame[i] != nic[0][i] {
					diff = append(diff, i)
				}
			}
			if (len(diff) != 0) != (st.MSSClamped == 1) || len(diff) > 4 {
				t.Fatalf("kernel side: %d bytes changed at %v, %d clamped", len(diff), diff, st.MSSClamped)
			}
			return
		}
		out := len(nic) + len(kernel)
		if st.FragTunnelled > 0 {
			out -= int(st.FragTunnelled) - 1 // one packet, in fragments
		}
		if out+int(st.DropHeadroom+st.DropTooBig+st.GUEBad) != 1 || st.Redirect+st.TooBig+st.ToKernel()+st.GUEBad != 1 {
			t.Fatalf("%d outputs for one frame: %+v", out, st)
		}
		if st.ICMPTooBig == 1 {
			r := nic[0]
			p := gopacket.NewPacket(r, layers.LayerTypeEthernet, gopacket.Default)
			if i4, ok := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4); ok {
				if i4.TypeCode != layers.CreateICMPv4TypeCode(3, 4) || len(r) > 14+576 || i4.Seq != golden.MTU-golden.Overhead {
					t.Fatalf("ICMP reply %v (%d bytes)", i4.TypeCode, len(r))
				}
			} else if i6, ok := p.Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6); ok {
				if i6.TypeCode != layers.CreateICMPv6TypeCode(2, 0) || len(r) > 14+1280 {
					t.Fatalf("ICMPv6 reply %v (%d bytes)", i6.TypeCode, len(r))
				}
			} else {
				t.Fatalf("reply is no ICMP error: %v", p)
			}
		}
	})
}

// TestICMPToOwner runs golden's ICMP error vectors through the base scenario: errors
// about a live peer's session are tunnelled to it whole, everything else goes to the
// kernel unchanged.
func TestICMPToOwner(t *testing.T) {
	e := setup(t)
	var sum lcore.Stats
	encaps := 0
	for _, c := range golden.ICMPCases() {
		nic, kernel, st := run(t, e, [][]byte{c.Frame})
		if err := golden.CheckOne(c, nic, kernel); err != nil {
			t.Error(err)
		}
		sum = sum.Add(st)
		if c.Want.Kind == golden.Encap {
			encaps++
		}
	}
	if int(sum.Redirect) != encaps || sum.Local == 0 || sum.Miss == 0 || sum.DeadOwner == 0 {
		t.Errorf("counters %+v; want %d redirected and some local, miss, dead owner", sum, encaps)
	}
}

// chainPool is a pool whose mbufs hold 512 bytes of data: larger frames arrive as chains
// (as with jumbo frames and scattered rx).
var chainPool *dpdk.Mempool

func chains(t *testing.T) *env {
	t.Helper()
	e := setup(t)
	if chainPool == nil {
		p, err := dpdk.NewMempool("lcore-chain", 1023, 0, 128+512, -1)
		if err != nil {
			t.Fatal(err)
		}
		chainPool = p
	}
	return &env{pool: chainPool, tbl: e.tbl, dp: e.dp}
}

// TestChains runs the golden vectors, the MTU budget's and the ICMP errors' with frames
// larger than an mbuf's data room, as chains of 512-byte segments: every verdict and
// every output byte is that of the one-segment frame (headers are in the first segment).
func TestChains(t *testing.T) {
	e := chains(t)
	var in [][]byte
	long := 0
	for _, c := range golden.Cases() {
		if c.In == golden.PortNIC {
			in = append(in, c.Frame)
			if len(c.Frame) > 512 {
				long++
			}
		}
	}
	nic, kernel, st := run(t, e, in)
	for _, c := range golden.Cases() {
		if c.In == golden.PortKernel {
			nic = append(nic, c.Frame)
		}
	}
	if err := golden.Check(nic, kernel); err != nil {
		t.Fatal(err)
	}
	if long == 0 || st.Malformed != shared.malformedOneSeg(t) {
		t.Fatalf("%d frames longer than a segment; %d malformed", long, st.Malformed)
	}
	dp := newMTUDP(t, e.tbl, 1000, 1000)
	for _, c := range golden.MTUCases() {
		nic, kernel, _ := runSide(t, e, dp, c.In == golden.PortKernel, [][]byte{c.Frame})
		if err := golden.CheckOne(c, nic, kernel); err != nil {
			t.Error(err)
		}
	}
	for _, c := range golden.ICMPCases() {
		nic, kernel, _ := run(t, e, [][]byte{c.Frame})
		if err := golden.CheckOne(c, nic, kernel); err != nil {
			t.Error(err)
		}
	}
}

// malformedOneSeg is the malformed count of the golden NIC frames in one segment each.
func (e *env) malformedOneSeg(t *testing.T) uint64 {
	var in [][]byte
	for _, c := range golden.Cases() {
		if c.In == golden.PortNIC {
			in = append(in, c.Frame)
		}
	}
	_, _, st := run(t, e, in)
	return st.Malformed
}

// TestChainHeadersSplit: a chain whose TCP header is not in its first segment is not
// parsed: it goes to the kernel unchanged, counted as malformed.
func TestChainHeadersSplit(t *testing.T) {
	e := setup(t)
	p, err := dpdk.NewMempool("lcore-tiny", 255, 0, 128+40, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Free()
	frame := dataFrame(golden.S1, bytes.Repeat([]byte{7}, 200)) // 14 + 20 | 6 + 14 ... in 40-byte segments
	nic, kernel, st := run(t, &env{pool: p, tbl: e.tbl, dp: e.dp}, [][]byte{frame})
	if len(nic) != 0 || len(kernel) != 1 || !bytes.Equal(kernel[0], frame) || st.Malformed != 1 {
		t.Fatalf("%d to the NIC, %d to the kernel, stats %+v", len(nic), len(kernel), st)
	}
}

// FuzzChains runs each frame twice, in one mbuf and as a chain of 512-byte segments: the
// chain must come out as the single segment does, or (headers not all in its first
// segment, bytes after its IP packet) go to the kernel unchanged, counted as malformed.
func FuzzChains(f *testing.F) {
	for _, c := range append(append(golden.Cases(), golden.MTUCases()...), golden.ICMPCases()...) {
		if c.In == golden.PortNIC {
			f.Add(c.Frame)
		}
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		if len(frame) > 3000 {
			return
		}
		e := setup(t)
		nic1, ker1, _ := run(t, e, [][]byte{frame})
		nic2, ker2, st := run(t, chains(t), [][]byte{frame})
		same := len(nic1) == len(nic2) && len(ker1) == len(ker2)
		for i := 0; same && i < len(nic1); i++ {
			same = bytes.Equal(nic1[i], nic2[i])
		}
		for i := 0; same && i < len(ker1); i++ {
			same = bytes.Equal(ker1[i], ker2[i])
		}
		if !same && (len(frame) <= 512 || st.Malformed != 1 || len(ker2) != 1 || !bytes.Equal(ker2[0], frame)) {
			t.Fatalf("chain: %d to the NIC, %d to the kernel (%+v); one segment: %d, %d", len(nic2), len(ker2), st, len(nic1), len(ker1))
		}
	})
}
