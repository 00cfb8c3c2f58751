//go:build harness

package lcore_test

import (
	"sync"
	"testing"

	"github.com/homing-dev/homing/dpdk"
	"github.com/homing-dev/homing/lcore"
)

var ringPort struct {
	once sync.Once
	p    dpdk.Port
	err  error
}

// TestTxBacklog: a full NIC tx queue neither spins nor loses the packets it refuses: they
// wait in the lcore's backlog (HOMING_TX_BACKLOG = 128) and leave first, in order, once
// the queue has room; only what overflows the backlog is dropped and counted
// (drop_nic_tx). net_ring's tx ring is its own rx ring, so the test fills it by not
// receiving and empties it by receiving.
func TestTxBacklog(t *testing.T) {
	e := setup(t)
	ringPort.once.Do(func() {
		if ringPort.p, ringPort.err = dpdk.ProbeVdev("net_ring7"); ringPort.err == nil {
			ringPort.err = ringPort.p.Start(dpdk.PortConfig{RxQueues: 1, TxQueues: 1}, e.pool)
		}
	})
	if ringPort.err != nil {
		t.Fatal(ringPort.err)
	}
	port := ringPort.p
	f := e.dp.NewFrames(e.pool)
	defer f.Close()
	lcore.RxNumbered(port, 4096) // empty, for -count=N

	const backlog, first = 128, 1500
	if err := f.TxNIC(port, 0, first); err != nil {
		t.Fatal(err)
	}
	st := f.Stats()
	ring := int(st.TxNIC) // what the ring took (its capacity)
	if ring == 0 || ring >= first-backlog || f.TxBacklog() != backlog || int(st.DropNICTx) != first-ring-backlog {
		t.Fatalf("%d sent: ring took %d, backlog %d, dropped %d; want a full ring, %d waiting, the rest dropped",
			first, ring, f.TxBacklog(), st.DropNICTx, backlog)
	}
	// An offer to a ring still full moves nothing.
	if err := f.TxNIC(port, 0, 0); err != nil || f.TxBacklog() != backlog {
		t.Fatalf("offer to a full ring: backlog %d, %v", f.TxBacklog(), err)
	}
	got := lcore.RxNumbered(port, ring)
	for i, n := range got {
		if n != uint32(i) {
			t.Fatalf("ring frame %d is number %d", i, n)
		}
	}
	// New packets leave after the backlog, which leaves whole and in order.
	if err := f.TxNIC(port, first, 10); err != nil {
		t.Fatal(err)
	}
	got = lcore.RxNumbered(port, 4096)
	want := []uint32{}
	for i := range backlog {
		want = append(want, uint32(ring+i))
	}
	for i := range 10 {
		want = append(want, uint32(first+i))
	}
	if len(got) != len(want) {
		t.Fatalf("after the ring emptied: %d frames, want %d (backlog then new)", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("frame %d after the ring emptied is number %d, want %d", i, got[i], want[i])
		}
	}
	if st := f.Stats(); f.TxBacklog() != 0 || int(st.TxNIC) != ring+backlog+10 || int(st.DropNICTx) != first-ring-backlog {
		t.Fatalf("sent %d, dropped %d, backlog %d", st.TxNIC, st.DropNICTx, f.TxBacklog())
	}
	t.Logf("ring took %d, backlog %d, dropped %d of %d; backlog and 10 new frames left in order", ring, backlog, first-ring-backlog, first)
}
