//go:build harness

package table

// Test harness (see table_selftest.h): compiled into the package because _test.go files
// cannot use cgo. Nothing here is used outside the tests and benchmarks.

/*
#include <stdlib.h>
#include <rte_cycles.h>
#include "table_selftest.h"

static void st_store(uint32_t *p, uint32_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
static uint32_t st_load32(uint32_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static int32_t st_loadi32(int32_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static uint64_t st_load64(uint64_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
static void *st_reader_fn(void) { return (void *)homing_selftest_reader; }
*/
import "C"

import (
	"fmt"
	"time"
	"unsafe"

	"github.com/homing-dev/homing/dpdk"
	"github.com/homing-dev/homing/session"
)

// selftestOwner is the owner the tests store for k at generation gen: derived from the
// key, so that the reader harness can check every hit.
func selftestOwner(k session.Key, gen uint32) session.Owner {
	b, n := encodeKey(k)
	v := C.homing_selftest_val(unsafe.Pointer(&b[0]), C.uint32_t(n), C.uint32_t(gen))
	return unpackVal(uint64(v))
}

func encodeKey(k session.Key) ([keyLen6]byte, int) {
	var b [keyLen6]byte
	if k.Is4() {
		putKey4(b[:], k)
		return b, keyLen4
	}
	putKey6(b[:], k)
	return b, keyLen6
}

// cKeys copies keys of one family into a C array (free with C.free).
func cKeys(keys []session.Key, klen int) unsafe.Pointer {
	p := C.calloc(C.size_t(max(len(keys), 1)), C.size_t(klen))
	b := unsafe.Slice((*byte)(p), len(keys)*klen)
	for i, k := range keys {
		if klen == keyLen4 {
			putKey4(b[i*klen:], k)
		} else {
			putKey6(b[i*klen:], k)
		}
	}
	return p
}

// readerCounts is what the reader harness counted.
type readerCounts struct {
	Loops, Lookups, Hits, Mismatches uint64
	Held, Reused                     uint64 // positions held, and found recycled
}

// testReader is the C reader harness running on a worker lcore.
type testReader struct {
	r     *C.struct_homing_selftest_reader
	lcore uint
}

// startReader launches the reader harness on lcore over keys (either family), and waits
// until it is registered and online.
func startReader(t *Table, keys []session.Key, lcore uint) (*testReader, error) {
	return startReaderHold(t, keys, lcore, 0)
}

// startReaderHold is startReader with the reader also holding one hit per loop for
// hold (see table_selftest.h).
func startReaderHold(t *Table, keys []session.Key, lcore uint, hold time.Duration) (*testReader, error) {
	var k4, k6 []session.Key
	for _, k := range keys {
		if k.Is4() {
			k4 = append(k4, k)
		} else {
			k6 = append(k6, k)
		}
	}
	r := (*C.struct_homing_selftest_reader)(C.calloc(1, C.sizeof_struct_homing_selftest_reader))
	r.t = (*C.struct_homing_table)(t.Ptr())
	r.keys4 = (*C.struct_homing_key4)(cKeys(k4, keyLen4))
	r.keys6 = (*C.struct_homing_key6)(cKeys(k6, keyLen6))
	r.n4, r.n6 = C.uint32_t(len(k4)), C.uint32_t(len(k6))
	r.hold_ns = C.uint32_t(hold.Nanoseconds())
	tr := &testReader{r: r, lcore: lcore}
	if err := dpdk.Launch(C.st_reader_fn(), unsafe.Pointer(r), lcore); err != nil {
		tr.free()
		return nil, err
	}
	deadline := time.Now().Add(5 * time.Second)
	for C.st_load32(&r.running) == 0 {
		if st := C.st_loadi32(&r.status); st != 0 {
			dpdk.Wait(lcore)
			tr.free()
			return nil, fmt.Errorf("reader on lcore %d: register: %w", lcore, cError(-int(st)))
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("reader on lcore %d did not start", lcore)
		}
		time.Sleep(100 * time.Microsecond)
	}
	return tr, nil
}

// pause makes the reader stay online without reporting quiescent states (on) or resume;
// it returns once the reader has acknowledged.
func (tr *testReader) pause(on bool) {
	v, want := C.uint32_t(0), C.uint32_t(1)
	if on {
		v, want = 1, 2
	}
	C.st_store(&tr.r.pause, v)
	for C.st_load32(&tr.r.running) != want {
		time.Sleep(50 * time.Microsecond)
	}
}

func (tr *testReader) counts() readerCounts {
	return readerCounts{
		Loops:      uint64(C.st_load64(&tr.r.loops)),
		Lookups:    uint64(C.st_load64(&tr.r.lookups)),
		Hits:       uint64(C.st_load64(&tr.r.hits)),
		Mismatches: uint64(C.st_load64(&tr.r.mismatches)),
		Held:       uint64(C.st_load64(&tr.r.held)),
		Reused:     uint64(C.st_load64(&tr.r.reused)),
	}
}

// stop stops the reader, waits for its lcore and frees the harness.
func (tr *testReader) stop() readerCounts {
	C.st_store(&tr.r.stop, 1)
	dpdk.Wait(tr.lcore)
	c := tr.counts()
	tr.free()
	return c
}

func (tr *testReader) free() {
	C.free(unsafe.Pointer(tr.r.keys4))
	C.free(unsafe.Pointer(tr.r.keys6))
	C.free(unsafe.Pointer(tr.r))
	tr.r = nil
}

// cKeyArray is a C array of keys of one family, for benchLookup.
type cKeyArray struct {
	p  unsafe.Pointer
	n  int
	v6 bool
}

func newCKeyArray(keys []session.Key) *cKeyArray {
	klen, v6 := keyLen4, false
	if len(keys) > 0 && !keys[0].Is4() {
		klen, v6 = keyLen6, true
	}
	return &cKeyArray{p: cKeys(keys, klen), n: len(keys), v6: v6}
}

func (a *cKeyArray) free() { C.free(a.p) }

// benchLookup looks up n keys of a (bursts of 32, in order, wrapping) on the calling
// thread and returns the hits and the TSC cycles spent.
func benchLookup(t *Table, a *cKeyArray, n uint64) (hits, cycles uint64) {
	v6 := C.int(0)
	if a.v6 {
		v6 = 1
	}
	var cyc C.uint64_t
	h := C.homing_selftest_bench((*C.struct_homing_table)(t.Ptr()), v6, a.p, C.uint32_t(a.n), C.uint64_t(n), &cyc)
	return uint64(h), uint64(cyc)
}

// tscHz is the TSC frequency.
func tscHz() uint64 { return uint64(C.rte_get_tsc_hz()) }

// lookupRepeat looks k up n times in a single bulk lookup and returns the hits.
func lookupRepeat(t *Table, k session.Key, n int) int {
	b, klen := encodeKey(k)
	p := C.malloc(C.size_t(klen))
	defer C.free(p)
	copy(unsafe.Slice((*byte)(p), klen), b[:klen])
	v6 := C.int(0)
	if klen == keyLen6 {
		v6 = 1
	}
	return int(C.homing_selftest_lookup_repeat((*C.struct_homing_table)(t.Ptr()), v6, p, C.uint32_t(n)))
}

// heapAllocated is the rte_malloc heap's allocated bytes, over every socket.
func heapAllocated() uint64 { return uint64(C.homing_selftest_heap_allocated()) }

// setReclaimWait changes how long a full add waits for readers to release slots.
func (t *Table) setReclaimWait(d time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.t.reclaim_wait_us = C.uint32_t(d.Microseconds())
}

// rawWrite writes one C key given as bytes (to test the C side's own validation) and
// returns the C result code.
func (t *Table) rawWrite(kb []byte, del bool, val uint64) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := &t.scratch[0]
	if len(kb) == keyLen6 {
		s = &t.scratch[1]
	}
	s.reset(len(kb))
	copy(s.keyBytes(1), kb)
	vals := unsafe.Slice((*uint64)(unsafe.Pointer(s.vals)), 1)
	ops := unsafe.Slice((*uint8)(unsafe.Pointer(s.ops)), 1)
	vals[0], ops[0] = val, C.HOMING_OP_ADD
	if del {
		ops[0] = C.HOMING_OP_DEL
	}
	if len(kb) == keyLen4 {
		C.homing_table_write4(t.t, (*C.struct_homing_key4)(s.keys), s.vals, s.ops, 1, s.res)
	} else {
		C.homing_table_write6(t.t, (*C.struct_homing_key6)(s.keys), s.vals, s.ops, 1, s.res)
	}
	return int(unsafe.Slice((*int32)(unsafe.Pointer(s.res)), 1)[0])
}

// rawGet looks one C key given as bytes up and returns the C result code.
func (t *Table) rawGet(kb []byte) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := C.malloc(C.size_t(len(kb)))
	defer C.free(p)
	copy(unsafe.Slice((*byte)(p), len(kb)), kb)
	var v C.uint64_t
	if len(kb) == keyLen4 {
		return int(C.homing_table_get4(t.t, (*C.struct_homing_key4)(p), &v))
	}
	return int(C.homing_table_get6(t.t, (*C.struct_homing_key6)(p), &v))
}

// raceCounts is what homing_selftest_race4 reports.
type raceCounts struct {
	Lookups, Missing, Mismatches, Writes, WriterErrors, CuckooMoves uint64
}

// race4 runs the IPv4 reader/writer race (homing_selftest_race4) on t (empty, capacity4
// = nstable + nchurn/2) for d: a writer thread churns while this thread looks up.
func race4(t *Table, nstable, nchurn int, d time.Duration) (raceCounts, error) {
	r := (*C.struct_homing_selftest_race)(C.calloc(1, C.sizeof_struct_homing_selftest_race))
	defer C.free(unsafe.Pointer(r))
	r.nstable, r.nchurn, r.ms = C.uint32_t(nstable), C.uint32_t(nchurn), C.uint32_t(d.Milliseconds())
	if rc := C.homing_selftest_race4((*C.struct_homing_table)(t.Ptr()), r); rc != 0 {
		return raceCounts{}, fmt.Errorf("homing_selftest_race4: %d", int(rc))
	}
	return raceCounts{
		Lookups: uint64(r.lookups), Missing: uint64(r.missing), Mismatches: uint64(r.mismatches),
		Writes: uint64(r.writes), WriterErrors: uint64(r.writer_errors), CuckooMoves: uint64(r.cuckoo_moves),
	}, nil
}

// buckets4 returns the two buckets of IPv4 key k in t.
func buckets4(t *Table, k session.Key) (b1, b2 uint32) {
	b, _ := encodeKey(k)
	var c1, c2 C.uint32_t
	C.homing_selftest_buckets4((*C.struct_homing_table)(t.Ptr()), (*C.struct_homing_key4)(unsafe.Pointer(&b[0])), &c1, &c2)
	return uint32(c1), uint32(c2)
}

// stashedCount is the table's count of keys placed in a stash.
func stashedCount(t *Table) uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return uint64(t.t.stats.stashed)
}
