package daemon

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/homing-dev/homing/config"
	"github.com/homing-dev/homing/internal/golden"
	"github.com/homing-dev/homing/internal/testenv"
)

// TestGoldenPcap runs the golden frames through a whole daemon — config, EAL, ports, table,
// templates and the real poll loop on a worker lcore — with both ports on net_pcap, and
// checks both output captures against the independently built expectations.
func TestGoldenPcap(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	nicIn, kernelIn, err := golden.WritePcaps(dir)
	if err != nil {
		t.Fatal(err)
	}
	nicOut, kernelOut := filepath.Join(dir, "nic-out.pcap"), filepath.Join(dir, "kernel-out.pcap")
	var nNIC, nKernel uint64
	for _, c := range golden.Cases() {
		if c.In == golden.PortNIC {
			nNIC++
		} else {
			nKernel++
		}
	}
	p := golden.Peers[0]
	text := fmt.Sprintf(`
[host]
id = %d
address = %q
mac = %q
vips = [%q, %q]
[dpdk]
file_prefix = "hmg-golden-%d"
memory_mb = 128
workers = 1
idle_sleep_max_us = 50
log_level = "error"
[nic]
device = "net_pcap0,rx_pcap=%s,tx_pcap=%s"
mtu = 9000  # the golden cases carry full-size frames without an MTU budget (lcore tests it)
[kernel]
device = "net_pcap1,rx_pcap=%s,tx_pcap=%s"
addresses = []
[tunnel]
port = %d
park_hold = "0"  # the park delays unknown sessions: tested in lcore, off here to keep order
clamp_mss = false  # golden's kernel-side SYN-ACK keeps its MSS (the clamp is tested in lcore)
[table]
capacity4 = 1024
capacity6 = 1024
[[peers]]
id = %d
address = %q
mac = %q
tunnel_port = %d
[[peers]]  # owns S7 but its MAC is unknown: no template, its sessions stay local
id = %d
address = "198.18.0.17"
[gossip]
enabled = false
[probe]
enabled = false
[metrics]
listen = ""
[control]
socket = %q
`, golden.Self.ID, golden.Self.Addr, golden.Self.MAC, golden.VIPs[0], golden.VIPs[1], os.Getpid(),
		nicIn, nicOut, kernelIn, kernelOut, golden.Self.Port, p.ID, p.Addr, p.MAC, p.Port, golden.DeadPeer, filepath.Join(dir, "ctl.sock"))
	for _, s := range golden.Sessions {
		proto := "tcp"
		if s.Key.Proto == 17 {
			proto = "udp"
		}
		text += fmt.Sprintf("[[sessions]]\nclient = %q\nvip = %q\nproto = %q\nowner = %d\n",
			netip.AddrPortFrom(s.Key.Src, s.Key.SrcPort), netip.AddrPortFrom(s.Key.Dst, s.Key.DstPort), proto, s.Owner)
	}
	cfg, err := config.Parse([]byte(text), "golden.toml")
	if err != nil {
		t.Fatal(err)
	}
	d, err := Start(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Stop()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ns, _ := d.NICStats()
		ks, _ := d.KernelStats()
		if ns.RxPackets >= nNIC && ks.RxPackets >= nKernel {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pipeline received %d/%d NIC and %d/%d kernel frames", ns.RxPackets, nNIC, ks.RxPackets, nKernel)
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // let the last burst be transmitted
	st := d.DP.Stats()
	checkPortMetrics(t, d, nNIC)
	if err := d.Stop(); err != nil { // stops the ports: net_pcap flushes its files
		t.Fatal(err)
	}
	if err := golden.CheckPcaps(nicOut, kernelOut); err != nil {
		t.Fatal(err)
	}
	if len(st) != 1 || st[0].RxNIC != nNIC || st[0].FromKernel != nKernel || st[0].DropNICTx+st[0].DropTAPTx != 0 {
		t.Fatalf("lcore counters: %+v", st)
	}
}
