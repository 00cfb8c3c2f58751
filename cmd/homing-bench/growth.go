//go:build harness

package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/homing-dev/homing/internal/gossipbench"
)

// runGrowth runs the gossip benchmark's homing system with a growing number of hosts
// (issue 20, point 2): one announcer at a fixed total rate, every other host a peer
// that must apply every record; one process per host, each in its own namespace.
// Rows: convergence at the last peer, and the CPU time a peer's process took per
// record and as a share of a core over the run.
func runGrowth(ctx context.Context, o options) (gossipResult, error) {
	var res gossipResult
	var hosts []int
	for _, f := range strings.Split(o.scale.growth, ",") {
		h, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || h < 2 || h > 254 {
			return res, fmt.Errorf("-gossip-growth %q: want host counts 2..254", o.scale.growth)
		}
		hosts = append(hosts, h)
	}
	dur := 2 * time.Second
	if o.smoke {
		dur = 300 * time.Millisecond
	}
	load := loadAvg()
	for _, h := range hosts {
		rows, err := gossipbench.Run(ctx, gossipbench.Options{
			Systems: []string{gossipbench.Homing}, Rates: []int{o.scale.growthRate}, Duration: dur,
			Hosts: h, Log: os.Stderr, FlushDelay: o.gossipFlush,
		})
		if err != nil {
			return res, fmt.Errorf("gossip growth, %d hosts: %w", h, err)
		}
		for _, r := range rows {
			peers := h - 1
			perPeer := r.PeerCPU / time.Duration(peers)
			name := fmt.Sprintf("gossip growth %d hosts, %s/s in all", h, rateName(r.Rate))
			q := fmt.Sprintf("%s/%s/%s/%s µs", gossipbench.Micros(r.P50), gossipbench.Micros(r.P90), gossipbench.Micros(r.P99), gossipbench.Micros(r.Max))
			if r.Converged < r.Sessions {
				q += fmt.Sprintf(", %.1f %% converged", 100*float64(r.Converged)/float64(r.Sessions))
			}
			res.rows = append(res.rows,
				[]string{name + ": convergence p50/p90/p99/max", fmt.Sprint(r.Sessions), q, "-", "-", "-"},
				[]string{name + ": CPU per peer: µs/record, cores over the run; announcer cores", fmt.Sprint(r.Sessions),
					fmt.Sprintf("%.2f µs, %.3f, %.3f", float64(perPeer.Nanoseconds())/1e3/float64(max(1, r.Sessions)),
						perPeer.Seconds()/r.Elapsed.Seconds(), r.AnnouncerCPU.Seconds()/r.Elapsed.Seconds()), "-", "-", "-"},
				[]string{name + ": records/datagram, gaps at the peers", fmt.Sprint(r.Wire.Records),
					fmt.Sprintf("%.1f, %d", r.Wire.RecordsPerDatagram(), r.Gaps), "-", "-", "-"})
			res.notes = append(res.notes, fmt.Sprintf("gossip growth %d hosts: run took %v; CPU time: announcer %v, peers %v in all",
				h, r.Elapsed.Round(10*time.Millisecond), r.AnnouncerCPU.Round(10*time.Millisecond), r.PeerCPU.Round(10*time.Millisecond)))
		}
	}
	res.title = fmt.Sprintf("gossip growth: homing, 1 announcer at %d sessions/s + N-1 peers, one process each in a network namespace, %v per run; "+
		"CPU per peer: the peers' CPU time (user+system, start to stop) over N-1; load average at the start %s",
		o.scale.growthRate, dur, load)
	return res, nil
}
