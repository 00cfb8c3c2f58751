// Package table is homing's ownership table: session key → (owner host, epoch), held in
// two cuckoo hashes of its own (IPv4 and IPv6, in DPDK memory) that the worker lcores
// read lock-free (see homing_table.h for the layout, the C side and the reader contract).
//
// Concurrency: the Go side is the only writer. Every method takes the Table's mutex, so
// they may be called from any goroutine; each write batch is one cgo call per address
// family. IPv4 entries live in their bucket and every change of a bucket moves its
// version, which readers check around their read; deleted IPv6 key slots are recycled
// only after every lcore registered on the table's QSBR variable has reported a
// quiescent state. Either way a reader never sees the value of another session.
package table

/*
#cgo pkg-config: libdpdk
#cgo CFLAGS: -O3
#cgo LDFLAGS: -lrte_rcu
#include <stdlib.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include "homing_table.h"

static int table_errno(void) { return rte_errno; }

static uint64_t table_heap_allocated(void)
{
	struct rte_malloc_socket_stats st;
	uint64_t total = 0;

	for (unsigned int i = 0; i < rte_socket_count(); i++)
		if (rte_malloc_get_socket_stats(rte_socket_id_by_idx(i), &st) == 0)
			total += st.heap_allocsz_bytes;
	return total;
}
*/
import "C"

import (
	"errors"
	"fmt"
	"reflect"
	"sync"
	"syscall"
	"unsafe"

	"github.com/homing-dev/homing/internal/counters"
	"github.com/homing-dev/homing/session"
)

// Errors.
var (
	// ErrFull is wrapped by Apply when the table refused adds because it is full.
	ErrFull = errors.New("table: full")
	// ErrInvalid is wrapped by Apply for updates with an invalid key or epoch.
	ErrInvalid = errors.New("table: invalid update")
	// ErrClosed is returned by methods called after Close.
	ErrClosed = errors.New("table: closed")
)

// Limits of New.
const (
	NameMax     = C.HOMING_TABLE_NAME_MAX
	CapacityMin = C.HOMING_TABLE_CAPACITY_MIN
	CapacityMax = C.HOMING_TABLE_CAPACITY_MAX
)

// iterChunk is the number of entries Entries copies per cgo call.
const iterChunk = 1024

// Table is an ownership table. The zero value is not usable; call New.
type Table struct {
	name string

	// mu serialises every call into C (the C side has a single writer, and point
	// lookups and iteration must not race with slot recycling) and guards the fields
	// below.
	mu      sync.Mutex
	t       *C.struct_homing_table
	scratch [2]scratch // per family: 0 IPv4, 1 IPv6
}

// Result counts what one Apply batch did.
type Result struct {
	Added   int // new keys
	Updated int // existing keys overwritten
	Deleted int // keys removed
	Absent  int // deletes of keys that were not there
	Full    int // adds refused: table full
	Invalid int // updates refused: invalid key or epoch
	Failed  int // other failures of the C side (not expected)
}

// Stats are the table's lifetime counters (homing_table_stats), declared with their
// metric tags in internal/counters.
type Stats = counters.Table

// statsFromC copies struct homing_table_stats by the fields' c tags; it panics at start
// if a C counter has no field in Stats.
var statsFromC = counters.NewFromC(reflect.TypeFor[C.struct_homing_table_stats](), reflect.TypeFor[Stats]())

// New creates a table named name (at most NameMax bytes, unique in the process) with
// room for cap4 IPv4 and cap6 IPv6 sessions, in DPDK memory of NUMA socket socket (-1:
// any). The EAL must be running. All memory (MemSize) is taken now.
func New(name string, cap4, cap6 uint32, socket int) (*Table, error) {
	if name == "" || len(name) > NameMax {
		return nil, fmt.Errorf("table: name %q: must be 1..%d bytes", name, NameMax)
	}
	for _, c := range []uint32{cap4, cap6} {
		if c < CapacityMin || c > CapacityMax {
			return nil, fmt.Errorf("table %s: capacity %d: must be %d..%d", name, c, CapacityMin, CapacityMax)
		}
	}
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	t := C.homing_table_create(cname, C.uint32_t(cap4), C.uint32_t(cap6), C.int(socket))
	if t == nil {
		errno := int(C.table_errno())
		return nil, fmt.Errorf("table %s: create (%d+%d entries, %d bytes): %w", name, cap4, cap6,
			MemSize(cap4, cap6), cError(errno))
	}
	return &Table{name: name, t: t}, nil
}

// MemSize is the DPDK memory a table of these capacities takes (about 27.4 bytes per
// IPv4 session and 61 per IPv6 session).
func MemSize(cap4, cap6 uint32) uint64 {
	return uint64(C.homing_table_memsize(C.uint32_t(cap4), C.uint32_t(cap6)))
}

// HeapAllocated is the DPDK heap (rte_malloc) in use by the whole process, every socket:
// the growth across New is what a table really takes (benchmarks report it).
func HeapAllocated() uint64 { return uint64(C.table_heap_allocated()) }

// Name returns the table's name.
func (t *Table) Name() string { return t.name }

// Ptr returns the C struct homing_table * for the lcore pipeline. It stays valid until
// Close.
func (t *Table) Ptr() unsafe.Pointer {
	t.mu.Lock()
	defer t.mu.Unlock()
	return unsafe.Pointer(t.t)
}

// Apply applies updates in order and reports only the error (see ApplyBatch).
func (t *Table) Apply(updates []session.Update) error {
	_, err := t.ApplyBatch(updates)
	return err
}

// ApplyBatch applies updates in order (one cgo call per address family: order between
// families does not matter since their keys never collide) and counts the outcome. Adds
// overwrite existing entries; deletes ignore Owner. Invalid updates (session.Key.Valid
// false, or an epoch above session.MaxEpoch) and adds refused because the table is full
// are skipped, the rest of the batch is applied, and the error wraps ErrInvalid and/or
// ErrFull.
func (t *Table) ApplyBatch(updates []session.Update) (Result, error) {
	var res Result
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.t == nil {
		return res, ErrClosed
	}
	s4, s6 := &t.scratch[0], &t.scratch[1]
	s4.reset(keyLen4)
	s6.reset(keyLen6)
	for i := range updates {
		u := &updates[i]
		if !u.Key.Valid() || (!u.Delete && u.Owner.Epoch > session.MaxEpoch) {
			res.Invalid++
			continue
		}
		s := s6
		if u.Key.Is4() {
			s = s4
		}
		s.push(u)
	}
	if s4.n > 0 {
		C.homing_table_write4(t.t, (*C.struct_homing_key4)(s4.keys), s4.vals, s4.ops,
			C.uint32_t(s4.n), s4.res)
		s4.count(&res)
	}
	if s6.n > 0 {
		C.homing_table_write6(t.t, (*C.struct_homing_key6)(s6.keys), s6.vals, s6.ops,
			C.uint32_t(s6.n), s6.res)
		s6.count(&res)
	}
	var errs []error
	if res.Full > 0 {
		errs = append(errs, fmt.Errorf("table %s: %d adds refused: %w", t.name, res.Full, ErrFull))
	}
	if res.Invalid > 0 {
		errs = append(errs, fmt.Errorf("table %s: %d updates refused: %w", t.name, res.Invalid, ErrInvalid))
	}
	if res.Failed > 0 {
		errs = append(errs, fmt.Errorf("table %s: %d updates failed", t.name, res.Failed))
	}
	return res, errors.Join(errs...)
}

// Lookup returns the owner of k.
func (t *Table) Lookup(k session.Key) (session.Owner, bool) {
	if !k.Valid() {
		return session.Owner{}, false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.t == nil {
		return session.Owner{}, false
	}
	var val C.uint64_t
	var ret C.int
	if k.Is4() {
		s := &t.scratch[0]
		s.reset(keyLen4)
		putKey4(s.keyBytes(1), k)
		ret = C.homing_table_get4(t.t, (*C.struct_homing_key4)(s.keys), &val)
	} else {
		s := &t.scratch[1]
		s.reset(keyLen6)
		putKey6(s.keyBytes(1), k)
		ret = C.homing_table_get6(t.t, (*C.struct_homing_key6)(s.keys), &val)
	}
	if ret != 0 {
		return session.Owner{}, false
	}
	return unpackVal(uint64(val)), true
}

// Entries calls fn for every entry until fn returns false: IPv4 first, then IPv6. The
// table is locked only while each chunk of entries is copied out, so fn may call the
// Table; entries changed meanwhile may be missed or, when a cuckoo move relocates them,
// seen twice.
func (t *Table) Entries(fn func(session.Key, session.Owner) bool) {
	var buf [iterChunk]entry
	for fam := 0; fam < 2; fam++ {
		var next C.uint32_t
		for {
			n, ok := t.iterChunk(fam, &next, buf[:])
			if !ok || n == 0 {
				break
			}
			for _, e := range buf[:n] {
				if !fn(e.k, e.o) {
					return
				}
			}
		}
	}
}

type entry struct {
	k session.Key
	o session.Owner
}

func (t *Table) iterChunk(fam int, next *C.uint32_t, out []entry) (int, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.t == nil {
		return 0, false
	}
	s := &t.scratch[fam]
	klen := keyLen4
	if fam == 1 {
		klen = keyLen6
	}
	s.reset(klen)
	s.grow(len(out))
	var n C.uint32_t
	if fam == 0 {
		n = C.homing_table_iter4(t.t, next, (*C.struct_homing_key4)(s.keys), s.vals, C.uint32_t(len(out)))
	} else {
		n = C.homing_table_iter6(t.t, next, (*C.struct_homing_key6)(s.keys), s.vals, C.uint32_t(len(out)))
	}
	kb := s.keyBytes(int(n))
	vals := unsafe.Slice((*uint64)(unsafe.Pointer(s.vals)), int(n))
	for i := 0; i < int(n); i++ {
		b := kb[i*klen : (i+1)*klen]
		if fam == 0 {
			out[i].k = key4(b)
		} else {
			out[i].k = key6(b)
		}
		out[i].o = unpackVal(vals[i])
	}
	return int(n), true
}

// Len returns the number of IPv4 and IPv6 sessions in the table.
func (t *Table) Len() (v4, v6 int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.t == nil {
		return 0, 0
	}
	return int(C.homing_table_count4(t.t)), int(C.homing_table_count6(t.t))
}

// Capacity returns the capacities the table was created with.
func (t *Table) Capacity() (v4, v6 int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.t == nil {
		return 0, 0
	}
	return int(t.t.capacity4), int(t.t.capacity6)
}

// Stats returns a copy of the table's counters.
func (t *Table) Stats() Stats {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.t == nil {
		return Stats{}
	}
	var s Stats
	statsFromC.Copy(&s, t.t.stats)
	return s
}

// Close frees the table. The caller guarantees that no lcore reads it any more (every
// reader has stopped, or at least gone offline on the QSBR variable). Close is
// idempotent; other methods fail or return zero values afterwards.
func (t *Table) Close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.t == nil {
		return
	}
	C.homing_table_free(t.t)
	t.t = nil
	for i := range t.scratch {
		t.scratch[i].free()
	}
}

// cError turns an errno or rte_errno from the C side into an error; system errnos
// become syscall.Errno so that errors.Is(err, syscall.ENOMEM) works.
func cError(errno int) error {
	if errno > 0 && errno < C.RTE_MIN_ERRNO {
		return syscall.Errno(errno)
	}
	return fmt.Errorf("rte_errno %d: %s", errno, C.GoString(C.rte_strerror(C.int(errno))))
}
