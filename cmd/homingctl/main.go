// Command homingctl asks a running homingd about its state over the daemon's control
// socket (control.socket in its configuration).
//
//	homingctl [--socket PATH | --config FILE] [--json] COMMAND [ARGS]
//
//	status                                   identity, uptime, table fill, gossip, last reload
//	peers                                    static and gossip peers, whether packets are forwarded to them
//	lookup PROTO CLIENT-IP:PORT VIP-IP:PORT  one session's owner and what the data plane does with it
//	sessions [--owner N] [--vip ADDR[:PORT]] [--limit N]
//	                                         table entries (1000 unless --limit; -1 lists all)
//	stats                                    every counter: lcores, ports, table, gossip
//	drain [--wait DURATION]                  withdraw the VIPs (BGP), keep serving owned sessions;
//	                                         with --wait, report them until 0 or the wait ends
//	undrain                                  announce again (once warm)
//	rebind ID                                gossip forgets host ID's address and MAC: its next
//	                                         heartbeat binds it (a host that moved or changed NIC)
//	version                                  homingctl's version and the running homingd's
//	capture [--port nic|tap|all] [--dir rx|tx|both] [--filter EXPR] [--count N]
//	        [--duration D] [--snaplen N] [-w FILE|-]
//	                                         packets of the data plane, as pcapng (-w) or lines
//	trace PROTO CLIENT-IP:PORT VIP-IP:PORT [--count N] [--duration D]
//	                                         the next packets of one flow: class, lookup, owner, fate
//
// Tables for people by default; --json prints the daemon's answer as JSON for scripts.
// Exit status: 0 ok, 1 error (including "homingd is not running", and a drain whose
// --wait ended with sessions still owned), 2 usage.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/prometheus/common/version"

	"github.com/homing-dev/homing/config"
	"github.com/homing-dev/homing/ctl"
)

func main() {
	// The Makefile stamps github.com/prometheus/common/version with -ldflags (git
	// describe); a plain go build is "dev".
	if version.Version == "" {
		version.Version = "dev"
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage: homingctl [--socket PATH | --config FILE] [--json] COMMAND [ARGS]

commands:
  status                                     the daemon's identity and health
  peers                                      peers and whether packets are forwarded to them
  lookup PROTO CLIENT-IP:PORT VIP-IP:PORT    one session's owner and verdict
  sessions [--owner N] [--vip ADDR[:PORT]] [--limit N]
                                             table entries (default limit 1000, -1: all)
  stats                                      lcore, port, table and gossip counters
  drain [--wait DURATION]                    stop taking new traffic (withdraw the VIPs); with
                                             --wait, report owned sessions until 0 or the wait ends
  undrain                                    take new traffic again
  rebind ID                                  forget host ID's gossip binding to an address and MAC
                                             (it moved, or its NIC changed); its next heartbeat binds it
  version                                    homingctl's version and the running homingd's
  capture [--port nic|tap|all] [--dir rx|tx|both] [--filter EXPR] [--count N] [--duration D]
          [--snaplen N] [-w FILE|-]          packets of the running data plane, taken on the lcores:
                                             pcapng with -w (- for stdout), else one line each
                                             (defaults: all ports, both directions, 1000 packets, 10s,
                                             2048 bytes). EXPR: terms joined by "and": host|src|dst ADDR,
                                             [src|dst] port N, tcp|udp|icmp|icmp6|proto N,
                                             class NAME[,NAME] (redirected, decap, local, miss, syn,
                                             kernel, ...), flow PROTO SRC:PORT DST:PORT
  trace PROTO CLIENT-IP:PORT VIP-IP:PORT [--count N] [--duration D]
                                             the next packets of one flow (both ways; default 100,
                                             60s): point, class, lookup, owner, fate, lcore

options (anywhere on the line):
  --socket PATH   control socket (default: control.socket of --config, else ` + config.DefaultControlSocket + `)
  --config FILE   read control.socket from homingd's configuration file
  --json          print JSON instead of tables
  --timeout D     how long to wait for the daemon (default 5s)
`

// opts are the command line, flags taken from anywhere on it.
type opts struct {
	socket, config string
	json           bool
	timeout        time.Duration
	owner          *uint16
	vip            string
	limit          int
	wait           time.Duration
	capture        captureOpts
	args           []string
}

func parse(argv []string) (opts, error) {
	o := opts{timeout: 5 * time.Second}
	for i := 0; i < len(argv); i++ {
		a := argv[i]
		if !strings.HasPrefix(a, "-") || a == "-" {
			o.args = append(o.args, a)
			continue
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		need := func() (string, error) {
			if hasVal {
				return val, nil
			}
			if i+1 >= len(argv) {
				return "", fmt.Errorf("--%s needs a value", name)
			}
			i++
			return argv[i], nil
		}
		var err error
		var v string
		switch name {
		case "json":
			o.json = true
		case "socket", "s":
			o.socket, err = need()
		case "config", "c":
			o.config, err = need()
		case "timeout":
			if v, err = need(); err == nil {
				o.timeout, err = time.ParseDuration(v)
			}
		case "owner":
			if v, err = need(); err == nil {
				var n uint64
				if n, err = strconv.ParseUint(v, 10, 16); err == nil {
					id := uint16(n)
					o.owner = &id
				} else {
					err = fmt.Errorf("--owner %q: want a host id", v)
				}
			}
		case "vip":
			o.vip, err = need()
		case "wait":
			if v, err = need(); err == nil {
				if o.wait, err = time.ParseDuration(v); err == nil && o.wait < 0 {
					err = fmt.Errorf("--wait %q: must not be negative", v)
				}
			}
		case "limit":
			if v, err = need(); err == nil {
				if o.limit, err = strconv.Atoi(v); err != nil {
					err = fmt.Errorf("--limit %q: want a number", v)
				}
			}
		case "port", "dir", "filter", "w", "count", "duration", "snaplen":
			if v, err = need(); err == nil {
				err = o.capture.set1(name, v)
			}
		case "h", "help":
			return o, errUsage
		default:
			return o, fmt.Errorf("unknown option %s", a)
		}
		if err != nil {
			return o, err
		}
	}
	return o, nil
}

var errUsage = errors.New("usage")

func run(argv []string, stdout, stderr io.Writer) int {
	o, err := parse(argv)
	if err == nil && len(o.args) == 0 {
		err = errUsage
	}
	if err != nil {
		if !errors.Is(err, errUsage) {
			fmt.Fprintln(stderr, "homingctl:", err)
		}
		fmt.Fprint(stderr, usage)
		return 2
	}
	socket := o.socket
	if socket == "" && o.config != "" {
		cfg, err := config.Load(o.config)
		if err != nil {
			fmt.Fprintln(stderr, "homingctl:", err)
			return 1
		}
		socket = cfg.Control.Socket
	}
	if socket == "" {
		socket = config.DefaultControlSocket
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()

	cmd, rest := o.args[0], o.args[1:]
	if cmd == "version" {
		if len(rest) > 0 {
			return usageError(stderr, "version takes no arguments")
		}
		return runVersion(ctx, socket, o.json, stdout, stderr)
	}
	switch cmd {
	case ctl.CmdCapture:
		return capture(socket, o, stdout, stderr)
	case "trace":
		return trace(socket, o, stdout, stderr)
	}
	if o.capture.set {
		return usageError(stderr, cmd+": --port, --dir, --filter, --count, --duration, --snaplen and -w are capture's and trace's")
	}
	var args, result any
	var print func(w io.Writer)
	switch cmd {
	case ctl.CmdDrain, ctl.CmdUndrain:
		if len(rest) > 0 {
			return usageError(stderr, cmd+" takes no arguments (drain: --wait DURATION)")
		}
		if cmd == ctl.CmdUndrain && o.wait != 0 {
			return usageError(stderr, "undrain takes no --wait")
		}
		return drain(ctx, socket, cmd, o, stdout, stderr)
	case ctl.CmdStatus, ctl.CmdPeers, ctl.CmdStats:
		if len(rest) > 0 {
			return usageError(stderr, cmd+" takes no arguments")
		}
		switch cmd {
		case ctl.CmdStatus:
			var r ctl.Status
			result, print = &r, func(w io.Writer) { printStatus(w, &r) }
		case ctl.CmdPeers:
			var r []ctl.Peer
			result, print = &r, func(w io.Writer) { printPeers(w, r) }
		default:
			var r ctl.Stats
			result, print = &r, func(w io.Writer) { printStats(w, &r) }
		}
	case ctl.CmdLookup:
		if len(rest) != 3 {
			return usageError(stderr, "lookup needs PROTO CLIENT-IP:PORT VIP-IP:PORT, e.g. lookup tcp 198.18.100.2:40000 198.19.255.1:443")
		}
		if err := checkSession(rest[0], rest[1], rest[2]); err != nil {
			return usageError(stderr, "lookup: "+err.Error())
		}
		var r ctl.Lookup
		args = ctl.LookupArgs{Proto: rest[0], Client: rest[1], VIP: rest[2]}
		result, print = &r, func(w io.Writer) { printLookup(w, &r) }
	case ctl.CmdRebind:
		if len(rest) != 1 {
			return usageError(stderr, "rebind needs a host id, e.g. rebind 2")
		}
		id, err := strconv.ParseUint(rest[0], 10, 16)
		if err != nil || id == 0 {
			return usageError(stderr, fmt.Sprintf("rebind: host id %q: want 1..65535", rest[0]))
		}
		var r ctl.Rebind
		args = ctl.RebindArgs{Host: uint16(id)}
		result, print = &r, func(w io.Writer) {
			if r.Bound {
				fmt.Fprintf(w, "host %d unbound: its next heartbeat binds it to its address and MAC\n", r.Host)
			} else {
				fmt.Fprintf(w, "host %d was not bound; its next heartbeat binds it\n", r.Host)
			}
		}
	case ctl.CmdSessions:
		if len(rest) > 0 {
			return usageError(stderr, "sessions takes options only: --owner N, --vip ADDR[:PORT], --limit N")
		}
		if err := checkSessionsArgs(o.vip, o.limit); err != nil {
			return usageError(stderr, "sessions: "+err.Error())
		}
		var r ctl.Sessions
		args = ctl.SessionsArgs{Owner: o.owner, VIP: o.vip, Limit: o.limit}
		result, print = &r, func(w io.Writer) { printSessions(w, &r) }
	default:
		return usageError(stderr, fmt.Sprintf("unknown command %q", cmd))
	}

	var raw json.RawMessage
	if err := ctl.Call(ctx, socket, cmd, args, &raw); err != nil {
		fmt.Fprintln(stderr, "homingctl:", err)
		return 1
	}
	if o.json {
		var buf strings.Builder
		if err := jsonIndent(&buf, raw); err != nil {
			fmt.Fprintln(stderr, "homingctl:", err)
			return 1
		}
		fmt.Fprint(stdout, buf.String())
		return 0
	}
	if err := json.Unmarshal(raw, result); err != nil {
		fmt.Fprintln(stderr, "homingctl: decoding the daemon's answer:", err)
		return 1
	}
	print(stdout)
	return 0
}

// drain sends drain or undrain and prints the state; a drain with --wait then asks
// for the status every half second, printing the owned sessions whenever they change,
// until they reach 0 (exit 0) or the wait ends (exit 1).
func drain(ctx context.Context, socket, cmd string, o opts, stdout, stderr io.Writer) int {
	var st ctl.Status
	if err := ctl.Call(ctx, socket, cmd, nil, &st); err != nil {
		fmt.Fprintln(stderr, "homingctl:", err)
		return 1
	}
	report := func() {
		if o.json {
			_ = json.NewEncoder(stdout).Encode(map[string]any{"state": st.State, "announced": st.Announced, "owned_sessions": st.Owned})
			return
		}
		fmt.Fprintf(stdout, "%s: %s, %d sessions owned here\n", time.Now().Format(time.TimeOnly), st.State, st.Owned)
	}
	report()
	if cmd != ctl.CmdDrain || o.wait == 0 {
		return 0
	}
	end := time.Now().Add(o.wait)
	last := st.Owned
	for st.Owned > 0 {
		if time.Now().After(end) {
			fmt.Fprintf(stderr, "homingctl: drain: %d sessions still owned after %s\n", st.Owned, o.wait)
			return 1
		}
		time.Sleep(min(500*time.Millisecond, time.Until(end)+time.Millisecond))
		cctx, cancel := context.WithTimeout(context.Background(), o.timeout)
		err := ctl.Call(cctx, socket, ctl.CmdStatus, nil, &st)
		cancel()
		if err != nil {
			fmt.Fprintln(stderr, "homingctl:", err)
			return 1
		}
		if st.State != "draining" && st.State != "drained" {
			fmt.Fprintf(stderr, "homingctl: drain: the host is %s now (undrained or restarted)\n", st.State)
			return 1
		}
		if st.Owned != last {
			report()
			last = st.Owned
		}
	}
	if last != 0 {
		report()
	}
	return 0
}

func usageError(w io.Writer, msg string) int {
	fmt.Fprintln(w, "homingctl:", msg)
	fmt.Fprint(w, usage)
	return 2
}

// jsonIndent re-indents the daemon's answer. Numbers stay as the daemon wrote them
// (json.Number): decoding into float64 would round 64-bit ones, such as incarnations
// (unix nanoseconds) and large counters, above 2^53.
func jsonIndent(w io.Writer, raw json.RawMessage) error {
	var v any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return err
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func table(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0) }

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func printStatus(w io.Writer, s *ctl.Status) {
	t := table(w)
	fmt.Fprintf(t, "host\t%d (%s)  %s  %s  domain %s\n", s.HostID, s.Name, s.Address, s.MAC, s.Domain)
	fmt.Fprintf(t, "version\t%s  pid %d  up %s\n", s.Version, s.PID, s.Uptime)
	reload := "never reloaded"
	if !s.LastReload.IsZero() {
		reload = "last reload " + s.LastReload.Local().Format(time.DateTime) + ": ok"
		if s.LastReloadErr != "" {
			reload = "last reload " + s.LastReload.Local().Format(time.DateTime) + ": REFUSED: " + s.LastReloadErr
		}
	}
	fmt.Fprintf(t, "config\t%s  (%s)\n", s.ConfigFile, reload)
	fmt.Fprintf(t, "data plane\t%d workers, nic %s, kernel %s, redirect %s\n", s.Workers, s.NIC, s.Kernel, onOff(s.Redirect))
	if s.State != "" {
		ann := "VIPs withdrawn"
		if s.Announced {
			ann = "VIPs announced"
		}
		if !s.AnnouncedAt.IsZero() {
			ann += " since " + s.AnnouncedAt.Local().Format(time.DateTime)
		}
		if s.AnnounceError != "" {
			ann += ", ERROR: " + s.AnnounceError
		}
		fmt.Fprintf(t, "state\t%s (%s), %d sessions owned here\n", s.State, ann, s.Owned)
	}
	for _, p := range s.BGP {
		since := ""
		if !p.Since.IsZero() {
			since = " since " + p.Since.Local().Format(time.DateTime)
		}
		fmt.Fprintf(t, "bgp\t%s AS %d: %s%s, %d prefixes advertised, lost %d times\n", p.Address, p.AS, p.State, since,
			p.Advertised, p.Losses)
	}
	fmt.Fprintf(t, "vips\t%s\n", strings.Join(s.VIPs, " "))
	if s.Gossip {
		rot := ""
		if s.KeyRotation {
			rot = ", key rotation (second key accepted)"
		}
		warm := ""
		if s.Warming {
			warm = ", warming up (peers' sessions not all learnt yet)"
		}
		fmt.Fprintf(t, "gossip\ton, incarnation %d, %d peers up%s%s\n", s.Incarnation, s.PeersUp, rot, warm)
	} else {
		fmt.Fprintf(t, "gossip\toff\n")
	}
	fmt.Fprintf(t, "static peers\t%d\n", s.StaticPeers)
	fmt.Fprintf(t, "table\t%d IPv4 of %d, %d IPv6 of %d\n", s.Sessions4, s.Capacity4, s.Sessions6, s.Capacity6)
	m := s.Metrics
	if m == "" {
		m = "off"
	}
	fmt.Fprintf(t, "metrics\t%s\n", m)
	fmt.Fprintf(t, "log level\t%s\n", s.LogLevel)
	t.Flush()
}

func printPeers(w io.Writer, ps []ctl.Peer) {
	if len(ps) == 0 {
		fmt.Fprintln(w, "no peers")
		return
	}
	t := table(w)
	fmt.Fprintln(t, "ID\tADDRESS\tMAC\tTUNNEL PORT\tDOMAIN\tSOURCE\tFORWARDING\tSESSIONS")
	for _, p := range ps {
		mac := p.MAC
		if mac == "" {
			mac = "-"
		}
		fmt.Fprintf(t, "%d\t%s\t%s\t%d\t%s\t%s\t%s\t%d\n", p.ID, p.Address, mac, p.TunnelPort, p.Domain, p.Source, yesNo(p.Up), p.Sessions)
	}
	t.Flush()
}

func printLookup(w io.Writer, l *ctl.Lookup) {
	t := table(w)
	fmt.Fprintf(t, "session\t%s\n", l.Session)
	if l.Found {
		fmt.Fprintf(t, "owner\thost %d (epoch %d)\n", l.Owner, l.Epoch)
	} else {
		fmt.Fprintf(t, "owner\tnot in the table\n")
	}
	fmt.Fprintf(t, "verdict\t%s\n", l.Verdict)
	t.Flush()
}

func printSessions(w io.Writer, s *ctl.Sessions) {
	if len(s.Sessions) > 0 {
		t := table(w)
		fmt.Fprintln(t, "PROTO\tCLIENT\tVIP\tOWNER\tEPOCH")
		for _, x := range s.Sessions {
			fmt.Fprintf(t, "%s\t%s\t%s\t%d\t%d\n", x.Proto, x.Client, x.VIP, x.Owner, x.Epoch)
		}
		t.Flush()
	}
	if s.Truncated {
		fmt.Fprintf(w, "%d sessions match, %d shown (--limit N, -1 for all)\n", s.Matched, len(s.Sessions))
	} else {
		fmt.Fprintf(w, "%d sessions\n", s.Matched)
	}
}

func printStats(w io.Writer, s *ctl.Stats) {
	t := table(w)
	fmt.Fprintln(t, "LCORE\tRX NIC\tRX KERNEL\tTX NIC\tTX KERNEL\tREDIRECTED\tDECAPSULATED\tDROPPED\tBUSY")
	for _, l := range s.Lcores {
		var drops uint64
		for _, v := range l.Drops {
			drops += v
		}
		fmt.Fprintf(t, "%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%.1f%%\n", l.Lcore, l.RxNIC, l.RxKernel, l.TxNIC, l.TxKernel,
			l.Redirected, l.Decapsulated, drops, 100*l.BusyRatio)
	}
	t.Flush()
	fmt.Fprintln(w)
	// Classes and drops: one row per name, one column per lcore.
	if len(s.Lcores) > 0 {
		t = table(w)
		fmt.Fprint(t, "NIC PACKETS BY CLASS")
		for _, l := range s.Lcores {
			fmt.Fprintf(t, "\tLCORE %d", l.Lcore)
		}
		fmt.Fprintln(t)
		for _, name := range sortedKeys(s.Lcores[0].Classes) {
			fmt.Fprint(t, name)
			for _, l := range s.Lcores {
				fmt.Fprintf(t, "\t%d", l.Classes[name])
			}
			fmt.Fprintln(t)
		}
		for _, name := range sortedKeys(s.Lcores[0].Drops) {
			fmt.Fprint(t, "drop "+name)
			for _, l := range s.Lcores {
				fmt.Fprintf(t, "\t%d", l.Drops[name])
			}
			fmt.Fprintln(t)
		}
		for _, name := range sortedKeys(s.Lcores[0].GUERefused) {
			fmt.Fprint(t, "gue refused "+name)
			for _, l := range s.Lcores {
				fmt.Fprintf(t, "\t%d", l.GUERefused[name])
			}
			fmt.Fprintln(t)
		}
		for _, name := range sortedKeys(s.Lcores[0].Park) {
			fmt.Fprint(t, "park "+name)
			for _, l := range s.Lcores {
				fmt.Fprintf(t, "\t%d", l.Park[name])
			}
			fmt.Fprintln(t)
		}
		fmt.Fprint(t, "icmp too big sent")
		for _, l := range s.Lcores {
			fmt.Fprintf(t, "\t%d", l.ICMPTooBig)
		}
		fmt.Fprint(t, "\nfragments tunnelled")
		for _, l := range s.Lcores {
			fmt.Fprintf(t, "\t%d", l.FragTunnelled)
		}
		fmt.Fprint(t, "\nmss clamped")
		for _, l := range s.Lcores {
			fmt.Fprintf(t, "\t%d", l.MSSClamped)
		}
		fmt.Fprintln(t)
		for _, name := range sortedKeys(s.Lcores[0].Counters) {
			fmt.Fprint(t, strings.ReplaceAll(name, "_", " "))
			for _, l := range s.Lcores {
				fmt.Fprintf(t, "\t%d", l.Counters[name])
			}
			fmt.Fprintln(t)
		}
		t.Flush()
		fmt.Fprintln(w)
	}
	t = table(w)
	fmt.Fprintln(t, "PORT\tRX PACKETS\tTX PACKETS\tRX BYTES\tTX BYTES\tRX MISSED\tRX ERRORS\tTX ERRORS\tRX NO MBUF")
	for _, p := range s.Ports {
		fmt.Fprintf(t, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\n", p.Name, p.RxPackets, p.TxPackets, p.RxBytes, p.TxBytes,
			p.RxMissed, p.RxErrors, p.TxErrors, p.RxNoMbuf)
	}
	t.Flush()
	for _, p := range s.Ports {
		printMap(w, "port "+p.Name, p.Counters)
	}
	printMap(w, "table", s.Table)
	if len(s.Owners) > 0 {
		owners := map[string]uint64{}
		for k, v := range s.Owners {
			owners["owner "+k] = uint64(v)
		}
		printMap(w, "table entries by owner", owners)
	}
	if s.Gossip != nil {
		printMap(w, "gossip", s.Gossip)
		printMap(w, "gossip datagrams rejected", s.Reject)
	} else {
		fmt.Fprintln(w, "\ngossip off")
	}
	printMap(w, "gossip relay", s.Relay)
	printMap(w, "udp sessions", s.UDP)
	printMap(w, "probe", s.Probe)
}

func printMap(w io.Writer, title string, m map[string]uint64) {
	if len(m) == 0 {
		return
	}
	fmt.Fprintf(w, "\n%s\n", title)
	t := table(w)
	for _, k := range sortedKeys(m) {
		fmt.Fprintf(t, "  %s\t%d\n", strings.ReplaceAll(k, "_", " "), m[k])
	}
	t.Flush()
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
