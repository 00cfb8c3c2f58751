package lab

import (
	"context"
	"encoding/json"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/homing-dev/homing/config"
	"github.com/homing-dev/homing/ctl"
	"github.com/homing-dev/homing/internal/testenv"
)

// TestCapture runs `homingctl capture` on h2 while h1 is drained from the route: the
// connections h1 owns reach h2, which redirects them to h1. The pcapng file, read back
// with gopacket, holds each redirected packet of the client's flows twice: as h2's NIC
// received it (nic-rx) and as it left (nic-tx), GUE-encapsulated from h2 to h1, whose
// inner packet is byte for byte the received IP packet. `homingctl trace` on one of those
// flows then shows each packet's class, lookup (owner h1) and fate.
func TestCapture(t *testing.T) {
	exe := requireLab(t)
	testenv.RequireCommand(t, "tcpdump")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	homingctl := filepath.Join(t.TempDir(), "homingctl")
	if b, err := exec.Command("go", "build", "-o", homingctl, "github.com/homing-dev/homing/cmd/homingctl").CombinedOutput(); err != nil {
		t.Fatalf("build homingctl: %v\n%s", err, b)
	}
	l, err := New(Options{Homingd: buildHomingd(t), Serve: []string{exe}, Redirect: true, Log: &lineLog{t: t}})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.AddHosts(ctx, 1, 2); err != nil {
		t.Fatal(err)
	}
	if err := l.SetRoute([]int{1, 2}); err != nil {
		t.Fatal(err)
	}
	const conns = 40
	fleet, err := Dial(ctx, l.NS("cli"), l.Service().String(), conns, 8)
	if err != nil {
		t.Fatal(err)
	}
	fleet.Start()
	defer fleet.Stop()
	if _, err := l.WaitSessions(ctx, []int{1, 2}, conns, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := l.SetRoute([]int{2}); err != nil { // drain h1: its connections reach h2
		t.Fatal(err)
	}
	client := l.Client()
	pcap := filepath.Join(t.TempDir(), "h2.pcapng")
	filter := "host " + client.String() + " and port " + strconv.Itoa(ServicePort) + " and class redirected"
	out, err := exec.CommandContext(ctx, homingctl, "--socket", l.socket(2), "capture", "--port", "nic", "--dir", "both",
		"--filter", filter, "--count", "60", "--duration", "20s", "-w", pcap).CombinedOutput()
	t.Logf("homingctl capture --port nic --filter %q --count 60 -w h2.pcapng: %v\n%s", filter, err, out)
	if err != nil {
		t.Fatal(err)
	}
	// tcpdump reads it
	td, err := exec.Command("tcpdump", "-nn", "-r", pcap, "-c", "4").CombinedOutput()
	if err != nil {
		t.Fatalf("tcpdump -r: %v\n%s", err, td)
	}
	t.Logf("tcpdump -nn -r h2.pcapng -c 4:\n%s", td)

	f, err := os.Open(pcap)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewNgReader(f, pcapgo.DefaultNgReaderOptions)
	if err != nil {
		t.Fatal(err)
	}
	rxIP := map[string]bool{}
	var tx [][]byte
	n := 0
	for {
		data, ci, err := r.ReadPacketData()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		n++
		if ci.CaptureLength != ci.Length {
			t.Errorf("packet %d: %d of %d bytes", n, ci.CaptureLength, ci.Length)
		}
		iface, _ := r.Interface(ci.InterfaceIndex)
		switch iface.Name {
		case "nic-rx":
			rxIP[string(data[14:])] = true
		case "nic-tx":
			tx = append(tx, data)
		default:
			t.Errorf("packet %d on %s", n, iface.Name)
		}
	}
	if r.NInterfaces() != 4 {
		t.Errorf("%d interfaces, want 4 (nic-rx, nic-tx, tap-rx, tap-tx)", r.NInterfaces())
	}
	if n != 60 || len(tx) < 20 {
		t.Fatalf("%d packets, %d of them nic-tx; want 60, about half nic-tx", n, len(tx))
	}
	h1, h2 := HostAddr(1), HostAddr(2)
	matched := 0
	var flow string // a redirected flow: the client's address and port
	for i, fr := range tx {
		p := gopacket.NewPacket(fr, layers.LayerTypeEthernet, gopacket.Default)
		ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		udp, _ := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
		if ip == nil || udp == nil {
			t.Fatalf("nic-tx %d: not IPv4/UDP: %v", i, p)
		}
		src, _ := netip.AddrFromSlice(ip.SrcIP)
		dst, _ := netip.AddrFromSlice(ip.DstIP)
		if src != h2 || dst != h1 || udp.DstPort != layers.UDPPort(config.DefaultTunnelPort) || int(ip.Length) != len(fr)-14 ||
			int(udp.Length) != len(fr)-34 {
			t.Errorf("nic-tx %d: %s:%d -> %s:%d, IP length %d, UDP length %d, frame %d; want %s -> %s:%d (GUE)", i, src, udp.SrcPort,
				dst, udp.DstPort, ip.Length, udp.Length, len(fr), h2, h1, config.DefaultTunnelPort)
		}
		if ck := ipv4Checksum(fr[14:34]); ck != 0 {
			t.Errorf("nic-tx %d: outer IPv4 checksum does not verify", i)
		}
		gue := fr[42:46]
		if gue[0] != 0 || gue[1] != 4 {
			t.Errorf("nic-tx %d: GUE header %x, want variant 0 with IPv4 inside", i, gue)
		}
		inner := fr[46:]
		in := gopacket.NewPacket(inner, layers.LayerTypeIPv4, gopacket.Default)
		iip, _ := in.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		tcp, _ := in.Layer(layers.LayerTypeTCP).(*layers.TCP)
		if iip == nil || tcp == nil || !iip.SrcIP.Equal(client.AsSlice()) || int(tcp.DstPort) != ServicePort {
			t.Errorf("nic-tx %d: inner packet is not the client's TCP to the service", i)
			continue
		}
		if rxIP[string(inner)] {
			matched++
		}
		flow = netip.AddrPortFrom(client, uint16(tcp.SrcPort)).String()
	}
	// The count may cut the capture between a packet's nic-rx and its nic-tx record.
	if matched < len(tx)-1 {
		t.Errorf("%d of %d encapsulated packets carry, byte for byte, an IP packet h2 received", matched, len(tx))
	}
	t.Logf("%d packets: %d redirected ones received and %d sent encapsulated to h1, %d matched byte for byte", n, len(rxIP), len(tx), matched)

	// trace one of the redirected flows
	out, err = exec.CommandContext(ctx, homingctl, "--socket", l.socket(2), "trace", "tcp", flow, l.Service().String(),
		"--count", "4", "--duration", "20s").CombinedOutput()
	t.Logf("homingctl trace tcp %s %s --count 4: %v\n%s", flow, l.Service(), err, out)
	if err != nil {
		t.Fatal(err)
	}
	out, err = exec.CommandContext(ctx, homingctl, "--socket", l.socket(2), "--json", "trace", "tcp", flow, l.Service().String(),
		"--count", "4", "--duration", "20s").Output()
	if err != nil {
		t.Fatal(err)
	}
	recs := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var rec ctl.CaptureRecord
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("trace line %q: %v", line, err)
		}
		recs++
		owned := rec.Lookup == "hit" && rec.Owner == 1
		switch {
		case rec.Point == "nic-rx" && rec.Class == "redirected" && rec.Fate == "nic" && owned:
		case rec.Point == "nic-tx" && rec.Class == "redirected" && owned:
		case rec.Point == "tap-rx" || rec.Point == "tap-tx":
			t.Errorf("trace on h2 of a flow h1 owns: %+v (h2's kernel sees none of it)", rec)
		default:
			t.Errorf("trace record %+v: want the redirected packets of a session owned by h1", rec)
		}
		if rec.Data != nil {
			t.Errorf("trace record with bytes")
		}
	}
	if recs != 4 {
		t.Errorf("%d trace records, want 4", recs)
	}
	// h1, the owner, decapsulates them: its kernel port's tx carries the flows' packets,
	// class decap (lines without -w)
	out, err = exec.CommandContext(ctx, homingctl, "--socket", l.socket(1), "capture", "--port", "tap", "--dir", "tx",
		"--filter", "class decap and dst port "+strconv.Itoa(ServicePort), "--count", "4", "--duration", "20s").CombinedOutput()
	t.Logf("homingctl capture --port tap --dir tx --filter 'class decap and dst port %d' --count 4 (on h1): %v\n%s", ServicePort, err, out)
	if err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(strings.TrimSpace(string(out)), "\n"); len(lines) != 4 {
		t.Errorf("%d lines, want 4", len(lines))
	} else {
		for _, ln := range lines {
			if f := strings.Fields(ln); len(f) < 4 || f[1] != "tap-tx" || f[2] != "decap" || f[3] != "kernel" {
				t.Errorf("line %q: want tap-tx decap kernel", ln)
			}
		}
	}
	if b, err := os.ReadFile(l.Host(2).LogFile); err == nil {
		for _, ln := range strings.Split(string(b), "\n") {
			if strings.Contains(ln, "homingd started") {
				t.Logf("h2's start line: %s", ln)
			}
		}
	}
	if c := fleet.Counts(); c.Reset != 0 || c.Failed != 0 || c.Corrupted != 0 {
		t.Errorf("connections: %+v", c)
	}
}

// ipv4Checksum is the one's complement sum of an IPv4 header: 0 when it verifies.
func ipv4Checksum(h []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(h); i += 2 {
		s += uint32(h[i])<<8 | uint32(h[i+1])
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}
