package gossip_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/homing-dev/homing/gossip"
	"github.com/homing-dev/homing/gossip/gossiptest"
	"github.com/homing-dev/homing/gossip/wire"
)

// TestSetKeys rotates the key of a running cluster in the two documented steps (new key
// with the old one accepted, then the new key alone) and checks that every channel
// follows at once: multicast records flow throughout, a late joiner that knows only the
// new key learns everything by repair (served under the new key), and a host that kept
// the old key is shut out.
func TestSetKeys(t *testing.T) {
	newKey := bytes.Repeat([]byte{0x3c}, 32)
	hub, nt := gossiptest.NewHub(), gossiptest.NewNet()
	var ms []*member
	for id := uint16(1); id <= 3; id++ {
		ms = append(ms, start(t, hub, repairConfig(t, nt, id)))
	}
	add := func(m *member, i int) {
		t.Helper()
		if err := m.node.LocalAdd(key(i)); err != nil {
			t.Fatal(err)
		}
	}
	add(ms[0], 1)
	converged(t, ms, 1, wait)

	// The three steps of docs/OPERATIONS.md, host by host, records flowing between
	// hosts at different steps.
	accept := mustKeyRing(t, testKey, newKey) // old signs, both accepted
	swap := mustKeyRing(t, newKey, testKey)   // new signs, old accepted
	next := 2
	for _, step := range []*wire.KeyRing{accept, swap, ring(t, newKey)} {
		for _, m := range ms {
			if err := m.node.SetKeys(step); err != nil {
				t.Fatal(err)
			}
			for _, m := range ms {
				add(m, next)
				next++
			}
			converged(t, ms, next-1, wait)
		}
	}
	for _, m := range ms {
		if s := m.node.Stats(); s.AuthFailures != 0 {
			t.Errorf("node %d: %d auth failures during the rotation", m.node.HostID(), s.AuthFailures)
		}
	}

	// A late joiner with the new key only: what it has not heard comes by repair.
	cfg := repairConfig(t, nt, 4)
	cfg.Keys = ring(t, newKey)
	late := start(t, hub, cfg)
	converged(t, append(ms, late), next-1, wait)
	if s := late.node.Stats(); s.RepairRecords != uint64(next-1) || s.RepairsFailed != 0 || s.AuthFailures != 0 {
		t.Errorf("late joiner: %d records by repair, %d repairs failed, %d auth failures", s.RepairRecords, s.RepairsFailed, s.AuthFailures)
	}

	// A host that kept the old key: its datagrams are rejected, it learns nothing.
	stale := start(t, hub, repairConfig(t, nt, 5))
	before := ms[0].node.Stats().AuthFailures
	gossiptest.WaitFor(t, wait, "the old key's heartbeats rejected", func() bool {
		return ms[0].node.Stats().AuthFailures > before+2
	})
	if n := stale.table.Len(); n != 0 {
		t.Errorf("the host with the old key learnt %d sessions", n)
	}
	if s := ms[0].node.Stats(); s.PeersUp != 3 {
		t.Errorf("node 1 sees %d peers up, want 3 (not the old key's host)", s.PeersUp)
	}

	if err := ms[0].node.SetKeys(nil); !errors.Is(err, gossip.ErrInsecure) {
		t.Errorf("SetKeys(nil): %v, want ErrInsecure", err)
	}
	insecure := fastConfig(t, 9)
	insecure.Keys, insecure.Insecure = nil, true
	if err := start(t, gossiptest.NewHub(), insecure).node.SetKeys(ring(t, newKey)); !errors.Is(err, gossip.ErrInsecure) {
		t.Errorf("SetKeys on an insecure node: %v, want ErrInsecure", err)
	}
}

func mustKeyRing(t *testing.T, current, accepted []byte) *wire.KeyRing {
	r, err := wire.NewKeyRing(current, accepted)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
