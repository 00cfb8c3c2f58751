//go:build harness

package table

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/homing-dev/homing/dpdk"
	"github.com/homing-dev/homing/internal/testenv"
	"github.com/homing-dev/homing/session"
)

// The EAL can start once per process: tests and benchmarks that need it call needEAL,
// and TestMain cleans it up. 2 GB of --no-huge memory costs nothing until used (the
// 10M-session benchmark takes about 1 GB); HOMING_TEST_HUGEPAGES=1 uses 512 MB of
// hugepages instead (reserve 256 2 MB pages first).
var eal struct {
	once sync.Once
	err  error
}

const readerLcore = 1

func needEAL(tb testing.TB) {
	tb.Helper()
	testenv.RequireRoot(tb)
	eal.once.Do(func() {
		c := dpdk.EALConfig{
			FilePrefix: fmt.Sprintf("hmg-table-%d", os.Getpid()),
			Workers:    1,
			MemoryMB:   2048,
			LogLevel:   "error",
		}
		if os.Getenv("HOMING_TEST_HUGEPAGES") == "1" {
			// Benchmarks are meant for hugepages; 512 MB holds the 1M-session tables
			// (not the 10M ones of BenchmarkMemory).
			c.Hugepages, c.MemoryMB = true, 512
		}
		eal.err = dpdk.Init(c)
	})
	if eal.err != nil {
		tb.Fatal(eal.err)
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	if dpdk.Initialized() {
		if err := dpdk.Cleanup(); err != nil {
			fmt.Fprintln(os.Stderr, "dpdk cleanup:", err)
		}
	}
	os.Exit(code)
}

var tableSeq struct {
	sync.Mutex
	n int
}

// newTable creates a table with a unique name, closed at the end of the test.
func newTable(tb testing.TB, cap4, cap6 uint32) *Table {
	tb.Helper()
	needEAL(tb)
	tableSeq.Lock()
	tableSeq.n++
	name := fmt.Sprintf("t%d", tableSeq.n)
	tableSeq.Unlock()
	tab, err := New(name, cap4, cap6, -1)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(tab.Close)
	return tab
}

var vip4 = netip.MustParseAddr("198.19.255.1")
var vip6 = netip.MustParseAddr("2001:db8:ffff::1")

// key4n is the i-th IPv4 test session (distinct for every i < 2^31).
func key4n(i int) session.Key {
	a := 198<<24 | 18<<16 | uint32(i)&0x1ffff
	proto := session.TCP
	if i&1 == 1 {
		proto = session.UDP
	}
	return session.Key{
		Src:     netip.AddrFrom4([4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)}),
		Dst:     vip4,
		SrcPort: uint16(1024 + i>>17),
		DstPort: 443,
		Proto:   proto,
	}
}

// key6n is the i-th IPv6 test session.
func key6n(i int) session.Key {
	b := netip.MustParseAddr("2001:db8::").As16()
	b[12], b[13], b[14], b[15] = byte(i>>24), byte(i>>16), byte(i>>8), byte(i)
	return session.Key{Src: netip.AddrFrom16(b), Dst: vip6, SrcPort: uint16(40000 + i%1000), DstPort: 443, Proto: session.TCP}
}

func add(k session.Key, o session.Owner) session.Update { return session.Update{Key: k, Owner: o} }
func del(k session.Key) session.Update                  { return session.Update{Key: k, Delete: true} }

func apply(t *testing.T, tab *Table, ups []session.Update, want Result) {
	t.Helper()
	got, err := tab.ApplyBatch(ups)
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	if got != want {
		t.Fatalf("apply: got %+v, want %+v", got, want)
	}
}

func entries(tab *Table) map[session.Key]session.Owner {
	m := map[session.Key]session.Owner{}
	tab.Entries(func(k session.Key, o session.Owner) bool {
		m[k] = o
		return true
	})
	return m
}

func TestAddUpdateDeleteLookupIterate(t *testing.T) {
	tab := newTable(t, 1024, 1024)
	want := map[session.Key]session.Owner{}
	var ups []session.Update
	for i := range 300 {
		for _, k := range []session.Key{key4n(i), key6n(i)} {
			o := session.Owner{Host: uint16(i), Epoch: uint64(i) << 30}
			ups = append(ups, add(k, o))
			want[k] = o
		}
	}
	apply(t, tab, ups, Result{Added: 600})
	if v4, v6 := tab.Len(); v4 != 300 || v6 != 300 {
		t.Fatalf("len %d %d", v4, v6)
	}
	for k, o := range want {
		if got, ok := tab.Lookup(k); !ok || got != o {
			t.Fatalf("lookup %v: %v %v, want %v", k, got, ok, o)
		}
	}

	// Update half, delete a quarter, delete some absent keys, all in one ordered batch;
	// a key deleted then re-added in the same batch ends up present.
	ups = ups[:0]
	for i := range 150 {
		k := key4n(i)
		o := session.Owner{Host: 7, Epoch: session.MaxEpoch}
		ups = append(ups, add(k, o))
		want[k] = o
	}
	for i := 150; i < 225; i++ {
		ups = append(ups, del(key6n(i)))
		delete(want, key6n(i))
	}
	ups = append(ups, del(key4n(5000)), del(key6n(5000)))
	ups = append(ups, del(key6n(0)), add(key6n(0), session.Owner{Host: 1, Epoch: 1}))
	want[key6n(0)] = session.Owner{Host: 1, Epoch: 1}
	apply(t, tab, ups, Result{Added: 1, Updated: 150, Deleted: 76, Absent: 2})
	if v4, v6 := tab.Len(); v4 != 300 || v6 != 225 {
		t.Fatalf("len %d %d", v4, v6)
	}
	for i := 150; i < 225; i++ {
		if o, ok := tab.Lookup(key6n(i)); ok {
			t.Fatalf("deleted key %v still there: %v", key6n(i), o)
		}
	}
	got := entries(tab)
	if len(got) != len(want) {
		t.Fatalf("entries: %d, want %d", len(got), len(want))
	}
	for k, o := range want {
		if got[k] != o {
			t.Fatalf("entries[%v] = %v, want %v", k, got[k], o)
		}
	}
	// Early stop.
	n := 0
	tab.Entries(func(session.Key, session.Owner) bool { n++; return n < 10 })
	if n != 10 {
		t.Fatalf("entries did not stop: %d", n)
	}
	st := tab.Stats()
	if st != (Stats{Inserts: 601, Updates: 150, Deletes: 76, DeleteMiss: 2}) {
		t.Fatalf("stats %+v", st)
	}
	// Apply (the interface method) and an empty batch.
	if err := tab.Apply(nil); err != nil {
		t.Fatal(err)
	}
	if err := tab.Apply([]session.Update{del(key4n(0))}); err != nil {
		t.Fatal(err)
	}
	if _, ok := tab.Lookup(key4n(0)); ok {
		t.Fatal("key4n(0) still there")
	}
}

func TestInvalid(t *testing.T) {
	tab := newTable(t, 64, 64)
	good := key4n(1)
	bad := []session.Update{
		add(session.Key{Src: good.Src, Dst: good.Dst, SrcPort: 1, DstPort: 2, Proto: 1}, session.Owner{}),
		add(session.Key{Src: good.Src, Dst: vip6, Proto: session.TCP}, session.Owner{}),
		add(session.Key{Src: netip.AddrFrom16(good.Src.As16()), Dst: netip.AddrFrom16(vip4.As16()), Proto: session.TCP}, session.Owner{}),
		add(session.Key{}, session.Owner{}),
		add(good, session.Owner{Host: 1, Epoch: session.MaxEpoch + 1}),
		del(session.Key{Src: good.Src, Dst: good.Dst, Proto: 47}),
	}
	res, err := tab.ApplyBatch(append(bad, add(good, session.Owner{Host: 3, Epoch: 4})))
	if !errors.Is(err, ErrInvalid) || errors.Is(err, ErrFull) {
		t.Fatalf("err %v", err)
	}
	if res != (Result{Added: 1, Invalid: len(bad)}) {
		t.Fatalf("res %+v", res)
	}
	if o, ok := tab.Lookup(good); !ok || o != (session.Owner{Host: 3, Epoch: 4}) {
		t.Fatalf("good key: %v %v", o, ok)
	}
	if _, ok := tab.Lookup(bad[0].Key); ok {
		t.Fatal("lookup of an invalid key succeeded")
	}

	// The C side checks keys itself: non-zero padding, bad protocol.
	var kb [keyLen6]byte
	putKey4(kb[:], good)
	for _, mut := range []func(b []byte){
		func(b []byte) { b[13] = 1 },
		func(b []byte) { b[15] = 0x80 },
		func(b []byte) { b[12] = 1 },
	} {
		b := append([]byte(nil), kb[:keyLen4]...)
		mut(b)
		if r := tab.rawWrite(b, false, 1); r != -int(syscall.EINVAL) {
			t.Errorf("add4 % x: %d", b, r)
		}
		if r := tab.rawWrite(b, true, 0); r != -int(syscall.EINVAL) {
			t.Errorf("del4 % x: %d", b, r)
		}
		if r := tab.rawGet(b); r != -int(syscall.EINVAL) {
			t.Errorf("get4 % x: %d", b, r)
		}
	}
	putKey6(kb[:], key6n(1))
	for _, off := range []int{37, 39} {
		b := append([]byte(nil), kb[:]...)
		b[off] = 1
		if r := tab.rawWrite(b, false, 1); r != -int(syscall.EINVAL) {
			t.Errorf("add6 pad[%d]: %d", off, r)
		}
	}
	b := append([]byte(nil), kb[:]...)
	b[36] = 58
	if r := tab.rawWrite(b, false, 1); r != -int(syscall.EINVAL) {
		t.Errorf("add6 proto 58: %d", r)
	}
	if r := tab.rawWrite(kb[:], false, 1); r != 0 {
		t.Errorf("add6 good: %d", r)
	}
	if st := tab.Stats(); st.Invalid != 9 || st.Inserts != 2 {
		t.Errorf("stats %+v", st)
	}
}

func TestNewErrors(t *testing.T) {
	needEAL(t)
	for _, c := range []struct {
		name       string
		cap4, cap6 uint32
	}{
		{"", 64, 64},
		{"a-name-that-is-too-long", 64, 64},
		{"small", 4, 64},
		{"big", 64, CapacityMax + 1},
	} {
		if tab, err := New(c.name, c.cap4, c.cap6, -1); err == nil {
			tab.Close()
			t.Errorf("New(%q, %d, %d): no error", c.name, c.cap4, c.cap6)
		}
	}
	tab := newTable(t, 64, 64)
	if _, err := New(tab.Name(), 64, 64, -1); err == nil {
		t.Error("duplicate name: no error")
	}
	tab.Close()
	tab.Close()
	if _, err := tab.ApplyBatch([]session.Update{add(key4n(1), session.Owner{})}); !errors.Is(err, ErrClosed) {
		t.Errorf("apply after close: %v", err)
	}
	if _, ok := tab.Lookup(key4n(1)); ok {
		t.Error("lookup after close")
	}
}

// fill adds keys until the IPv4 side refuses them, and returns the keys in.
func fill(t *testing.T, tab *Table) []session.Key {
	t.Helper()
	return fillWith(t, tab, key4n)
}

// fillWith adds keyn(0), keyn(1), ... until the table refuses them, and returns the keys in.
func fillWith(t *testing.T, tab *Table, keyn func(int) session.Key) []session.Key {
	t.Helper()
	var in []session.Key
	for base := 0; ; base += 512 {
		var ups []session.Update
		for i := base; i < base+512; i++ {
			ups = append(ups, add(keyn(i), selftestOwner(keyn(i), 1)))
		}
		res, err := tab.ApplyBatch(ups)
		in = append(in, func() []session.Key {
			var ks []session.Key
			for _, u := range ups {
				if _, ok := tab.Lookup(u.Key); ok {
					ks = append(ks, u.Key)
				}
			}
			return ks
		}()...)
		if res.Full > 0 {
			if !errors.Is(err, ErrFull) {
				t.Fatalf("full batch: err %v", err)
			}
			if res.Added+res.Full != len(ups) {
				t.Fatalf("full batch: %+v", res)
			}
			return in
		}
		if err != nil {
			t.Fatal(err)
		}
		if base > 1<<20 {
			t.Fatal("table never filled")
		}
	}
}

func checkAll(t *testing.T, tab *Table, keys []session.Key, gen uint32) {
	t.Helper()
	for _, k := range keys {
		if o, ok := tab.Lookup(k); !ok || o != selftestOwner(k, gen) {
			t.Fatalf("lookup %v: %v %v, want %v", k, o, ok, selftestOwner(k, gen))
		}
	}
}

func TestFull(t *testing.T) {
	const capacity = 1024
	tab := newTable(t, capacity, 64)
	in := fill(t, tab)
	// With extendable buckets the table holds exactly its capacity.
	if v4, _ := tab.Len(); v4 != len(in) || v4 != capacity {
		t.Fatalf("len %d, %d keys in, capacity %d", v4, len(in), capacity)
	}
	if st := tab.Stats(); st.Full == 0 || st.Inserts != capacity {
		t.Fatalf("stats %+v", st)
	}
	checkAll(t, tab, in, 1)

	// Updates need no slot: they still work when full.
	var ups []session.Update
	for _, k := range in[:100] {
		ups = append(ups, add(k, selftestOwner(k, 2)))
	}
	apply(t, tab, ups, Result{Updated: 100})
	checkAll(t, tab, in[:100], 2)
	checkAll(t, tab, in[100:], 1)

	// Every key is found by bulk lookups of 32 and 64 copies of it, including keys that
	// overflowed into extendable buckets.
	for _, k := range in {
		for _, n := range []int{1, 32, 63, 64} {
			if h := lookupRepeat(tab, k, n); h != n {
				t.Fatalf("bulk lookup of %d copies of %v: %d hits", n, k, h)
			}
		}
	}

	// With no reader registered, deleted slots come back at once.
	ups = ups[:0]
	for _, k := range in[:10] {
		ups = append(ups, del(k))
	}
	for i := 0; i < 10; i++ {
		k := key4n(100000 + i)
		ups = append(ups, add(k, selftestOwner(k, 1)))
		in = append(in, k)
	}
	apply(t, tab, ups, Result{Deleted: 10, Added: 10})
	in = in[10:]
	checkAll(t, tab, in[:90], 2)
	checkAll(t, tab, in[90:], 1)
	for _, k := range []session.Key{key4n(0), key4n(9)} {
		if _, ok := tab.Lookup(k); ok {
			t.Fatalf("deleted %v still there", k)
		}
	}
}

// TestReclaim shows that deleted IPv6 key slots are recycled only after the registered
// readers report a quiescent state. (IPv4 keys have no key slot: they live in the bucket
// and readers check its version, TestSeqlockRace.)
func TestReclaim(t *testing.T) {
	const capacity = 1024
	tab := newTable(t, 64, capacity)
	tab.setReclaimWait(time.Second) // generous: the machine may be loaded
	in := fillWith(t, tab, key6n)
	rd, err := startReader(tab, in, readerLcore)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		c := rd.stop()
		if c.Mismatches != 0 || c.Loops == 0 || c.Hits == 0 {
			t.Errorf("reader: %+v", c)
		}
	}()
	next := 200000
	replace := func(n int) []session.Update {
		var ups []session.Update
		for _, k := range in[:n] {
			ups = append(ups, del(k))
		}
		in = in[n:]
		for i := 0; i < n; i++ {
			k := key6n(next)
			next++
			ups = append(ups, add(k, selftestOwner(k, 1)))
			in = append(in, k)
		}
		return ups
	}

	// The reader reports quiescent states: slots come back (the add waits for one).
	for range 5 {
		apply(t, tab, replace(100), Result{Deleted: 100, Added: 100})
	}
	checkAll(t, tab, in, 1)

	// The reader stays online without reporting: the deleted slots stay deferred, the
	// adds are refused, the table is unchanged but for the deletes.
	rd.pause(true)
	tab.setReclaimWait(20 * time.Millisecond)
	ups := replace(10)
	res, err := tab.ApplyBatch(ups)
	if !errors.Is(err, ErrFull) || res != (Result{Deleted: 10, Full: 10}) {
		t.Fatalf("paused reader: %+v %v", res, err)
	}
	if _, v6 := tab.Len(); v6 != capacity-10 {
		t.Fatalf("len %d", v6)
	}
	checkAll(t, tab, in[:len(in)-10], 1)

	if st := tab.Stats(); st.ReclaimTimeouts != 1 || st.ReclaimWaits < 1 {
		t.Fatalf("stats %+v", st)
	}

	// Once it reports again, the same adds succeed.
	rd.pause(false)
	tab.setReclaimWait(time.Second)
	apply(t, tab, ups[10:], Result{Added: 10})
	checkAll(t, tab, in, 1)
	if _, v6 := tab.Len(); v6 != capacity {
		t.Fatalf("len %d", v6)
	}
	if c := rd.counts(); c.Loops == 0 {
		t.Fatalf("reader made no progress: %+v", c)
	}
}

// TestConcurrentChurn runs the reader harness on a worker lcore while the Go side
// inserts, updates and deletes batches on a nearly full table, so that deleted slots are
// reused quickly. Every value the reader finds must belong to its key.
func TestConcurrentChurn(t *testing.T) {
	const (
		capacity = 4096
		universe = 3 * capacity
		batches  = 300
		batch    = 1024
	)
	rounds := batches
	if testing.Short() {
		rounds = 60
	}
	tab := newTable(t, capacity, capacity)
	tab.setReclaimWait(2 * time.Second) // never refuse an add for a slow reader here
	var keys []session.Key
	for i := range universe {
		keys = append(keys, key4n(i), key6n(i))
	}
	rd, err := startReaderHold(tab, keys, readerLcore, 50*time.Microsecond)
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			rd.stop()
		}
	}()

	rng := rand.New(rand.NewPCG(1, 2))
	model := map[session.Key]uint32{} // key → generation
	size := [2]int{}
	gen := uint32(1)
	ops := 0
	for r := 0; r < rounds; r++ {
		gen++
		var ups []session.Update
		var want Result
		seen := map[session.Key]bool{}
		for len(ups) < batch {
			k := keys[rng.IntN(len(keys))]
			if seen[k] {
				continue
			}
			seen[k] = true
			fam := 0
			if !k.Is4() {
				fam = 1
			}
			_, present := model[k]
			switch {
			case present && rng.IntN(2) == 0:
				ups = append(ups, del(k))
				delete(model, k)
				size[fam]--
				want.Deleted++
			case present:
				ups = append(ups, add(k, selftestOwner(k, gen)))
				model[k] = gen
				want.Updated++
			case size[fam] < capacity-8:
				ups = append(ups, add(k, selftestOwner(k, gen)))
				model[k] = gen
				size[fam]++
				want.Added++
			}
		}
		apply(t, tab, ups, want)
		ops += len(ups)
		if r%50 == 0 {
			for k, g := range model {
				if o, ok := tab.Lookup(k); !ok || o != selftestOwner(k, g) {
					t.Fatalf("round %d: lookup %v: %v %v", r, k, o, ok)
				}
			}
		}
	}
	c := rd.stop()
	stopped = true
	t.Logf("%d ops; reader: %+v; stats %+v", ops, c, tab.Stats())
	if c.Mismatches != 0 {
		t.Errorf("reader saw %d values of another key", c.Mismatches)
	}
	if c.Reused != 0 {
		t.Errorf("%d of %d key slots held by the reader were recycled under it", c.Reused, c.Held)
	}
	if c.Loops < 100 || c.Hits == 0 || c.Held == 0 {
		t.Fatalf("reader made too little progress: %+v", c)
	}
	got := entries(tab)
	if len(got) != len(model) {
		t.Fatalf("entries %d, model %d", len(got), len(model))
	}
	for k, g := range model {
		if got[k] != selftestOwner(k, g) {
			t.Fatalf("entries[%v] = %v", k, got[k])
		}
	}
	if v4, v6 := tab.Len(); v4 != size[0] || v6 != size[1] {
		t.Fatalf("len %d %d, model %v", v4, v6, size)
	}
}

// TestMemSize compares the computed memory with what rte_malloc's heap gave.
func TestMemSize(t *testing.T) {
	needEAL(t)
	for _, c := range [][2]uint32{{1024, 64}, {1<<16 - 1, 1 << 12}, {1 << 20, 1 << 10}} {
		before := heapAllocated()
		tab := newTable(t, c[0], c[1])
		got := heapAllocated() - before
		want := MemSize(c[0], c[1])
		tab.Close()
		diff := float64(got) - float64(want)
		if diff < 0 {
			diff = -diff
		}
		t.Logf("capacity %d+%d: heap %d bytes, computed %d", c[0], c[1], got, want)
		if diff > 0.02*float64(want)+64<<10 {
			t.Errorf("capacity %d+%d: heap grew %d bytes, MemSize says %d", c[0], c[1], got, want)
		}
	}
}

// TestGoroutines calls the Table from several goroutines at once (for the race detector
// and the mutex), each on its own keys, while another iterates.
func TestGoroutines(t *testing.T) {
	tab := newTable(t, 1<<14, 1<<14)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			tab.Entries(func(k session.Key, o session.Owner) bool {
				if o.Host != selftestOwner(k, 1).Host {
					t.Errorf("entry %v: %v", k, o)
				}
				return true
			})
			tab.Len()
			tab.Stats()
		}
	}()
	var writers sync.WaitGroup
	for g := range 4 {
		writers.Add(1)
		go func() {
			defer writers.Done()
			for r := range 20 {
				var ups []session.Update
				for i := range 200 {
					k := key4n(g<<20 | i)
					if g%2 == 1 {
						k = key6n(g<<20 | i)
					}
					ups = append(ups, session.Update{Key: k, Owner: selftestOwner(k, 1), Delete: r%2 == 1})
				}
				res, err := tab.ApplyBatch(ups)
				if err != nil || res.Added+res.Deleted != len(ups) {
					t.Errorf("goroutine %d round %d: %+v %v", g, r, res, err)
					return
				}
				if o, ok := tab.Lookup(ups[0].Key); ok != (r%2 == 0) || (ok && o != ups[0].Owner) {
					t.Errorf("goroutine %d round %d: lookup %v %v", g, r, o, ok)
				}
			}
		}()
	}
	writers.Wait()
	close(stop)
	wg.Wait()
	if v4, v6 := tab.Len(); v4 != 0 || v6 != 0 {
		t.Fatalf("len %d %d", v4, v6)
	}
}
