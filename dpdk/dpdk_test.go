//go:build harness

package dpdk

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/homing-dev/homing/internal/testenv"
)

func TestArgs(t *testing.T) {
	a, err := EALConfig{FilePrefix: "h1", Workers: 2, CPUs: "0-1", VDevs: []string{"net_null0"}, LogLevel: "notice"}.Args()
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(a, " ")
	want := "--lcores=0@(0-1),1@0,2@1 --main-lcore=0 --file-prefix=h1 -m 256 --no-telemetry --no-huge --no-shconf --no-pci --vdev=net_null0 --log-level=notice"
	if got != want {
		t.Fatalf("args:\n got %s\nwant %s", got, want)
	}
	a, _ = EALConfig{FilePrefix: "h2", Hugepages: true, MemoryMB: 512, CPUs: "1", PCI: []string{"0000:00:08.0"}}.Args()
	got = strings.Join(a, " ")
	want = "--lcores=(0)@(1) --main-lcore=0 --file-prefix=h2 -m 512 --no-telemetry --in-memory -a 0000:00:08.0"
	if got != want {
		t.Fatalf("args:\n got %s\nwant %s", got, want)
	}
	for _, bad := range []EALConfig{{}, {FilePrefix: "a/b"}, {FilePrefix: "x", Workers: -1}, {FilePrefix: "x", Workers: 64}} {
		if _, err := bad.Args(); err == nil {
			t.Errorf("%+v: want error", bad)
		}
	}
}

// TestEAL runs the EAL once for the whole package (EAL cannot be restarted in a process).
func TestEAL(t *testing.T) {
	testenv.RequireRoot(t)
	prefix := fmt.Sprintf("hmg-dpdk-%d", os.Getpid())
	err := Init(EALConfig{FilePrefix: prefix, Workers: 1, MemoryMB: 128,
		VDevs: []string{"net_null0,size=64", "net_ring0"}, LogLevel: "error"})
	if err != nil {
		t.Fatal(err)
	}
	if err := Init(EALConfig{FilePrefix: prefix}); !errors.Is(err, ErrAlreadyInit) {
		t.Fatalf("second Init: %v", err)
	}
	if n := LcoreCount(); n != 2 {
		t.Fatalf("lcores = %d, want 2", n)
	}
	w := Workers()
	if len(w) != 1 || w[0] != 1 {
		t.Fatalf("workers = %v", w)
	}

	t.Run("launch", func(t *testing.T) {
		ran, ret, err := selftestLaunch(1)
		if err != nil || ran != 1 || ret != 42 {
			t.Fatalf("ran on %d, ret %d, err %v", ran, ret, err)
		}
	})

	pool, err := NewMempool("hmg-test", 2047, 32, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("ports", func(t *testing.T) {
		if _, err := PortByName("nope0"); err == nil {
			t.Fatal("PortByName(nope0): want error")
		}
		null, err := PortByName("net_null0")
		if err != nil {
			t.Fatal(err)
		}
		if err := null.Start(PortConfig{RxQueues: 1, TxQueues: 1, Promiscuous: true}, pool); err != nil {
			t.Fatal(err)
		}
		mac, err := null.MAC()
		if err != nil || len(mac) != 6 {
			t.Fatalf("mac %v %v", mac, err)
		}
		if _, err := null.Stats(); err != nil {
			t.Fatal(err)
		}
		// link, xstats and NUMA socket, as the metrics and the daemon read them
		if l, err := null.Link(); err != nil || !l.Up || l.SpeedMbps == 0 {
			t.Errorf("net_null link %v %v, want up with a speed", l, err)
		}
		xs, err := null.XStats()
		if err != nil || len(xs) == 0 {
			t.Fatalf("xstats %v %v", xs, err)
		}
		rxq, txq := QueuesOf(xs)
		if len(rxq) != 1 || rxq[0].Queue != 0 || len(txq) != 1 || txq[0].Queue != 0 {
			t.Errorf("queues of net_null's xstats %v: rx %+v tx %+v, want queue 0 with rx and tx counters", xs, rxq, txq)
		}
		if s := null.Socket(); s < -1 {
			t.Errorf("socket %d", s)
		}
		t.Logf("net_null0: link %v, socket %d, %d xstats, queues %+v", func() Link { l, _ := null.Link(); return l }(), null.Socket(), len(xs), rxq)
		// Too many queues is a clear error, not a crash.
		ring, err := PortByName("net_ring0")
		if err != nil {
			t.Fatal(err)
		}
		err = ring.Start(PortConfig{RxQueues: 64, TxQueues: 1}, pool)
		if err == nil || !strings.Contains(err.Error(), "queues") {
			t.Fatalf("64 queues on net_ring: %v", err)
		}
		hot, err := ProbeVdev("net_null1,size=128")
		if err != nil {
			t.Fatal(err)
		}
		if hot.Name != "net_null1" {
			t.Fatalf("hot-plugged name %q", hot.Name)
		}
		for _, p := range []Port{null, hot} {
			_ = p.Stop()
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
		}
		_ = ring.Close()
	})
	if pool.InUse() != 0 {
		t.Errorf("%d mbufs still in use", pool.InUse())
	}
	pool.Free()
	if err := Cleanup(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat("/var/run/dpdk/" + prefix); !os.IsNotExist(err) {
		t.Errorf("runtime dir left behind: %v", err)
	}
}
