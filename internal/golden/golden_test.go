package golden

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/homing-dev/homing/session"
)

func refOutputs(t *testing.T, kernelFirst bool) (nic, kernel [][]byte) {
	t.Helper()
	nicIn, kernelIn := refInputs()
	return newRefPipeline().run(nicIn, kernelIn, kernelFirst)
}

func TestReferencePipelinePasses(t *testing.T) {
	for _, kernelFirst := range []bool{false, true} {
		nic, kernel := refOutputs(t, kernelFirst)
		if err := Check(nic, kernel); err != nil {
			t.Fatalf("kernelFirst=%v: %v", kernelFirst, err)
		}
	}
}

// The frames of the two input ports may interleave on the NIC output in any way.
func TestInterleavingAccepted(t *testing.T) {
	nic, kernel := refOutputs(t, false)
	nEncap := 0
	for _, c := range Cases() {
		if c.Want.Kind == Encap {
			nEncap++
		}
	}
	encaps, passed := nic[:nEncap], nic[nEncap:]
	// Deal the kernel-side frames one every 3 encapsulated frames.
	var mixed [][]byte
	for i, j := 0, 0; i < len(encaps) || j < len(passed); {
		for k := 0; k < 3 && i < len(encaps); k++ {
			mixed = append(mixed, encaps[i])
			i++
		}
		if j < len(passed) {
			mixed = append(mixed, passed[j])
			j++
		}
	}
	if err := Check(mixed, kernel); err != nil {
		t.Fatal(err)
	}
}

func TestScenario(t *testing.T) {
	cases := Cases()
	names := map[string]bool{}
	kinds := map[Kind]int{}
	for _, c := range cases {
		if names[c.Name] {
			t.Errorf("duplicate case name %q", c.Name)
		}
		names[c.Name] = true
		kinds[c.Want.Kind]++
		if c.Why == "" {
			t.Errorf("%s: no rule", c.Name)
		}
		if (c.In == PortKernel) != (c.Want.Kind == ToNIC) {
			t.Errorf("%s: kernel-port input must go to the NIC unchanged, and only it", c.Name)
		}
		switch c.Want.Kind {
		case ToKernel, ToNIC:
			if !bytes.Equal(c.Frame, c.Want.Frame) {
				t.Errorf("%s: unchanged frame differs from the input", c.Name)
			}
		case Encap:
			h, ok := hostByID(c.Want.Owner)
			if !ok || h.ID != 2 {
				t.Errorf("%s: encap to %d", c.Name, c.Want.Owner)
			}
			// The session of an Encap case is the frame's own 5-tuple, as gopacket reads it,
			// and the table says a live peer owns it.
			if got := tuple(t, c.Frame); got != c.Want.Session {
				t.Errorf("%s: frame's 5-tuple %v, want session %v", c.Name, got, c.Want.Session)
			}
			if owner(c.Want.Session) != c.Want.Owner {
				t.Errorf("%s: table owner %d, want %d", c.Name, owner(c.Want.Session), c.Want.Owner)
			}
		}
	}
	for _, k := range []Kind{ToKernel, ToNIC, Encap, Decap} {
		if kinds[k] == 0 {
			t.Errorf("no %v case", k)
		}
	}
	// The brief's minimum list of cases is there.
	for _, n := range []string{"s1-syn", "s1-data-1", "s1-data-2", "s1-data-padded", "s1-fin-ack", "s2-data", "s3-owned-here",
		"s4-unknown", "s5-udp", "s7-dead-owner", "s1-syn-ack", "gue-inner-ipv4", "gue-inner-ipv6", "gue-other-address",
		"gue-wrong-port", "gue-version-1", "gue-proto-17", "gue-inner-truncated", "arp-request", "icmp-echo-self",
		"icmp-echo-vip", "icmpv6-neighbor-solicitation", "s1-fragment-first", "s1-fragment-later", "s1-ipv4-options",
		"s2-hop-by-hop", "truncated-10", "truncated-ipv4-12", "truncated-tcp", "ipv4-length-beyond-frame",
		"ipv4-length-20-tcp", "ipv4-ihl-4", "vlan-s1-data", "lldp", "gossip-multicast", "tcp-not-vip",
		"kernel-arp-reply", "kernel-icmp-echo-reply", "kernel-tcp-vip-reply"} {
		if !names[n] {
			t.Errorf("missing case %s", n)
		}
	}
	// Cases is deterministic and returns fresh copies.
	again := Cases()
	again[0].Frame[0] ^= 0xff
	third := Cases()
	for i := range cases {
		if !bytes.Equal(cases[i].Frame, third[i].Frame) || !bytes.Equal(cases[i].Want.Frame, third[i].Want.Frame) {
			t.Errorf("%s: Cases not deterministic or shares memory", cases[i].Name)
		}
	}
	if n := len(FuzzSeeds()); n != len(cases) {
		t.Errorf("FuzzSeeds: %d frames, want %d", n, len(cases))
	}
	if _, ok := lookupSession(S4); ok {
		t.Error("S4 must not be in the table")
	}
}

func owner(k session.Key) uint16 {
	o, _ := lookupSession(k)
	return o
}

func lookupSession(k session.Key) (uint16, bool) {
	for _, e := range Sessions {
		if e.Key == k {
			return e.Owner, true
		}
	}
	return 0, false
}

func netipFrom(b net.IP) (netip.Addr, bool) {
	a, ok := netip.AddrFromSlice(b)
	return a.Unmap(), ok
}

func tuple(t *testing.T, f []byte) session.Key {
	t.Helper()
	pkt := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
	if pkt.ErrorLayer() != nil {
		t.Fatalf("decode: %v", pkt.ErrorLayer().Error())
	}
	var k session.Key
	switch ip := pkt.NetworkLayer().(type) {
	case *layers.IPv4:
		k.Src, _ = netipFrom(ip.SrcIP)
		k.Dst, _ = netipFrom(ip.DstIP)
	case *layers.IPv6:
		k.Src, _ = netipFrom(ip.SrcIP)
		k.Dst, _ = netipFrom(ip.DstIP)
	}
	switch l4 := pkt.TransportLayer().(type) {
	case *layers.TCP:
		k.Proto, k.SrcPort, k.DstPort = session.TCP, uint16(l4.SrcPort), uint16(l4.DstPort)
	case *layers.UDP:
		k.Proto, k.SrcPort, k.DstPort = session.UDP, uint16(l4.SrcPort), uint16(l4.DstPort)
	}
	return k
}

// Independent checks of the expected encapsulations: gopacket decodes them to the fields
// of the rule, and the inner packet is the input without Ethernet header and padding.
func TestEncapExpectationsDecode(t *testing.T) {
	for _, c := range Cases() {
		if c.Want.Kind != Encap {
			continue
		}
		pkt := gopacket.NewPacket(c.Want.Frame, layers.LayerTypeEthernet, gopacket.Default)
		eth, _ := pkt.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
		ip, _ := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		udp, _ := pkt.Layer(layers.LayerTypeUDP).(*layers.UDP)
		if eth == nil || ip == nil || udp == nil {
			t.Fatalf("%s: expected frame does not decode as Ethernet/IPv4/UDP", c.Name)
		}
		if eth.DstMAC.String() != "02:00:00:00:00:02" || eth.SrcMAC.String() != "02:00:00:00:00:01" {
			t.Errorf("%s: MACs %v -> %v", c.Name, eth.SrcMAC, eth.DstMAC)
		}
		if ip.IHL != 5 || ip.TOS != 0 || ip.Id != 0 || ip.Flags != layers.IPv4DontFragment || ip.TTL != 64 ||
			ip.SrcIP.String() != "198.18.0.11" || ip.DstIP.String() != "198.18.0.12" ||
			int(ip.Length) != 20+8+4+len(c.Want.Inner) {
			t.Errorf("%s: outer IPv4 %+v", c.Name, ip)
		}
		if udp.SrcPort != 0 || udp.DstPort != 6080 || int(udp.Length) != 8+4+len(c.Want.Inner) || udp.Checksum != 0 {
			t.Errorf("%s: UDP %+v", c.Name, udp)
		}
		if got := ipv4Checksum(c.Want.Frame[14:34]); got != ip.Checksum {
			t.Errorf("%s: checksum %#x, computed %#x", c.Name, ip.Checksum, got)
		}
		proto := byte(4)
		if c.Want.Session.Is4() == false {
			proto = 41
		}
		if !bytes.Equal(udp.Payload[:4], []byte{0, proto, 0, 0}) {
			t.Errorf("%s: GUE % x", c.Name, udp.Payload[:4])
		}
		// The inner packet is the input's IP packet, whose length gopacket tells.
		in := gopacket.NewPacket(c.Frame, layers.LayerTypeEthernet, gopacket.Default)
		var ipBytes []byte
		if l := in.Layer(layers.LayerTypeIPv4); l != nil {
			ipBytes = append(l.LayerContents(), l.LayerPayload()...)
		} else {
			l := in.Layer(layers.LayerTypeIPv6)
			ipBytes = append(l.LayerContents(), l.LayerPayload()...)
		}
		if !bytes.Equal(ipBytes, c.Want.Inner) || !bytes.Equal(udp.Payload[4:], c.Want.Inner) {
			t.Errorf("%s: inner packet is not the input's IP packet", c.Name)
		}
		if len(c.Want.Inner) >= len(c.Frame)-14 && (c.Name == "s1-data-padded" || c.Name == "s2-data-trailer" || c.Name == "s1-fin-ack") {
			t.Errorf("%s: padding carried", c.Name)
		}
	}
}

func TestDecapExpectations(t *testing.T) {
	for _, c := range Cases() {
		if c.Want.Kind != Decap {
			continue
		}
		w := c.Want.Frame
		if !bytes.Equal(w[:12], c.Frame[:12]) {
			t.Errorf("%s: MACs changed", c.Name)
		}
		pkt := gopacket.NewPacket(c.Frame, layers.LayerTypeEthernet, gopacket.Default)
		udp, _ := pkt.Layer(layers.LayerTypeUDP).(*layers.UDP)
		if udp == nil || udp.DstPort != 6080 {
			t.Fatalf("%s: not GUE", c.Name)
		}
		if !bytes.Equal(w[14:], udp.Payload[4:]) {
			t.Errorf("%s: decapsulated bytes are not the GUE payload", c.Name)
		}
		wantType := uint16(0x0800)
		if udp.Payload[1] == 41 {
			wantType = 0x86dd
		}
		if binary.BigEndian.Uint16(w[12:]) != wantType {
			t.Errorf("%s: EtherType %#x", c.Name, binary.BigEndian.Uint16(w[12:]))
		}
	}
}

// mutation is one way of breaking the reference output.
type mutation struct {
	name string
	// mutate changes the outputs; returns the case names the error must mention.
	mutate func(t *testing.T, nic, kernel [][]byte) ([][]byte, [][]byte)
	want   []string // substrings of the error
}

// posOf finds the output position of a case's frame.
func posOf(t *testing.T, out [][]byte, name string) int {
	t.Helper()
	for _, c := range Cases() {
		if c.Name != name {
			continue
		}
		for j, f := range out {
			if matchKey(c.Want.Kind, f) == matchKey(c.Want.Kind, c.Want.Frame) {
				return j
			}
		}
	}
	t.Fatalf("case %s not in output", name)
	return -1
}

func copyFrames(in [][]byte) [][]byte {
	out := make([][]byte, len(in))
	for i, f := range in {
		out[i] = append([]byte(nil), f...)
	}
	return out
}

func TestMutationsFail(t *testing.T) {
	ms := []mutation{
		{"flipped inner byte", func(t *testing.T, nic, kernel [][]byte) ([][]byte, [][]byte) {
			nic[posOf(t, nic, "s1-data-1")][46+40+5] ^= 0x01
			return nic, kernel
		}, []string{"s1-data-1", "inner.payload (offset 45)", "^^"}},
		{"wrong IPv4 checksum", func(t *testing.T, nic, kernel [][]byte) ([][]byte, [][]byte) {
			nic[posOf(t, nic, "s5-udp")][25] ^= 0x10
			return nic, kernel
		}, []string{"s5-udp", "ipv4.checksum (offset 24)", "computed over the received header"}},
		{"wrong UDP length", func(t *testing.T, nic, kernel [][]byte) ([][]byte, [][]byte) {
			f := nic[posOf(t, nic, "s2-data")]
			binary.BigEndian.PutUint16(f[38:], binary.BigEndian.Uint16(f[38:])+1)
			return nic, kernel
		}, []string{"s2-data", "udp.length (offset 38)", "8+4+inner"}},
		{"wrong total length, checksum fixed", func(t *testing.T, nic, kernel [][]byte) ([][]byte, [][]byte) {
			f := nic[posOf(t, nic, "s1-fin-ack")]
			binary.BigEndian.PutUint16(f[16:], binary.BigEndian.Uint16(f[16:])+2)
			fixIPv4Checksum(f, 14)
			return nic, kernel
		}, []string{"s1-fin-ack", "ipv4.total_length (offset 16)"}},
		{"swapped order on the kernel port", func(t *testing.T, nic, kernel [][]byte) ([][]byte, [][]byte) {
			i, j := posOf(t, kernel, "s4-unknown"), posOf(t, kernel, "s7-dead-owner")
			kernel[i], kernel[j] = kernel[j], kernel[i]
			return nic, kernel
		}, []string{"kernel[3] s7-dead-owner: order: want after s4-unknown (at 4) and before"}},
		{"one frame moved last", func(t *testing.T, nic, kernel [][]byte) ([][]byte, [][]byte) {
			i := posOf(t, kernel, "s1-syn")
			moved := kernel[i]
			kernel = append(kernel[:i:i], kernel[i+1:]...)
			return nic, append(kernel, moved)
		}, []string{"1 problem(s)", "s1-syn: order: want before s3-owned-here (at 0), their order on the nic input, got position 31"}},
		{"a refused frame delivered", func(t *testing.T, nic, kernel [][]byte) ([][]byte, [][]byte) {
			for _, c := range Cases() {
				if c.Name == "gue-unknown-source" {
					return nic, append(kernel, c.Frame)
				}
			}
			t.Fatal("no case gue-unknown-source")
			return nil, nil
		}, []string{"2 problem(s)", "this is the unchanged input of case gue-unknown-source, which must be dropped", "frame count: want 32, got 33"}},
		{"swapped encapsulations", func(t *testing.T, nic, kernel [][]byte) ([][]byte, [][]byte) {
			i, j := posOf(t, nic, "s1-data-1"), posOf(t, nic, "s2-data")
			nic[i], nic[j] = nic[j], nic[i]
			return nic, kernel
		}, []string{"order", "s1-data-1"}},
		{"missing frame", func(t *testing.T, nic, kernel [][]byte) ([][]byte, [][]byte) {
			i := posOf(t, kernel, "lldp")
			return nic, append(kernel[:i:i], kernel[i+1:]...)
		}, []string{"lldp: missing", "frame count"}},
		{"missing encapsulation", func(t *testing.T, nic, kernel [][]byte) ([][]byte, [][]byte) {
			i := posOf(t, nic, "s1-data-2")
			return append(nic[:i:i], nic[i+1:]...), kernel
		}, []string{"s1-data-2: missing"}},
		{"extra duplicate frame", func(t *testing.T, nic, kernel [][]byte) ([][]byte, [][]byte) {
			return nic, append(kernel, kernel[posOf(t, kernel, "arp-request")])
		}, []string{"unexpected frame", "second copy of case arp-request", "frame count"}},
		{"extra foreign frame", func(t *testing.T, nic, kernel [][]byte) ([][]byte, [][]byte) {
			return append(nic, bytes.Repeat([]byte{0x5a}, 70)), kernel
		}, []string{"(no case): unexpected frame", "frame count"}},
		{"source port below range", func(t *testing.T, nic, kernel [][]byte) ([][]byte, [][]byte) {
			binary.BigEndian.PutUint16(nic[posOf(t, nic, "s5-udp")][34:], 1234)
			return nic, kernel
		}, []string{"s5-udp", "udp.src_port", "in [49152, 65535]", "got 1234"}},
		{"source ports differ within a session", func(t *testing.T, nic, kernel [][]byte) ([][]byte, [][]byte) {
			f := nic[posOf(t, nic, "s1-data-2")]
			binary.BigEndian.PutUint16(f[34:], binary.BigEndian.Uint16(f[34:])^0x0101)
			return nic, kernel
		}, []string{"one source port for session tcp 198.18.100.2:40001 -> 198.19.255.1:80", "s1-data-2@"}},
		{"padding carried", func(t *testing.T, nic, kernel [][]byte) ([][]byte, [][]byte) {
			var c Case
			for _, x := range Cases() {
				if x.Name == "s1-data-padded" {
					c = x
				}
			}
			i := posOf(t, nic, "s1-data-padded")
			sp := binary.BigEndian.Uint16(nic[i][34:])
			nic[i] = newRefPipeline().encap(newRefPipeline().peers[2], S1, c.Frame[14:])
			binary.BigEndian.PutUint16(nic[i][34:], sp)
			return nic, kernel
		}, []string{"s1-data-padded", "inner.length", "extra at 42: a5 a5 a5 a5"}},
		{"encapsulated frame sent unchanged to the kernel", func(t *testing.T, nic, kernel [][]byte) ([][]byte, [][]byte) {
			var in []byte
			for _, c := range Cases() {
				if c.Name == "s5-udp" {
					in = c.Frame
				}
			}
			i := posOf(t, nic, "s5-udp")
			nic = append(nic[:i:i], nic[i+1:]...)
			return nic, append(kernel, in)
		}, []string{"s5-udp: missing", "unchanged input of case s5-udp, which wants encap on the nic port"}},
		{"decap keeps the padding", func(t *testing.T, nic, kernel [][]byte) ([][]byte, [][]byte) {
			i := posOf(t, kernel, "gue-trailer")
			kernel[i] = append(kernel[i], 0x11, 0x22, 0x33, 0x44)
			return nic, kernel
		}, []string{"gue-trailer", "length: want 54 bytes, got 58 bytes (extra at 54: 11 22 33 44)"}},
		{"decap wrong EtherType", func(t *testing.T, nic, kernel [][]byte) ([][]byte, [][]byte) {
			f := kernel[posOf(t, kernel, "gue-inner-ipv6")]
			f[12], f[13] = 0x08, 0x00
			return nic, kernel
		}, []string{"gue-inner-ipv6", "ethernet.type (offset 12)", "want 86 dd, got 08 00"}},
		{"wrong owner MAC", func(t *testing.T, nic, kernel [][]byte) ([][]byte, [][]byte) {
			nic[posOf(t, nic, "s1-syn-ack")][5] = 0x07
			return nic, kernel
		}, []string{"s1-syn-ack", "ethernet.dst (offset 0): want 02:00:00:00:00:02, got 02:00:00:00:00:07"}},
		{"kernel frame altered", func(t *testing.T, nic, kernel [][]byte) ([][]byte, [][]byte) {
			nic[posOf(t, nic, "kernel-tcp-vip-reply")][14+8]-- // TTL
			return nic, kernel
		}, []string{"kernel-tcp-vip-reply", "ipv4.ttl (offset 22)"}},
	}
	for _, m := range ms {
		t.Run(m.name, func(t *testing.T) {
			nic, kernel := refOutputs(t, false)
			nic, kernel = m.mutate(t, copyFrames(nic), copyFrames(kernel))
			err := Check(nic, kernel)
			if err == nil {
				t.Fatal("Check accepted the mutated output")
			}
			if !errors.Is(err, ErrMismatch) {
				t.Errorf("error %v is not ErrMismatch", err)
			}
			var me *MismatchError
			if !errors.As(err, &me) || len(me.Problems) == 0 {
				t.Fatalf("error %T has no problems", err)
			}
			for _, w := range m.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q:\n%v", w, err)
				}
			}
			t.Log(err)
		})
	}
}

// A pipeline that forwards without classifying: every problem names the case and its
// verdict.
func TestPassThroughPipelineFails(t *testing.T) {
	nicIn, kernelIn := refInputs()
	err := Check(kernelIn, nicIn)
	var me *MismatchError
	if !errors.As(err, &me) {
		t.Fatalf("pass-through accepted: %v", err)
	}
	for _, w := range []string{
		"kernel[1] s1-data-1: unexpected frame: want nothing: this is the unchanged input of case s1-data-1, which wants encap on the nic port",
		"nic s1-data-1: missing: want encap frame",
		"kernel gue-inner-ipv6: missing: want decap frame",
		"nic (no case): frame count: want 16, got 5",
	} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error does not mention %q:\n%v", w, err)
		}
	}
}

func TestPcapRoundTrip(t *testing.T) {
	dir := t.TempDir()
	nicPath, kernelPath, err := WritePcaps(dir)
	if err != nil {
		t.Fatal(err)
	}
	nicIn, kernelIn := refInputs()
	for _, x := range []struct {
		path string
		want [][]byte
	}{{nicPath, nicIn}, {kernelPath, kernelIn}} {
		got, err := ReadPcap(x.path)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(x.want) {
			t.Fatalf("%s: %d frames, want %d", x.path, len(got), len(x.want))
		}
		for i := range got {
			if !bytes.Equal(got[i], x.want[i]) {
				t.Errorf("%s: frame %d differs", x.path, i)
			}
		}
	}
	// Reproducible files.
	dir2 := t.TempDir()
	nic2, _, err := WritePcaps(dir2)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(nicPath)
	b, _ := os.ReadFile(nic2)
	if !bytes.Equal(a, b) {
		t.Error("WritePcaps is not reproducible")
	}

	// Output files through CheckPcaps.
	nic, kernel := newRefPipeline().run(nicIn, kernelIn, true)
	nicOut, kernelOut := filepath.Join(dir, "nic-out.pcap"), filepath.Join(dir, "kernel-out.pcap")
	if err := WritePcap(nicOut, nic); err != nil {
		t.Fatal(err)
	}
	if err := WritePcap(kernelOut, kernel); err != nil {
		t.Fatal(err)
	}
	if err := CheckPcaps(nicOut, kernelOut); err != nil {
		t.Fatal(err)
	}
	if err := CheckPcaps(kernelOut, nicOut); !errors.Is(err, ErrMismatch) {
		t.Fatalf("ports swapped: %v", err)
	}
}

func TestReadPcapErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := ReadPcap(filepath.Join(dir, "absent.pcap")); err == nil {
		t.Error("absent file read")
	}
	p := filepath.Join(dir, "x.pcap")
	if err := WritePcap(p, [][]byte{make([]byte, 60), make([]byte, 70)}); err != nil {
		t.Fatal(err)
	}
	full, _ := os.ReadFile(p)
	if err := os.WriteFile(p, full[:len(full)-5], 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadPcap(p); err == nil {
		t.Error("truncated file read without error")
	}
	raw := append([]byte(nil), full...)
	binary.LittleEndian.PutUint32(raw[20:], uint32(layers.LinkTypeRaw))
	if err := os.WriteFile(p, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadPcap(p); !errors.Is(err, ErrLinkType) {
		t.Errorf("raw link type: %v", err)
	}
	if err := WritePcap(p, nil); err != nil {
		t.Fatal(err)
	}
	if got, err := ReadPcap(p); err != nil || len(got) != 0 {
		t.Errorf("empty pcap: %d frames, %v", len(got), err)
	}
}

func TestDecapGUE(t *testing.T) {
	for _, c := range Cases() {
		if c.Want.Kind != Encap {
			continue
		}
		proto, inner, err := decapGUE(c.Want.Frame)
		if err != nil || !bytes.Equal(inner, c.Want.Inner) {
			t.Errorf("%s: decap %v", c.Name, err)
		}
		if (proto == gueProtoIPv6) == c.Want.Session.Is4() {
			t.Errorf("%s: proto %d", c.Name, proto)
		}
	}
	// Frames that are not our encapsulation.
	for _, c := range Cases() {
		if c.Want.Kind == Encap || c.Want.Kind == Decap {
			continue
		}
		if _, _, err := decapGUE(c.Frame); err == nil && !strings.HasPrefix(c.Name, "gue-") {
			t.Errorf("%s: decapsulated", c.Name)
		}
	}
}
