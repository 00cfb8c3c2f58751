//go:build harness

package lcore_test

import (
	"bytes"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/homing-dev/homing/internal/golden"
	"github.com/homing-dev/homing/lcore"
)

func TestParseFilter(t *testing.T) {
	a := netip.MustParseAddr
	for _, c := range []struct {
		in   string
		want lcore.Filter
	}{
		{"", lcore.Filter{}},
		{"host 198.18.0.11 and port 80", lcore.Filter{Addrs: []lcore.AddrCond{{a("198.18.0.11"), lcore.Either}},
			Ports: []lcore.PortCond{{80, lcore.Either}}}},
		{"src 198.18.100.2 and dst port 443 and tcp", lcore.Filter{Proto: 6, Addrs: []lcore.AddrCond{{a("198.18.100.2"), lcore.Src}},
			Ports: []lcore.PortCond{{443, lcore.Dst}}}},
		{"dst host 2001:2::1 && proto udp", lcore.Filter{Proto: 17, Addrs: []lcore.AddrCond{{a("2001:2::1"), lcore.Dst}}}},
		{"class redirected,decap and proto 47", lcore.Filter{Proto: 47, Classes: []string{"redirected", "decap"}}},
		{"flow tcp 198.18.100.2:40000 198.19.255.1:80", lcore.Filter{Proto: 6, Bidir: true,
			Addrs: []lcore.AddrCond{{a("198.18.100.2"), lcore.Src}, {a("198.19.255.1"), lcore.Dst}},
			Ports: []lcore.PortCond{{40000, lcore.Src}, {80, lcore.Dst}}}},
	} {
		got, err := lcore.ParseFilter(c.in)
		if err != nil {
			t.Errorf("%q: %v", c.in, err)
			continue
		}
		if !filterEqual(got, c.want) {
			t.Errorf("%q: got %+v, want %+v", c.in, got, c.want)
		}
	}
	for in, want := range map[string]string{
		"host":                          "want host and one value",
		"host foo":                      `host "foo": not an IP address`,
		"port 70000":                    `port "70000": not a port number`,
		"and host 1.2.3.4":              `"and" without a term`,
		"host 1.2.3.4 and":              `ends with "and"`,
		"tcp and udp":                   "two protocols",
		"class nope":                    `class "nope": want one of dead_owner, decap`,
		"or port 1":                     `"or": terms can only be joined by "and"`,
		"host 1.2.3.4 or port 2":        `"or": terms can only be joined by "and"`,
		"not tcp":                       `"not": terms can only be joined by "and"`,
		"proto 999":                     `want tcp, udp, icmp, icmp6 or 1..255`,
		"flow tcp 1.2.3.4:1 [::1]:2":    "two families",
		"flow icmp 1.2.3.4:1 1.2.3.5:2": "want tcp or udp",
		"host 1.1.1.1 and host 1.1.1.2 and host 1.1.1.3 and host 1.1.1.4 and host 1.1.1.5": "at most 4 addresses",
	} {
		_, err := lcore.ParseFilter(in)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want it to contain %q", in, err, want)
		}
	}
}

func filterEqual(a, b lcore.Filter) bool {
	eq := func(x, y []string) bool { return strings.Join(x, ",") == strings.Join(y, ",") }
	if a.Proto != b.Proto || a.Bidir != b.Bidir || len(a.Addrs) != len(b.Addrs) || len(a.Ports) != len(b.Ports) || !eq(a.Classes, b.Classes) {
		return false
	}
	for i := range a.Addrs {
		if a.Addrs[i] != b.Addrs[i] {
			return false
		}
	}
	for i := range a.Ports {
		if a.Ports[i] != b.Ports[i] {
			return false
		}
	}
	return true
}

// captureRun runs frames through a runner with a capture armed and returns the outputs
// and the records.
func captureRun(t *testing.T, e *env, cfg lcore.CaptureConfig, frames [][]byte, kernel bool) ([]lcore.Output, []lcore.Record, *lcore.Capture) {
	t.Helper()
	f := e.dp.NewFrames(e.pool)
	defer f.Close()
	cp, err := f.StartCapture(e.dp, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cp.Close)
	run := f.Run
	if kernel {
		run = f.RunKernel
	}
	out, err := run(frames)
	if err != nil {
		t.Fatal(err)
	}
	cp.Stop()
	var recs []lcore.Record
	cp.Drain(func(r lcore.Record) { recs = append(recs, r) })
	return out, recs, cp
}

func nicCases(kind golden.Kind) (in [][]byte, cs []golden.Case) {
	for _, c := range golden.Cases() {
		if c.In == golden.PortNIC && (kind == 0 || c.Want.Kind == kind) {
			in = append(in, c.Frame)
			cs = append(cs, c)
		}
	}
	return in, cs
}

// TestCaptureRedirected: a capture of class "redirected" on the NIC takes exactly the
// golden redirected frames, each as received (nic-rx, byte for byte the input) and as
// sent (nic-tx, the pipeline's output: the golden encapsulation of the same inner packet).
func TestCaptureRedirected(t *testing.T) {
	e := setup(t)
	in, _ := nicCases(0)
	f, err := lcore.ParseFilter("class redirected")
	if err != nil {
		t.Fatal(err)
	}
	out, recs, cp := captureRun(t, e, lcore.CaptureConfig{Filter: f, Points: lcore.NICRx | lcore.NICTx | lcore.TAPTx,
		Snaplen: 4096, Count: 1000}, in, false)
	_, enc := nicCases(golden.Encap)
	if len(enc) == 0 {
		t.Fatal("no golden redirected case")
	}
	var rx, tx []lcore.Record
	for _, r := range recs {
		if r.Class != "redirected" || r.Fate != "nic" || r.Lcore != 0 {
			t.Errorf("record %s class %s fate %s lcore %d, want redirected to the NIC", lcore.PointName(r.Point), r.Class, r.Fate, r.Lcore)
		}
		switch r.Point {
		case lcore.NICRx:
			rx = append(rx, r)
		case lcore.NICTx:
			tx = append(tx, r)
		default:
			t.Errorf("record at %s", lcore.PointName(r.Point))
		}
	}
	if len(rx) != len(enc) || len(tx) != len(enc) {
		t.Fatalf("%d nic-rx and %d nic-tx records, want %d each (the golden redirected frames)", len(rx), len(tx), len(enc))
	}
	var nicOut [][]byte
	for _, o := range out {
		if o.ToNIC {
			nicOut = append(nicOut, o.Data)
		}
	}
	for i, c := range enc {
		if !bytes.Equal(rx[i].Data, c.Frame) || rx[i].WireLen != len(c.Frame) {
			t.Errorf("%s: nic-rx record differs from the input frame", c.Name)
		}
		got := bytes.Clone(tx[i].Data)
		got[34], got[35] = 0, 0 // the flow-hash source port
		if !bytes.Equal(got, c.Want.Frame) {
			t.Errorf("%s: nic-tx record\n%x\nwant the golden encapsulation\n%x", c.Name, got, c.Want.Frame)
		}
		if !bytes.Equal(tx[i].Data[46:], rx[i].Data[14:14+len(c.Want.Inner)]) {
			t.Errorf("%s: the nic-tx record's inner packet is not the nic-rx record's IP packet", c.Name)
		}
		if !containsFrame(nicOut, tx[i].Data) {
			t.Errorf("%s: the nic-tx record is not what the pipeline sent", c.Name)
		}
	}
	if cp.Lost() != 0 {
		t.Errorf("lost %d", cp.Lost())
	}
	if n := e.pool.InUse(); n != 0 {
		t.Fatalf("%d mbufs leaked", n)
	}
}

func containsFrame(fs [][]byte, f []byte) bool {
	for _, x := range fs {
		if bytes.Equal(x, f) {
			return true
		}
	}
	return false
}

// TestCaptureClasses: with every point and class, each golden NIC frame is recorded at
// nic-rx with the class its golden verdict implies, and at the port it left by.
func TestCaptureClasses(t *testing.T) {
	e := setup(t)
	in, cs := nicCases(0)
	_, recs, _ := captureRun(t, e, lcore.CaptureConfig{Points: lcore.NICRx | lcore.NICTx | lcore.TAPRx | lcore.TAPTx,
		Snaplen: 64, Count: 10000}, in, false)
	var rx []lcore.Record
	perPoint := map[uint8]int{}
	for _, r := range recs {
		perPoint[r.Point]++
		if r.Point == lcore.NICRx {
			rx = append(rx, r)
		}
	}
	if len(rx) != len(cs) {
		t.Fatalf("%d nic-rx records, want %d", len(rx), len(cs))
	}
	for i, c := range cs {
		want := map[golden.Kind]string{golden.Encap: "redirected", golden.Decap: "decap"}[c.Want.Kind]
		if want != "" && rx[i].Class != want {
			t.Errorf("%s: class %s, want %s", c.Name, rx[i].Class, want)
		}
		if c.Want.Kind == golden.ToKernel && rx[i].Fate != "kernel" {
			t.Errorf("%s: fate %s, want kernel", c.Name, rx[i].Fate)
		}
		if !bytes.Equal(rx[i].Data, c.Frame[:min(64, len(c.Frame))]) || rx[i].WireLen != len(c.Frame) {
			t.Errorf("%s: snap of 64 bytes differs", c.Name)
		}
	}
	if perPoint[lcore.NICTx]+perPoint[lcore.TAPTx] == 0 || perPoint[lcore.TAPRx] != 0 {
		t.Errorf("records per point %v", perPoint)
	}
	// The kernel side: every frame at tap-rx and nic-tx, class kernel.
	var kin [][]byte
	for _, c := range golden.Cases() {
		if c.In == golden.PortKernel {
			kin = append(kin, c.Frame)
		}
	}
	_, recs, _ = captureRun(t, e, lcore.CaptureConfig{Points: lcore.TAPRx | lcore.NICTx, Snaplen: 4096, Count: 10000}, kin, true)
	if len(recs) != 2*len(kin) {
		t.Fatalf("%d kernel-side records, want %d", len(recs), 2*len(kin))
	}
	for _, r := range recs {
		if r.Class != "kernel" || r.Fate != "nic" {
			t.Errorf("kernel-side record class %s fate %s", r.Class, r.Fate)
		}
	}
}

// TestCaptureFilter: host, port and flow terms against golden frames, outer and inner
// headers of GUE frames alike, as the lcore decides.
func TestCaptureFilter(t *testing.T) {
	e := setup(t)
	var enc, dec golden.Case
	for _, c := range golden.Cases() {
		if c.Want.Kind == golden.Encap && enc.Name == "" {
			enc = c
		}
		if c.Want.Kind == golden.Decap && dec.Name == "" && c.Frame[23] == 17 {
			dec = c
		}
	}
	k := enc.Want.Session
	flow := "flow tcp " + netip.AddrPortFrom(k.Src, k.SrcPort).String() + " " + netip.AddrPortFrom(k.Dst, k.DstPort).String()
	if k.Proto == 17 {
		flow = strings.Replace(flow, "tcp", "udp", 1)
	}
	self := golden.Self.Addr.String()
	for _, c := range []struct {
		filter string
		frame  []byte
		want   bool
	}{
		{"", enc.Frame, true},
		{flow, enc.Frame, true},
		{flow, enc.Want.Frame, true}, // the encapsulated frame: by its inner headers
		{"host " + k.Src.String() + " and port " + itoa(k.DstPort), enc.Frame, true},
		{"dst " + k.Src.String(), enc.Frame, false},
		{"src " + k.Src.String() + " and dst port " + itoa(k.DstPort), enc.Want.Frame, true},
		{"host " + self + " and udp", enc.Want.Frame, true}, // outer
		{"host " + self + " and udp", enc.Frame, false},
		{"port " + itoa(k.DstPort+1), enc.Frame, false},
		{"class redirected", enc.Frame, true}, // classes are applied by the lcore, not here
		{"host " + self, dec.Frame, true},
		{"icmp", enc.Frame, false},
	} {
		f, err := lcore.ParseFilter(c.filter)
		if err != nil {
			t.Fatal(err)
		}
		got, err := e.dp.MatchFrame(f, c.frame)
		if err != nil {
			t.Fatal(err)
		}
		if got != c.want {
			t.Errorf("%q on %s: %v, want %v", c.filter, enc.Name, got, c.want)
		}
	}
	// Swapped (a reply): matches a flow term, not a one-way term.
	rev := "flow tcp " + netip.AddrPortFrom(k.Dst, k.DstPort).String() + " " + netip.AddrPortFrom(k.Src, k.SrcPort).String()
	if k.Proto == 17 {
		rev = strings.Replace(rev, "tcp", "udp", 1)
	}
	f, _ := lcore.ParseFilter(rev)
	if got, _ := e.dp.MatchFrame(f, enc.Frame); !got {
		t.Errorf("%q does not match the flow's other direction", rev)
	}
}

func itoa(p uint16) string { return strconv.Itoa(int(p)) }

// TestCaptureRingAndCount: the count bounds the records over the whole capture, and a
// full ring loses (and counts) what does not fit.
func TestCaptureRingAndCount(t *testing.T) {
	e := setup(t)
	in, _ := nicCases(0)
	_, recs, cp := captureRun(t, e, lcore.CaptureConfig{Points: lcore.NICRx, Snaplen: 128, Count: 3}, in, false)
	if len(recs) != 3 || !cp.Full() || cp.Lost() != 0 {
		t.Fatalf("count 3: %d records, full %v, lost %d", len(recs), cp.Full(), cp.Lost())
	}
	_, recs, cp = captureRun(t, e, lcore.CaptureConfig{Points: lcore.NICRx, Snaplen: 128, Count: 1000, Ring: 4}, in, false)
	if len(recs) != 4 || cp.Lost() != uint64(len(in)-4) {
		t.Fatalf("ring 4, %d frames: %d records, lost %d", len(in), len(recs), cp.Lost())
	}
	for i, r := range recs {
		if !bytes.Equal(r.Data, in[i][:min(128, len(in[i]))]) {
			t.Errorf("record %d is not frame %d", i, i)
		}
	}
	if _, err := e.dp.NewFrames(e.pool).StartCapture(e.dp, lcore.CaptureConfig{Points: lcore.NICRx, Count: 1, Ring: 3}); err == nil {
		t.Error("ring of 3 accepted")
	}
}

// TestCaptureTrace: a trace (no bytes) of one redirected session's flow records each of
// its packets with the table's owner and epoch.
func TestCaptureTrace(t *testing.T) {
	e := setup(t)
	in, _ := nicCases(0)
	_, enc := nicCases(golden.Encap)
	k := enc[0].Want.Session
	proto := "tcp"
	if k.Proto == 17 {
		proto = "udp"
	}
	f, err := lcore.ParseFilter("flow " + proto + " " + netip.AddrPortFrom(k.Src, k.SrcPort).String() + " " + netip.AddrPortFrom(k.Dst, k.DstPort).String())
	if err != nil {
		t.Fatal(err)
	}
	_, recs, _ := captureRun(t, e, lcore.CaptureConfig{Filter: f, Points: lcore.NICRx | lcore.NICTx, Count: 100, Trace: true}, in, false)
	// every golden NIC frame of the flow (either way) at nic-rx, the redirected ones
	// also at nic-tx
	var rx, tx int
	for _, c := range golden.Cases() {
		if ok, _ := e.dp.MatchFrame(f, c.Frame); ok && c.In == golden.PortNIC {
			rx++
			if c.Want.Kind == golden.Encap {
				tx++
			}
		}
	}
	if len(recs) != rx+tx || rx == 0 {
		t.Fatalf("%d trace records, want %d (nic-rx) + %d (nic-tx)", len(recs), rx, tx)
	}
	for _, r := range recs {
		if r.Data != nil || r.Lookup != "hit" || r.Owner != enc[0].Want.Owner || r.Epoch != 1 {
			t.Errorf("trace record %+v: want no bytes, a hit, owner %d epoch 1", r, enc[0].Want.Owner)
		}
		if r.Point == lcore.NICTx && r.Class != "redirected" {
			t.Errorf("nic-tx trace record of class %s", r.Class)
		}
	}
}

// FuzzCapture arms a capture on every point (snap 64 bytes, trace lookups) with a filter
// made of the inputs and feeds one arbitrary frame: nothing may crash or leak, the
// frame is taken at nic-rx exactly when the lcore's filter matches it (as MatchFrame
// says), and the record holds its first bytes and its length.
func FuzzCapture(f *testing.F) {
	for i, s := range golden.FuzzSeeds() {
		var a uint32
		if len(s) >= 34 {
			a = uint32(s[30])<<24 | uint32(s[31])<<16 | uint32(s[32])<<8 | uint32(s[33])
		}
		f.Add(s, a, uint16(80), uint8(i%3), i%2 == 0)
	}
	f.Fuzz(func(t *testing.T, frame []byte, addr uint32, port uint16, mode uint8, bidir bool) {
		if len(frame) > 2000 {
			return
		}
		e := setup(t)
		var flt lcore.Filter
		ip := netip.AddrFrom4([4]byte{byte(addr >> 24), byte(addr >> 16), byte(addr >> 8), byte(addr)})
		switch mode % 4 {
		case 1:
			flt.Addrs = []lcore.AddrCond{{ip, lcore.Dst}}
		case 2:
			flt.Addrs = []lcore.AddrCond{{ip, lcore.Either}}
			flt.Ports = []lcore.PortCond{{port, lcore.Either}}
			flt.Proto = 6
		case 3:
			flt.Ports = []lcore.PortCond{{port, lcore.Src}}
		}
		flt.Bidir = bidir
		want, err := e.dp.MatchFrame(flt, frame)
		if err != nil {
			t.Fatal(err)
		}
		_, recs, _ := captureRun(t, e, lcore.CaptureConfig{Filter: flt, Points: lcore.NICRx | lcore.NICTx | lcore.TAPRx | lcore.TAPTx,
			Snaplen: 64, Count: 10, Trace: true}, [][]byte{frame}, false)
		rx := 0
		for _, r := range recs {
			if r.Point == lcore.NICRx {
				rx++
				if !bytes.Equal(r.Data, frame[:min(64, len(frame))]) || r.WireLen != len(frame) {
					t.Fatalf("nic-rx record %x (len %d), frame %x", r.Data, r.WireLen, frame)
				}
			}
		}
		if len(recs) > 2 || (rx == 1) != want {
			t.Fatalf("%d records, %d at nic-rx; filter %+v matches: %v", len(recs), rx, flt, want)
		}
		if n := e.pool.InUse(); n != 0 {
			t.Fatalf("%d mbufs leaked", n)
		}
	})
}

// FuzzParseFilter: the filter syntax (from the control socket) never panics, and what
// it accepts stays within the lcore's limits and compiles.
func FuzzParseFilter(f *testing.F) {
	for _, s := range []string{"", "host 198.18.0.11 and port 80", "src 2001:2::1 and dst port 443 and tcp",
		"class redirected,decap", "flow udp 198.18.100.2:5000 198.19.255.1:53", "proto 47 and host ::ffff:1.2.3.4", "and", "host"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		flt, err := lcore.ParseFilter(s)
		if err != nil {
			return
		}
		if len(flt.Addrs) > lcore.MaxFilterAddrs || len(flt.Ports) > lcore.MaxFilterPorts {
			t.Fatalf("%q: %d addresses, %d ports", s, len(flt.Addrs), len(flt.Ports))
		}
		for _, a := range flt.Addrs {
			if !a.Addr.IsValid() || a.Addr.Is4In6() {
				t.Fatalf("%q: address %v", s, a.Addr)
			}
		}
	})
}
