//go:build harness

package lcore

/*
#include <stdlib.h>
#include "pipeline.h"
#include "frames.h"
*/
import "C"

import (
	"errors"
	"time"
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
	lc.pool = (*C.struct_rte_mempool)(pool.Ptr())
	lc.udp, _ = newUDPLcore(0) // CID counters; SetLearn adds a ring
	return &Frames{lc: lc, pool: pool}
}

// Output is one frame that left the pipeline.
type Output struct {
	ToNIC bool // false: to the kernel (TAP)
	Data  []byte
}

// Run processes frames and returns the outputs: for each burst of Burst frames, the NIC
// outputs first, then the kernel outputs, each in arrival order.
func (f *Frames) Run(frames [][]byte) ([]Output, error) { return f.run(frames, 0) }

// RunKernel processes frames as the poll loop does those it receives from the kernel
// (TAP): every output goes to the NIC, in order.
func (f *Frames) RunKernel(frames [][]byte) ([]Output, error) { return f.run(frames, 1) }

func (f *Frames) run(frames [][]byte, kernel C.int) ([]Output, error) {
	if len(frames) == 0 {
		return nil, nil
	}
	total := 0
	for _, fr := range frames {
		total += len(fr)
	}
	n := len(frames)
	outCap := total + n*80
	// Fragments make more outputs than inputs: at most 64 KiB / 8 per input; room for a
	// few each (the runner drops what does not fit).
	maxOut := 8 * n
	outCap *= 2
	mem := C.malloc(C.size_t(total + outCap + n*4 + maxOut*5 + 16))
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
	outLens := unsafe.Slice((*uint32)(unsafe.Add(mem, total+outCap+n*4)), maxOut)
	outPort := unsafe.Slice((*byte)(unsafe.Add(mem, total+outCap+n*4+maxOut*4)), maxOut)
	var nOut C.uint32_t
	ret := C.homing_run_frames_side(f.lc, (*C.struct_rte_mempool)(f.pool.Ptr()), kernel, (*C.uint8_t)(mem),
		(*C.uint32_t)(unsafe.Pointer(&inLens[0])), C.uint32_t(n), (*C.uint8_t)(out), C.uint32_t(outCap),
		(*C.uint32_t)(unsafe.Pointer(&outLens[0])), (*C.uint8_t)(unsafe.Pointer(&outPort[0])), C.uint32_t(maxOut), &nOut)
	if ret != 0 {
		return nil, errors.New("lcore: out of mbufs")
	}
	return collect(out, outLens[:nOut], outPort[:nOut]), nil
}

// SetPark turns the runner's park on (see Options.ParkHold), with no share for UDP
// session packets. Call it (or SetParkShare) once, before Run.
func (f *Frames) SetPark(hold time.Duration, size int) error { return setPark(f.lc, hold, size, 0) }

// SetParkShare turns the runner's park on with udp of its size slots for UDP session
// packets (see Options.ParkUDP).
func (f *Frames) SetParkShare(hold time.Duration, size, udp int) error {
	return setPark(f.lc, hold, size, udp)
}

// Parked is the number of packets held in the park.
func (f *Frames) Parked() int { return int(f.lc.park_count) }

// Service looks the parked packets up again (as the poll loop does each iteration) and
// returns what was released; flush releases everything to the kernel.
func (f *Frames) Service(flush bool) []Output {
	const capBytes = C.HOMING_PARK_MAX * 2048
	mem := C.malloc(C.size_t(capBytes + C.HOMING_PARK_MAX*5))
	defer C.free(mem)
	lens := (*C.uint32_t)(unsafe.Add(mem, capBytes))
	ports := (*C.uint8_t)(unsafe.Add(mem, capBytes+C.HOMING_PARK_MAX*4))
	var n C.uint32_t
	fl := C.int(0)
	if flush {
		fl = 1
	}
	C.homing_service_frames(f.lc, fl, (*C.uint8_t)(mem), capBytes, lens, ports, &n)
	return collect(mem, unsafe.Slice((*uint32)(unsafe.Pointer(lens)), int(n)), unsafe.Slice((*byte)(unsafe.Pointer(ports)), int(n)))
}

func collect(out unsafe.Pointer, lens []uint32, ports []byte) []Output {
	res := make([]Output, 0, len(lens))
	off := 0
	for i, l := range lens {
		res = append(res, Output{ToNIC: ports[i] == 0, Data: C.GoBytes(unsafe.Add(out, off), C.int(l))})
		off += int(l)
	}
	return res
}

// Stats returns the runner's counters.
func (f *Frames) Stats() Stats { return statsOf(0, &f.lc.stats) }

// Close frees the runner (parked packets go back to the pool).
func (f *Frames) Close() {
	f.Service(true)
	freeLcore(f.lc)
	f.lc = nil
}

// TxNIC sends n frames numbered first, first+1, ... on port through the poll loop's
// NIC tx path (its backlog, homing_tx_nic); n == 0 offers the backlog once.
func (f *Frames) TxNIC(port dpdk.Port, first, n uint32) error {
	if C.homing_tx_numbered(f.lc, (*C.struct_rte_mempool)(f.pool.Ptr()), C.uint16_t(port.ID), C.uint32_t(first), C.uint32_t(n)) != 0 {
		return errors.New("lcore: out of mbufs")
	}
	return nil
}

// TxBacklog is the number of packets waiting in the runner's NIC tx backlog.
func (f *Frames) TxBacklog() int { return int(f.lc.nic_bl.n) }

// RxNumbered receives up to max frames from port's queue 0 and returns the numbers
// TxNIC gave them.
func RxNumbered(port dpdk.Port, max int) []uint32 {
	if max == 0 {
		return nil
	}
	nums := make([]uint32, max)
	n := C.homing_rx_numbered(C.uint16_t(port.ID), (*C.uint32_t)(unsafe.Pointer(&nums[0])), C.uint32_t(max))
	return nums[:n]
}
