// Command homing-lab runs homing's POP lab: a router, a client and hosts in network
// namespaces on this machine, a homingd on every host (package lab).
//
//	homing-lab demo [-hosts 3] [-conns 300]   the demo: connections through ECMP changes,
//	                                          with homing and with plain ECMP
//	homing-lab churn [-modes all]             new connections through rehashes and a drain,
//	                                          with the race mechanisms on, off or alone
//	homing-lab up [-hosts 3] [-baseline]      bring the lab up and keep it until Ctrl-C
//	homing-lab cleanup                        remove what a crashed lab left behind
//
// It needs root. The demo finds homingd next to its own executable or on PATH
// (-homingd to name it).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/homing-dev/homing/lab"
)

func usage() {
	fmt.Fprintf(os.Stderr, `usage:
  homing-lab demo [-hosts 3] [-conns 300] [-step 3s] [-homingd PATH] [-keep]
  homing-lab churn [-rate 500] [-duration 12s] [-rehash 400ms] [-drain] [-park-hold 50ms]
                   [-modes on,off|all] [-homingd PATH] [-keep]
  homing-lab up [-hosts 3] [-baseline] [-homingd PATH]
  homing-lab cleanup
`)
	os.Exit(2)
}

func main() {
	lab.ServeFromEnv() // the echo service the lab starts in each host (hidden "serve")
	if len(os.Args) < 2 {
		usage()
	}
	switch os.Args[1] {
	case "demo":
		os.Exit(demo(os.Args[2:]))
	case "churn":
		os.Exit(churn(os.Args[2:]))
	case "up":
		os.Exit(up(os.Args[2:]))
	case "cleanup":
		if len(lab.Leftovers()) == 0 {
			fmt.Println("cleanup: no lab of a dead process is left")
			return
		}
		if err := lab.Cleanup(os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "homing-lab cleanup:", err)
			os.Exit(1)
		}
	case "serve":
		// Started by the lab with lab.ServeEnv set: ServeFromEnv above has run it.
		fmt.Fprintln(os.Stderr, "homing-lab serve: run by the lab only")
		os.Exit(2)
	default:
		usage()
	}
}

func demo(args []string) int {
	fs := flag.NewFlagSet("demo", flag.ExitOnError)
	hosts := fs.Int("hosts", 3, "hosts at the start (one more is added)")
	conns := fs.Int("conns", 300, "long-lived client connections")
	step := fs.Duration("step", 3*time.Second, "traffic after each step")
	homingd := fs.String("homingd", "", "homingd executable (default: next to this one, then PATH)")
	keep := fs.Bool("keep", false, "keep the labs' directories (configs, logs)")
	ipv6 := fs.Bool("ipv6", false, "an IPv6 POP: VIP, clients, hosts, tunnels and gossip in 2001:2::/48")
	static := fs.Bool("static", false, "static multipath routes in the router instead of BGP (FRR)")
	uploads := fs.Int("uploads", 20, "upload connections writing 64 KiB blocks (full-size segments); 0 none")
	clamp := fs.Bool("clamp", true, "tunnel.clamp_mss in every homingd (false: full-size segments rely on ICMP too big)")
	plain := fs.Bool("plain", true, "also run the plain-ECMP baseline")
	quicConns := fs.Int("quic", 100, "QUIC connections (quic-go) to a QUIC echo server on the VIP, rebound at the end; 0 none")
	_ = fs.Parse(args)
	if *uploads == 0 {
		*uploads = -1
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "homing-lab demo: needs root (network namespaces, DPDK, eBPF)")
		return 1
	}
	if *hosts < 2 || *hosts >= lab.MaxHosts {
		fmt.Fprintf(os.Stderr, "homing-lab demo: -hosts must be 2..%d (one is drained, one more is added)\n", lab.MaxHosts-1)
		return 2
	}
	if *conns < 1 {
		fmt.Fprintln(os.Stderr, "homing-lab demo: -conns must be at least 1")
		return 2
	}
	bin, err := findHomingd(*homingd)
	if err != nil {
		fmt.Fprintln(os.Stderr, "homing-lab demo:", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := lab.Cleanup(os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "homing-lab demo: cleanup of an earlier run:", err)
	}
	t0 := time.Now()
	family := "IPv4"
	if *ipv6 {
		family = "IPv6"
	}
	steer, drain := "BGP: FRR learns the VIP from every homingd, L4 multipath hash", "homingctl drain"
	if *static {
		steer, drain = "a static multipath route to the VIP, L4 hash", "taken out of the route"
	}
	fmt.Printf("homing-lab demo: an %s POP in network namespaces: router (%s),\n"+
		"%d hosts with homingd, %d client connections that echo numbered chunks every %v-%v,\n"+
		"%d upload connections that echo 64 KiB blocks (full-size TCP segments; 1500-byte MTU everywhere),\n"+
		"%d QUIC connections.\n"+
		"Steps: drain h1 (%s; it keeps running), restore it, add h%d, new router hash seed%s.\n\n",
		family, steer, *hosts, *conns, lab.MinGap, lab.MaxGap, max(*uploads, 0), max(*quicConns, 0), drain, *hosts+1, rebindStep(*quicConns))
	sc := lab.Scenario{Hosts: *hosts, Conns: *conns, Homingd: bin, Step: *step, Log: os.Stdout, KeepDir: *keep,
		Live: isTerminal(os.Stdout), IPv6: *ipv6, Static: *static, Uploads: *uploads, NoClamp: !*clamp, QUIC: max(*quicConns, 0)}
	var runs []*lab.Result
	failed := false
	modes := []bool{true, false}
	if !*plain {
		modes = modes[:1]
	}
	for _, redirect := range modes {
		r, err := sc.Run(ctx, redirect)
		runs = append(runs, r)
		if errors.Is(err, context.Canceled) {
			fmt.Fprintln(os.Stderr, "homing-lab demo: interrupted; the lab is removed")
			failed = true
			break
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "homing-lab demo:", err)
			if r != nil && r.Logs != "" {
				fmt.Fprintln(os.Stderr, r.Logs)
			}
			failed = true
			break
		}
	}
	fmt.Println()
	lab.Table(os.Stdout, runs...)
	fmt.Printf("\nalive: connections still open at the end of the step; reset: connections reset during it;\n" +
		"bad bytes: echoed bytes that differ from those sent; tunnelled: packets the hosts sent to the owner in GUE;\n" +
		"stall: uploads open but without an echoed block in the last 1.5 s; blocks: 64 KiB blocks echoed intact;\n" +
		"toobig: packets too big for the tunnel (nic.mtu); icmp: of those, answered with ICMP fragmentation\n" +
		"needed (the client lowers its path MTU; see -clamp=false);\n" +
		"QUIC: long-lived quic-go connections echoing a chunk every 500 ms on UDP port 443, whose servers put their\n" +
		"host id in their connection IDs (udp_sessions quic_cid); rebind: every third moves to a new source port;\n" +
		"broken: connections that ended during the step.\n")
	for _, r := range runs {
		if r.Redirect && len(r.Ended) > 0 {
			fmt.Printf("\nconnections that ended with homing (%d), the first:\n", r.TotalReset())
			for _, e := range r.Ended[:min(3, len(r.Ended))] {
				fmt.Println("  " + e)
			}
		}
	}
	fmt.Printf("demo took %.0fs\n", time.Since(t0).Seconds())
	if failed || errors.Is(ctx.Err(), context.Canceled) {
		return 1
	}
	return 0
}

// rebindStep names the demo's last step when it has QUIC connections.
func rebindStep(quic int) string {
	if quic > 0 {
		return ", every third QUIC connection to a new source port"
	}
	return ""
}

// isTerminal reports whether f is a character device (a terminal, for the live line).
func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// findHomingd looks for homingd: the flag, next to this executable, then PATH.
func findHomingd(flagged string) (string, error) {
	if flagged != "" {
		return filepath.Abs(flagged)
	}
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "homingd")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	p, err := exec.LookPath("homingd")
	if err != nil {
		return "", errors.New("homingd not found: build it (make build) or give -homingd")
	}
	return filepath.Abs(p)
}

// up brings a lab up, prints how to look at it, and waits for Ctrl-C.
func up(args []string) int {
	fs := flag.NewFlagSet("up", flag.ExitOnError)
	hosts := fs.Int("hosts", 3, "hosts")
	baseline := fs.Bool("baseline", false, "tunnel.redirect = false (plain ECMP)")
	static := fs.Bool("static", false, "static multipath routes in the router instead of BGP (FRR)")
	homingd := fs.String("homingd", "", "homingd executable (default: next to this one, then PATH)")
	_ = fs.Parse(args)
	if *hosts < 1 || *hosts > lab.MaxHosts {
		fmt.Fprintf(os.Stderr, "homing-lab up: -hosts must be 1..%d\n", lab.MaxHosts)
		return 2
	}
	bin, err := findHomingd(*homingd)
	if err != nil {
		fmt.Fprintln(os.Stderr, "homing-lab up:", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	l, err := lab.New(lab.Options{Homingd: bin, Redirect: !*baseline, Log: os.Stdout, KeepDir: true, BGP: !*static})
	if err != nil {
		fmt.Fprintln(os.Stderr, "homing-lab up:", err)
		return 1
	}
	defer l.Close()
	ns := make([]int, *hosts)
	for i := range ns {
		ns[i] = i + 1
	}
	if err = l.AddHosts(ctx, ns...); err == nil {
		err = l.SetRoute(ns)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "homing-lab up:", err)
		return 1
	}
	fmt.Printf("lab %s is up; Ctrl-C tears it down. Try:\n  ip netns exec %s curl -s telnet://%s:%d\n  ip -n %s route\n",
		l.ID, l.NS("cli"), lab.VIP, lab.ServicePort, l.NS("rtr"))
	<-ctx.Done()
	return 0
}
