//go:build harness

package lcore_test

import (
	"bytes"
	"testing"

	"github.com/homing-dev/homing/internal/golden"
	"github.com/homing-dev/homing/lcore"
)

// classes keeps the counters that say what happened to the packets.
func classes(s lcore.Stats) lcore.Stats {
	s.Lcore, s.Loops, s.IdleLoops, s.Sleeps, s.BusyCycles, s.Cycles = 0, 0, 0, 0, 0, 0
	return s
}

// FuzzFastPath checks that the pipeline's fast paths (IPv4/TCP to a VIP, GUE to this
// host) decide every frame exactly as the full classifier does: same outputs, byte for
// byte, and same counters.
func FuzzFastPath(f *testing.F) {
	for _, s := range append(golden.FuzzSeeds(), udpSeeds()...) {
		f.Add(s)
	}
	for _, c := range golden.GUECases() {
		f.Add(c.Frame)
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		if len(frame) > 2000 {
			return
		}
		e := setup(t)
		nic1, kernel1, st1 := run(t, e, [][]byte{frame})
		lcore.SetFastPaths(false)
		nic2, kernel2, st2 := run(t, e, [][]byte{frame})
		lcore.SetFastPaths(true)
		if classes(st1) != classes(st2) {
			t.Fatalf("counters differ:\nfast %+v\nfull %+v", classes(st1), classes(st2))
		}
		if len(nic1) != len(nic2) || len(kernel1) != len(kernel2) {
			t.Fatalf("outputs differ: fast %d+%d, full %d+%d", len(nic1), len(kernel1), len(nic2), len(kernel2))
		}
		for i := range nic1 {
			if !bytes.Equal(nic1[i], nic2[i]) {
				t.Fatalf("NIC output differs:\nfast %x\nfull %x", nic1[i], nic2[i])
			}
		}
		for i := range kernel1 {
			if !bytes.Equal(kernel1[i], kernel2[i]) {
				t.Fatalf("kernel output differs:\nfast %x\nfull %x", kernel1[i], kernel2[i])
			}
		}
	})
}
