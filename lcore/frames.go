package lcore

/*
#include <stdlib.h>
#include "pipeline.h"
#include "frames.h"
*/
import "C"

import (
	"errors"
	"unsafe"

	"github.com/homing-dev/homing/dpdk"
)

// Frames runs raw frames through the pipeline's classification, lookup and
// encapsulation code without ports, in bursts (one cgo call for all of them). It is the
// entry point of the fuzzer and of unit tests; it needs EAL and a mempool, and a table
// that no lcore is using with QSBR at the same time.
type Frames struct {
	lc   *C.struct_homing_lcore
	pool *dpdk.Mempool
}

// NewFrames creates a runner on d.
func (d *DataPlane) NewFrames(pool *dpdk.Mempool) *Frames {
	lc := (*C.struct_homing_lcore)(C.aligned_alloc(64, C.sizeof_struct_homing_lcore))
	*lc = C.struct_homing_lcore{}
	lc.dp = d.dp
	return &Frames{lc: lc, pool: pool}
}

// Output is one frame that left the pipeline.
type Output struct {
	ToNIC bool // false: to the kernel (TAP)
	Data  []byte
}

// Run processes frames and returns the outputs: for each burst of Burst frames, the NIC
// outputs first, then the kernel outputs, each in arrival order.
func (f *Frames) Run(frames [][]byte) ([]Output, error) {
	if len(frames) == 0 {
		return nil, nil
	}
	total := 0
	for _, fr := range frames {
		total += len(fr)
	}
	n := len(frames)
	outCap := total + n*80
	mem := C.malloc(C.size_t(total + outCap + n*4*2 + n + 16))
	defer C.free(mem)
	in := unsafe.Slice((*byte)(mem), total)
	off := 0
	inLens := unsafe.Slice((*uint32)(unsafe.Add(mem, total+outCap)), n)
	for i, fr := range frames {
		copy(in[off:], fr)
		off += len(fr)
		inLens[i] = uint32(len(fr))
	}
	out := unsafe.Add(mem, total)
	outLens := unsafe.Slice((*uint32)(unsafe.Add(mem, total+outCap+n*4)), n)
	outPort := unsafe.Slice((*byte)(unsafe.Add(mem, total+outCap+n*8)), n)
	var nOut C.uint32_t
	ret := C.homing_run_frames(f.lc, (*C.struct_rte_mempool)(f.pool.Ptr()), (*C.uint8_t)(mem),
		(*C.uint32_t)(unsafe.Pointer(&inLens[0])), C.uint32_t(n), (*C.uint8_t)(out), C.uint32_t(outCap),
		(*C.uint32_t)(unsafe.Pointer(&outLens[0])), (*C.uint8_t)(unsafe.Pointer(&outPort[0])), &nOut)
	if ret != 0 {
		return nil, errors.New("lcore: out of mbufs")
	}
	res := make([]Output, 0, int(nOut))
	o := unsafe.Slice((*byte)(out), outCap)
	off = 0
	for i := 0; i < int(nOut); i++ {
		l := int(outLens[i])
		res = append(res, Output{ToNIC: outPort[i] == 0, Data: append([]byte(nil), o[off:off+l]...)})
		off += l
	}
	return res, nil
}

// Stats returns the runner's counters.
func (f *Frames) Stats() Stats { return statsOf(0, &f.lc.stats) }

// Close frees the runner.
func (f *Frames) Close() {
	C.free(unsafe.Pointer(f.lc))
	f.lc = nil
}
