package lcore

/*
#include <stdlib.h>
#include <string.h>
#include "bench.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"time"
	"unsafe"

	"github.com/homing-dev/homing/dpdk"
	"github.com/homing-dev/homing/session"
)

// BenchMode selects what a benchmark run measures.
type BenchMode int

// Benchmark modes.
const (
	BenchBare     BenchMode = C.HOMING_BENCH_BARE     // rx -> generator -> tx
	BenchPipeline BenchMode = C.HOMING_BENCH_PIPELINE // rx -> generator -> pipeline -> tx
)

// BenchResult is one run's outcome.
type BenchResult struct {
	Packets uint64
	Elapsed time.Duration
	Stats   Stats
}

// Mpps is the run's packet rate in millions of packets per second.
func (r BenchResult) Mpps() float64 { return float64(r.Packets) / r.Elapsed.Seconds() / 1e6 }

// Bench runs one benchmark on worker lcore over port (queue 0, used as both NIC and
// kernel port): each received frame gets a TCP flow drawn at random from flows.
// Only IPv4 flows are supported.
func (d *DataPlane) Bench(lcoreID uint, port dpdk.Port, mode BenchMode, flows []session.Key, packets uint64, seed uint64) (BenchResult, error) {
	if len(flows) == 0 {
		return BenchResult{}, errors.New("lcore: bench needs flows")
	}
	if d.running.Load() {
		return BenchResult{}, ErrRunning
	}
	keys := (*C.struct_homing_key4)(C.calloc(C.size_t(len(flows)), C.sizeof_struct_homing_key4))
	defer C.free(unsafe.Pointer(keys))
	ks := unsafe.Slice(keys, len(flows))
	for i, f := range flows {
		if !f.Is4() {
			return BenchResult{}, fmt.Errorf("lcore: bench flow %v is not IPv4", f)
		}
		s, d := f.Src.As4(), f.Dst.As4()
		ks[i].src = *(*C.uint32_t)(unsafe.Pointer(&s[0]))
		ks[i].dst = *(*C.uint32_t)(unsafe.Pointer(&d[0]))
		ks[i].sport = C.uint16_t(f.SrcPort>>8 | f.SrcPort<<8)
		ks[i].dport = C.uint16_t(f.DstPort>>8 | f.DstPort<<8)
		ks[i].proto = C.uint8_t(f.Proto)
	}
	lc := (*C.struct_homing_lcore)(C.aligned_alloc(64, C.sizeof_struct_homing_lcore))
	defer C.free(unsafe.Pointer(lc))
	*lc = C.struct_homing_lcore{}
	lc.dp = d.dp
	lc.nic_port = C.uint16_t(port.ID)
	lc.tap_port = C.uint16_t(port.ID)
	lc.lcore_id = C.uint32_t(lcoreID)
	b := (*C.struct_homing_bench)(C.calloc(1, C.sizeof_struct_homing_bench))
	defer C.free(unsafe.Pointer(b))
	b.lc = lc
	b.keys = keys
	b.n_keys = C.uint32_t(len(flows))
	b.mode = C.uint32_t(mode)
	b.packets = C.uint64_t(packets)
	b.seed = C.uint64_t(seed)
	if err := dpdk.Launch(unsafe.Pointer(C.homing_bench_main), unsafe.Pointer(b), lcoreID); err != nil {
		return BenchResult{}, err
	}
	if ret := dpdk.Wait(lcoreID); ret != 0 {
		return BenchResult{}, fmt.Errorf("lcore: bench returned %d", ret)
	}
	sec := float64(b.cycles) / float64(b.tsc_hz)
	return BenchResult{Packets: uint64(b.done), Elapsed: time.Duration(sec * float64(time.Second)), Stats: statsOf(lcoreID, &lc.stats)}, nil
}
