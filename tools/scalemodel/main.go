// Command scalemodel prints the tables of docs/SCALING.md's model: what gossip costs a
// host of a POP of N hosts, each accepting S new sessions a second and holding O open
// sessions, computed from the per-record and per-datagram costs measured on this
// machine (figures below, each with the benchmark it comes from).
//
//	go run ./tools/scalemodel          # print the model's section
//	go run ./tools/scalemodel -w       # rewrite it in docs/SCALING.md
//
// TestDocMatches (main_test.go) fails when docs/SCALING.md's section is not this
// program's output, so that the doc follows the figures.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"math"
	"os"
	"strings"
)

// Measured figures (IPv4 sessions; see docs/SCALING.md "Measured" for the runs). CPU
// times are CPU time (getrusage), medians of 3 runs on the shared 2-vCPU VM, loaded
// (docs/SCALING.md, Measured).
const (
	// BenchmarkCost/receive/v4: Open (tag) + ParseRecords, per record at ~164 a datagram.
	recvNsPerRecord = 31.0
	// BenchmarkCost/apply/v4: conflict rules, ownership map, digests (1M sessions).
	mapNsPerRecord = 170.0
	// table.BenchmarkWriteCPU/v4: the C table's batched writes (1M sessions).
	tableNsPerRecord = 62.0
	// BenchmarkCost/send/v4: RecordWriter + Seal, per record.
	sendNsPerRecord = 26.0
	// Growth sweep (homing-bench -gossip-growth), 4-16 hosts at 10k/s: a peer process's
	// CPU per datagram received beyond its records' cost, when the receiver sleeps
	// between datagrams: it wakes, recvmsg, the Go scheduler (this VM; an upper bound).
	dgNsWake = 37000.0
	// BenchmarkCostRecvmsg: recvmsg of a 1400-byte datagram already queued (a busy
	// receiver), thread CPU time.
	dgNsBusy = 630.0
	// Join: BenchmarkCost/join/v4 (map) plus the table's write, per session.
	joinNsPerSession = 219.0 + tableNsPerRecord
	// Serve: BenchmarkCost/serve/v4, per session (the peer that answers).
	serveNsPerSession = 75.0
	// Memory per IPv4 session at capacity = sessions: the table (docs/PERFORMANCE.md
	// Memory, 27.4 B since the in-bucket layout) and the ownership map
	// (TestOwnerMapMemory, 33.3 B).
	tableBytesPerSession = 27.4
	mapBytesPerSession   = 33.3
)

// Protocol constants (gossip/wire, gossip defaults).
const (
	flushDelay        = 300e-6 // gossip.DefaultFlushDelay, s
	maxDatagram       = 1400   // gossip.DefaultMaxDatagram
	dgOverhead        = 48     // wire.Overhead: header 32 + tag 16
	ipUDP             = 28     // IPv4 + UDP headers
	addBytes          = 9.0    // compact IPv4 add, same VIP: 8 + a 1-2 byte epoch delta
	delBytes          = 7.0    // compact IPv4 delete, same VIP
	repairRecBytes    = 22.0   // full IPv4 record (repair frames)
	repairMax         = 1 << 20
	tableCapMax       = 1 << 30 // HOMING_TABLE_CAPACITY_MAX
	repairTimeout     = 5.0     // s, gossip.DefaultRepairTimeout
	receiverCores     = 1.0     // one receiver goroutine applies every datagram
	nicBitsPerSec     = 10e9    // a 10 GbE link, for the repair's transfer time
	hostRAMBytes      = 64e9    // a budget for table + map, for the verdict
	recsPerSession    = 2.0     // an add, then a delete after the linger
	p99TailFactor     = 4.6     // ln(100): the p99 of an exponential wait
	baseLatencySecs   = 100e-6  // wire + kernel per hop, dedicated host
	heartbeatsPerS    = 10      // per peer: gossip.DefaultHeartbeatInterval 100 ms
	targetNsPerRecord = 125.0   // issue 20: 8M records/s on a core, map + table
)

// growth: the growth sweep's measured points (homing-bench -gossip-growth 4,8,16,32,
// 10k/s; docs/SCALING.md "Growth", runs A and B).
var growth = []struct {
	hosts        int
	run          string
	perDg, cores float64
}{
	{4, "A", 3.6, 0.086}, {4, "B", 3.6, 0.105},
	{8, "A", 4.4, 0.067}, {8, "B", 4.1, 0.073},
	{16, "A", 5.5, 0.051}, {16, "B", 4.4, 0.053},
	{32, "A", 137.9, 0.033}, {32, "B", 7.1, 0.030},
}

var (
	hostCounts = []int{8, 32, 64, 128}
	newRates   = []int{10_000, 50_000, 100_000}
	openCounts = []int{1_000_000, 3_000_000, 10_000_000}
)

// sender is one host's records stream: records/s, datagrams/s, records per datagram.
func sender(newPerSec float64) (recs, dgs, perDg float64) {
	recs = recsPerSession * newPerSec
	perRec := (addBytes + delBytes) / 2
	maxPer := math.Floor((maxDatagram - dgOverhead) / perRec)
	// Adaptive flush: a datagram per FlushDelay slot while records come faster than
	// one a slot, full datagrams beyond.
	perDg = math.Min(maxPer, math.Max(1, recs*flushDelay))
	return recs, recs / perDg, perDg
}

// receiver is what one host receives from the n-1 others and the CPU it takes.
type receiver struct {
	recs, dgs, bitsPerSec, cores, recvCores, p99 float64
}

func receive(n int, newPerSec float64) receiver {
	recs, dgs, perDg := sender(newPerSec)
	others := float64(n - 1)
	var r receiver
	r.recs, r.dgs = others*recs, others*dgs
	perRec := (addBytes + delBytes) / 2
	r.bitsPerSec = 8 * r.dgs * (dgOverhead + ipUDP + perDg*perRec)
	r.recvCores = receiverLoad(r.dgs+others*heartbeatsPerS, r.recs)
	r.cores = r.recvCores + (recs*sendNsPerRecord+dgs*dgNsBusy)/1e9
	if rho := r.recvCores / receiverCores; rho >= 1 {
		r.p99 = math.Inf(1)
	} else {
		service := (perDg*recordNs() + dgNsBusy) / 1e9
		r.p99 = flushDelay + baseLatencySecs + service + p99TailFactor*service*rho/(1-rho)
	}
	return r
}

func recordNs() float64 { return recvNsPerRecord + mapNsPerRecord + tableNsPerRecord }

// receiverLoad is the share of a core the receiver goroutine needs for dgs datagrams
// and recs records a second: a datagram that finds it busy costs dgNsBusy, one that
// wakes it dgNsWake; busy a share rho of the time, it solves
// rho = dgs * (rho*busy + (1-rho)*wake) + recs*record.
func receiverLoad(dgs, recs float64) float64 {
	w, b := dgs*dgNsWake/1e9, dgs*dgNsBusy/1e9
	return (w + recs*recordNs()/1e9) / (1 + w - b)
}

func si(v float64, unit string) string {
	switch {
	case math.IsInf(v, 1):
		return "∞"
	case v >= 1e9:
		return fmt.Sprintf("%.1f G%s", v/1e9, unit)
	case v >= 1e6:
		return fmt.Sprintf("%.1f M%s", v/1e6, unit)
	case v >= 1e3:
		return fmt.Sprintf("%.0f k%s", v/1e3, unit)
	}
	return fmt.Sprintf("%.0f %s", v, unit)
}

func dur(s float64) string {
	switch {
	case math.IsInf(s, 1):
		return "∞ (falls behind)"
	case s < 1e-3:
		return fmt.Sprintf("%.0f µs", s*1e6)
	case s < 1:
		return fmt.Sprintf("%.1f ms", s*1e3)
	case s < 120:
		return fmt.Sprintf("%.1f s", s)
	}
	return fmt.Sprintf("%.0f min", s/60)
}

// render returns the model's section of docs/SCALING.md.
func render() string {
	var b bytes.Buffer
	p := func(f string, a ...any) { fmt.Fprintf(&b, f, a...) }
	p("Inputs (IPv4, per host): receive %.0f ns + map %.0f ns + table %.0f ns per record received; per datagram received %.0f µs "+
		"when it wakes the receiver, %.2f µs when the receiver is busy; "+
		"send %.0f ns per record; join %.0f ns, serve %.0f ns per repaired session; table %.1f B + map %.1f B per session; "+
		"FlushDelay %.0f µs, datagrams of %d B, adds %.0f B and deletes %.0f B on the wire (+%d B header and tag, +%d B IPv4/UDP per datagram).\n\n",
		recvNsPerRecord, mapNsPerRecord, tableNsPerRecord, dgNsWake/1e3, dgNsBusy/1e3, sendNsPerRecord, joinNsPerSession, serveNsPerSession,
		tableBytesPerSession, mapBytesPerSession, flushDelay*1e6, maxDatagram, addBytes, delBytes, dgOverhead, ipUDP)

	p("### Gossip traffic and CPU per host\n\n")
	p("Every host receives every other host's records: an add per new session and a delete when it closes.\n\n")
	p("The column \"at the target\" is the receiver's CPU if a record cost the %.0f ns of issue 20's target (8M records/s on a core) "+
		"and every datagram found the receiver busy.\n\n", targetNsPerRecord)
	p("| hosts | new sessions/s per host | records/s received | datagrams/s received (records each) | gossip in, Mbit/s | receiver CPU, cores | gossip CPU, cores | convergence p99 | verdict | receiver CPU at the target |\n")
	p("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |\n")
	for _, n := range hostCounts {
		for _, s := range newRates {
			r := receive(n, float64(s))
			_, _, perDg := sender(float64(s))
			verdict := "fits"
			switch {
			case r.recvCores >= receiverCores:
				verdict = fmt.Sprintf("breaks: receiver needs %.1f cores, has 1", r.recvCores)
			case r.recvCores >= 0.5:
				verdict = "tight: receiver over half a core"
			}
			target := (r.recs*targetNsPerRecord + (r.dgs+float64(n-1)*heartbeatsPerS)*dgNsBusy) / 1e9
			p("| %d | %s | %s | %s (%.0f) | %.0f | %.2f | %.2f | %s | %s | %.2f |\n", n, si(float64(s), ""), si(r.recs, ""), si(r.dgs, ""), perDg,
				r.bitsPerSec/1e6, r.recvCores, r.cores, dur(r.p99), verdict, target)
		}
	}

	p("\n### The model against the growth sweep (this VM)\n\n")
	p("One announcer at 10k new sessions/s in all (adds only), N-1 peers; measured records per datagram; CPU per peer " +
		"(cores over the run, the process's whole CPU time: Go runtime and heartbeats included).\n\n")
	p("| hosts | run | records/datagram (measured) | model: peer CPU, cores | measured: peer CPU, cores |\n| ---: | --- | ---: | ---: | ---: |\n")
	for _, g := range growth {
		dgs := 10000 / g.perDg
		p("| %d | %s | %.1f | %.3f | %.3f |\n", g.hosts, g.run, g.perDg, receiverLoad(dgs+float64(g.hosts-1)*heartbeatsPerS, 10000), g.cores)
	}

	p("\n### Memory and a joining host's repair\n\n")
	p("A host holds every session of the POP (table + ownership map); a host that joins fetches every other host's own sessions " +
		"(one reconcile at a time: they take the node's lock).\n\n")
	p("| hosts | open sessions per host | sessions held | table + map memory | join: sessions | join: bytes | join: CPU time | join: at 10 Gbit/s | verdict |\n")
	p("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n")
	for _, n := range hostCounts {
		for _, o := range openCounts {
			held := float64(n) * float64(o)
			mem := held * (tableBytesPerSession + mapBytesPerSession)
			join := float64(n-1) * float64(o)
			frames := math.Ceil(float64(o)/1485) * float64(n-1)
			bytes := join*repairRecBytes + frames*(dgOverhead+22)
			cpu := join * joinNsPerSession / 1e9
			wire := bytes * 8 / nicBitsPerSec
			var why []string
			if o > repairMax {
				why = append(why, fmt.Sprintf("answers cut at RepairMaxRecords (%s)", si(repairMax, "")))
			}
			if perPeer := float64(o) * (joinNsPerSession + serveNsPerSession) / 1e9; perPeer > repairTimeout {
				why = append(why, fmt.Sprintf("one peer's repair %.1f s > RepairTimeout", perPeer))
			}
			if held > tableCapMax {
				why = append(why, "over the table's capacity limit (2^30)")
			}
			if mem > hostRAMBytes {
				why = append(why, fmt.Sprintf("memory over %s", si(hostRAMBytes, "B")))
			}
			verdict := "fits"
			if len(why) > 0 {
				verdict = "breaks: " + strings.Join(why, "; ")
			}
			p("| %d | %s | %s | %s | %s | %s | %s | %s | %s |\n", n, si(float64(o), ""), si(held, ""), si(mem, "B"), si(join, ""),
				si(bytes, "B"), dur(cpu), dur(wire), verdict)
		}
	}
	return b.String()
}

const (
	docPath = "docs/SCALING.md"
	begin   = "<!-- scalemodel:begin (go run ./tools/scalemodel -w) -->\n"
	end     = "<!-- scalemodel:end -->\n"
)

// splice returns doc with its model section replaced by model.
func splice(doc, model string) (string, error) {
	i, j := strings.Index(doc, begin), strings.Index(doc, end)
	if i < 0 || j < i {
		return "", fmt.Errorf("%s: no %q ... %q section", docPath, strings.TrimSpace(begin), strings.TrimSpace(end))
	}
	return doc[:i+len(begin)] + model + doc[j:], nil
}

func main() {
	write := flag.Bool("w", false, "rewrite the model's section of "+docPath+" (run from the repository root)")
	flag.Parse()
	out := render()
	if !*write {
		fmt.Print(out)
		return
	}
	doc, err := os.ReadFile(docPath)
	if err == nil {
		var s string
		if s, err = splice(string(doc), out); err == nil {
			err = os.WriteFile(docPath, []byte(s), 0o644)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "scalemodel:", err)
		os.Exit(1)
	}
}
