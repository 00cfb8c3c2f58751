package table

import (
	"testing"
	"time"
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
