//go:build harness

// Command homing-bench measures the data plane and the gossip (make bench), and prints
// one table of both. Every data-plane rate is a ratio to a bare rx→tx loop with the same
// traffic generator on the same PMD, measured in the same run, because this kind of
// machine is shared and noisy; instruction counts come from callgrind (-callgrind),
// which counts the same for the same binary and input. The gossip rows are convergence
// delays over multicast among 5 processes in network namespaces, homing's gossip next
// to hashicorp/memberlist (internal/gossipbench; root). See docs/PERFORMANCE.md.
//
//	homing-bench              full run: 1M and 10M sessions, 20M packets per case, 3 rounds; gossip at 1k, 10k, 50k/s
//	homing-bench -smoke       a few seconds, for CI: checks that the benchmark still works
//	homing-bench -gossip-only the gossip rows only (-gossip=false: none)
//	homing-bench -callgrind   pipeline instructions per packet (runs itself under valgrind)
//	homing-bench -case C      one case only (what -callgrind runs)
//	homing-bench gossip-node  (internal) one gossip node of the gossip benchmark
package main

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/homing-dev/homing/dpdk"
	"github.com/homing-dev/homing/internal/gossipbench"
	"github.com/homing-dev/homing/lcore"
	"github.com/homing-dev/homing/session"
	"github.com/homing-dev/homing/table"
	"golang.org/x/sys/unix"
)

type options struct {
	sessions, big int
	packets       uint64 // per window
	warmup        uint64 // per case and round, untimed
	windows       int    // timed windows per case and round
	workers       int    // most worker lcores of the multi-queue rows
	naive         bool   // the naive reference row
	bareCG        bool   // count the bare loops' instructions under callgrind for the table
	clock         string // "thread": rates over the lcore thread's CPU time; "wall"
	rounds        int
	huge          bool
	only          string
	churn         time.Duration
	scaling       bool
	smoke         bool
	gossip        bool          // run the gossip benchmark too
	gossipOnly    bool          // run only the gossip benchmark
	gossipFlush   time.Duration // homing FlushDelay override (0: the default)
	gossipSystems string        // comma-separated systems of the gossip benchmark
	gossipDump    string        // directory for the per-session delays
	memberlistBin string        // the gossip benchmark's memberlist node (its own module)
	gossipEnv     string        // comma-separated KEY=VALUE for the gossip nodes' environment
	gossipRates   string        // comma-separated sessions per second (empty: the defaults)
	scale         scaleOptions  // gossip at scale (issue 20): apply rows, growth sweep
}

// scaleOptions are the gossip-at-scale rows' (apply.go, growth.go).
type scaleOptions struct {
	apply      int    // sessions of the gossip apply and join rows (0: none)
	growth     string // comma-separated host counts of the growth sweep (empty: none)
	growthRate int    // its total sessions per second
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == gossipbench.ChildCommand {
		if err := gossipbench.Child(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "homing-bench gossip-node:", err)
			os.Exit(1)
		}
		return
	}
	var o options
	smoke := flag.Bool("smoke", false, "tiny run for CI (asserts nothing about speed)")
	cg := flag.Bool("callgrind", false, "count the pipeline's instructions per packet under valgrind (callgrind)")
	flag.IntVar(&o.sessions, "sessions", 1<<20, "sessions in the table")
	flag.IntVar(&o.big, "big", 10_000_000, "sessions of the large-table case (0: skip it)")
	flag.Uint64Var(&o.packets, "packets", 4_000_000, "packets per timed window")
	flag.Uint64Var(&o.warmup, "warmup", 2_000_000, "untimed packets before the windows of each case and round")
	flag.IntVar(&o.windows, "windows", 5, "timed windows per case and round (the round's figure is their median)")
	flag.IntVar(&o.rounds, "rounds", 5, "rounds, every case once per round (median [min-max] over the rounds)")
	flag.IntVar(&o.workers, "workers", 2, "multi-queue rows: 1..N worker lcores on N queues of net_null (needs N CPUs; 1: none)")
	flag.BoolVar(&o.naive, "naive", true, "the naive reference design's row (rte_hash, bulk lookup, GUE written per packet)")
	flag.StringVar(&o.clock, "clock", "thread", "rates over the lcore thread's CPU time (thread: preemption by other processes does not count) or over the wall clock (wall); the same on an idle machine")
	flag.BoolVar(&o.bareCG, "bare-callgrind", true, "count the bare loops' instructions per packet under valgrind (callgrind) for the table (needs an unstripped binary: make bench builds one)")
	flag.BoolVar(&o.huge, "hugepages", true, "use 2 MB hugepages (reserved here if needed); false: --no-huge")
	flag.StringVar(&o.only, "case", "", "run only this case (bare, redirect, local, bare-gue, decap): for instruction counts")
	flag.DurationVar(&o.churn, "churn", 3*time.Second, "table-write phase: batched inserts and deletes while an lcore forwards (0: skip)")
	flag.BoolVar(&o.scaling, "scaling", true, "also run the multi-queue rows (-workers)")
	flag.BoolVar(&o.gossip, "gossip", true, "also run the gossip convergence benchmark (root: network namespaces)")
	flag.BoolVar(&o.gossipOnly, "gossip-only", false, "run only the gossip convergence benchmark")
	flag.DurationVar(&o.gossipFlush, "gossip-flush", 0, "gossip benchmark: homing FlushDelay (0: the library's default)")
	flag.StringVar(&o.gossipSystems, "gossip-systems", "homing,multicast,memberlist", "gossip benchmark: systems to run, in order (multicast: the floor, one bare datagram per record)")
	flag.StringVar(&o.gossipEnv, "gossip-env", "", "gossip benchmark: KEY=VALUE,... added to the nodes' environment (e.g. GOGC=400)")
	flag.StringVar(&o.gossipRates, "gossip-rates", "", "gossip benchmark: sessions per second, comma-separated (default 1000,10000,50000)")
	flag.StringVar(&o.gossipDump, "gossip-dump", "", "gossip benchmark: directory to write each run's per-session delays to")
	flag.StringVar(&o.memberlistBin, "memberlist-node", "bin/homing-bench-memberlist", "gossip benchmark: the memberlist node program, built from internal/gossipbench/memberlist (make bench builds it)")
	cpuProfile := flag.String("cpuprofile", "", "write a Go CPU profile of the run to this file")
	flag.IntVar(&o.scale.apply, "apply", 1<<20, "sessions of the gossip apply rows: receive -> ownership map + table, and a joining host's repair (0: skip)")
	flag.StringVar(&o.scale.growth, "gossip-growth", "4,8,16,32", "gossip benchmark: host counts of the growth sweep (homing only, one announcer; empty: none)")
	flag.IntVar(&o.scale.growthRate, "gossip-growth-rate", 10000, "gossip benchmark: sessions per second of the growth sweep, in all")
	flag.Parse()
	o.smoke = *smoke
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "homing-bench:", err)
			os.Exit(2)
		}
		defer pprof.StopCPUProfile()
	}
	if o.clock != "thread" && o.clock != "wall" {
		fmt.Fprintf(os.Stderr, "homing-bench: -clock %q: want thread or wall\n", o.clock)
		os.Exit(2)
	}
	if *smoke {
		o.scale.growth, o.scale.growthRate, o.scale.apply = "3", 1000, 1<<14
		o.sessions, o.big, o.packets, o.warmup, o.windows, o.rounds, o.huge, o.churn = 1<<16, 0, 100_000, 20_000, 2, 1, false, 200*time.Millisecond
		o.bareCG = false
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch {
	case *cg:
		err = callgrind(o)
	case o.gossipOnly:
		err = runGossipOnly(ctx, o)
	default:
		err = run(ctx, o)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "homing-bench:", err)
		stop()
		os.Exit(1)
	}
}

// tableHeader is the header of the one table: data-plane cases and gossip runs.
var tableHeader = []string{"case", "sessions", "result", "ratio", "bare loop", "target"}

// runGossipOnly runs the gossip benchmark alone and prints its rows.
func runGossipOnly(ctx context.Context, o options) error {
	g, err := runGossip(ctx, o)
	fmt.Printf("homing benchmark: gossip only\n\n%s\n\n", g.title)
	if len(g.rows) > 0 {
		printTable(tableHeader, g.rows)
	}
	for _, n := range g.notes {
		fmt.Println(n)
	}
	return err
}

const (
	selfID     = 1
	peerID     = 2
	tunnelPort = 6080
	batchSize  = 4096
)

var (
	vip   = netip.AddrFrom4([4]byte{198, 19, 255, 1})
	self4 = netip.MustParseAddr("198.18.0.11")
	peer4 = netip.MustParseAddr("198.18.0.12")
)

// flowKey is the i-th session, the one the generator computes from i (lcore.BenchKey).
func flowKey(i uint32) session.Key { return lcore.BenchKey(i, vip, 443) }

// fixture is one table with its data planes: every session is owned by the peer, so
// that the generator may draw any of them in every case: dp (this host) redirects them
// all, dpLocal (a data plane on the same table that is the peer) keeps them all local.
type fixture struct {
	n         int
	tbl       *table.Table
	dp        *lcore.DataPlane
	dpLocal   *lcore.DataPlane
	naive     *lcore.NaiveTable // the naive design's table (nil: no naive row)
	heapBytes uint64            // rte_malloc heap growth across table.New
	memSize   uint64            // table.MemSize
	capacity  uint32
}

var (
	selfMAC = []byte{2, 0, 0, 0, 0, 1}
	peerMAC = []byte{2, 0, 0, 0, 0, 2}
)

func newFixture(name string, n int, capacity uint32, naive bool) (*fixture, error) {
	f := &fixture{n: n, capacity: capacity}
	before := table.HeapAllocated()
	tbl, err := table.New(name, capacity, 1024, -1)
	if err != nil {
		return nil, err
	}
	f.tbl = tbl
	f.heapBytes = table.HeapAllocated() - before
	f.memSize = table.MemSize(capacity, 1024)
	batch := make([]session.Update, 0, batchSize)
	for i := 0; i < n; i++ {
		batch = append(batch, session.Update{Key: flowKey(uint32(i)), Owner: session.Owner{Host: peerID, Epoch: 1}})
		if len(batch) == cap(batch) || i == n-1 {
			if err := tbl.Apply(batch); err != nil {
				f.close()
				return nil, err
			}
			batch = batch[:0]
		}
	}
	vips := []netip.Prefix{netip.PrefixFrom(vip, 32)}
	f.dp, err = lcore.New(lcore.Config{SelfID: selfID, Self4: self4, TunnelPort: tunnelPort, VIPs: vips, Table: tbl.Ptr()})
	if err != nil {
		f.close()
		return nil, err
	}
	if err := f.dp.SetTemplate(lcore.Template{ID: peerID, SrcMAC: selfMAC, DstMAC: peerMAC,
		Src: self4, Dst: peer4, TunnelPort: tunnelPort}); err != nil {
		f.close()
		return nil, err
	}
	f.dpLocal, err = lcore.New(lcore.Config{SelfID: peerID, Self4: peer4, TunnelPort: tunnelPort, VIPs: vips, Table: tbl.Ptr()})
	if err != nil {
		f.close()
		return nil, err
	}
	if naive {
		f.naive, err = lcore.NewNaiveTable(name+"-nv", uint32(n), vip, 443, peerID, selfID, selfMAC, peerMAC, self4, peer4, tunnelPort)
		if err != nil {
			f.close()
			return nil, err
		}
	}
	return f, nil
}

func (f *fixture) close() {
	f.naive.Close()
	if f.dpLocal != nil {
		f.dpLocal.Close()
	}
	if f.dp != nil {
		f.dp.Close()
	}
	if f.tbl != nil {
		f.tbl.Close()
	}
}

// bcase is one row of the table.
type bcase struct {
	id     string // -case name
	name   string
	fx     *fixture
	mode   lcore.BenchMode
	gen    lcore.BenchGen
	local  bool   // run on fx.dpLocal: every session owned here
	bare   string // the bare loop of the ratio
	naive  string // the naive row this case is compared with
	target string
	check  func(lcore.Stats) error
	// capture is armed on the lcore for the run (mode BenchHook)
	capture *lcore.CaptureConfig
}

// run is one run of the case on lcores (pinned to cpus).
func (c bcase) run(port dpdk.Port, lcores []uint, cpus []int, o options, seed uint64) ([]lcore.BenchResult, error) {
	dp := c.fx.dp
	if c.local {
		dp = c.fx.dpLocal
	}
	return dp.BenchRun(lcore.BenchConfig{Lcores: lcores, CPUs: cpus, Port: port, Mode: c.mode, Gen: c.gen, Naive: c.fx.naive,
		Sessions: uint32(c.fx.n), VIP: vip, VIPPort: 443, Warmup: o.warmup, Packets: o.packets, Windows: o.windows,
		Seed: seed, GUEDst: self4, GUESrc: peer4, GUEPort: tunnelPort, Capture: c.capture})
}

func all(what string, get func(lcore.Stats) uint64) func(lcore.Stats) error {
	return func(s lcore.Stats) error {
		if get(s) != s.RxNIC || s.RxNIC == 0 {
			return fmt.Errorf("%d of %d packets %s: %+v", get(s), s.RxNIC, what, s)
		}
		return nil
	}
}

func cases(main, big *fixture) []bcase {
	redirected := all("redirected", func(s lcore.Stats) uint64 { return s.Redirect })
	cs := []bcase{
		{id: "bare", name: "bare rx->tx loop (TCP generator)", fx: main, mode: lcore.BenchBare},
		{id: "redirect", name: "100 % redirected (hit + encapsulation)", fx: main, mode: lcore.BenchPipeline, bare: "bare", target: ">= 0.45",
			check: redirected},
		{id: "local", name: "100 % local (owned here -> kernel path)", fx: main, mode: lcore.BenchPipeline, local: true, bare: "bare", target: ">= 0.55",
			check: all("local", func(s lcore.Stats) uint64 { return s.Local })},
		// The capture's cost (issue 17): the poll loop's NIC burst goes through one branch
		// on lc->cap; the same redirected traffic with no capture armed, and with one armed
		// on every point whose filter matches no packet (each packet's headers are parsed
		// and compared at nic-rx and at nic-tx), over the pipeline called directly.
		{id: "capture-off", name: "capture branch, none armed / 100 % redirected", fx: main, mode: lcore.BenchHook, bare: "redirect",
			target: ">= 0.98", check: redirected},
		{id: "capture-armed", name: "capture armed, matching nothing / 100 % redirected", fx: main, mode: lcore.BenchHook, bare: "redirect",
			check: redirected, capture: &lcore.CaptureConfig{Points: lcore.NICRx | lcore.NICTx | lcore.TAPRx | lcore.TAPTx, Snaplen: 2048,
				Count: lcore.MaxCaptureCount, Filter: lcore.Filter{Addrs: []lcore.AddrCond{{Addr: netip.MustParseAddr("192.0.2.1")}}}}},
	}
	if main.naive != nil {
		cs = append(cs,
			bcase{id: "naive", name: "naive design, 100 % redirected (rte_hash)", fx: main, mode: lcore.BenchNaive, bare: "bare", target: "(~0.27)",
				check: redirected},
			bcase{id: "redirect-vs-naive", name: "100 % redirected / naive design", fx: main, naive: "naive", target: ">= 1.6"})
	}
	cs = append(cs,
		bcase{id: "bare-gue", name: "bare rx->tx loop (GUE generator)", fx: main, mode: lcore.BenchBare, gen: lcore.BenchGenGUE},
		bcase{id: "decap", name: "decapsulation (GUE to this host)", fx: main, mode: lcore.BenchPipeline, gen: lcore.BenchGenGUE, bare: "bare-gue", target: ">= 0.80",
			check: all("decapsulated", func(s lcore.Stats) uint64 { return s.Decap })})
	if big != nil {
		cs = append(cs,
			bcase{id: "bare-big", name: "bare rx->tx loop (TCP generator)", fx: big, mode: lcore.BenchBare},
			bcase{id: "redirect-big", name: "100 % redirected (hit + encapsulation)", fx: big, mode: lcore.BenchPipeline, bare: "bare-big", target: ">= 0.35",
				check: redirected})
	}
	return cs
}

// windowsOf is a run's per-window rates on the chosen clock.
func (o options) windowsOf(r lcore.BenchResult) []float64 {
	if o.clock == "wall" {
		return r.Windows
	}
	return r.CPUWindows
}

// spread is a figure over the rounds: median [min-max].
func spread(v []float64, format string) string {
	if len(v) == 0 {
		return "-"
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return fmt.Sprintf(format+" ["+format+"-"+format+"]", median(s), s[0], s[len(s)-1])
}

// cpuList is the CPUs this process may run on, in order.
func cpuList() []int {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return nil
	}
	var cpus []int
	for i := 0; i < 1024 && len(cpus) < set.Count(); i++ {
		if set.IsSet(i) {
			cpus = append(cpus, i)
		}
	}
	return cpus
}

// pinning puts worker lcore i on its own CPU, the last CPUs first (the main thread, idle
// in rte_eal_wait_lcore meanwhile, and the rest of the machine tend to start on CPU 0).
func pinning(n int) []int {
	cpus := cpuList()
	if len(cpus) == 0 {
		return nil
	}
	out := make([]int, n)
	for i := range out {
		out[i] = cpus[(len(cpus)-1-i%len(cpus)+len(cpus))%len(cpus)]
	}
	return out
}

func run(ctx context.Context, o options) error {
	if o.only != "" {
		o.big, o.churn, o.scaling, o.rounds, o.gossip, o.bareCG = 0, 0, false, 1, false, false
		o.naive = o.only == "naive"
	}
	// Before EAL: the bare loops' instruction counts (a child process under valgrind each).
	var bareInstr map[string]float64
	var bareInstrErr error
	if o.bareCG {
		bareInstr, bareInstrErr = bareInstructions()
	}
	capMain, capBig := uint32(o.sessions+o.sessions/4), uint32(o.big+o.big/4)
	mem := 256 + int((table.MemSize(capMain, 1024)+table.MemSize(capBig, 1024))>>20)
	if o.naive {
		mem += o.sessions * 128 >> 20 // rte_hash: ~100 B per session of 1.25 x capacity
	}
	if o.huge {
		if err := reserveHugepages(mem); err != nil {
			fmt.Fprintf(os.Stderr, "homing-bench: %v; running with --no-huge\n", err)
			o.huge = false
		}
	}
	workers := 1
	if o.scaling && o.workers > 1 && numCPU() >= 2 {
		workers = o.workers
	}
	if err := dpdk.Init(dpdk.EALConfig{FilePrefix: fmt.Sprintf("homing-bench-%d", os.Getpid()),
		Hugepages: o.huge, MemoryMB: mem, Workers: workers, VDevs: []string{"net_null0,size=64"}, LogLevel: "error"}); err != nil {
		return err
	}
	defer func() { _ = dpdk.Cleanup() }()
	lcores := dpdk.Workers()
	pool, err := dpdk.NewMempool("bench", 16383*len(lcores), 256, 0, -1)
	if err != nil {
		return err
	}
	defer pool.Free()
	port, err := dpdk.PortByName("net_null0")
	if err != nil {
		return err
	}
	if err := port.Start(dpdk.PortConfig{RxQueues: len(lcores), TxQueues: len(lcores)}, pool); err != nil {
		return err
	}
	defer func() { _ = port.Stop(); _ = port.Close() }()

	start := time.Now()
	mainFx, err := newFixture("bench", o.sessions, capMain, o.naive)
	if err != nil {
		return err
	}
	defer mainFx.close()
	var bigFx *fixture
	if o.big > 0 {
		if bigFx, err = newFixture("bench-big", o.big, capBig, false); err != nil {
			return err
		}
		defer bigFx.close()
	}
	setup := time.Since(start)
	cs := cases(mainFx, bigFx)
	cpu1 := pinning(1)

	if o.only != "" {
		for _, c := range cs {
			if c.id == o.only && c.naive == "" {
				rs, err := c.run(port, lcores[:1], cpu1, o, 1)
				if err != nil {
					return err
				}
				if c.check != nil {
					if err := c.check(rs[0].Stats); err != nil {
						return fmt.Errorf("%s: %w", c.name, err)
					}
				}
				fmt.Printf("%s: %d packets, %.2f Mpps (wall), %.2f Mpps (median window, lcore CPU time), on CPU %.0f%%\n",
					c.name, rs[0].Packets, rs[0].Mpps(), median(rs[0].CPUWindows), 100*rs[0].OnCPU)
				return nil
			}
		}
		return fmt.Errorf("-case %q: want bare, redirect, local, capture-off, capture-armed, naive, bare-gue or decap", o.only)
	}

	// Rounds interleave the cases: every case once per round, in the same order; a
	// round's figure of a case is the median of its timed windows.
	results := map[string][]float64{}
	var onCPU []float64
	pinned := -1
	for r := 0; r < o.rounds; r++ {
		for i, c := range cs {
			if c.naive != "" {
				continue
			}
			rs, err := c.run(port, lcores[:1], cpu1, o, uint64(r*7+i+1))
			if err != nil {
				return err
			}
			if c.check != nil {
				if err := c.check(rs[0].Stats); err != nil {
					return fmt.Errorf("%s: %w", c.name, err)
				}
			}
			pinned = rs[0].CPU
			results[c.id] = append(results[c.id], median(o.windowsOf(rs[0])))
			onCPU = append(onCPU, rs[0].OnCPU)
		}
	}
	memMode := "2 MB hugepages"
	if !o.huge {
		memMode = "--no-huge"
	}
	var rows [][]string
	for _, c := range cs {
		var ratios []float64
		mpps, bare := "-", "-"
		switch {
		case c.naive != "":
			for r, x := range results["redirect"] {
				ratios = append(ratios, x/results[c.naive][r])
			}
		default:
			mpps = spread(results[c.id], "%.2f")
			if c.bare != "" {
				bare = spread(results[c.bare], "%.2f")
				if in, ok := bareInstr[strings.TrimSuffix(c.bare, "-big")]; ok {
					bare += fmt.Sprintf(", %.1f instr", in)
				}
				for r, x := range results[c.id] {
					ratios = append(ratios, x/results[c.bare][r])
				}
			}
		}
		ratio := "-"
		if len(ratios) > 0 {
			ratio = spread(ratios, "%.3f")
		}
		rows = append(rows, []string{c.name, fmt.Sprint(c.fx.n), mpps, ratio, bare, cmp.Or(c.target, "-")})
	}
	// Table memory, table writes and scaling, then the gossip (the lcores idle
	// meanwhile): every figure in the one table.
	for _, f := range []*fixture{mainFx, bigFx} {
		if f == nil {
			continue
		}
		rows = append(rows, []string{fmt.Sprintf("table memory per session: heap growth (MemSize), capacity %d", f.capacity), fmt.Sprint(f.n),
			fmt.Sprintf("%.1f B (%.1f B)", float64(f.heapBytes)/float64(f.n), float64(f.memSize)/float64(f.n)), "-", "-", "-"})
		eq := uint32(f.n)
		rows = append(rows, []string{"table memory per session at capacity = sessions (MemSize)", fmt.Sprint(f.n),
			fmt.Sprintf("%.1f B", float64(table.MemSize(eq, 0))/float64(f.n)), "-", "-", "<= 40 B"})
		if f.naive != nil {
			rows = append(rows, []string{"naive design's rte_hash memory per session (heap growth)", fmt.Sprint(f.n),
				fmt.Sprintf("%.1f B", float64(f.naive.HeapBytes())/float64(f.n)), "-", "-", "-"})
		}
	}
	if o.scale.apply > 0 {
		ar, err := applyRows(o.scale.apply)
		if err != nil {
			return err
		}
		rows = append(rows, ar...)
	}
	if o.churn > 0 {
		cr, err := churn(mainFx, port, lcores[0], cpu1, o)
		if err != nil {
			return err
		}
		rows = append(rows, cr...)
	}
	if len(lcores) >= 2 {
		sr, err := scaling(cs, port, lcores, o)
		if err != nil {
			return err
		}
		rows = append(rows, sr...)
	}
	var g gossipResult
	var gerr error
	if o.gossip {
		g, gerr = runGossip(ctx, o)
		rows = append(rows, g.rows...)
	}
	clockNote := "rates over the lcore thread's CPU time (CLOCK_THREAD_CPUTIME_ID)"
	if o.clock == "wall" {
		clockNote = "rates over the wall clock (CLOCK_MONOTONIC)"
	}
	fmt.Printf("homing benchmark: data plane: net_null, 64 B frames (GUE: 86 B), 1 worker lcore pinned to CPU %d, on that CPU %s of the wall time "+
		"(median [min-max] over the runs), %s; %d rounds; per case and round "+
		"%d packets of warm-up, then %d windows of %d packets (the round's figure: their median), %s (setup %.1fs); "+
		"table: IPv4 capacity 1.25 x sessions, IPv6 1024; generator: session = random index in [0, sessions), key computed from it; "+
		"%d CPUs, load average %s; process %s\n",
		pinned, spread(pct(onCPU), "%.0f%%"), clockNote, o.rounds, o.warmup, o.windows, o.packets, memMode, setup.Seconds(), numCPU(), loadAvg(), procStatus("VmRSS", "HugetlbPages"))
	if g.title != "" {
		fmt.Println(g.title)
	}
	fmt.Println()
	printTable(tableHeader, rows)
	fmt.Printf("\n(data plane: median [min-max] over the rounds; ratio: each round's rate over its bare loop's (or the naive design's) in the same round; " +
		"bare loop: its Mpps, and its instructions per packet under callgrind; multi-queue: Mpps summed over the workers, ratio = over 1 worker)\n")
	if o.gossip && len(g.rows) > 0 {
		fmt.Printf("(gossip: p50/p90/p99/max of the delays of all sessions, ∞ for those that had not reached all peers by the end of the wait; " +
			"B/record: gossip payload of the records datagrams, then with 28 B of IPv4+UDP per datagram; ratio: memberlist's delay over homing's at the same rate)\n")
	}
	if bareInstrErr != nil {
		fmt.Printf("(bare loop instructions: %v)\n", firstLine(bareInstrErr.Error()))
	}
	for _, n := range g.notes {
		fmt.Println(n)
	}
	return gerr
}

func pct(v []float64) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = 100 * x
	}
	return out
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

// churn applies batches of inserts and deletes (of sessions the generator never sends)
// to the main table for d while a worker lcore forwards 100 % redirected traffic.
func churn(f *fixture, port dpdk.Port, lc uint, cpus []int, o options) ([][]string, error) {
	d := o.churn
	const batch = 1024
	extra := make([]session.Key, 64*batch)
	for i := range extra {
		extra[i] = flowKey(uint32(f.n + i))
	}
	ins := make([][]session.Update, 64)
	dels := make([][]session.Update, 64)
	for j := range ins {
		for _, k := range extra[j*batch : (j+1)*batch] {
			ins[j] = append(ins[j], session.Update{Key: k, Owner: session.Owner{Host: peerID, Epoch: 2}})
			dels[j] = append(dels[j], session.Update{Key: k, Delete: true})
		}
	}
	c := bcase{fx: f, mode: lcore.BenchPipeline}
	q := o
	q.windows, q.packets = 1, min(o.packets*uint64(o.windows), 2_000_000)
	quiet, err := c.run(port, []uint{lc}, cpus, q, 99)
	if err != nil {
		return nil, err
	}
	// Packets enough for the lcore to outlast the writes.
	q.warmup, q.packets = 0, uint64(quiet[0].Mpps()*1e6*d.Seconds()*1.5)
	type out struct {
		rs  []lcore.BenchResult
		err error
	}
	done := make(chan out, 1)
	go func() {
		rs, err := c.run(port, []uint{lc}, cpus, q, 100)
		done <- out{rs, err}
	}()
	time.Sleep(20 * time.Millisecond) // let the lcore start
	var ops, refused int
	var res out
	var werr error
	start := time.Now()
	for i := 0; ; i++ {
		j := (i / 2) % len(ins)
		ups := ins[j]
		if i%2 == 1 {
			ups = dels[j]
		}
		r, err := f.tbl.ApplyBatch(ups)
		switch {
		case errors.Is(err, table.ErrFull):
			// Freed key slots are reused only after the reader's grace period; a
			// reader descheduled for longer than the table's reclaim wait (10 ms, a
			// shared VM) leaves no slot: counted, and the deletes of those keys miss.
			refused += batch - r.Added
		case err != nil:
			werr = fmt.Errorf("churn batch %d: %+v %w", i, r, err)
		}
		ops += r.Added + r.Deleted
		if werr != nil || time.Since(start) >= d && i%2 == 1 {
			break
		}
	}
	el := time.Since(start)
	res = <-done // always: the lcore reads the table until its run ends
	if werr != nil {
		return nil, werr
	}
	if res.err != nil {
		return nil, res.err
	}
	if s := res.rs[0].Stats; s.Redirect != s.RxNIC {
		return nil, fmt.Errorf("churn: %d of %d packets redirected", s.Redirect, s.RxNIC)
	}
	n := fmt.Sprint(f.n)
	return [][]string{
		{fmt.Sprintf("table writes (batches of %d inserts, then deletes) while 1 lcore forwards", batch), n,
			fmt.Sprintf("%.2f M/s, %d adds refused", float64(ops)/el.Seconds()/1e6, refused), "-", "-", ">= 3 M/s"},
		{"  that lcore: Mpps without writes -> during the writes", n,
			fmt.Sprintf("%.2f -> %.2f Mpps", quiet[0].Mpps(), res.rs[0].Mpps()), fmt.Sprintf("%.3f", res.rs[0].Mpps()/quiet[0].Mpps()), "-", "-"},
	}, nil
}

// scaling runs the main table's bare, redirected and local cases on 1..n worker lcores
// at once (n queues of net_null, one lcore per queue, each pinned to its own CPU), Mpps
// summed over the lcores, rounds interleaved.
func scaling(cs []bcase, port dpdk.Port, lcores []uint, o options) ([][]string, error) {
	var rows [][]string
	res := map[string][][]float64{} // case -> workers-1 -> rounds
	for r := 0; r < o.rounds; r++ {
		for _, c := range cs[:3] {
			for w := 1; w <= len(lcores); w++ {
				rs, err := c.run(port, lcores[:w], pinning(w), o, uint64(r+1))
				if err != nil {
					return nil, err
				}
				if c.check != nil {
					for _, x := range rs {
						if err := c.check(x.Stats); err != nil {
							return nil, fmt.Errorf("%d workers, %s: %w", w, c.name, err)
						}
					}
				}
				sum := 0.0
				for _, x := range rs {
					sum += median(o.windowsOf(x))
				}
				if len(res[c.id]) < w {
					res[c.id] = append(res[c.id], nil)
				}
				res[c.id][w-1] = append(res[c.id][w-1], sum)
			}
		}
	}
	for _, c := range cs[:3] {
		one := res[c.id][0]
		for w := 2; w <= len(lcores); w++ {
			var sp []float64
			for r, x := range res[c.id][w-1] {
				sp = append(sp, x/one[r])
			}
			rows = append(rows, []string{fmt.Sprintf("multi-queue, 1 -> %d workers: %s", w, c.name), fmt.Sprint(c.fx.n),
				spread(one, "%.2f") + " -> " + spread(res[c.id][w-1], "%.2f"), spread(sp, "%.2f"), "-", "-"})
		}
	}
	return rows, nil
}

// callgrind runs this binary under valgrind once per case and prints the pipeline's
// instructions per packet: the case's total minus its bare loop's, over the packets.
func callgrind(o options) error {
	if _, err := exec.LookPath("valgrind"); err != nil {
		return fmt.Errorf("callgrind: %w", err)
	}
	if o.sessions == 1<<20 && !flagSet("sessions") {
		o.sessions = 65536
	}
	if !flagSet("packets") {
		o.packets = 200_000
	}
	ids := []string{"bare", "redirect", "local", "capture-off", "capture-armed", "naive", "bare-gue", "decap"}
	if !o.naive {
		ids = []string{"bare", "redirect", "local", "capture-off", "capture-armed", "bare-gue", "decap"}
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "homing-callgrind")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	total := map[string]uint64{}
	for _, id := range ids {
		n, err := cgCase(self, dir, id, o.sessions, o.packets)
		if err != nil {
			return err
		}
		total[id] = n
	}
	fmt.Printf("instructions per packet (callgrind, %d sessions, %d packets per case, --no-huge): the loop's total, "+
		"and the case minus its bare loop (the pipeline's own)\n\n", o.sessions, o.packets)
	fmt.Printf("| %-42s | %14s | %10s | %12s | %10s | %8s |\n", "case", "instructions", "per packet", "minus bare", "bare loop", "target")
	fmt.Printf("|%s|%s|%s|%s|%s|%s|\n", strings.Repeat("-", 44), strings.Repeat("-", 16), strings.Repeat("-", 12), strings.Repeat("-", 14),
		strings.Repeat("-", 12), strings.Repeat("-", 10))
	rows := []struct{ id, bare, name, target string }{
		{"bare", "", "bare loop (TCP generator)", ""},
		{"redirect", "bare", "100 % redirected", "<= 330 total"},
		{"local", "bare", "100 % local", ""},
		{"capture-off", "redirect", "capture branch, none armed (minus redirected)", ""},
		{"capture-armed", "redirect", "capture armed, matching nothing (minus redir.)", ""},
		{"naive", "bare", "naive design, 100 % redirected (rte_hash)", ""},
		{"bare-gue", "", "bare loop (GUE generator)", ""},
		{"decap", "bare-gue", "decapsulation", ""},
	}
	for _, r := range rows {
		if _, ok := total[r.id]; !ok {
			continue
		}
		per := float64(total[r.id]) / float64(o.packets)
		minus, bare := "-", "-"
		if r.bare != "" {
			minus = fmt.Sprintf("%.1f", (float64(total[r.id])-float64(total[r.bare]))/float64(o.packets))
			bare = fmt.Sprintf("%.1f", float64(total[r.bare])/float64(o.packets))
		}
		fmt.Printf("| %-42s | %14d | %10.1f | %12s | %10s | %8s |\n", r.name, total[r.id], per, minus, bare, r.target)
	}
	return nil
}

// cgCase runs one case of this binary (self) under callgrind and returns the
// instructions counted in homing_bench_main.
func cgCase(self, dir, id string, sessions int, packets uint64) (uint64, error) {
	out := filepath.Join(dir, "cg."+id)
	cmd := exec.Command("valgrind", "--tool=callgrind", "--toggle-collect=homing_bench_main",
		"--callgrind-out-file="+out, self, "-hugepages=false", "-sessions", strconv.Itoa(sessions),
		"-packets", strconv.FormatUint(packets, 10), "-warmup", "0", "-windows", "1", "-case", id)
	// Go's preemption signals crash valgrind's signal handling.
	cmd.Env = append(os.Environ(), "GODEBUG=asyncpreemptoff=1")
	if b, err := cmd.CombinedOutput(); err != nil {
		return 0, fmt.Errorf("callgrind %s: %w\n%s", id, err, b)
	}
	n, err := summary(out)
	if err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, fmt.Errorf("callgrind %s: nothing collected in homing_bench_main: is %s stripped? (go run strips symbols: go build it)", id, self)
	}
	return n, nil
}

// bareInstructions counts the bare loops' instructions per packet under callgrind
// (65,536 sessions, 200,000 packets: the bare loop reads no table), for the "bare loop"
// column. Empty where valgrind is missing or fails (e.g. a stripped binary).
func bareInstructions() (map[string]float64, error) {
	const packets = 200_000
	res := map[string]float64{}
	if _, err := exec.LookPath("valgrind"); err != nil {
		return res, err
	}
	self, err := os.Executable()
	if err != nil {
		return res, err
	}
	dir, err := os.MkdirTemp("", "homing-callgrind")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	for _, id := range []string{"bare", "bare-gue"} {
		n, err := cgCase(self, dir, id, 65536, packets)
		if err != nil {
			return res, err
		}
		res[id] = float64(n) / packets
	}
	return res, nil
}

func summary(path string) (uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		for _, p := range []string{"summary: ", "totals: "} {
			if strings.HasPrefix(line, p) {
				return strconv.ParseUint(strings.Fields(line[len(p):])[0], 10, 64)
			}
		}
	}
	return 0, errors.New("callgrind: no summary in " + path)
}

func flagSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) {
		if f.Name == name {
			set = true
		}
	})
	return set
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2]
}

func numCPU() int {
	b, err := os.ReadFile("/sys/fs/cgroup/cpuset.cpus.effective")
	if err == nil {
		n := 0
		for _, part := range strings.Split(strings.TrimSpace(string(b)), ",") {
			lo, hi, found := strings.Cut(part, "-")
			a, _ := strconv.Atoi(lo)
			z := a
			if found {
				z, _ = strconv.Atoi(hi)
			}
			n += z - a + 1
		}
		if n > 0 {
			return n
		}
	}
	return runtime.NumCPU()
}

// procStatus returns the named fields of /proc/self/status.
func procStatus(fields ...string) string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return err.Error()
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		for _, f := range fields {
			if strings.HasPrefix(line, f+":") {
				out = append(out, f+" "+strings.Join(strings.Fields(line[len(f)+1:]), " "))
			}
		}
	}
	return strings.Join(out, ", ")
}

// reserveHugepages makes sure enough free 2 MB pages exist for mb megabytes (root only).
func reserveHugepages(mb int) error {
	const path = "/proc/sys/vm/nr_hugepages"
	need := mb/2 + 64
	free, total := readInt("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages"), readInt(path)
	if free >= need {
		return nil
	}
	if err := os.WriteFile(path, []byte(fmt.Sprint(total+need-free)), 0o644); err != nil {
		return fmt.Errorf("reserve %d hugepages: %w", need, err)
	}
	if got := readInt("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages"); got < need {
		return fmt.Errorf("only %d of %d hugepages could be reserved", got, need)
	}
	return nil
}

func readInt(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	var n int
	_, _ = fmt.Sscan(strings.TrimSpace(string(b)), &n)
	return n
}
