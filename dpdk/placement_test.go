package dpdk

import (
	"slices"
	"strings"
	"testing"

	"github.com/homing-dev/homing/internal/counters"
)

// TestPlacement: one worker per CPU, pinned, when the set has room for every worker (the
// main lcore on the CPUs left, or sharing the set), else every lcore floats.
func TestPlacement(t *testing.T) {
	for _, c := range []struct {
		cpus    string
		workers int
		want    string
	}{
		{"0-3", 2, "0@(0-1),1@2,2@3"},
		{"2-5", 2, "0@(2-3),1@4,2@5"},
		{"2,3", 2, "0@(2-3),1@2,2@3"}, // no CPU left: the main lcore shares the set
		{"0-1", 1, "0@(0),1@1"},
		{"0", 2, "(0-2)@(0)"}, // no room: every lcore floats
		{"0-2", 4, "(0-4)@(0-2)"},
		{"1,3,5-7", 3, "0@(1,3),1@5,2@6,3@7"},
		{"4-7", 0, "(0)@(4-7)"},
		{"3,1,2,1", 1, "0@(1-2),1@3"}, // sorted, each CPU once
	} {
		set, err := ParseCPUList(c.cpus)
		if err != nil {
			t.Fatalf("%q: %v", c.cpus, err)
		}
		if got := Place(set, c.workers).Arg(c.workers); got != c.want {
			t.Errorf("%q, %d workers: --lcores=%s, want %s", c.cpus, c.workers, got, c.want)
		}
		a, err := EALConfig{FilePrefix: "p", CPUs: c.cpus, Workers: c.workers}.Args()
		if err != nil || a[0] != "--lcores="+c.want {
			t.Errorf("%q, %d workers: EAL args %v (%v)", c.cpus, c.workers, a, err)
		}
	}
	got, err := ParseCPUList("8-9,0,2-3")
	if err != nil || !slices.Equal(got, []int{0, 2, 3, 8, 9}) {
		t.Errorf("ParseCPUList: %v %v", got, err)
	}
	for _, bad := range []string{"", "a", "3-1", "1-", "-1", "0-2000", "1,,2"} {
		if _, err := ParseCPUList(bad); err == nil {
			t.Errorf("%q: want error", bad)
		} else if !strings.HasPrefix(err.Error(), "dpdk: ") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func TestQueuesOf(t *testing.T) {
	xs := []XStat{{"rx_good_packets", 9}, {"rx_q0_packets", 5}, {"rx_q0_bytes", 320}, {"rx_q0_errors", 1}, {"tx_q0_packets", 7},
		{"tx_q0_bytes", 448}, {"rx_q1_packets", 4}, {"rx_q64_packets", 1}, {"rx_q1_weird", 3}, {"mlx5_rx_q0_packets", 2}}
	rx, tx := QueuesOf(xs)
	wantRx := []counters.QueueRx{{Queue: 0, Packets: 5, Bytes: 320, Errors: 1}, {Queue: 1, Packets: 4}}
	wantTx := []counters.QueueTx{{Queue: 0, Packets: 7, Bytes: 448}}
	if !slices.Equal(rx, wantRx) || !slices.Equal(tx, wantTx) {
		t.Errorf("QueuesOf = %+v %+v, want %+v %+v", rx, tx, wantRx, wantTx)
	}
}
