package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Scenario is the run the demo and the end-to-end test share: a lab of Hosts hosts,
// Conns long-lived client connections to the VIP, then in turn a drain of h1 (it keeps
// running), its return, a new host, and a new router hash seed. After each step the
// traffic runs for Step and the connections are counted.
type Scenario struct {
	Hosts   int           // hosts at the start (default 3); one more is added
	Conns   int           // client connections (default 300)
	Uploads int           // upload connections (64 KiB blocks, full-size segments; default 20, -1 none)
	NoClamp bool          // tunnel.clamp_mss = false: full-size segments rely on ICMP too big
	Homingd string        // homingd executable
	Serve   []string      // Options.Serve
	Settle  time.Duration // wait for the hosts' tables to hold every session, at most (default 10s)
	Step    time.Duration // traffic after each step (default 3s)
	Log     io.Writer     // progress lines (nil: none)
	Live    bool          // also a live counter line each second, redrawn with \r (a terminal)
	KeepDir bool          // keep each lab's directory (configs, logs)
	IPv6    bool          // an IPv6 lab (Options.IPv6)
	// Static steers with static multipath routes that the scenario edits; the default
	// is BGP (Options.BGP: FRR in the router, drains by homingctl drain).
	Static bool
	// QUIC is the number of QUIC connections (QUICFlows) to the hosts' QUIC echo
	// servers, whose port is a QUIC session port with host-id CIDs; with any, a last
	// step rebinds every third of them to a new source port. 0: none.
	QUIC int
}

// StepResult counts the connections at the end of one step.
type StepResult struct {
	Name      string
	Alive     int    // still open at the end of the step
	Stalled   int    // of those, with no exchange in the last AliveWindow
	Reset     int    // reset during this step
	Failed    int    // ended by another error during this step
	Corrupted uint64 // corrupted echoed bytes during this step
	Tunnelled uint64 // packets the hosts' data planes tunnelled to another host during this step
	// The upload connections (64 KiB blocks) at the end of the step, counted as above.
	UpAlive, UpStalled, UpReset, UpFailed int
	UpCorrupted                           uint64
	UpBlocks                              uint64 // blocks echoed intact during this step
	// The MTU budget during this step: packets too big for the tunnel, ICMP too-big
	// replies sent, SYN-ACK MSS options lowered (every host).
	TooBig, ICMPTooBig, MSSClamped uint64
	// The QUIC connections at the end of the step: not broken, broken during the step,
	// chunks exchanged during the step.
	QUICAlive, QUICBroken int
	QUICChunks            int
}

// Result is one run of the scenario.
type Result struct {
	Redirect   bool
	LabID      string
	Conns      int
	Steps      []StepResult
	Exchanges  uint64        // completed echo exchanges over the run
	Stalled    int           // connections open at the end that exchanged nothing for 5 s
	Uploads    int           // upload connections
	QUIC       int           // QUIC connections
	UpStalled  int           // upload connections open at the end that exchanged nothing for 5 s
	UpBytes    uint64        // bytes the upload connections had echoed intact over the run
	ClientPMTU int           // the client's path MTU to the VIP at the end (0: none learned)
	NoClamp    bool          // run with tunnel.clamp_mss = false
	Elapsed    time.Duration // the whole run, lab setup and teardown included
	Ended      []string      // the first connections that ended, with their errors
	PIDs       []int         // every process the lab started
	Logs       string        // tails of the hosts' logs when something ended or failed
}

// TotalReset sums the resets of every step.
func (r *Result) TotalReset() (n int) {
	for _, s := range r.Steps {
		n += s.Reset + s.Failed + s.UpReset + s.UpFailed
	}
	return n
}

func (s *Scenario) defaults() {
	if s.Hosts == 0 {
		s.Hosts = 3
	}
	if s.Conns == 0 {
		s.Conns = 300
	}
	if s.Uploads == 0 {
		s.Uploads = 20
	}
	if s.Uploads < 0 {
		s.Uploads = 0
	}
	if s.Settle == 0 {
		s.Settle = 10 * time.Second
	}
	if s.Step == 0 {
		s.Step = 3 * time.Second
	}
}

func (s *Scenario) logf(format string, a ...any) { logTo(s.Log, format, a...) }

// logTo writes a progress line to w, if any.
func logTo(w io.Writer, format string, a ...any) {
	if w != nil {
		fmt.Fprintf(w, format+"\n", a...)
	}
}

// end tears the lab of a run begun at t0 down, at the end of the run: it joins the
// teardown's error to *err and returns the tails of the hosts' logs (if keepLogs, else
// ""), every process the lab started, and how long the run took, which it logs.
func (l *Lab) end(err *error, keepLogs bool, t0 time.Time, log io.Writer) (logs string, pids []int, took time.Duration) {
	if keepLogs {
		logs = l.logTails(15)
	}
	if cerr := l.Close(); cerr != nil {
		*err = errors.Join(*err, fmt.Errorf("teardown: %w", cerr))
	}
	took = time.Since(t0)
	logTo(log, "  lab %s removed; run took %.1fs", l.ID, took.Seconds())
	return logs, l.PIDs(), took
}

// Run builds a lab with tunnel.redirect = redirect, runs the scenario and tears the lab
// down. The Result holds what was measured up to an error.
func (s Scenario) Run(ctx context.Context, redirect bool) (res *Result, err error) {
	s.defaults()
	t0 := time.Now()
	res = &Result{Redirect: redirect, Conns: s.Conns, Uploads: s.Uploads, NoClamp: s.NoClamp, QUIC: s.QUIC}
	mode := "homing (tunnel.redirect = true)"
	if !redirect {
		mode = "plain ECMP (tunnel.redirect = false)"
	}
	family := "IPv4"
	if s.IPv6 {
		family = "IPv6"
	}
	clamp := "MSS clamp on"
	if s.NoClamp {
		clamp = "MSS clamp off"
	}
	s.logf("== %s: %d hosts, %d connections + %d uploads, %s, %s", mode, s.Hosts, s.Conns, s.Uploads, family, clamp)
	o := Options{Homingd: s.Homingd, Serve: s.Serve, Redirect: redirect, Log: s.Log, KeepDir: s.KeepDir, IPv6: s.IPv6,
		BGP: !s.Static, NoClamp: s.NoClamp}
	if s.QUIC > 0 {
		o.QUIC, o.EditConfig = true, quicSessionPort
	}
	l, err := New(o)
	if err != nil {
		return res, err
	}
	res.LabID = l.ID
	defer func() {
		res.Logs, res.PIDs, res.Elapsed = l.end(&err, err != nil || res.TotalReset() > 0 && redirect, t0, s.Log)
	}()
	hosts := make([]int, s.Hosts)
	for i := range hosts {
		hosts[i] = i + 1
	}
	if err = l.AddHosts(ctx, hosts...); err != nil {
		return res, err
	}
	if err = l.SetRoute(hosts); err != nil {
		return res, err
	}
	t := time.Now()
	fleet, err := Dial(ctx, l.NS("cli"), l.Service().String(), s.Conns, 16)
	if err != nil {
		return res, fmt.Errorf("connect: %w", err)
	}
	up := &Fleet{}
	if s.Uploads > 0 {
		if up, err = DialSize(ctx, l.NS("cli"), l.Service().String(), s.Uploads, 4, UploadLen); err != nil {
			fleet.Stop()
			return res, fmt.Errorf("connect uploads: %w", err)
		}
	}
	fleet.Start()
	defer fleet.Stop()
	up.Start()
	defer up.Stop()
	s.logf("  %d connections and %d uploads from %s to %s open (%.1fs)", s.Conns, s.Uploads, l.Client(), l.Service(), time.Since(t).Seconds())
	qf := &QUICFlows{}
	if s.QUIC > 0 {
		t = time.Now()
		if qf, err = StartQUICFlows(ctx, l.NS("cli"), netip.AddrPortFrom(l.VIPAddr(), QUICPort), s.QUIC, 500*time.Millisecond); err != nil {
			return res, fmt.Errorf("connect QUIC: %w", err)
		}
		defer qf.Stop()
		s.logf("  %d QUIC connections to %s open (%.1fs)", s.QUIC, netip.AddrPortFrom(l.VIPAddr(), QUICPort), time.Since(t).Seconds())
	}
	if err = s.converge(ctx, l, hosts, s.Conns+s.Uploads+s.QUIC); err != nil {
		return res, err
	}
	prev, prevUp, prevQ := fleet.Counts(), up.Counts(), qf.Counts()
	prevTun, _ := l.Tunnel(ctx)
	measure := func(name string) error {
		if err := s.watch(ctx, l, fleet, up, name, prev, prevUp); err != nil {
			return err
		}
		now, nowUp, nowQ := fleet.Counts(), up.Counts(), qf.Counts()
		tun, _ := l.Tunnel(ctx)
		res.Steps = append(res.Steps, StepResult{Name: name, Alive: now.Alive + now.Stalled, Stalled: now.Stalled,
			Reset: now.Reset - prev.Reset, Failed: now.Failed - prev.Failed, Corrupted: now.Corrupted - prev.Corrupted,
			Tunnelled: tun.Redirected - prevTun.Redirected,
			UpAlive:   nowUp.Alive + nowUp.Stalled, UpStalled: nowUp.Stalled, UpReset: nowUp.Reset - prevUp.Reset,
			UpFailed: nowUp.Failed - prevUp.Failed, UpCorrupted: nowUp.Corrupted - prevUp.Corrupted,
			UpBlocks: nowUp.Exchanges - prevUp.Exchanges, TooBig: tun.TooBig - prevTun.TooBig,
			ICMPTooBig: tun.ICMPTooBig - prevTun.ICMPTooBig, MSSClamped: tun.MSSClamped - prevTun.MSSClamped,
			QUICAlive: nowQ.Conns - nowQ.Broken, QUICBroken: nowQ.Broken - prevQ.Broken, QUICChunks: nowQ.Exchanged - prevQ.Exchanged})
		prev, prevUp, prevTun, prevQ = now, nowUp, tun, nowQ
		return nil
	}
	if err = measure("steady"); err != nil {
		return res, err
	}
	drained := hosts[0]
	rest := slices.DeleteFunc(slices.Clone(hosts), func(n int) bool { return n == drained })
	if err = l.SetRoute(rest); err != nil {
		return res, err
	}
	if err = measure(fmt.Sprintf("drain h%d", drained)); err != nil {
		return res, err
	}
	if err = l.SetRoute(hosts); err != nil {
		return res, err
	}
	if err = measure(fmt.Sprintf("restore h%d", drained)); err != nil {
		return res, err
	}
	extra := s.Hosts + 1
	if err = l.AddHosts(ctx, extra); err != nil {
		return res, err
	}
	c := fleet.Counts()
	cu := up.Counts()
	cq := qf.Counts()
	if err = s.converge(ctx, l, []int{extra}, c.Alive+c.Stalled+cu.Alive+cu.Stalled+cq.Conns-cq.Broken); err != nil {
		return res, err
	}
	hosts = append(hosts, extra)
	if err = l.SetRoute(hosts); err != nil {
		return res, err
	}
	if err = measure(fmt.Sprintf("add h%d", extra)); err != nil {
		return res, err
	}
	seed := rand.Uint32() | 1
	if err = l.Rehash(seed); err != nil {
		return res, err
	}
	if err = measure("rehash router"); err != nil {
		return res, err
	}
	if s.QUIC > 0 {
		// A third of the QUIC connections move to a new source port (a NAT rebinding);
		// the step runs 3 s longer than the others, past their 4 s stream deadline.
		n, err := qf.Rebind(ctx, 3)
		if err != nil {
			return res, err
		}
		if err = sleep(ctx, 3*time.Second); err != nil {
			return res, err
		}
		s.logf("  %d QUIC connections rebound to a new source port", n)
		if err = measure("rebind QUIC"); err != nil {
			return res, err
		}
	}
	// Every connection still open must still exchange data: a stalled one is black-holed.
	for end := time.Now().Add(5 * time.Second); ; {
		c, cu = fleet.Counts(), up.Counts()
		if c.Stalled+cu.Stalled == 0 || time.Now().After(end) {
			break
		}
		if err = sleep(ctx, 100*time.Millisecond); err != nil {
			return res, err
		}
	}
	res.Stalled = c.Stalled
	res.Exchanges = c.Exchanges
	res.UpStalled = cu.Stalled
	res.UpBytes = cu.Exchanges * UploadLen
	if res.ClientPMTU, err = l.ClientPMTU(); err != nil {
		return res, err
	}
	s.logf("  uploads: %d MiB echoed intact; client path MTU to the VIP: %s", res.UpBytes>>20, pmtuString(res.ClientPMTU))
	for _, f := range []struct {
		name string
		f    *Fleet
	}{{"connection", fleet}, {"upload", up}} {
		for i, cn := range f.f.Ended() {
			if i == 10 {
				res.Ended = append(res.Ended, fmt.Sprintf("... %d more", len(f.f.Ended())-10))
				break
			}
			res.Ended = append(res.Ended, fmt.Sprintf("%s %d from %s: %v", f.name, cn.ID, cn.Local, cn.Err()))
		}
	}
	return res, l.Check()
}

// converge waits until the tables of hosts hold want sessions each (the connections'
// owners have announced them, and every host has learned them), asking each homingd
// over its control socket. It says how long that took, or what was missing after
// Settle: the scenario then goes on, and the steps show the consequences.
func (s *Scenario) converge(ctx context.Context, l *Lab, hosts []int, want int) error {
	t := time.Now()
	got, err := l.WaitSessions(ctx, hosts, want, s.Settle)
	switch {
	case err == nil:
		s.logf("  tables of %s hold the %d sessions (%.2fs)", hostList(hosts), want, time.Since(t).Seconds())
	case errors.Is(err, ErrTimeout):
		s.logf("  after %v the tables hold fewer than %d sessions: %s", s.Settle, want, sessionCounts(got))
	default:
		return err
	}
	return nil
}

func hostList(hosts []int) string {
	var b strings.Builder
	for i, n := range hosts {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, "h%d", n)
	}
	return b.String()
}

func sessionCounts(got map[int]int) string {
	var b strings.Builder
	for n := 1; n <= MaxHosts; n++ {
		if c, ok := got[n]; ok {
			fmt.Fprintf(&b, " h%d %d", n, c)
		}
	}
	return strings.TrimSpace(b.String())
}

func pmtuString(n int) string {
	if n == 0 {
		return "none learned"
	}
	return strconv.Itoa(n)
}

// watch lets the traffic run for one step, then prints the step's line.
func (s *Scenario) watch(ctx context.Context, l *Lab, f, up *Fleet, name string, start, startUp Counts) error {
	line := func() string {
		c, u := f.Counts(), up.Counts()
		return fmt.Sprintf("  %-14s alive %5d  stalled %4d  reset %4d  corrupted bytes %d | uploads alive %3d  stalled %3d  reset %3d  corrupted %d",
			name, c.Alive, c.Stalled, c.Reset+c.Failed-start.Reset-start.Failed, c.Corrupted-start.Corrupted,
			u.Alive, u.Stalled, u.Reset+u.Failed-startUp.Reset-startUp.Failed, u.Corrupted-startUp.Corrupted)
	}
	end := time.Now().Add(s.Step)
	for {
		left := time.Until(end)
		if left <= 0 {
			break
		}
		if err := sleep(ctx, min(left, time.Second)); err != nil {
			return err
		}
		if s.Live && s.Log != nil {
			fmt.Fprintf(s.Log, "\r%s ", line())
		}
		if err := l.Check(); err != nil {
			return err
		}
	}
	if s.Live && s.Log != nil {
		fmt.Fprint(s.Log, "\r")
	}
	s.logf("%s", line())
	return nil
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// logTails are the last lines of every host's log.
func (l *Lab) logTails(n int) string {
	var b strings.Builder
	for _, h := range l.Hosts() {
		b.WriteString(Tail(l.hosts[h].LogFile, n))
		b.WriteByte('\n')
	}
	return b.String()
}

// runName names a run in the tables.
func runName(r *Result) string {
	switch {
	case !r.Redirect:
		return "plain ECMP"
	case r.NoClamp:
		return "homing, no clamp"
	}
	return "homing"
}

// Table prints the results of runs side by side, one row per step; then, if the runs had
// upload connections, their table (UploadTable).
func Table(w io.Writer, runs ...*Result) {
	sideBySide(w, runs, 39, func(r *Result) string { return fmt.Sprintf("%s, %d connections", runName(r), r.Conns) },
		fmt.Sprintf("%6s %6s %12s %12s", "alive", "reset", "bad bytes", "tunnelled"),
		func(st StepResult) string {
			return fmt.Sprintf("%6d %6d %12d %12d", st.Alive, st.Reset+st.Failed, st.Corrupted, st.Tunnelled)
		})
	for _, r := range runs {
		if r.Uploads > 0 {
			fmt.Fprintln(w)
			UploadTable(w, runs...)
			break
		}
	}
	for _, r := range runs {
		if r.QUIC > 0 {
			fmt.Fprintln(w)
			QUICTable(w, runs...)
			break
		}
	}
}

// QUICTable prints the QUIC connections of runs side by side, one row per step: alive
// (not broken), broken during the step, chunks exchanged during the step.
func QUICTable(w io.Writer, runs ...*Result) {
	sideBySide(w, runs, 28, func(r *Result) string { return fmt.Sprintf("%s, %d QUIC", runName(r), r.QUIC) },
		fmt.Sprintf("%6s %6s %14s", "alive", "broken", "chunks"),
		func(st StepResult) string {
			return fmt.Sprintf("%6d %6d %14d", st.QUICAlive, st.QUICBroken, st.QUICChunks)
		})
}

// quicSessionPort is an Options.EditConfig that declares QUICPort a QUIC session port
// whose servers issue host-id connection IDs.
func quicSessionPort(_ int, toml string) string {
	return toml + fmt.Sprintf("\n[[udp_sessions]]\nport = %d\nquic = true\nquic_cid = true\n", QUICPort)
}

// UploadTable prints the upload connections of runs side by side, one row per step:
// alive (stalled included), stalled (no block echoed in the last AliveWindow), reset,
// corrupted bytes, 64 KiB blocks echoed intact, and packets too big for the tunnel with
// the ICMP replies they got.
func UploadTable(w io.Writer, runs ...*Result) {
	sideBySide(w, runs, 43, func(r *Result) string { return fmt.Sprintf("%s, %d uploads", runName(r), r.Uploads) },
		fmt.Sprintf("%5s %5s %5s %4s %7s %6s %5s", "alive", "stall", "reset", "bad", "blocks", "toobig", "icmp"),
		func(st StepResult) string {
			return fmt.Sprintf("%5d %5d %5d %4d %7d %6d %5d", st.UpAlive, st.UpStalled, st.UpReset+st.UpFailed,
				st.UpCorrupted, st.UpBlocks, st.TooBig, st.ICMPTooBig)
		})
}

// sideBySide prints runs side by side, one column of colw characters each (its title, the
// header head, one cell per step) and one row per step.
func sideBySide(w io.Writer, runs []*Result, colw int, title func(*Result) string, head string,
	cell func(StepResult) string) {
	fmt.Fprintf(w, "%-14s", "step")
	for _, r := range runs {
		fmt.Fprintf(w, " | %-*s", colw, title(r))
	}
	fmt.Fprintf(w, "\n%-14s", "")
	for range runs {
		fmt.Fprintf(w, " | %s", head)
	}
	fmt.Fprintf(w, "\n%s", strings.Repeat("-", 14))
	for range runs {
		fmt.Fprintf(w, "-+-%s", strings.Repeat("-", colw))
	}
	fmt.Fprintln(w)
	rows := 0
	for _, r := range runs {
		rows = max(rows, len(r.Steps))
	}
	for i := range rows {
		name := ""
		for _, r := range runs {
			if i < len(r.Steps) {
				name = r.Steps[i].Name
			}
		}
		fmt.Fprintf(w, "%-14s", name)
		for _, r := range runs {
			if i >= len(r.Steps) {
				fmt.Fprintf(w, " | %*s", colw, "")
				continue
			}
			fmt.Fprintf(w, " | %s", cell(r.Steps[i]))
		}
		fmt.Fprintln(w)
	}
}
