package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
)

// testCapture: pings from the neighbour while homingctl captures ICMP on every point of
// the running daemon: each echo request is taken as the NIC received it (class other)
// and as handed to the kernel, each reply as the kernel sent it (class kernel) and as it
// left the NIC, byte for byte the same frame on both sides of the pipeline. A second
// capture while one runs, and a filter the daemon refuses, fail with exit 1.
func (l *lab) testCapture(t *testing.T) {
	file := filepath.Join(t.TempDir(), "icmp.pcapng")
	type result struct {
		errOut string
		code   int
	}
	done := make(chan result, 1)
	go func() {
		_, errOut, code := ctlRun("--socket", l.sock, "capture", "--filter", "icmp and host "+nbAddr, "--count", "12",
			"--duration", "30s", "-w", file)
		done <- result{errOut, code}
	}()
	// the capture is armed once homingd logs it
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(l.logs.String(), `msg="capture started"`) {
		if time.Now().After(deadline) {
			t.Fatal("no capture started in homingd's log")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, errOut, code := ctlRun("--socket", l.sock, "trace", "tcp", "198.18.0.1:1", vip+":80", "--duration", "1s"); code != 1 ||
		!strings.Contains(errOut, "another capture or trace is running") {
		t.Errorf("second capture: exit %d, %s", code, errOut)
	}
	if out, err := exec.Command("ip", "netns", "exec", l.nb, "ping", "-c", "3", "-i", "0.05", "-W", "2", hostAddr).CombinedOutput(); err != nil {
		t.Fatalf("ping: %v\n%s", err, out)
	}
	r := <-done
	if r.code != 0 || !strings.Contains(r.errOut, "12 packets taken (count reached), 0 lost") {
		t.Fatalf("capture: exit %d, %s", r.code, r.errOut)
	}
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rd, err := pcapgo.NewNgReader(f, pcapgo.DefaultNgReaderOptions)
	if err != nil {
		t.Fatal(err)
	}
	byPoint := map[string][][]byte{}
	for {
		data, ci, err := rd.ReadPacketData()
		if err != nil {
			break
		}
		in, _ := rd.Interface(ci.InterfaceIndex)
		p := gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.Default)
		icmp, _ := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
		if icmp == nil {
			t.Fatalf("%s: not ICMP: %v", in.Name, p)
		}
		want := uint8(layers.ICMPv4TypeEchoRequest)
		if in.Name == "tap-rx" || in.Name == "nic-tx" {
			want = layers.ICMPv4TypeEchoReply
		}
		if icmp.TypeCode.Type() != want {
			t.Errorf("%s: ICMP %v", in.Name, icmp.TypeCode)
		}
		byPoint[in.Name] = append(byPoint[in.Name], data)
	}
	for _, pair := range [][2]string{{"nic-rx", "tap-tx"}, {"tap-rx", "nic-tx"}} {
		a, b := byPoint[pair[0]], byPoint[pair[1]]
		if len(a) != 3 || len(b) != 3 {
			t.Errorf("%s %d, %s %d packets, want 3 each", pair[0], len(a), pair[1], len(b))
			continue
		}
		for i := range a {
			if !bytes.Equal(a[i], b[i]) {
				t.Errorf("%s and %s packet %d differ", pair[0], pair[1], i)
			}
		}
	}
	if _, errOut, code := ctlRun("--socket", l.sock, "capture", "--filter", "host 1.2.3.4 or port 2"); code != 1 ||
		!strings.Contains(errOut, `"or": terms can only be joined by "and"`) {
		t.Errorf("bad filter: exit %d, %s", code, errOut)
	}
}
