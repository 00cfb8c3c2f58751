//go:build harness

package lcore_test

import (
	"sync"
	"testing"

	"github.com/homing-dev/homing/dpdk"
	"github.com/homing-dev/homing/internal/golden"
	"github.com/homing-dev/homing/lcore"
)

// TestGUERefusals runs golden's GUE scenario, each frame alone, with the fast paths on
// and off: GUE from a live peer's IPv4 or IPv6 tunnel address carrying what a peer
// tunnels is decapsulated byte for byte; everything else is dropped (nothing leaves
// either port) and moves exactly its refusal counter by one.
func TestGUERefusals(t *testing.T) {
	e := setup(t)
	refused := map[string]int{}
	for _, fast := range []bool{true, false} {
		lcore.SetFastPaths(fast)
		for _, c := range golden.GUECases() {
			nic, kernel, st := run(t, e, [][]byte{c.Frame})
			if err := golden.CheckOne(c, nic, kernel); err != nil {
				t.Errorf("fast %v: %v", fast, err)
				continue
			}
			got := st.GUERefused()
			switch c.Want.Kind {
			case golden.Drop:
				if got[c.Want.Counter] != 1 || sumGUERefused(st) != 1 || st.GUEBad != 1 {
					t.Errorf("fast %v: %s: refusals %v (class %d), want %s = 1", fast, c.Name, got, st.GUEBad, c.Want.Counter)
				}
				refused[c.Want.Counter]++
			case golden.Decap:
				if st.Decap != 1 || st.GUEBad != 0 {
					t.Errorf("fast %v: %s: decap %d, refused %v", fast, c.Name, st.Decap, got)
				}
			default:
				if st.GUEBad != 0 {
					t.Errorf("fast %v: %s: refused %v", fast, c.Name, got)
				}
			}
		}
	}
	lcore.SetFastPaths(true)
	for _, r := range []string{golden.GUEUnknownSource, golden.GUEMalformed, golden.GUEInnerMalformed, golden.GUEInnerProto, golden.GUEInnerNotVIP} {
		if refused[r] == 0 {
			t.Errorf("no case refused as %s", r)
		}
	}
}

// TestGUEPeerWithdrawn: a peer's GUE is decapsulated while its template is published
// and refused (unknown_source) once it is withdrawn, over its IPv4 and its IPv6 address;
// published again, it is decapsulated again.
func TestGUEPeerWithdrawn(t *testing.T) {
	e := setup(t)
	var frames [][]byte
	for _, c := range golden.GUECases() {
		if c.Name == "gue4-peer-tcp-vip" || c.Name == "gue6-peer-tcp-vip" {
			frames = append(frames, c.Frame)
		}
	}
	if len(frames) != 2 {
		t.Fatalf("%d frames", len(frames))
	}
	_, kernel, st := run(t, e, frames)
	if len(kernel) != 2 || st.Decap != 2 {
		t.Fatalf("published: %d to the kernel, %+v", len(kernel), st)
	}
	e.dp.ClearTemplate(2)
	if n := len(e.dp.PeerSources()); n != 0 {
		t.Fatalf("%d sources after the withdrawal", n)
	}
	nic, kernel, st := run(t, e, frames)
	if len(nic)+len(kernel) != 0 || st.GUEUnknownSource != 2 || st.GUEBad != 2 {
		t.Fatalf("withdrawn: %d out, %+v", len(nic)+len(kernel), st)
	}
	if err := e.dp.SetTemplate(goldenTemplate(golden.Peers[0])); err != nil {
		t.Fatal(err)
	}
	_, kernel, st = run(t, e, frames)
	if len(kernel) != 2 || st.Decap != 2 {
		t.Fatalf("published again: %d to the kernel, %+v", len(kernel), st)
	}
}

var swapPort struct {
	once sync.Once
	p    dpdk.Port
	err  error
}

// TestPeerSetSwapUnderLoad: a worker lcore decapsulates GUE from peer 2 at full speed
// (the bench loop on net_null) while the control plane withdraws and publishes peer 2's
// template over and over: each swap of the live-peer set waits for the lcore's
// quiescent state before it frees the old set. The lcore neither crashes nor stalls,
// and every packet is either decapsulated or refused as unknown_source (never as
// anything else: no torn set is ever read).
func TestPeerSetSwapUnderLoad(t *testing.T) {
	e := setup(t)
	workers := dpdk.Workers()
	if len(workers) == 0 {
		t.Fatal("no worker lcore")
	}
	// One net_null port per process (a vdev cannot be probed twice; -count=N).
	swapPort.once.Do(func() {
		if swapPort.p, swapPort.err = dpdk.ProbeVdev("net_null9,size=86"); swapPort.err == nil {
			swapPort.err = swapPort.p.Start(dpdk.PortConfig{RxQueues: 1, TxQueues: 1}, e.pool)
		}
	})
	if swapPort.err != nil {
		t.Fatal(swapPort.err)
	}
	port := swapPort.p
	p := golden.Peers[0]
	done := make(chan struct{})
	swaps := make(chan int)
	go func() {
		n := 0
		for {
			select {
			case <-done:
				swaps <- n
				return
			default:
			}
			e.dp.ClearTemplate(p.ID)
			if err := e.dp.SetTemplate(goldenTemplate(p)); err != nil {
				t.Error(err)
			}
			n += 2
		}
	}()
	res, err := e.dp.BenchRun(lcore.BenchConfig{Lcores: workers[:1], Port: port, Mode: lcore.BenchPipeline,
		Gen: lcore.BenchGenGUE, Sessions: 1024, VIP: golden.VIPs[0], VIPPort: 80, Packets: 2_000_000,
		GUEDst: golden.Self.Addr, GUESrc: p.Addr, GUEPort: golden.Self.Port})
	close(done)
	n := <-swaps
	if err != nil {
		t.Fatal(err)
	}
	st := res[0].Stats
	t.Logf("%d packets: %d decapsulated, %d refused (unknown source), %d set swaps, peer sets leaked %d",
		res[0].Packets, st.Decap, st.GUEUnknownSource, n, e.dp.PeerSetsLeaked())
	if st.Decap+st.GUEUnknownSource != st.RxNIC || st.GUEBad != st.GUEUnknownSource || st.Decap == 0 || n < 10 {
		t.Errorf("stats %+v after %d swaps", st, n)
	}
	if e.dp.PeerSetsLeaked() != 0 {
		t.Errorf("%d old peer sets leaked: the lcore did not report a quiescent state within a second", e.dp.PeerSetsLeaked())
	}
	if !e.dp.TemplateValid(p.ID) {
		t.Fatal("peer 2's template left withdrawn")
	}
}
