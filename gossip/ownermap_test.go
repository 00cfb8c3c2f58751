package gossip

import (
	"math/rand/v2"
	"net/netip"
	"runtime"
	"testing"

	"github.com/homing-dev/homing/session"
)

// randKey draws keys from a small space (so that ops hit existing keys), both families.
func randKey(r *rand.Rand) session.Key {
	i := r.IntN(4000)
	if r.IntN(3) == 0 {
		k := key6(i)
		k.Dst = netip.AddrFrom16([16]byte{0x20, 0x01, 0, 2, 15: byte(i % 7)})
		return k
	}
	k := key4(i)
	k.Proto = []uint8{session.TCP, session.UDP}[i%2]
	return k
}

// TestOwnerMap checks the ownership map against a Go map over random puts, deletes,
// growth from a small size, and iterations that delete or overwrite as they go.
func TestOwnerMap(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	m := newOwnerMap(0, 0)
	ref := map[session.Key]entry{}
	check := func() {
		t.Helper()
		if m.len() != len(ref) {
			t.Fatalf("len %d, want %d", m.len(), len(ref))
		}
		seen := map[session.Key]bool{}
		for k, e := range m.all() {
			if seen[k] {
				t.Fatalf("%v twice", k)
			}
			seen[k] = true
			if w, ok := ref[k]; !ok || w != e {
				t.Fatalf("%v: %+v, want %+v (%v)", k, e, w, ok)
			}
		}
		if len(seen) != len(ref) {
			t.Fatalf("iterated %d of %d", len(seen), len(ref))
		}
	}
	for round := range 40 {
		for range 2000 {
			k := randKey(r)
			switch r.IntN(3) {
			case 0, 1:
				e := entry{owner: session.Owner{Host: uint16(1 + r.IntN(4)), Epoch: r.Uint64() & session.MaxEpoch},
					inc: uint64(r.IntN(5)), listed: r.IntN(2) == 0}
				old, ok := m.put(k, e)
				if w, wok := ref[k]; ok != wok || old != w {
					t.Fatalf("put %v: old %+v %v, want %+v %v", k, old, ok, w, wok)
				}
				ref[k] = e
			case 2:
				old, ok := m.del(k)
				if w, wok := ref[k]; ok != wok || old != w {
					t.Fatalf("del %v: %+v %v, want %+v %v", k, old, ok, w, wok)
				}
				delete(ref, k)
			}
			if e, ok := m.get(k); ok != (ref[k] != entry{}) || e != ref[k] {
				t.Fatalf("get %v: %+v", k, e)
			}
		}
		check()
		// Delete some, overwrite others, as an iteration goes (grace drops, reconcile).
		visited := 0
		for k, e := range m.all() {
			visited++
			switch {
			case int(e.owner.Host)%3 == round%3 && r.IntN(2) == 0:
				if _, ok := m.del(k); !ok {
					t.Fatalf("del %v in iteration", k)
				}
				delete(ref, k)
			case e.listed:
				e.listed = false
				m.put(k, e)
				ref[k] = e
			}
		}
		check()
		// A repair's sweep of one host's entries (reconcile): marks cleared, some of
		// the unmarked removed.
		var host uint16
		for _, e := range ref {
			host = e.owner.Host
			break
		}
		for k, e := range ref {
			switch {
			case e.owner.Host != host:
			case e.listed:
				e.listed = false
				ref[k] = e
			case e.owner.Epoch%2 == 1:
				delete(ref, k)
			}
		}
		m.sweepListed(host, func(k session.Key, e entry) bool {
			if e.owner.Host != host || e.listed {
				t.Fatalf("sweep of %d gave %v %+v", host, k, e)
			}
			return e.owner.Epoch%2 == 1
		})
		check()
		if len(m.incs.byVal) > 5 || len(m.incs.vals)-len(m.incs.free) != len(m.incs.byVal) {
			t.Fatalf("incarnations: %d ids, %d free, %d live", len(m.incs.vals), len(m.incs.free), len(m.incs.byVal))
		}
	}
	for k := range ref {
		m.del(k)
	}
	if m.len() != 0 || len(m.incs.byVal) != 0 {
		t.Fatalf("empty map: len %d, %d incarnations", m.len(), len(m.incs.byVal))
	}
}

// TestOwnerMapMemory measures the heap an ownership map sized for 1M sessions takes,
// per session, against a Go map[session.Key]entry of the same size hint (what the
// node used before): at most 64 bytes per session (issue 20), both families.
func TestOwnerMapMemory(t *testing.T) {
	const n = 1 << 20
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	for _, v6 := range []bool{false, true} {
		h0 := heap()
		var m *ownerMap
		if v6 {
			m = newOwnerMap(0, n)
		} else {
			m = newOwnerMap(n, 0)
		}
		for i := range n {
			k := key4(i)
			if v6 {
				k = key6(i)
			}
			k.SrcPort = uint16(i)
			k.Src = netip.AddrFrom4([4]byte{198, 18, byte(i >> 16), byte(i >> 8)})
			if v6 {
				a := [16]byte{0x20, 0x01, 0, 2, 13: byte(i >> 16), 14: byte(i >> 8)}
				k.Src = netip.AddrFrom16(a)
			}
			m.put(k, entry{owner: session.Owner{Host: uint16(1 + i%64), Epoch: uint64(i)}, inc: uint64(i % 64)})
		}
		if m.len() != n {
			t.Fatalf("len %d", m.len())
		}
		per := float64(heap()-h0) / n
		t.Logf("ownership map, v6=%v, %d sessions: %.1f bytes/session (tables %.1f)", v6, n, per, float64(m.memBytes())/n)
		if per > 64 {
			t.Errorf("v6=%v: %.1f bytes per session, want <= 64", v6, per)
		}
		runtime.KeepAlive(m)
	}
	h0 := heap()
	g := make(map[session.Key]entry, n)
	for i := range n {
		k := key4(i)
		k.SrcPort = uint16(i)
		k.Src = netip.AddrFrom4([4]byte{198, 18, byte(i >> 16), byte(i >> 8)})
		g[k] = entry{}
	}
	t.Logf("Go map[session.Key]entry, %d sessions: %.1f bytes/session", n, float64(heap()-h0)/n)
	runtime.KeepAlive(g)
}
