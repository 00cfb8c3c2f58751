// Command homing-bench measures the data plane (make bench). Every figure is a ratio to a
// bare rx→tx loop with the same traffic generator on the same PMD, measured in the same
// run, because this kind of machine is shared and noisy. See docs/PERFORMANCE.md.
//
//	homing-bench            full run: 1M sessions, 20M packets per case, 3 rounds
//	homing-bench -smoke     a few seconds, for CI: checks that the benchmark still works
package main

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"sort"
	"strings"

	"github.com/homing-dev/homing/dpdk"
	"github.com/homing-dev/homing/lcore"
	"github.com/homing-dev/homing/session"
	"github.com/homing-dev/homing/table"
)

func main() {
	smoke := flag.Bool("smoke", false, "tiny run for CI (asserts nothing about speed)")
	sessions := flag.Int("sessions", 1<<20, "sessions in the table")
	packets := flag.Uint64("packets", 20_000_000, "packets per case and round")
	rounds := flag.Int("rounds", 3, "rounds (the median is reported)")
	huge := flag.Bool("hugepages", true, "use 2 MB hugepages (reserved here if needed); false: --no-huge")
	only := flag.String("case", "", "run only this case (bare, redirect, local): for instruction counts under callgrind")
	flag.Parse()
	onlyCase = *only
	if *smoke {
		*sessions, *packets, *rounds, *huge = 1<<16, 200_000, 1, false
	}
	if err := run(*sessions, *packets, *rounds, *huge); err != nil {
		fmt.Fprintln(os.Stderr, "homing-bench:", err)
		os.Exit(1)
	}
}

const (
	selfID = 1
	peerID = 2
)

var onlyCase string

func run(nSessions int, packets uint64, rounds int, huge bool) error {
	mem := 256 + nSessions/1024*2
	if huge {
		if err := reserveHugepages(mem); err != nil {
			fmt.Fprintf(os.Stderr, "homing-bench: %v; running with --no-huge\n", err)
			huge = false
		}
	}
	if err := dpdk.Init(dpdk.EALConfig{FilePrefix: fmt.Sprintf("homing-bench-%d", os.Getpid()),
		Hugepages: huge, MemoryMB: mem, Workers: 1, VDevs: []string{"net_null0,size=64"}, LogLevel: "error"}); err != nil {
		return err
	}
	defer func() { _ = dpdk.Cleanup() }()
	worker := dpdk.Workers()[0]
	pool, err := dpdk.NewMempool("bench", 8191, 256, 0, -1)
	if err != nil {
		return err
	}
	defer pool.Free()
	port, err := dpdk.PortByName("net_null0")
	if err != nil {
		return err
	}
	if err := port.Start(dpdk.PortConfig{RxQueues: 1, TxQueues: 1}, pool); err != nil {
		return err
	}
	defer func() { _ = port.Stop(); _ = port.Close() }()

	capacity := uint32(nSessions + nSessions/4)
	tbl, err := table.New("bench", capacity, 1024, -1)
	if err != nil {
		return err
	}
	defer tbl.Close()
	// Half of the sessions are owned by the peer (redirected), half by this host (local).
	rng := rand.New(rand.NewPCG(1, 2))
	vip := netip.AddrFrom4([4]byte{198, 19, 255, 1})
	var remote, local []session.Key
	batch := make([]session.Update, 0, 4096)
	seen := make(map[session.Key]bool, nSessions)
	for i := 0; i < nSessions; i++ {
		a := rng.Uint32()
		k := session.Key{Src: netip.AddrFrom4([4]byte{198, 18, byte(a >> 8), byte(a)}), Dst: vip,
			SrcPort: uint16(1024 + rng.IntN(60000)), DstPort: 443, Proto: session.TCP}
		if seen[k] {
			i--
			continue
		}
		seen[k] = true
		owner := uint16(peerID)
		if i%2 == 1 {
			owner = selfID
			local = append(local, k)
		} else {
			remote = append(remote, k)
		}
		batch = append(batch, session.Update{Key: k, Owner: session.Owner{Host: owner, Epoch: 1}})
		if len(batch) == cap(batch) {
			if err := tbl.Apply(batch); err != nil {
				return err
			}
			batch = batch[:0]
		}
	}
	if err := tbl.Apply(batch); err != nil {
		return err
	}
	v4, _ := tbl.Len()
	dp, err := lcore.New(lcore.Config{SelfID: selfID, Self4: netip.MustParseAddr("198.18.0.11"), TunnelPort: 6080,
		VIPs: []netip.Prefix{netip.PrefixFrom(vip, 32)}, Table: tbl.Ptr()})
	if err != nil {
		return err
	}
	defer dp.Close()
	if err := dp.SetTemplate(lcore.Template{ID: peerID, SrcMAC: []byte{2, 0, 0, 0, 0, 1}, DstMAC: []byte{2, 0, 0, 0, 0, 2},
		Src: netip.MustParseAddr("198.18.0.11"), Dst: netip.MustParseAddr("198.18.0.12"), TunnelPort: 6080}); err != nil {
		return err
	}

	type bcase struct {
		name  string
		mode  lcore.BenchMode
		flows []session.Key
		check func(lcore.Stats) error
	}
	cases := []bcase{
		{"bare rx->tx loop (same generator)", lcore.BenchBare, remote, nil},
		{"100 % redirected (hit + encapsulation)", lcore.BenchPipeline, remote, func(s lcore.Stats) error {
			if s.Redirect != s.RxNIC {
				return fmt.Errorf("%d of %d packets redirected: %+v", s.Redirect, s.RxNIC, s)
			}
			return nil
		}},
		{"100 % local (owned here -> kernel path)", lcore.BenchPipeline, local, func(s lcore.Stats) error {
			if s.Local != s.RxNIC {
				return fmt.Errorf("%d of %d packets local: %+v", s.Local, s.RxNIC, s)
			}
			return nil
		}},
	}
	if onlyCase != "" {
		ids := map[string]int{"bare": 0, "redirect": 1, "local": 2}
		i, ok := ids[onlyCase]
		if !ok {
			return fmt.Errorf("-case %q: want bare, redirect or local", onlyCase)
		}
		res, err := dp.Bench(worker, port, cases[i].mode, cases[i].flows, packets, 1)
		if err != nil {
			return err
		}
		fmt.Printf("%s: %d packets, %.2f Mpps\n", cases[i].name, res.Packets, res.Mpps())
		return nil
	}
	results := make([][]float64, len(cases))
	for r := 0; r < rounds; r++ {
		for i, c := range cases {
			res, err := dp.Bench(worker, port, c.mode, c.flows, packets, uint64(r*7+i+1))
			if err != nil {
				return err
			}
			if c.check != nil {
				if err := c.check(res.Stats); err != nil {
					return fmt.Errorf("%s: %w", c.name, err)
				}
			}
			results[i] = append(results[i], res.Mpps())
		}
	}
	memMode := "2 MB hugepages"
	if !huge {
		memMode = "--no-huge"
	}
	fmt.Printf("homing data-plane benchmark: 1 worker lcore, net_null, 64-byte frames, %d sessions in the table (%d IPv4 entries), %s, %d packets per case, median of %d rounds\n\n",
		nSessions, v4, memMode, packets, rounds)
	fmt.Printf("| %-42s | %8s | %17s |\n", "case", "Mpps", "ratio to bare loop")
	fmt.Printf("|%s|%s|%s|\n", strings.Repeat("-", 44), strings.Repeat("-", 10), strings.Repeat("-", 19))
	bare := median(results[0])
	for i, c := range cases {
		m := median(results[i])
		fmt.Printf("| %-42s | %8.2f | %17.3f |\n", c.name, m, m/bare)
	}
	return nil
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2]
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
