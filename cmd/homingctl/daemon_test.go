package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/homing-dev/homing/ctl"
	"github.com/homing-dev/homing/gossip/wire"
	"github.com/homing-dev/homing/internal/testenv"
	"github.com/homing-dev/homing/session"
)

// The lab of these tests: a namespace "host" runs homingd (NIC: net_af_packet on veth
// eth0; kernel side: TAP hmgctlN with 198.18.0.11), a namespace "nb" is its neighbour
// on the veth (198.18.0.1). IPv6 is off and neighbours are static, so that the only
// packets reaching the NIC are the ones the test sends, and counters move by exact
// amounts. Static peer 2 (198.18.0.12, a MAC nobody has) owns two static sessions of
// nb's address, so their packets are redirected to it.

const (
	hostAddr = "198.18.0.11"
	hostMAC  = "02:00:00:00:00:11"
	nbAddr   = "198.18.0.1"
	vip      = "198.19.255.1"
	group    = "239.193.0.77"
	gport    = 6091
)

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func sh(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// inNetns runs f on a thread switched into namespace name; sockets f opens stay there.
func inNetns(name string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine if restoring fails
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		ns, err := netns.GetFromName(name)
		if err != nil {
			errc <- err
			return
		}
		defer ns.Close()
		if err := netns.Set(ns); err != nil {
			errc <- err
			return
		}
		err = f()
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// lab is a running homingd and its neighbour.
type lab struct {
	host, nb, cfgPath, sock, tap string
	cmd                          *exec.Cmd
	logs                         *syncBuffer
	cfgText                      string
}

func buildHomingd(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "homingd")
	if out, err := exec.Command("go", "build", "-o", bin, "../homingd").CombinedOutput(); err != nil {
		t.Fatalf("go build homingd: %v\n%s", err, out)
	}
	return bin
}

func startLab(t *testing.T) *lab {
	testenv.RequireRoot(t)
	for _, c := range []string{"ip", "nft", "ping", "sysctl"} {
		testenv.RequireCommand(t, c)
	}
	bin := buildHomingd(t)
	pid := os.Getpid()
	l := &lab{host: fmt.Sprintf("hmg-ctl-h-%d", pid), nb: fmt.Sprintf("hmg-ctl-n-%d", pid),
		tap: fmt.Sprintf("hmgctl%d", pid%100000), logs: &syncBuffer{}}
	for _, ns := range []string{l.host, l.nb} {
		sh(t, "ip", "netns", "add", ns)
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
		sh(t, "ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
		sh(t, "ip", "-n", ns, "link", "set", "lo", "up")
	}
	sh(t, "ip", "-n", l.host, "link", "add", "eth0", "type", "veth", "peer", "name", "nb0", "netns", l.nb)
	sh(t, "ip", "-n", l.host, "link", "set", "eth0", "up")
	sh(t, "ip", "-n", l.nb, "addr", "add", nbAddr+"/24", "dev", "nb0")
	sh(t, "ip", "-n", l.nb, "link", "set", "nb0", "up")
	if err := txChecksumOff(l.nb, "nb0"); err != nil {
		t.Fatal(err)
	}
	sh(t, "ip", "-n", l.nb, "neigh", "replace", hostAddr, "lladdr", hostMAC, "dev", "nb0", "nud", "permanent")
	sh(t, "ip", "-n", l.nb, "route", "add", vip+"/32", "via", hostAddr)
	sh(t, "ip", "-n", l.nb, "route", "add", "239.0.0.0/8", "dev", "nb0")
	// The neighbour also sends as static peer 2 (GUE is decapsulated only from a live
	// peer's address), without answering ARP for it.
	sh(t, "ip", "-n", l.nb, "addr", "add", peer2Addr+"/32", "dev", "lo")
	sh(t, "ip", "netns", "exec", l.nb, "sysctl", "-qw", "net.ipv4.conf.nb0.arp_ignore=1")
	sh(t, "ip", "netns", "exec", l.host, "nft", "add table netdev homing; add chain netdev homing in { type filter hook ingress device eth0 priority 0; policy drop; }")
	nbMAC := strings.TrimSpace(sh(t, "ip", "netns", "exec", l.nb, "cat", "/sys/class/net/nb0/address"))

	dir := t.TempDir()
	l.cfgPath = filepath.Join(dir, "h.toml")
	l.sock = filepath.Join(dir, "run", "homingd.sock") // run/ is created by homingd
	l.cfgText = fmt.Sprintf(`
[host]
id = 1
name = "h1"
address = %q
mac = %q
vips = [%q]
[dpdk]
file_prefix = "hmg-ctl-%d"
memory_mb = 128
workers = 1
idle_sleep_max_us = 100
log_level = "warning"
[nic]
device = "net_af_packet0,iface=eth0,qpairs=1"
[kernel]
device = "net_tap0,iface=%s"
name = %q
addresses = ["%s/24"]
[table]
capacity4 = 4096
capacity6 = 1024
[gossip]
insecure = true
group = %q
port = %d
grace = "60s"
[probe]
enabled = false
[metrics]
listen = "127.0.0.1:9370"
[control]
socket = %q
[[peers]]
id = 2
address = "198.18.0.12"
mac = "02:00:00:00:00:12"
[[sessions]]
proto = "udp"
client = "%s:40000"
vip = "%s:5300"
owner = 2
[[sessions]]
client = "%s:40001"
vip = "%s:8080"
owner = 2
`, hostAddr, hostMAC, vip, pid, l.tap, l.tap, hostAddr, group, gport, l.sock, nbAddr, vip, nbAddr, vip)
	if err := os.WriteFile(l.cfgPath, []byte(l.cfgText), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	t.Cleanup(cancel)
	l.cmd = exec.CommandContext(ctx, "ip", "netns", "exec", l.host, bin, "-config", l.cfgPath)
	l.cmd.Stdout, l.cmd.Stderr = l.logs, l.logs
	if err := l.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if l.cmd.ProcessState == nil {
			_ = l.cmd.Process.Kill()
			_ = l.cmd.Wait()
		}
		if t.Failed() {
			t.Logf("homingd output:\n%s", l.logs.String())
		}
	})
	deadline := time.Now().Add(90 * time.Second)
	for {
		var st ctl.Status
		if err := ctl.Call(context.Background(), l.sock, ctl.CmdStatus, nil, &st); err == nil {
			break
		}
		if time.Now().After(deadline) || l.cmd.ProcessState != nil {
			t.Fatalf("homingd never answered on %s:\n%s", l.sock, l.logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	sh(t, "ip", "-n", l.host, "neigh", "replace", nbAddr, "lladdr", nbMAC, "dev", l.tap, "nud", "permanent")
	return l
}

// scrape fetches /metrics from inside the host namespace and returns its samples by
// "name{labels}" as the text format prints them.
func (l *lab) scrape(t *testing.T) map[string]float64 {
	t.Helper()
	_, body := l.get(t, "/metrics")
	m := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' || !strings.HasPrefix(line, "homing_") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("sample %q: %v", line, err)
		}
		m[line[:i]] = v
	}
	if len(m) < 50 {
		t.Fatalf("scrape has %d homing samples:\n%s", len(m), body)
	}
	return m
}

// send sends payloads over UDP from nb (bound to src) to dst.
func (l *lab) sendUDP(t *testing.T, src, dst string, payloads ...[]byte) {
	t.Helper()
	err := inNetns(l.nb, func() error {
		c, err := net.ListenPacket("udp4", src)
		if err != nil {
			return err
		}
		defer c.Close()
		to, err := net.ResolveUDPAddr("udp4", dst)
		if err != nil {
			return err
		}
		for _, p := range payloads {
			if _, err := c.WriteTo(p, to); err != nil {
				return err
			}
			time.Sleep(2 * time.Millisecond)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("send %s -> %s: %v", src, dst, err)
	}
}

func csum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return ^uint16(s)
}

// peer2Addr is static peer 2's address.
const peer2Addr = "198.18.0.12"

// gue returns a GUE (variant 0, IPIP) payload carrying an IPv4/UDP packet to dst.
func gue(dst string) []byte {
	inner := make([]byte, 20+8+4)
	inner[0], inner[8], inner[9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(inner[2:], uint16(len(inner)))
	copy(inner[12:], netip.MustParseAddr("198.18.200.1").AsSlice())
	copy(inner[16:], netip.MustParseAddr(dst).AsSlice())
	binary.BigEndian.PutUint16(inner[10:], csum(inner[:20]))
	binary.BigEndian.PutUint16(inner[20:], 1234)
	binary.BigEndian.PutUint16(inner[22:], 5301)
	binary.BigEndian.PutUint16(inner[24:], 12)
	return append([]byte{0, 4, 0, 0}, inner...)
}

// recordsDatagram is an unauthenticated records datagram from host 2 adding k.
func recordsDatagram(k session.Key) []byte {
	b := make([]byte, wire.HeaderLen)
	b = wire.AppendRecord(b, wire.Record{Op: wire.OpAdd, Key: k, Owner: session.Owner{Host: 2, Epoch: wire.EpochAt(time.Now())}})
	b = append(b, make([]byte, wire.TagLen)...)
	wire.NewSealer(nil).Seal(wire.Datagram(b), wire.Header{Type: wire.TypeRecords, Sender: 2, Incarnation: 1, Seq: 1,
		Timestamp: time.Now().Add(-time.Millisecond).UnixNano()})
	return b
}

func sample(name string, labels ...string) string {
	if len(labels) == 0 {
		return name
	}
	var parts []string
	for i := 0; i < len(labels); i += 2 {
		parts = append(parts, fmt.Sprintf("%s=%q", labels[i], labels[i+1]))
	}
	return name + "{" + strings.Join(parts, ",") + "}"
}

// TestDaemon runs one homingd and checks, in order: its metrics move by exactly the
// traffic the test sends; homingctl's tables and JSON describe it; SIGHUP reloads a
// valid change without touching the table and refuses an invalid one and a change that
// needs a restart; after SIGTERM homingctl says the daemon is not running.
func TestDaemon(t *testing.T) {
	l := startLab(t)
	t.Run("metrics", l.testMetrics)
	t.Run("homingctl", l.testCtl)
	t.Run("reload", l.testReload)
	t.Run("drain", l.testDrain)
	t.Run("capture", l.testCapture)
	if err := l.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := l.cmd.Wait(); err != nil {
		t.Fatalf("homingd exit: %v", err)
	}
	out, errOut, code := ctlRun("--socket", l.sock, "status")
	if code != 1 || out != "" || strings.TrimSpace(errOut) != "homingctl: homingd is not running (no socket at "+l.sock+")" {
		t.Fatalf("after stop: exit %d, %q, %q", code, out, errOut)
	}
}

func (l *lab) testMetrics(t *testing.T) {
	before := l.scrape(t)
	// GUE from peer 2's address to a VIP is decapsulated; to the host's own address it
	// is refused (inner_not_vip), and so is GUE from the neighbour's (unknown_source).
	const pings, udp, gues, notVIP, stranger, junk = 5, 7, 3, 2, 2, 4
	const refused = notVIP + stranger
	out, err := exec.Command("ip", "netns", "exec", l.nb, "ping", "-c", strconv.Itoa(pings), "-i", "0.05", "-W", "2", hostAddr).CombinedOutput()
	if err != nil || !strings.Contains(string(out), " 0% packet loss") {
		t.Fatalf("ping: %v\n%s", err, out)
	}
	payloads := make([][]byte, udp)
	for i := range payloads {
		payloads[i] = []byte("redirect me")
	}
	l.sendUDP(t, nbAddr+":40000", vip+":5300", payloads...)
	// One TCP SYN of a static session: always local (the kernel answers with a RST).
	err = inNetns(l.nb, func() error {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(nbAddr), Port: 40001}, Timeout: 3 * time.Second}
		c, err := d.Dial("tcp4", vip+":8080")
		if err == nil {
			c.Close()
			return fmt.Errorf("connected to a port nobody listens on")
		}
		if !strings.Contains(err.Error(), "refused") {
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatalf("tcp: %v", err)
	}
	g := make([][]byte, gues)
	for i := range g {
		g[i] = gue(vip)
	}
	l.sendUDP(t, peer2Addr+":41000", hostAddr+":6080", g...)
	l.sendUDP(t, peer2Addr+":41000", hostAddr+":6080", gue(hostAddr), gue(hostAddr))
	l.sendUDP(t, nbAddr+":41000", hostAddr+":6080", gue(vip), gue(vip))
	j := make([][]byte, junk)
	for i := range j {
		j[i] = []byte("not a gossip datagram at all, no magic")
	}
	l.sendUDP(t, nbAddr+":41001", fmt.Sprintf("%s:%d", group, gport), j...)
	gk := session.Key{Src: netip.MustParseAddr("198.18.100.9"), Dst: netip.MustParseAddr(vip), SrcPort: 50000, DstPort: 443, Proto: session.TCP}
	l.sendUDP(t, nbAddr+":41002", fmt.Sprintf("%s:%d", group, gport), recordsDatagram(gk))
	time.Sleep(300 * time.Millisecond) // the last bursts and the gossip receiver

	// The per-owner count is taken at scrape time at most once per OwnerCountDuty times
	// its last cost (wall time: on loaded cores a count of this small table can take
	// milliseconds, and the count in force lags for seconds): scrape until it shows the
	// gossiped session.
	after := l.scrape(t)
	for end := time.Now().Add(10 * time.Second); after[sample("homing_table_owner_entries", "owner", "2")] != 3 && time.Now().Before(end); {
		time.Sleep(50 * time.Millisecond)
		after = l.scrape(t)
	}
	delta := func(name string, labels ...string) float64 {
		k := sample(name, labels...)
		a, ok := after[k]
		if !ok {
			t.Errorf("no sample %s", k)
		}
		return a - before[k]
	}
	exact := []struct {
		name   string
		labels []string
		want   float64
	}{
		{"homing_lcore_received_packets_total", []string{"lcore", "1", "port", "nic"}, pings + udp + 1 + gues + refused + junk + 1},
		{"homing_lcore_redirected_packets_total", []string{"lcore", "1"}, udp},
		{"homing_lcore_classified_packets_total", []string{"class", "redirect", "lcore", "1"}, udp},
		{"homing_lcore_decapsulated_packets_total", []string{"lcore", "1"}, gues},
		{"homing_lcore_classified_packets_total", []string{"class", "syn", "lcore", "1"}, 1},
		{"homing_lcore_classified_packets_total", []string{"class", "other", "lcore", "1"}, pings + junk + 1},
		{"homing_lcore_classified_packets_total", []string{"class", "miss", "lcore", "1"}, 0},
		{"homing_lcore_classified_packets_total", []string{"class", "gue_bad", "lcore", "1"}, refused},
		{"homing_lcore_gue_refused_total", []string{"lcore", "1", "reason", "inner_not_vip"}, notVIP},
		{"homing_lcore_gue_refused_total", []string{"lcore", "1", "reason", "unknown_source"}, stranger},
		{"homing_lcore_gue_refused_total", []string{"lcore", "1", "reason", "inner_proto"}, 0},
		{"homing_lcore_sent_packets_total", []string{"lcore", "1", "port", "kernel"}, pings + 1 + gues + junk + 1},
		{"homing_lcore_dropped_packets_total", []string{"lcore", "1", "reason", "nic_tx_full"}, 0},
		{"homing_gossip_received_datagrams_total", nil, junk + 1},
		{"homing_gossip_rejected_datagrams_total", []string{"reason", "bad_magic"}, junk},
		{"homing_gossip_records_applied_total", nil, 1},
		{"homing_gossip_convergence_delay_seconds_count", nil, 1},
		{"homing_table_entries", []string{"family", "ipv4"}, 1},
		{"homing_table_inserts_total", nil, 1},
	}
	for _, c := range exact {
		if got := delta(c.name, c.labels...); got != c.want {
			t.Errorf("%s moved by %v, want %v", sample(c.name, c.labels...), got, c.want)
		}
	}
	// The kernel's answers (echo replies, the RST) and gossip heartbeats leave by the NIC.
	if d := delta("homing_lcore_sent_packets_total", "lcore", "1", "port", "nic"); d < udp+pings+1 {
		t.Errorf("sent to the NIC moved by %v, want at least %d", d, udp+pings+1)
	}
	if d := delta("homing_lcore_received_packets_total", "lcore", "1", "port", "kernel"); d < pings+1 {
		t.Errorf("received from the kernel moved by %v, want at least %d", d, pings+1)
	}
	if d := delta("homing_port_received_packets_total", "port", "nic"); d < pings+udp+1+gues+refused+junk+1 {
		t.Errorf("NIC port rx moved by %v", d)
	}
	if d := delta("homing_gossip_sent_datagrams_total"); d < 1 || delta("homing_gossip_sent_bytes_total") < 50*d {
		t.Errorf("gossip sent %v datagrams, %v bytes", d, delta("homing_gossip_sent_bytes_total"))
	}
	if after[sample("homing_table_owner_entries", "owner", "2")] != 3 {
		t.Errorf("owner 2 has %v entries, want 3 (2 static, 1 gossip)", after[sample("homing_table_owner_entries", "owner", "2")])
	}
	if r := after[sample("homing_lcore_busy_ratio", "lcore", "1")]; r <= 0 || r > 1 {
		t.Errorf("busy ratio %v", r)
	}
	if after[sample("homing_info", "address", hostAddr, "host_id", "1", "name", "h1", "version", "dev")] != 1 {
		t.Errorf("no homing_info for host 1")
	}
	t.Logf("received from the NIC: %v, redirected %v, decapsulated %v, gossip datagrams sent %v",
		delta("homing_lcore_received_packets_total", "lcore", "1", "port", "nic"), delta("homing_lcore_redirected_packets_total", "lcore", "1"),
		delta("homing_lcore_decapsulated_packets_total", "lcore", "1"), delta("homing_gossip_sent_datagrams_total"))
}

func (l *lab) ctl(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, code := ctlRun(append([]string{"--socket", l.sock}, args...)...)
	if code != 0 {
		t.Fatalf("homingctl %v: exit %d: %s", args, code, errOut)
	}
	return out
}

func (l *lab) ctlJSON(t *testing.T, v any, args ...string) {
	t.Helper()
	out := l.ctl(t, append(args, "--json")...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("homingctl %v --json: %v\n%s", args, err, out)
	}
}

func match(t *testing.T, what, out string, res ...string) {
	t.Helper()
	for _, re := range res {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("%s: no match for %s in:\n%s", what, re, out)
		}
	}
}

func (l *lab) testCtl(t *testing.T) {
	match(t, "status", l.ctl(t, "status"), `host\s+1 \(h1\)\s+198\.18\.0\.11\s+02:00:00:00:00:11`,
		`data plane\s+1 workers, nic net_af_packet0, kernel `+l.tap+`, redirect on`, `vips\s+198\.19\.255\.1/32`,
		`gossip\s+on, incarnation \d+, 0 peers up`, `table\s+3 IPv4 of 4096, 0 IPv6 of 1024`, `metrics\s+127\.0\.0\.1:9370`,
		`config\s+`+regexp.QuoteMeta(l.cfgPath)+`\s+\(never reloaded\)`)
	var st ctl.Status
	l.ctlJSON(t, &st, "status")
	if st.HostID != 1 || st.Sessions4 != 3 || !st.Gossip || st.PID == 0 || st.LogLevel != "info" {
		t.Errorf("status --json: %+v", st)
	}

	match(t, "peers", l.ctl(t, "peers"), `(?m)^2\s+198\.18\.0\.12\s+02:00:00:00:00:12\s+6080\s+default\s+static\s+yes\s+3$`)
	var ps []ctl.Peer
	l.ctlJSON(t, &ps, "peers")
	if len(ps) != 1 || ps[0].ID != 2 || !ps[0].Up || ps[0].Sessions != 3 || ps[0].Source != "static" {
		t.Errorf("peers --json: %+v", ps)
	}

	match(t, "lookup", l.ctl(t, "lookup", "udp", nbAddr+":40000", vip+":5300"), `owner\s+host 2 \(epoch 1\)`, `verdict\s+redirect to host 2`)
	match(t, "lookup miss", l.ctl(t, "lookup", "tcp", nbAddr+":1", vip+":80"), `owner\s+not in the table`, `verdict\s+local: unknown session`)
	var lk ctl.Lookup
	l.ctlJSON(t, &lk, "lookup", "tcp", "198.18.100.9:50000", vip+":443")
	if !lk.Found || lk.Owner != 2 || lk.Verdict != "redirect to host 2" {
		t.Errorf("lookup --json of the gossiped session: %+v", lk)
	}
	if _, errOut, code := ctlRun("--socket", l.sock, "lookup", "icmp", "1.2.3.4:1", "5.6.7.8:9"); code != 2 || !strings.Contains(errOut, `protocol "icmp"`) {
		t.Errorf("bad lookup: exit %d, %s", code, errOut)
	}

	match(t, "sessions", l.ctl(t, "sessions"), `PROTO\s+CLIENT\s+VIP\s+OWNER\s+EPOCH`,
		`(?m)^udp\s+198\.18\.0\.1:40000\s+198\.19\.255\.1:5300\s+2\s+1$`, `(?m)^tcp\s+198\.18\.100\.9:50000\s+198\.19\.255\.1:443\s+2\s+\d+$`, `(?m)^3 sessions$`)
	var ss ctl.Sessions
	l.ctlJSON(t, &ss, "sessions", "--vip", vip+":8080")
	if ss.Matched != 1 || len(ss.Sessions) != 1 || ss.Sessions[0].Client != nbAddr+":40001" {
		t.Errorf("sessions --vip: %+v", ss)
	}
	l.ctlJSON(t, &ss, "sessions", "--owner", "1")
	if ss.Matched != 0 {
		t.Errorf("sessions --owner 1: %+v", ss)
	}
	match(t, "sessions --limit", l.ctl(t, "sessions", "--owner", "2", "--limit", "1"), `3 sessions match, 1 shown`)

	match(t, "stats", l.ctl(t, "stats"), `(?m)^LCORE\s+RX NIC`, `(?m)^1\s+\d+\s+\d+\s+\d+\s+\d+\s+7\s+3\s+0\s+[0-9.]+%$`,
		`(?m)^redirect\s+7$`, `(?m)^syn\s+1$`, `(?m)^gue_bad\s+4$`, `(?m)^gue refused inner_not_vip\s+2$`,
		`(?m)^gue refused unknown_source\s+2$`, `(?m)^nic\s+\d+`, `records applied\s+1`, `bad magic\s+4`, `owner 2\s+3`)
	var sts ctl.Stats
	l.ctlJSON(t, &sts, "stats")
	if len(sts.Lcores) != 1 || sts.Lcores[0].Redirected != 7 || sts.Gossip["records_applied"] != 1 || sts.Reject["bad_magic"] != 4 || sts.Owners["2"] != 3 {
		t.Errorf("stats --json: %+v", sts)
	}
}

// reload writes text as the configuration, sends SIGHUP and waits for the log line
// that reports the outcome.
func (l *lab) reload(t *testing.T, text, want string) {
	t.Helper()
	n := strings.Count(l.logs.String(), want)
	if err := os.WriteFile(l.cfgPath, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := l.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(l.logs.String(), want) == n {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the log after SIGHUP:\n%s", want, l.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (l *lab) testReload(t *testing.T) {
	var before ctl.Sessions
	l.ctlJSON(t, &before, "sessions")
	redirected := func() uint64 {
		var s ctl.Stats
		l.ctlJSON(t, &s, "stats")
		return s.Lcores[0].Redirected
	}
	r0 := redirected()

	// Valid: a new static peer and a debug log level.
	valid := strings.Replace(l.cfgText, "[gossip]", "[log]\nlevel = \"debug\"\n[gossip]", 1) + `
[[peers]]
id = 3
address = "198.18.0.13"
mac = "02:00:00:00:00:13"
`
	l.reload(t, valid, "reload applied")
	match(t, "reload log", l.logs.String(), `reload applied.*peer 3: 198\.18\.0\.13 02:00:00:00:00:13.*log\.level debug`)
	var ps []ctl.Peer
	l.ctlJSON(t, &ps, "peers")
	if len(ps) != 2 || ps[1].ID != 3 || !ps[1].Up || ps[0].Sessions != 3 {
		t.Errorf("peers after reload: %+v", ps)
	}
	var st ctl.Status
	l.ctlJSON(t, &st, "status")
	if st.LogLevel != "debug" || st.LastReload.IsZero() || st.LastReloadErr != "" || st.StaticPeers != 2 {
		t.Errorf("status after reload: %+v", st)
	}
	var after ctl.Sessions
	l.ctlJSON(t, &after, "sessions")
	if fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("the table changed in a reload:\nbefore %+v\nafter  %+v", before, after)
	}
	l.sendUDP(t, nbAddr+":40000", vip+":5300", []byte("still redirected"), []byte("still redirected"))
	deadline := time.Now().Add(5 * time.Second)
	for redirected() != r0+2 {
		if time.Now().After(deadline) {
			t.Fatalf("redirected %d after the reload, want %d", redirected(), r0+2)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Invalid: refused, the daemon keeps the configuration in force.
	l.reload(t, valid+"\n[host\n", "reload refused: invalid configuration")
	l.reload(t, strings.Replace(valid, "workers = 1", "workers = 2", 1), "reload refused")
	match(t, "refusal", l.logs.String(), `reload refused.*needs a restart: dpdk\.workers`)
	l.ctlJSON(t, &st, "status")
	if !strings.Contains(st.LastReloadErr, "needs a restart: dpdk.workers") || st.LogLevel != "debug" || st.StaticPeers != 2 {
		t.Errorf("status after refused reloads: %+v", st)
	}
	l.ctlJSON(t, &after, "sessions")
	if fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("the table changed in a refused reload: %+v", after)
	}
	match(t, "status text", l.ctl(t, "status"), `last reload .*: REFUSED: .*needs a restart: dpdk\.workers`)
	if l.cmd.ProcessState != nil {
		t.Fatal("homingd exited")
	}
}

// get fetches path from the daemon's metrics server (plain text), inside the host's
// namespace, and returns the HTTP status line's code and the body.
func (l *lab) get(t *testing.T, path string) (int, string) {
	t.Helper()
	var body []byte
	err := inNetns(l.host, func() error {
		c, err := net.DialTimeout("tcp", "127.0.0.1:9370", 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(c, "GET %s HTTP/1.0\r\nAccept: text/plain\r\n\r\n", path)
		body, err = io.ReadAll(c)
		return err
	})
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	var code int
	fmt.Sscanf(string(body), "HTTP/1.0 %d", &code)
	_, b, _ := strings.Cut(string(body), "\r\n\r\n")
	return code, strings.TrimSpace(b)
}

// testDrain: a host without BGP is ready once warm (/readyz 200); homingctl drain makes
// it drained (it owns no session here) and /readyz 503; undrain makes it ready again;
// /healthz answers 200 throughout; the state is a metric.
func (l *lab) testDrain(t *testing.T) {
	var st ctl.Status
	l.ctlJSON(t, &st, "status")
	if st.State != "ready" || !st.Announced || st.WarmAt.IsZero() {
		t.Fatalf("before the drain: state %q announced %v warm at %v", st.State, st.Announced, st.WarmAt)
	}
	if code, body := l.get(t, "/readyz"); code != 200 || body != "ready" {
		t.Errorf("/readyz while ready: %d %q", code, body)
	}
	match(t, "drain", l.ctl(t, "drain", "--wait", "5s"), `drained, 0 sessions owned here`)
	if code, body := l.get(t, "/readyz"); code != 503 || body != "drained" {
		t.Errorf("/readyz while drained: %d %q", code, body)
	}
	if code, _ := l.get(t, "/healthz"); code != 200 {
		t.Errorf("/healthz while drained: %d", code)
	}
	m := l.scrape(t)
	if m[sample("homing_state", "state", "drained")] != 1 || m[sample("homing_state", "state", "ready")] != 0 || m[sample("homing_announced")] != 0 {
		t.Errorf("metrics while drained: state drained %v, ready %v, announced %v", m[sample("homing_state", "state", "drained")],
			m[sample("homing_state", "state", "ready")], m[sample("homing_announced")])
	}
	match(t, "status", l.ctl(t, "status"), `(?m)^state\s+drained \(VIPs withdrawn since`)
	match(t, "undrain", l.ctl(t, "undrain"), `ready, 0 sessions owned here`)
	if code, _ := l.get(t, "/readyz"); code != 200 {
		t.Errorf("/readyz after undrain: %d", code)
	}
	if _, errOut, code := ctlRun("--socket", l.sock, "undrain", "--wait", "1s"); code != 2 || !strings.Contains(errOut, "undrain takes no --wait") {
		t.Errorf("undrain --wait: exit %d, %q", code, errOut)
	}
}
