// Package gossipbench measures gossip convergence the way a POP runs it: one process
// per host. Each of 5 hosts (an announcer and 4 peers) is a network namespace on one
// bridge, and each runs its node in a child process of its own (the benchmark program
// re-executed under ChildCommand inside the namespace), so that the delays are those of
// the network stack and of each node's own scheduling, not of 5 nodes' goroutines
// sharing one Go runtime.
//
// For each system (homing's gossip.Node over multicast with the library's defaults,
// hashicorp/memberlist's broadcast queue with LAN defaults, and optionally the floor:
// one bare multicast datagram per record) and each rate, Run starts fresh nodes, waits
// until they see each other, has the announcer announce new sessions at the rate (it
// wakes from clock_nanosleep at most every 250 µs and announces what is due, see
// paceQuantum), and measures for every session the delay from its announcement to its
// apply at the last of the 4 peers. Every process timestamps with CLOCK_MONOTONIC,
// which is one clock for the whole machine.
//
//	parent ──stdin/stdout lines (proto.go)──▶ ip netns exec hmg-gb-…-hN  <exe> gossip-node -system … -id N
//
// Memberlist nodes run in a program of their own module, internal/gossipbench/memberlist
// (Options.MemberlistCommand), so that hashicorp/memberlist is not in homing's go.mod.
//
// Run needs root and ip(8).
package gossipbench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/homing-dev/homing/gossip"
)

// The systems compared: homing's gossip, hashicorp/memberlist, and the floor, one bare
// multicast datagram per record (see mcNode; not run by default).
const (
	Homing     = "homing"
	Memberlist = "memberlist"
	Multicast  = "multicast"
)

// Peers is the number of peers every announcement must reach by default
// (Options.Hosts).
const Peers = 4

// MemberlistPort is the memberlist members' UDP and TCP port.
const MemberlistPort = 7946

// ErrUnavailable is returned by Run when the machine cannot run it (not root, no ip).
var ErrUnavailable = errors.New("gossip benchmark unavailable")

// Options configures Run. Zero fields take the defaults.
type Options struct {
	// Rates are the sessions per second announced (default 1000, 10000, 50000), each
	// for Duration (default 2 s).
	Rates    []int
	Duration time.Duration
	// Systems to run, in order (default homing, then memberlist; Multicast adds the
	// floor); MemberlistRates overrides Rates for memberlist.
	Systems         []string
	MemberlistRates []int
	// Wait bounds how long after the last announcement Run waits for every session
	// to reach every peer: HomingWait (default 10 s, also the floor's) and
	// MemberlistWait (default 30 s). Sessions still missing then count as never converging.
	HomingWait, MemberlistWait time.Duration
	// FlushDelay, if not zero, overrides the homing nodes' FlushDelay (otherwise the
	// library's defaults are measured).
	FlushDelay time.Duration
	// Command starts a child node: the program and its leading arguments, to which
	// Run adds the node's flags (default: this executable and ChildCommand; the
	// program must call Child for it).
	Command []string
	// MemberlistCommand starts a memberlist node likewise: the program built from the
	// module in internal/gossipbench/memberlist (which keeps hashicorp/memberlist out of
	// homing's go.mod) and its leading arguments. Required when Systems has Memberlist.
	MemberlistCommand []string
	// Env is added to the children's environment (e.g. GOGC=400, GOMAXPROCS=1, for
	// experiments on where the tail comes from; HMG_GB_TRACE=<dir> has every node
	// write a runtime execution trace, <system>-<id>.trace, for go tool trace).
	Env []string
	// Hosts is the number of hosts, the announcer included (default 1 + Peers, at
	// most 254): every announcement must reach the Hosts-1 others.
	Hosts int
	// Log receives a line per run as it completes (nil: nothing).
	Log io.Writer
	// Dump, if set, is a directory where each run writes its delays,
	// <system>-<rate>.txt: a line per session, "<index> <announced ns> <delay ns>
	// <delay at peer 1 ns> ... <delay at peer 4 ns>" (-1: not converged), to see where
	// the tail comes from.
	Dump string
}

// Row is one run: one system at one rate.
type Row struct {
	System string
	Rate   int // sessions per second
	Summary
	// Wire is the announcer's records traffic (homing only).
	Wire Wire
	// AnnounceErrors counts announcements that failed (homing: queue full).
	AnnounceErrors int
	// LateP99 is the 99th percentile of how late the announcer announced against its
	// schedule (a check of the pacing).
	LateP99 time.Duration
	// Gaps and AuthFailures sum the peers' sequence gaps and rejected datagrams
	// (homing only).
	Gaps, AuthFailures uint64
	// Elapsed is the wall time of the run, node start to stop.
	Elapsed time.Duration
	// AnnouncerCPU and PeerCPU are the CPU time (user and system) of the announcer's
	// process (pacing included) and of the peers' together, start to stop.
	AnnouncerCPU, PeerCPU time.Duration
}

func (o *Options) defaults() error {
	if len(o.Rates) == 0 {
		o.Rates = []int{1000, 10000, 50000}
	}
	if len(o.MemberlistRates) == 0 {
		o.MemberlistRates = o.Rates
	}
	if o.Duration <= 0 {
		o.Duration = 2 * time.Second
	}
	if len(o.Systems) == 0 {
		o.Systems = []string{Homing, Memberlist}
	}
	if o.HomingWait <= 0 {
		o.HomingWait = 10 * time.Second
	}
	if o.MemberlistWait <= 0 {
		o.MemberlistWait = 30 * time.Second
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.Hosts == 0 {
		o.Hosts = 1 + Peers
	}
	if o.Hosts < 2 || o.Hosts > 254 {
		return fmt.Errorf("hosts %d: want 2..254", o.Hosts)
	}
	if len(o.Command) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		o.Command = []string{exe, ChildCommand}
	}
	for _, s := range o.Systems {
		if s != Homing && s != Memberlist && s != Multicast {
			return fmt.Errorf("system %q: want %s, %s or %s", s, Homing, Memberlist, Multicast)
		}
		if s == Memberlist && len(o.MemberlistCommand) == 0 {
			return fmt.Errorf("system %s: no MemberlistCommand (build internal/gossipbench/memberlist: make bench does)", s)
		}
	}
	return nil
}

// Run runs the benchmark: for each system, for each rate, fresh nodes in fresh
// processes in one lab of namespaces, deleted at the end. It returns a row per run.
func Run(ctx context.Context, o Options) (rows []Row, err error) {
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("needs root (network namespaces): %w", ErrUnavailable)
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return nil, fmt.Errorf("needs ip(8): %w", errors.Join(err, ErrUnavailable))
	}
	if err := o.defaults(); err != nil {
		return nil, err
	}
	if err := removeStale(); err != nil {
		return nil, err
	}
	l, err := newLab(o.Hosts)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, l.close()) }()
	next := 0 // first session index of the next run
	for _, sys := range o.Systems {
		rates := o.Rates
		if sys == Memberlist {
			rates = o.MemberlistRates
		}
		for _, rate := range rates {
			count := max(1, int(float64(rate)*o.Duration.Seconds()))
			if next+count > maxIndex {
				next = 0
			}
			r, err := runOnce(ctx, l, o, sys, rate, next, count)
			if err != nil {
				return rows, fmt.Errorf("%s at %d/s: %w", sys, rate, err)
			}
			next += count
			rows = append(rows, r)
			fmt.Fprintf(o.Log, "gossip %s %d/s: %d of %d converged, p50 %v p99 %v max %v\n",
				sys, rate, r.Converged, r.Sessions, Micros(r.P50), Micros(r.P99), Micros(r.Max))
		}
	}
	return rows, nil
}

// runOnce starts the o.Hosts nodes of sys, announces count sessions from base at rate, and
// measures.
func runOnce(ctx context.Context, l *lab, o Options, sys string, rate, base, count int) (row Row, err error) {
	const startTimeout = 10 * time.Second
	start := time.Now()
	row = Row{System: sys, Rate: rate}
	var procs []*proc
	defer func() {
		for _, p := range procs {
			p.stop()
		}
	}()
	launch := func(id int) (*proc, error) {
		cmd := o.Command
		if sys == Memberlist {
			cmd = o.MemberlistCommand
		}
		argv := append(append([]string(nil), cmd...), "-system", sys, "-id", fmt.Sprint(id))
		if sys == Homing && o.FlushDelay > 0 {
			argv = append(argv, "-flush", o.FlushDelay.String())
		}
		if sys == Memberlist && id != 1 {
			argv = append(argv, "-join", fmt.Sprintf("198.18.50.1:%d", MemberlistPort))
		}
		p, err := startProc(fmt.Sprintf("%s node %d", sys, id), l.host(id), argv, o.Env)
		if err == nil {
			procs = append(procs, p)
		}
		return p, err
	}
	// The announcer first: memberlist peers join it when they start.
	ann, err := launch(1)
	if err != nil {
		return row, err
	}
	if _, err := ann.expect(ctx, startTimeout, "ready"); err != nil {
		return row, err
	}
	peers := make([]*proc, o.Hosts-1)
	for i := range peers {
		if peers[i], err = launch(i + 2); err != nil {
			return row, err
		}
	}
	for _, p := range peers {
		if _, err := p.expect(ctx, startTimeout, "ready"); err != nil {
			return row, err
		}
	}
	for _, p := range procs {
		if err := p.send(command{op: "wait", args: []int64{int64(o.Hosts - 1), int64(startTimeout)}}); err != nil {
			return row, err
		}
	}
	for _, p := range procs {
		if _, err := p.expect(ctx, startTimeout+time.Second, "ok"); err != nil {
			return row, err
		}
	}

	wait := o.HomingWait
	if sys == Memberlist {
		wait = o.MemberlistWait
	}
	runTime := time.Duration(float64(count) / float64(rate) * float64(time.Second))
	awaitTimeout := runTime + wait + time.Second
	for _, p := range peers {
		if _, err := p.call(ctx, startTimeout, command{op: "await", args: []int64{int64(base), int64(count), int64(awaitTimeout)}}, "armed"); err != nil {
			return row, err
		}
	}
	s0, err := nodeStats(ctx, ann)
	if err != nil {
		return row, err
	}
	v, err := ann.ints(ctx, runTime+startTimeout, command{op: "run", args: []int64{int64(rate), int64(count), int64(base)}}, "ran", 3)
	if err != nil {
		return row, err
	}
	row.AnnounceErrors, row.LateP99 = int(v[1]), time.Duration(v[2])
	for _, p := range peers {
		if _, err := p.expect(ctx, awaitTimeout+startTimeout, "done"); err != nil {
			return row, err
		}
	}
	// The announcer counts a datagram's records just after its send returns, which can
	// be after the peers applied them: wait (briefly) for the count.
	var s1 gossip.Stats
	for deadline := time.Now().Add(time.Second); ; {
		if s1, err = nodeStats(ctx, ann); err != nil {
			return row, err
		}
		if sys != Homing || s1.RecordsSent-s0.RecordsSent >= uint64(count) || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	row.Wire = wireBetween(s0, s1)
	announced, err := ann.samples(ctx, startTimeout)
	if err != nil {
		return row, err
	}
	applied := make([][]Sample, len(peers))
	for i, p := range peers {
		if applied[i], err = p.samples(ctx, startTimeout); err != nil {
			return row, err
		}
		st, err := nodeStats(ctx, p)
		if err != nil {
			return row, err
		}
		row.Gaps += st.SeqGaps
		row.AuthFailures += st.AuthFailures
		if os.Getenv("HMG_GB_STATS") != "" {
			fmt.Fprintf(os.Stderr, "peer %d: %+v\n", i, st)
		}
	}
	if sys != Homing {
		row.Wire = Wire{}
	}
	row.AnnouncerCPU = ann.stop()
	for _, p := range peers {
		row.PeerCPU += p.stop()
	}
	d := Delays(base, count, announced, applied)
	if o.Dump != "" {
		if err := dump(filepath.Join(o.Dump, fmt.Sprintf("%s-%d.txt", sys, rate)), base, announced, applied, d); err != nil {
			return row, err
		}
	}
	row.Summary = Summarize(d)
	row.Elapsed = time.Since(start)
	return row, nil
}

// dump writes the delays d of sessions base.. with their announcement times and each
// peer's own delay.
func dump(path string, base int, announced []Sample, applied [][]Sample, d []time.Duration) error {
	at := make([]int64, len(d))
	for _, s := range announced {
		if i := s.Index - base; i >= 0 && i < len(d) {
			at[i] = s.At
		}
	}
	per := make([][]int64, len(applied))
	for p, ss := range applied {
		per[p] = make([]int64, len(d))
		for _, s := range ss {
			if i := s.Index - base; i >= 0 && i < len(d) && per[p][i] == 0 {
				per[p][i] = s.At
			}
		}
	}
	var b []byte
	for i, x := range d {
		if x == Inf {
			x = -1
		}
		b = fmt.Appendf(b, "%d %d %d", base+i, at[i], int64(x))
		for p := range per {
			pd := int64(-1)
			if per[p][i] != 0 && at[i] != 0 {
				pd = per[p][i] - at[i]
			}
			b = fmt.Appendf(b, " %d", pd)
		}
		b = append(b, '\n')
	}
	return os.WriteFile(path, b, 0o644)
}

// nodeStats asks a node for its counters (zero for memberlist).
func nodeStats(ctx context.Context, p *proc) (gossip.Stats, error) {
	var s gossip.Stats
	rest, err := p.call(ctx, 10*time.Second, command{op: "stats"}, "stats")
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal([]byte(rest), &s); err != nil {
		return s, fmt.Errorf("%s stats: %w", p.name, err)
	}
	return s, nil
}

// Micros formats a delay in whole microseconds, Inf as "∞".
func Micros(d time.Duration) string {
	if d == Inf {
		return "∞"
	}
	return fmt.Sprint(d.Microseconds())
}

// Ratio formats a/b ("∞" when a is Inf, "-" when b is 0 or Inf).
func Ratio(a, b time.Duration) string {
	switch {
	case b <= 0 || b == Inf:
		return "-"
	case a == Inf:
		return "∞"
	}
	return fmt.Sprintf("%.1f", float64(a)/float64(b))
}
