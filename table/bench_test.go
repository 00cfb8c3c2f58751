//go:build harness

package table

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/homing-dev/homing/session"
)

// keysN returns n sessions of one family.
func keysN(v6 bool, from, n int) []session.Key {
	ks := make([]session.Key, n)
	for i := range ks {
		if v6 {
			ks[i] = key6n(from + i)
		} else {
			ks[i] = key4n(from + i)
		}
	}
	return ks
}

// filled returns a table holding n sessions of one family (capacity 2^20-1 or 2^24-1).
func filled(b *testing.B, v6 bool, n int) (*Table, []session.Key) {
	b.Helper()
	capacity := uint32(1<<20 - 1)
	if n > int(capacity) {
		capacity = 1<<24 - 1
	}
	c4, c6 := capacity, uint32(CapacityMin)
	if v6 {
		c4, c6 = c6, c4
	}
	tab := newTable(b, c4, c6)
	keys := keysN(v6, 0, n)
	for i := 0; i < n; i += 4096 {
		var ups []session.Update
		for _, k := range keys[i:min(i+4096, n)] {
			ups = append(ups, session.Update{Key: k, Owner: selftestOwner(k, 1)})
		}
		if _, err := tab.ApplyBatch(ups); err != nil {
			b.Fatal(err)
		}
	}
	return tab, keys
}

// BenchmarkApply measures batched writes (one op = one batch of 1024 updates: the
// iterations alternate inserting 1024 new sessions and deleting them) on a table of
// 512K sessions, while the reader harness runs bulk lookups on a worker lcore.
func BenchmarkApply(b *testing.B) {
	for _, fam := range []string{"v4", "v6"} {
		b.Run(fam, func(b *testing.B) {
			const batch = 1024
			tab, keys := filled(b, fam == "v6", 512<<10)
			rd, err := startReader(tab, keys[:64<<10], readerLcore)
			if err != nil {
				b.Fatal(err)
			}
			churn := keysN(fam == "v6", 1<<21, batch*64)
			ins := make([][]session.Update, 64)
			dels := make([][]session.Update, 64)
			for j := range ins {
				for _, k := range churn[j*batch : (j+1)*batch] {
					ins[j] = append(ins[j], session.Update{Key: k, Owner: selftestOwner(k, 1)})
					dels[j] = append(dels[j], session.Update{Key: k, Delete: true})
				}
			}
			b.ResetTimer()
			c0 := rd.counts()
			for i := 0; i < b.N; i++ {
				j := (i / 2) % len(ins)
				ups := ins[j]
				if i%2 == 1 {
					ups = dels[j]
				}
				if res, err := tab.ApplyBatch(ups); err != nil || res.Added+res.Deleted != batch {
					b.Fatalf("batch %d: %+v %v", i, res, err)
				}
			}
			b.StopTimer()
			c1 := rd.counts()
			if b.N%2 == 1 { // leave the table as it was
				_, _ = tab.ApplyBatch(dels[(b.N/2)%len(ins)])
			}
			c := rd.stop()
			if c.Mismatches != 0 {
				b.Fatalf("reader: %+v", c)
			}
			b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "updates/s")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/update")
			b.ReportMetric(float64(c1.Lookups-c0.Lookups)/b.Elapsed().Seconds(), "reader-lookups/s")
		})
	}
}

// BenchmarkLookup measures homing_table_lookup{4,6}_bulk (bursts of 32 present keys in
// random order) at 1M sessions, on the calling thread. One op is one key.
func BenchmarkLookup(b *testing.B) {
	for _, fam := range []string{"v4", "v6"} {
		b.Run(fam+"/1M", func(b *testing.B) {
			tab, keys := filled(b, fam == "v6", 1000000)
			rand.New(rand.NewPCG(3, 4)).Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
			a := newCKeyArray(keys)
			defer a.free()
			benchLookup(tab, a, uint64(len(keys))) // warm up
			b.ResetTimer()
			start := time.Now()
			hits, cycles := benchLookup(tab, a, uint64(b.N))
			el := time.Since(start)
			b.StopTimer()
			if hits != uint64(b.N) {
				b.Fatalf("%d hits of %d", hits, b.N)
			}
			b.ReportMetric(float64(cycles)/float64(b.N), "cycles/key")
			b.ReportMetric(float64(el.Nanoseconds())/float64(b.N), "ns/key")
		})
	}
}

// BenchmarkMemory reports the DPDK memory per session of a table, measured as the
// growth of the rte_malloc heap when the table is created (all of it is taken then)
// and as computed by MemSize.
func BenchmarkMemory(b *testing.B) {
	needEAL(b)
	for _, c := range []struct {
		fam string
		n   uint32
	}{{"v4", 1 << 20}, {"v4", 1<<20 - 1}, {"v6", 1<<20 - 1}, {"v4", 10000000}, {"v6", 10000000}} {
		b.Run(fmt.Sprintf("%s/%d", c.fam, c.n), func(b *testing.B) {
			c4, c6 := c.n, uint32(CapacityMin)
			if c.fam == "v6" {
				c4, c6 = c6, c4
			}
			var grew uint64
			for i := 0; i < b.N; i++ {
				before := heapAllocated()
				tab, err := New("membench", c4, c6, -1)
				if err != nil {
					b.Fatal(err)
				}
				grew = heapAllocated() - before
				tab.Close()
			}
			b.ReportMetric(float64(grew)/float64(c.n), "heap-B/session")
			b.ReportMetric(float64(MemSize(c4, c6))/float64(c.n), "computed-B/session")
		})
	}
}
