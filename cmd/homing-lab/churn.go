package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/homing-dev/homing/lab"
)

// churn runs the churn scenario (lab.Churn): new connections while the router rehashes
// and h1 is drained and restored, with the race mechanisms on, off, or each alone.
func churn(args []string) int {
	fs := flag.NewFlagSet("churn", flag.ExitOnError)
	rate := fs.Int("rate", 500, "new connections per second")
	dur := fs.Duration("duration", 12*time.Second, "traffic per run")
	every := fs.Duration("rehash", 400*time.Millisecond, "a new router hash seed this often")
	drain := fs.Bool("drain", true, "also drain h1 at a third of the traffic and restore it at two thirds")
	park := fs.Duration("park-hold", 50*time.Millisecond, "tunnel.park_hold when the park is on (0: homing's default, "+
		"2ms)")
	modes := fs.String("modes", "on,off", "runs, in order: on (both mechanisms), tentative, park (that one alone), off; or all")
	homingd := fs.String("homingd", "", "homingd executable (default: next to this one, then PATH)")
	keep := fs.Bool("keep", false, "keep the labs' directories (configs, logs)")
	_ = fs.Parse(args)
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "homing-lab churn: needs root (network namespaces, DPDK, eBPF)")
		return 1
	}
	if *rate < 1 || *dur <= 0 || *every <= 0 || *park < 0 {
		fmt.Fprintln(os.Stderr, "homing-lab churn: -rate, -duration and -rehash must be positive, -park-hold not negative")
		return 2
	}
	var runs []lab.RaceMode
	names := map[string]lab.RaceMode{"on": lab.RaceModes[0], "tentative": lab.RaceModes[1], "park": lab.RaceModes[2],
		"off": lab.RaceModes[3]}
	for _, m := range strings.Split(*modes, ",") {
		if m == "all" {
			runs = append(runs, lab.RaceModes...)
			continue
		}
		rm, ok := names[strings.TrimSpace(m)]
		if !ok {
			fmt.Fprintf(os.Stderr, "homing-lab churn: -modes: unknown %q (on, tentative, park, off, all)\n", m)
			return 2
		}
		runs = append(runs, rm)
	}
	bin, err := findHomingd(*homingd)
	if err != nil {
		fmt.Fprintln(os.Stderr, "homing-lab churn:", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := lab.Cleanup(os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "homing-lab churn: cleanup of an earlier run:", err)
	}
	t0 := time.Now()
	fmt.Printf("homing-lab churn: %d new connections per second (each: handshake, two echoes, a pause of up to 200ms,\n"+
		"an echo, a clean close) while the router gets a new hash seed every %v and h1 is drained and restored.\n\n",
		*rate, *every)
	ch := lab.Churn{Rate: *rate, Duration: *dur, RehashEvery: *every, Drain: *drain, ParkHold: *park, Homingd: bin,
		Log: os.Stdout, KeepDir: *keep}
	var res []*lab.ChurnResult
	failed := false
	for _, m := range runs {
		r, err := ch.Run(ctx, m)
		if errors.Is(err, context.Canceled) {
			fmt.Fprintln(os.Stderr, "homing-lab churn: interrupted; the lab is removed")
			return 1
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "homing-lab churn:", err)
			if r.Logs != "" {
				fmt.Fprintln(os.Stderr, r.Logs)
			}
			failed = true
			break
		}
		res = append(res, r)
	}
	fmt.Println()
	lab.ChurnTable(os.Stdout, res...)
	fmt.Print("\nbroken: connections that did not complete; misses to a kernel: VIP packets handed to a host's kernel\n" +
		"without a table entry (harmless on the owner, a reset elsewhere).\n")
	for _, r := range res {
		if r.Broken() > 0 {
			fmt.Printf("\n%s, the first broken connections:\n", r.Mode)
			for _, e := range r.Errors[:min(3, len(r.Errors))] {
				fmt.Println("  " + e)
			}
		}
	}
	fmt.Printf("churn took %.0fs\n", time.Since(t0).Seconds())
	if failed {
		return 1
	}
	return 0
}
