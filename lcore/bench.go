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
	"net/netip"
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

// BenchGen selects the traffic generator.
type BenchGen int

// Generators.
const (
	BenchGenTCP BenchGen = C.HOMING_BENCH_GEN_TCP // Ethernet/IPv4/TCP ACK of the flow, 64 bytes
	BenchGenGUE BenchGen = C.HOMING_BENCH_GEN_GUE // the same in IPv4/UDP/GUE to GUEDst:GUEPort, 86 bytes
)

// BenchConfig is one benchmark run: one loop per lcore, all at once, lcore i on queue i
// of Port (which must have as many rx and tx queues).
type BenchConfig struct {
	Lcores  []uint
	Port    dpdk.Port
	Mode    BenchMode
	Gen     BenchGen
	Flows   []session.Key // IPv4 only
	Packets uint64        // per lcore
	Seed    uint64
	GUEDst  netip.Addr // BenchGenGUE: outer destination (this host)
	GUEPort uint16     // BenchGenGUE: UDP destination port (the tunnel port)
}

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
	rs, err := d.BenchRun(BenchConfig{Lcores: []uint{lcoreID}, Port: port, Mode: mode, Flows: flows, Packets: packets, Seed: seed})
	if err != nil {
		return BenchResult{}, err
	}
	return rs[0], nil
}

// BenchRun runs c on every lcore of c.Lcores at once and returns one result per lcore.
func (d *DataPlane) BenchRun(c BenchConfig) ([]BenchResult, error) {
	if len(c.Flows) == 0 || len(c.Lcores) == 0 {
		return nil, errors.New("lcore: bench needs flows and lcores")
	}
	if c.Gen == BenchGenGUE && !c.GUEDst.Is4() {
		return nil, errors.New("lcore: bench GUE generator needs an IPv4 destination")
	}
	if d.running.Load() {
		return nil, ErrRunning
	}
	keys := (*C.struct_homing_key4)(C.calloc(C.size_t(len(c.Flows)), C.sizeof_struct_homing_key4))
	defer C.free(unsafe.Pointer(keys))
	ks := unsafe.Slice(keys, len(c.Flows))
	for i, f := range c.Flows {
		if !f.Is4() {
			return nil, fmt.Errorf("lcore: bench flow %v is not IPv4", f)
		}
		s, d := f.Src.As4(), f.Dst.As4()
		ks[i].src = *(*C.uint32_t)(unsafe.Pointer(&s[0]))
		ks[i].dst = *(*C.uint32_t)(unsafe.Pointer(&d[0]))
		ks[i].sport = C.uint16_t(f.SrcPort>>8 | f.SrcPort<<8)
		ks[i].dport = C.uint16_t(f.DstPort>>8 | f.DstPort<<8)
		ks[i].proto = C.uint8_t(f.Proto)
	}
	n := len(c.Lcores)
	lcs := make([]*C.struct_homing_lcore, n)
	bs := make([]*C.struct_homing_bench, n)
	defer func() {
		for i := range n {
			C.free(unsafe.Pointer(lcs[i]))
			C.free(unsafe.Pointer(bs[i]))
		}
	}()
	for i, id := range c.Lcores {
		lc := (*C.struct_homing_lcore)(C.aligned_alloc(64, C.sizeof_struct_homing_lcore))
		*lc = C.struct_homing_lcore{}
		lc.dp = d.dp
		lc.nic_port = C.uint16_t(c.Port.ID)
		lc.tap_port = C.uint16_t(c.Port.ID)
		lc.queue = C.uint16_t(i)
		lc.lcore_id = C.uint32_t(id)
		lcs[i] = lc
		b := (*C.struct_homing_bench)(C.calloc(1, C.sizeof_struct_homing_bench))
		b.lc = lc
		b.keys = keys
		b.n_keys = C.uint32_t(len(c.Flows))
		b.mode = C.uint32_t(c.Mode)
		b.gen = C.uint32_t(c.Gen)
		b.packets = C.uint64_t(c.Packets)
		b.seed = C.uint64_t(c.Seed + uint64(i)*0x9e3779b97f4a7c15)
		if c.Gen == BenchGenGUE {
			a := c.GUEDst.As4()
			b.gue_dst = *(*C.uint32_t)(unsafe.Pointer(&a[0]))
			b.gue_port = C.uint16_t(c.GUEPort>>8 | c.GUEPort<<8)
		}
		bs[i] = b
	}
	launched := 0
	var err error
	for i, id := range c.Lcores {
		if err = dpdk.Launch(unsafe.Pointer(C.homing_bench_main), unsafe.Pointer(bs[i]), id); err != nil {
			break
		}
		launched++
	}
	for i := 0; i < launched; i++ {
		if ret := dpdk.Wait(c.Lcores[i]); ret != 0 && err == nil {
			err = fmt.Errorf("lcore: bench on lcore %d returned %d", c.Lcores[i], ret)
		}
	}
	if err != nil {
		return nil, err
	}
	res := make([]BenchResult, n)
	for i, b := range bs {
		sec := float64(b.cycles) / float64(b.tsc_hz)
		res[i] = BenchResult{Packets: uint64(b.done), Elapsed: time.Duration(sec * float64(time.Second)),
			Stats: statsOf(c.Lcores[i], &lcs[i].stats)}
	}
	return res, nil
}

// setFastPaths switches the pipeline's fast paths (tests: both must decide alike). Not
// while lcores run.
func setFastPaths(on bool) {
	if on {
		C.homing_fast_paths = 1
	} else {
		C.homing_fast_paths = 0
	}
}
