package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/homing-dev/homing/internal/testenv"
)

// buildHomingd compiles this command into a temporary directory.
func buildHomingd(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "homingd")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func sh(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func TestBadConfig(t *testing.T) {
	bin := buildHomingd(t)
	cfg := filepath.Join(t.TempDir(), "bad.toml")
	if err := os.WriteFile(cfg, []byte("[host]\nid = 0\naddress = \"198.18.0.11\"\nvips = [\"198.19.255.1\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "-config", cfg).CombinedOutput()
	if err == nil {
		t.Fatal("homingd accepted host.id = 0")
	}
	if !strings.Contains(string(out), "bad.toml") || !strings.Contains(string(out), "host.id") {
		t.Fatalf("error does not name the file and key:\n%s", out)
	}
}

// TestPingThroughTAP runs homingd in a network namespace of its own, with its NIC on a
// veth through net_af_packet and its kernel side on a real net_tap interface that holds
// the host address: a neighbour on the veth pings that address, which works only if ARP
// and ICMP cross the data plane in both directions. After SIGTERM the TAP and every
// runtime file are gone.
func TestPingThroughTAP(t *testing.T) {
	t.Run("1-worker-nohuge", func(t *testing.T) { testPing(t, 1, false) })
	t.Run("2-workers-hugepages", func(t *testing.T) { testPing(t, 2, true) })
}

func testPing(t *testing.T, workers int, huge bool) {
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "ip")
	testenv.RequireCommand(t, "nft")
	testenv.RequireCommand(t, "ping")
	bin := buildHomingd(t)
	freeBefore := 0
	if huge {
		reserveHugepages(t, 160)
		freeBefore = freeHugepages()
	}
	host := fmt.Sprintf("hmg-ping-h-%d-%d", os.Getpid(), workers)
	nb := fmt.Sprintf("hmg-ping-n-%d-%d", os.Getpid(), workers)
	sh(t, "ip", "netns", "add", host)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", host).Run() })
	sh(t, "ip", "netns", "add", nb)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", nb).Run() })
	sh(t, "ip", "-n", host, "link", "add", "eth0", "type", "veth", "peer", "name", "nb0", "netns", nb)
	sh(t, "ip", "-n", host, "link", "set", "eth0", "up")
	sh(t, "ip", "-n", host, "link", "set", "lo", "up")
	sh(t, "ip", "-n", nb, "addr", "add", "198.18.0.1/24", "dev", "nb0")
	sh(t, "ip", "-n", nb, "link", "set", "nb0", "up")
	// The kernel of the host namespace must not answer on eth0 itself: DPDK owns it.
	sh(t, "ip", "netns", "exec", host, "nft", "add table netdev homing; add chain netdev homing in { type filter hook ingress device eth0 priority 0; policy drop; }")

	dir := t.TempDir()
	cfg := filepath.Join(dir, "h.toml")
	prefix := fmt.Sprintf("hmg-ping-%d-%d", os.Getpid(), workers)
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`
[host]
id = 1
address = "198.18.0.11"
vips = ["198.19.255.1"]
[dpdk]
file_prefix = %q
hugepages = %v
memory_mb = 128
workers = %d
idle_sleep_max_us = 100
log_level = "warning"
[nic]
device = "net_af_packet0,iface=eth0,qpairs=%d"
[kernel]
device = "net_tap0,iface=hmgtap0"
name = "hmgtap0"
addresses = ["198.18.0.11/24"]
[table]
capacity4 = 65536
capacity6 = 4096
[gossip]
enabled = false
[probe]
enabled = false
[metrics]
listen = ""
[control]
socket = %q
`, prefix, huge, workers, workers, filepath.Join(dir, "ctl.sock"))), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", host, bin, "-config", cfg)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	// systemd's side of Type=notify with WatchdogSec=200ms: READY=1 once up, WATCHDOG=1
	// every 100 ms while the data plane runs, STOPPING=1 at the stop.
	notifyPath := filepath.Join(dir, "notify")
	sd, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notifyPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer sd.Close()
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+notifyPath, "WATCHDOG_USEC=200000")
	notified := make(chan string, 64)
	go func() { // fake systemd
		buf := make([]byte, 4096)
		for {
			n, err := sd.Read(buf)
			if err != nil {
				close(notified)
				return
			}
			notified <- string(buf[:n])
		}
	}()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
		if t.Failed() {
			t.Logf("homingd output:\n%s", logs.String())
		}
	}()
	// Wait for the TAP to carry the host address.
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, _ := exec.Command("ip", "-n", host, "-br", "addr", "show", "dev", "hmgtap0").CombinedOutput()
		if strings.Contains(string(out), "198.18.0.11/24") && !strings.Contains(string(out), "DOWN") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("TAP hmgtap0 never came up: %s", out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	out, err := exec.Command("ip", "netns", "exec", nb, "ping", "-c", "3", "-i", "0.2", "-W", "2", "198.18.0.11").CombinedOutput()
	if err != nil || !strings.Contains(string(out), " 0% packet loss") {
		t.Fatalf("ping 198.18.0.11 through homingd: %v\n%s", err, out)
	}

	var said []string
	next := func(want string) {
		t.Helper()
		for {
			select {
			case m := <-notified:
				said = append(said, m)
				if strings.HasPrefix(m, want) {
					return
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("systemd was not told %q; it was told %q", want, said)
			}
		}
	}
	next("READY=1")
	next("WATCHDOG=1")
	next("WATCHDOG=1")

	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	next("STOPPING=1")
	if err := cmd.Wait(); err != nil {
		t.Fatalf("homingd exit: %v", err)
	}
	stopped = true
	if out, _ := exec.Command("ip", "-n", host, "link", "show", "hmgtap0").CombinedOutput(); !strings.Contains(string(out), "does not exist") {
		t.Errorf("TAP left behind after stop: %s", out)
	}
	if _, err := os.Stat("/var/run/dpdk/" + prefix); !os.IsNotExist(err) {
		t.Errorf("EAL runtime directory left behind: %v", err)
	}
	if huge {
		if after := freeHugepages(); after < freeBefore {
			t.Errorf("hugepages not given back: %d free before, %d after", freeBefore, after)
		}
	}
}

func freeHugepages() int {
	b, _ := os.ReadFile("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages")
	v, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return v
}

// reserveHugepages makes sure n free 2 MB pages exist, and gives back what it added.
func reserveHugepages(t *testing.T, n int) {
	t.Helper()
	const nr = "/proc/sys/vm/nr_hugepages"
	const free = "/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages"
	readInt := func(p string) int {
		b, _ := os.ReadFile(p)
		v, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		return v
	}
	have := readInt(free)
	if have >= n {
		return
	}
	total := readInt(nr)
	if err := os.WriteFile(nr, []byte(strconv.Itoa(total+n-have)), 0o644); err != nil {
		testenv.Missing(t, "2 MB hugepages: "+err.Error())
	}
	t.Cleanup(func() { _ = os.WriteFile(nr, []byte(strconv.Itoa(total)), 0o644) })
	if got := readInt(free); got < n {
		testenv.Missing(t, fmt.Sprintf("2 MB hugepages: only %d of %d could be reserved", got, n))
	}
}
