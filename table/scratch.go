package table

/*
#include <stdlib.h>
#include <errno.h>
#include "homing_table.h"
*/
import "C"

import (
	"unsafe"

	"github.com/homing-dev/homing/session"
)

// scratch is one address family's C-side batch buffers: keys, values, ops and results.
// It lives in C memory (malloc), so that C never holds a Go pointer, and grows as
// batches do; it is reused across calls under Table.mu.
type scratch struct {
	klen int // key bytes: keyLen4 or keyLen6
	cap  int // entries allocated
	n    int // entries filled
	keys unsafe.Pointer
	vals *C.uint64_t
	ops  *C.uint8_t
	res  *C.int32_t
}

// reset empties s for keys of klen bytes.
func (s *scratch) reset(klen int) {
	if s.klen != klen {
		s.free()
		s.klen = klen
	}
	s.n = 0
}

// grow makes room for n entries, keeping the first s.n.
func (s *scratch) grow(n int) {
	if n <= s.cap {
		return
	}
	c := max(n, 2*s.cap, 64)
	s.keys = realloc(s.keys, c*s.klen)
	s.vals = (*C.uint64_t)(realloc(unsafe.Pointer(s.vals), c*8))
	s.ops = (*C.uint8_t)(realloc(unsafe.Pointer(s.ops), c))
	s.res = (*C.int32_t)(realloc(unsafe.Pointer(s.res), c*4))
	s.cap = c
}

func realloc(p unsafe.Pointer, size int) unsafe.Pointer {
	q := C.realloc(p, C.size_t(size))
	if q == nil {
		panic("table: out of C memory")
	}
	return q
}

func (s *scratch) free() {
	C.free(s.keys)
	C.free(unsafe.Pointer(s.vals))
	C.free(unsafe.Pointer(s.ops))
	C.free(unsafe.Pointer(s.res))
	*s = scratch{}
}

// keyBytes returns the first n keys as one byte slice (growing s if needed).
func (s *scratch) keyBytes(n int) []byte {
	s.grow(n)
	return unsafe.Slice((*byte)(s.keys), n*s.klen)
}

// push appends u (valid, of s's family).
func (s *scratch) push(u *session.Update) {
	i := s.n
	s.grow(i + 1)
	b := unsafe.Slice((*byte)(unsafe.Add(s.keys, i*s.klen)), s.klen)
	if s.klen == keyLen4 {
		putKey4(b, u.Key)
	} else {
		putKey6(b, u.Key)
	}
	vals := unsafe.Slice((*uint64)(unsafe.Pointer(s.vals)), s.cap)
	ops := unsafe.Slice((*uint8)(unsafe.Pointer(s.ops)), s.cap)
	if u.Delete {
		ops[i] = C.HOMING_OP_DEL
		vals[i] = 0
	} else {
		ops[i] = C.HOMING_OP_ADD
		vals[i] = packVal(u.Owner)
	}
	s.n++
}

// count adds the results of the last write to r.
func (s *scratch) count(r *Result) {
	res := unsafe.Slice((*int32)(unsafe.Pointer(s.res)), s.n)
	ops := unsafe.Slice((*uint8)(unsafe.Pointer(s.ops)), s.n)
	for i, v := range res {
		switch {
		case v == 0 && ops[i] == C.HOMING_OP_ADD:
			r.Added++
		case v == C.HOMING_RES_UPDATED && ops[i] == C.HOMING_OP_ADD:
			r.Updated++
		case v == 0:
			r.Deleted++
		case v == -C.ENOENT:
			r.Absent++
		case v == -C.ENOSPC:
			r.Full++
		case v == -C.EINVAL:
			r.Invalid++
		default:
			r.Failed++
		}
	}
}
