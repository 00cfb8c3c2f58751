//go:build harness

package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/homing-dev/homing/internal/gossipbench"
)

// gossipTargets are the p99 convergence targets per rate (issue 9), and the bytes per
// IPv4 record on the wire, IPv4 and UDP headers included.
var gossipTargets = map[int]string{10000: "p99 <= 1000 µs", 50000: "p99 <= 5000 µs"}

const gossipWireTarget = "<= 40 B"

// gossipResult is what the gossip benchmark adds to the table.
type gossipResult struct {
	rows  [][]string // table rows
	title string     // describes the runs
	notes []string   // below the table
}

// runGossip runs the gossip convergence benchmark (gossipbench: one process per host in
// network namespaces) and formats its rows. Without root or ip(8) it is skipped with a
// note, unless CI=true.
func runGossip(ctx context.Context, o options) (gossipResult, error) {
	var res gossipResult
	opts := gossipbench.Options{FlushDelay: o.gossipFlush, Log: os.Stderr, Dump: o.gossipDump,
		Systems: strings.Split(o.gossipSystems, ",")}
	if o.gossipEnv != "" {
		opts.Env = strings.Split(o.gossipEnv, ",")
	}
	if slices.Contains(opts.Systems, gossipbench.Memberlist) {
		// A module of its own, so that hashicorp/memberlist stays out of homing's go.mod.
		if _, err := os.Stat(o.memberlistBin); err != nil {
			return res, fmt.Errorf("gossip: memberlist node: %w (make bench builds it; or leave memberlist out of -gossip-systems)", err)
		}
		opts.MemberlistCommand = []string{o.memberlistBin, gossipbench.ChildCommand}
	}
	if o.gossipRates != "" {
		for _, f := range strings.Split(o.gossipRates, ",") {
			r, err := strconv.Atoi(f)
			if err != nil || r <= 0 {
				return res, fmt.Errorf("-gossip-rates %q: want positive numbers", o.gossipRates)
			}
			opts.Rates = append(opts.Rates, r)
		}
	}
	if o.smoke {
		opts.Rates, opts.Duration, opts.HomingWait, opts.MemberlistWait = []int{1000}, 300*time.Millisecond, 5*time.Second, 2*time.Second
	}
	load := loadAvg()
	rows, err := gossipbench.Run(ctx, opts)
	if errors.Is(err, gossipbench.ErrUnavailable) {
		if os.Getenv("CI") == "true" {
			return res, fmt.Errorf("gossip: %w (CI=true: not skipped)", err)
		}
		res.title = fmt.Sprintf("gossip convergence: skipped: %v", err)
		return res, nil
	}
	if err != nil {
		err = fmt.Errorf("gossip: %w", err) // the rows of the runs that completed are still shown
	}
	flush := "library defaults"
	if o.gossipFlush > 0 {
		flush = fmt.Sprintf("FlushDelay %v", o.gossipFlush)
	}
	if o.gossipEnv != "" {
		flush += ", nodes' environment " + o.gossipEnv
	}
	dur, mlWait := "2s", "30s"
	if o.smoke {
		dur, mlWait = "300ms", "2s"
	}
	res.title = fmt.Sprintf("gossip convergence: 1 announcer + %d peers, one process each in a network namespace on one bridge; "+
		"homing over multicast (%s); floor: one bare multicast datagram per record, no batching, no authentication; "+
		"memberlist v0.7.0 broadcast queue (LAN defaults, waited for at most %s); "+
		"sessions announced at the rate for %s (the announcer wakes at most every 250 µs and announces what is due); delay = announcement -> in the table of the last peer "+
		"(CLOCK_MONOTONIC across processes); load average at the start %s",
		gossipbench.Peers, flush, mlWait, dur, load)
	homing := map[int]gossipbench.Row{}
	for _, r := range rows {
		if r.System == gossipbench.Homing {
			homing[r.Rate] = r
		}
	}
	var failed []string
	for _, r := range rows {
		sys := r.System
		if sys == gossipbench.Multicast {
			sys = "floor (bare multicast)"
		}
		name := fmt.Sprintf("gossip %s %s/s", sys, rateName(r.Rate))
		q := fmt.Sprintf("%s/%s/%s/%s µs", gossipbench.Micros(r.P50), gossipbench.Micros(r.P90), gossipbench.Micros(r.P99), gossipbench.Micros(r.Max))
		if r.Converged < r.Sessions {
			q += fmt.Sprintf(", %.1f %% converged", 100*float64(r.Converged)/float64(r.Sessions))
		}
		target := "-"
		if r.System == gossipbench.Homing {
			target = cmp.Or(gossipTargets[r.Rate], "-")
		}
		res.rows = append(res.rows, []string{name + ": convergence p50/p90/p99/max", fmt.Sprint(r.Sessions), q, "-", "-", target})
		if r.System == gossipbench.Homing {
			w := r.Wire
			res.rows = append(res.rows, []string{name + ": B/record, +IPv4/UDP, records/datagram", fmt.Sprint(w.Records),
				fmt.Sprintf("%.1f B, %.1f B, %.1f", w.BytesPerRecord(), w.WireBytesPerRecord(), w.RecordsPerDatagram()), "-", "-", gossipWireTarget})
			if r.Converged == 0 {
				failed = append(failed, fmt.Sprintf("homing at %d/s: no session reached every peer", r.Rate))
			}
			if r.AnnounceErrors > 0 || r.Gaps > 0 || r.AuthFailures > 0 {
				res.notes = append(res.notes, fmt.Sprintf("gossip homing %d/s: %d announcements refused, %d sequence gaps, %d auth failures at the peers",
					r.Rate, r.AnnounceErrors, r.Gaps, r.AuthFailures))
			}
		}
		if h, ok := homing[r.Rate]; ok && r.System == gossipbench.Memberlist {
			res.rows = append(res.rows, []string{fmt.Sprintf("gossip ratio memberlist/homing %s/s: p50, p99", rateName(r.Rate)), "-",
				fmt.Sprintf("%s, %s", gossipbench.Ratio(r.P50, h.P50), gossipbench.Ratio(r.P99, h.P99)), "-", "-", "-"})
		}
		res.notes = append(res.notes, fmt.Sprintf("gossip %s %d/s: announcer late against its schedule by %v at p99; run took %v; CPU time: announcer %v (pacing included), peers %v",
			r.System, r.Rate, r.LateP99.Round(time.Microsecond), r.Elapsed.Round(10*time.Millisecond),
			r.AnnouncerCPU.Round(10*time.Millisecond), r.PeerCPU.Round(10*time.Millisecond)))
	}
	if len(failed) > 0 {
		err = errors.Join(err, fmt.Errorf("gossip: %s", strings.Join(failed, "; ")))
	}
	if o.scale.growth != "" && err == nil && slices.Contains(opts.Systems, gossipbench.Homing) {
		g, gerr := runGrowth(ctx, o)
		res.rows = append(res.rows, g.rows...)
		res.title += "\n" + g.title
		res.notes = append(res.notes, g.notes...)
		err = gerr
	}
	return res, err
}

// rateName is 1000 → "1k", 50000 → "50k".
func rateName(r int) string {
	if r%1000 == 0 {
		return fmt.Sprintf("%dk", r/1000)
	}
	return fmt.Sprint(r)
}

// loadAvg describes the machine's load: /proc/loadavg's three averages and, where the
// kernel has PSI, the share of the last minute some task waited for a CPU.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if err != nil || len(f) < 3 {
		return "unknown"
	}
	s := strings.Join(f[:3], " ")
	if b, err := os.ReadFile("/proc/pressure/cpu"); err == nil {
		for _, w := range strings.Fields(strings.SplitN(string(b), "\n", 2)[0]) {
			if v, ok := strings.CutPrefix(w, "avg60="); ok {
				s += ", CPU pressure (some, 60 s) " + v + " %"
			}
		}
	}
	return s
}

// printTable prints a markdown table: the first column left-aligned, the others right.
func printTable(header []string, rows [][]string) {
	w := make([]int, len(header))
	for _, r := range append([][]string{header}, rows...) {
		for i, c := range r {
			w[i] = max(w[i], len([]rune(c)))
		}
	}
	line := func(r []string) {
		var b strings.Builder
		for i, c := range r {
			pad := strings.Repeat(" ", w[i]-len([]rune(c)))
			if i == 0 {
				fmt.Fprintf(&b, "| %s%s ", c, pad)
			} else {
				fmt.Fprintf(&b, "| %s%s ", pad, c)
			}
		}
		fmt.Println(b.String() + "|")
	}
	line(header)
	var b strings.Builder
	for _, n := range w {
		b.WriteString("|" + strings.Repeat("-", n+2))
	}
	fmt.Println(b.String() + "|")
	for _, r := range rows {
		line(r)
	}
}
