//go:build harness

package table

import (
	"testing"
	"time"

	"github.com/homing-dev/homing/session"
)

// TestSeqlockRace: IPv4 keys live in the bucket and readers check the bucket's version
// around their read (no key slot, no QSBR hold). A writer thread keeps a small table
// full, so that every add runs cuckoo paths that move the stable keys between buckets,
// and rewrites the stable keys' values, while this thread looks them up through the
// pipeline's stage/finish and the bulk lookup: no stable key may ever be missing, and
// every hit must carry its own key's value (a torn read of an entry under change would
// show as one or the other). -race does not see C: this is the C side's race test.
func TestSeqlockRace(t *testing.T) {
	const nstable, nchurn = 96, 64
	d := 2 * time.Second
	if testing.Short() {
		d = 300 * time.Millisecond
	}
	tab := newTable(t, nstable+nchurn/2, 64)
	c, err := race4(tab, nstable, nchurn, d)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", c)
	if c.Missing != 0 || c.Mismatches != 0 || c.WriterErrors != 0 {
		t.Errorf("stable keys missing %d, values of another key %d, writer errors %d", c.Missing, c.Mismatches, c.WriterErrors)
	}
	// The race must have happened: both sides made progress and entries moved.
	if c.Lookups < 10000 || c.Writes < 10000 || c.CuckooMoves == 0 {
		t.Fatalf("too little concurrency to mean anything: %+v", c)
	}
}

// TestStash4: IPv4 keys whose two buckets are the same full bucket go to the stash (no
// cuckoo path can free an entry there); they are found by every lookup, updated,
// iterated and deleted like the others.
func TestStash4(t *testing.T) {
	const capacity = 16
	tab := newTable(t, capacity, 64)
	// Keys whose primary and secondary bucket are both bucket 0.
	var same []session.Key
	for i := 0; len(same) < 6 && i < 1<<20; i++ {
		k := key4n(i)
		if b1, b2 := buckets4(tab, k); b1 == 0 && b2 == 0 {
			same = append(same, k)
		}
	}
	if len(same) < 6 {
		t.Fatalf("found %d keys with both buckets 0", len(same))
	}
	var ups []session.Update
	for _, k := range same {
		ups = append(ups, add(k, selftestOwner(k, 1)))
	}
	apply(t, tab, ups, Result{Added: 6})
	if n := stashedCount(tab); n != 2 {
		t.Fatalf("stashed %d keys, want 2 (a bucket holds 4)", n)
	}
	checkAll(t, tab, same, 1)
	for _, k := range same {
		for _, n := range []int{1, 32, 64} {
			if h := lookupRepeat(tab, k, n); h != n {
				t.Fatalf("bulk lookup of %d copies of %v: %d hits", n, k, h)
			}
		}
	}
	// Update all (two of them in the stash), then delete two stashed and two bucket keys.
	ups = ups[:0]
	for _, k := range same {
		ups = append(ups, add(k, selftestOwner(k, 2)))
	}
	apply(t, tab, ups, Result{Updated: 6})
	checkAll(t, tab, same, 2)
	if got := entries(tab); len(got) != 6 || got[same[5]] != selftestOwner(same[5], 2) {
		t.Fatalf("entries %v", got)
	}
	apply(t, tab, []session.Update{del(same[0]), del(same[1]), del(same[4]), del(same[5])}, Result{Deleted: 4})
	for _, k := range []session.Key{same[0], same[1], same[4], same[5]} {
		if _, ok := tab.Lookup(k); ok || lookupRepeat(tab, k, 1) != 0 {
			t.Fatalf("deleted %v still found", k)
		}
	}
	checkAll(t, tab, same[2:4], 2)
	// Re-added: two fit the bucket again, none needs the stash.
	apply(t, tab, []session.Update{add(same[4], selftestOwner(same[4], 3)), add(same[5], selftestOwner(same[5], 3))}, Result{Added: 2})
	if n := stashedCount(tab); n != 2 {
		t.Fatalf("stashed %d keys, want still 2", n)
	}
	checkAll(t, tab, same[4:], 3)
}
