//go:build harness

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
	BenchNaive    BenchMode = C.HOMING_BENCH_NAIVE    // rx -> generator -> naive reference design -> tx
	// BenchHook: the pipeline behind the poll loop's capture branch (with
	// BenchConfig.Capture armed, or none).
	BenchHook BenchMode = C.HOMING_BENCH_HOOK
)

// BenchGen selects the traffic generator.
type BenchGen int

// Generators.
const (
	BenchGenTCP BenchGen = C.HOMING_BENCH_GEN_TCP // Ethernet/IPv4/TCP ACK of the flow, 64 bytes
	BenchGenGUE BenchGen = C.HOMING_BENCH_GEN_GUE // the same in IPv4/UDP/GUE to GUEDst:GUEPort, 86 bytes
)

// NaiveTable is the naive reference design (bench_naive.c): rte_hash, bulk lookups, the
// GUE header written field by field per packet. Bench only.
type NaiveTable struct {
	nv *C.struct_homing_bench_naive
}

// NewNaiveTable builds the naive design's table with the benchmark sessions 0..n-1
// (see BenchKey), all owned by owner; packets of sessions owned by another host than
// selfID go to owner's tunnel (src/dst MAC and IPv4 addresses, UDP port tunnelPort).
func NewNaiveTable(name string, n uint32, vip netip.Addr, vipPort uint16, owner, selfID uint16,
	srcMAC, dstMAC []byte, src, dst netip.Addr, tunnelPort uint16) (*NaiveTable, error) {
	if !vip.Is4() || !src.Is4() || !dst.Is4() || len(srcMAC) != 6 || len(dstMAC) != 6 {
		return nil, errors.New("lcore: naive bench needs IPv4 addresses and 6-byte MACs")
	}
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	smac := C.CBytes(srcMAC)
	defer C.free(smac)
	dmac := C.CBytes(dstMAC)
	defer C.free(dmac)
	nv := C.homing_bench_naive_create(cname, C.uint32_t(n), be32(vip), be16(vipPort), C.uint16_t(owner),
		C.uint16_t(selfID), (*C.uint8_t)(smac), (*C.uint8_t)(dmac), be32(src), be32(dst), be16(tunnelPort))
	if nv == nil {
		return nil, fmt.Errorf("lcore: naive bench table of %d sessions: rte_hash_create or add failed", n)
	}
	return &NaiveTable{nv: nv}, nil
}

// HeapBytes is the DPDK heap the naive table took.
func (b *NaiveTable) HeapBytes() uint64 { return uint64(C.homing_bench_naive_heap(b.nv)) }

// Close frees the naive table.
func (b *NaiveTable) Close() {
	if b != nil && b.nv != nil {
		C.homing_bench_naive_free(b.nv)
		b.nv = nil
	}
}

// BenchKey is benchmark session i (homing_bench_key4 in bench.h): x = i * 0x9e3779b1
// (a bijection of uint32), client 198.18.(x>>24).(x>>16 & 0xff):(x & 0xffff), TCP to
// vip:port. The generator computes it from i alone; the tables must hold exactly these.
func BenchKey(i uint32, vip netip.Addr, port uint16) session.Key {
	x := i * C.HOMING_BENCH_KEY_MUL
	return session.Key{Src: netip.AddrFrom4([4]byte{198, 18, byte(x >> 24), byte(x >> 16)}), Dst: vip,
		SrcPort: uint16(x), DstPort: port, Proto: session.TCP}
}

// BenchConfig is one benchmark run: one loop per lcore, all at once, lcore i on queue i
// of Port (which must have as many rx and tx queues). Each lcore forwards Warmup packets,
// then Windows timed windows of Packets each.
type BenchConfig struct {
	Lcores   []uint
	CPUs     []int // pin lcore i's thread to CPUs[i] for the run (nil: leave it floating)
	Port     dpdk.Port
	Mode     BenchMode
	Gen      BenchGen
	Naive    *NaiveTable // mode BenchNaive
	Sessions uint32      // the generator draws sessions 0..Sessions-1 (BenchKey)
	VIP      netip.Addr  // their destination
	VIPPort  uint16
	Warmup   uint64 // per lcore, untimed
	Packets  uint64 // per window and lcore
	Windows  int    // 1..16; 0 means 1
	Seed     uint64
	GUEDst   netip.Addr // BenchGenGUE: outer destination (this host)
	GUESrc   netip.Addr // BenchGenGUE: outer source (a live peer: others are refused)
	GUEPort  uint16     // BenchGenGUE: UDP destination port (the tunnel port)
	// Capture, with BenchHook, is armed on the lcores for the run (nil: none).
	Capture *CaptureConfig
}

// BenchResult is one lcore's outcome of a run.
type BenchResult struct {
	Packets uint64
	Elapsed time.Duration
	Windows []float64 // Mpps of each timed window (wall clock)
	// CPUWindows is each window's packets over the CPU time the lcore's thread got in
	// it (CLOCK_THREAD_CPUTIME_ID): on a shared machine, the rate without the time the
	// thread was preempted. OnCPU is the share of the wall time it ran.
	CPUWindows []float64
	OnCPU      float64
	CPU        int   // the CPU the lcore was pinned to, -1 none
	Stats      Stats // of the timed windows
}

// Mpps is the run's packet rate in millions of packets per second over all windows.
func (r BenchResult) Mpps() float64 { return float64(r.Packets) / r.Elapsed.Seconds() / 1e6 }

func be32(a netip.Addr) C.uint32_t {
	b := a.As4()
	return *(*C.uint32_t)(unsafe.Pointer(&b[0]))
}

func be16(p uint16) C.uint16_t { return C.uint16_t(p>>8 | p<<8) }

// BenchRun runs c on every lcore of c.Lcores at once and returns one result per lcore.
func (d *DataPlane) BenchRun(c BenchConfig) ([]BenchResult, error) {
	if c.Sessions == 0 || len(c.Lcores) == 0 || !c.VIP.Is4() {
		return nil, errors.New("lcore: bench needs sessions, an IPv4 VIP and lcores")
	}
	if c.Gen == BenchGenGUE && (!c.GUEDst.Is4() || !c.GUESrc.Is4()) {
		return nil, errors.New("lcore: bench GUE generator needs an IPv4 source and destination")
	}
	if c.Mode == BenchNaive && (c.Naive == nil || c.Naive.nv == nil) {
		return nil, errors.New("lcore: naive bench needs its table")
	}
	if c.Windows == 0 {
		c.Windows = 1
	}
	if c.Windows > C.HOMING_BENCH_WINDOWS_MAX {
		return nil, fmt.Errorf("lcore: bench: %d windows, at most %d", c.Windows, C.HOMING_BENCH_WINDOWS_MAX)
	}
	if d.running.Load() {
		return nil, ErrRunning
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
		if c.Naive != nil {
			b.naive = c.Naive.nv
		}
		b.n_keys = C.uint32_t(c.Sessions)
		b.vip = be32(c.VIP)
		b.vip_port = be16(c.VIPPort)
		b.mode = C.uint32_t(c.Mode)
		b.gen = C.uint32_t(c.Gen)
		b.cpu = -1
		if i < len(c.CPUs) {
			b.cpu = C.int32_t(c.CPUs[i])
		}
		b.windows = C.uint32_t(c.Windows)
		b.warmup = C.uint64_t(c.Warmup)
		b.packets = C.uint64_t(c.Packets)
		b.seed = C.uint64_t(c.Seed + uint64(i)*0x9e3779b97f4a7c15)
		if c.Gen == BenchGenGUE {
			b.gue_dst = be32(c.GUEDst)
			b.gue_src = be32(c.GUESrc)
			b.gue_port = be16(c.GUEPort)
		}
		bs[i] = b
	}
	if c.Capture != nil {
		if c.Mode != BenchHook {
			return nil, errors.New("lcore: bench: a capture needs BenchHook")
		}
		d.mu.Lock()
		cp, err := d.arm(*c.Capture, lcs, false)
		d.mu.Unlock()
		if err != nil {
			return nil, err
		}
		defer cp.Close() // after the lcores returned (Wait below)
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
		var ns, cpu uint64
		r := BenchResult{Packets: uint64(b.done), CPU: int(b.pinned), Stats: statsOf(c.Lcores[i], &lcs[i].stats)}
		for w := 0; w < c.Windows; w++ {
			ns += uint64(b.win_ns[w])
			cpu += uint64(b.win_cpu_ns[w])
			r.Windows = append(r.Windows, float64(b.win_done[w])/float64(b.win_ns[w])*1e3)
			r.CPUWindows = append(r.CPUWindows, float64(b.win_done[w])/float64(max(b.win_cpu_ns[w], 1))*1e3)
		}
		r.Elapsed = time.Duration(ns)
		r.OnCPU = float64(cpu) / float64(max(ns, 1))
		res[i] = r
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
