package lab

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netns"

	"github.com/homing-dev/homing/config"
)

// The churn scenario (issue 7, "close the races"): clients open new connections
// continuously while the router rehashes again and again and a host is drained and
// restored. Two windows remain after an ECMP change that the ECMP scenario of
// scenario.go, whose connections are all old, never opens:
//
//   - a handshake in flight: the host that answered the SYN owns no established socket
//     yet; the final ACK, rehashed to another host, meets an empty table there and that
//     kernel resets it. probe.tentative closes it (the SYN claims the session).
//   - a session established a moment before the change: its next packets can reach
//     another host before gossip has told it. tunnel.park_hold closes it (a miss of a VIP
//     session waits a moment for the table).
//
// Each connection: a handshake, two exchanges at once (a ChunkLen chunk, its echo
// checked byte for byte), a pause of up to Churn.Hold, a third exchange, then a half
// close and the server's end of stream. Any error of the client is counted.

// RaceMode switches the two mechanisms off (the zero RaceMode is homing's defaults).
type RaceMode struct {
	NoTentative bool // probe.tentative = false
	NoPark      bool // tunnel.park_hold = "0"
}

// RaceModes are the four combinations, both on first.
var RaceModes = []RaceMode{{}, {NoPark: true}, {NoTentative: true}, {NoTentative: true, NoPark: true}}

func (m RaceMode) String() string {
	switch m {
	case RaceMode{}:
		return "both on"
	case RaceMode{NoPark: true}:
		return "tentative only"
	case RaceMode{NoTentative: true}:
		return "park only"
	}
	return "both off"
}

// Churn configures the churn scenario.
type Churn struct {
	Hosts       int           // hosts (default 3)
	Rate        int           // new connections per second (default 400)
	Duration    time.Duration // of the traffic (default 12s)
	RehashEvery time.Duration // a new router hash seed this often (default 600ms)
	Drain       bool          // also drain h1 at a third of Duration and restore it at two thirds
	Hold        time.Duration // a connection's pause before its last exchange: random in [0, Hold] (default 200ms)
	// ParkHold is tunnel.park_hold when the park is on; 0 keeps homing's default
	// (config.DefaultParkHold). The park must outlast the gossip lag, which on two
	// loaded cores shared by three daemons, the clients and other tests is far longer
	// than on a POP host (see TestChurn).
	ParkHold time.Duration
	Homingd  string    // homingd executable
	Serve    []string  // Options.Serve
	Log      io.Writer // progress lines (nil: none)
	KeepDir  bool      // keep the lab's directory (configs, logs)
}

// ChurnResult is one run of the churn scenario.
type ChurnResult struct {
	Mode      RaceMode
	LabID     string
	Opened    int     // connections attempted
	Completed int     // connections that did every exchange and closed cleanly
	Handshake int     // connections whose handshake failed (refused, reset, timed out)
	Reset     int     // connections reset after the handshake (RST, EPIPE, early end of stream)
	Failed    int     // connections ended by another error (a timeout: a black hole)
	Corrupted uint64  // echoed bytes that differed from those sent
	Rate      float64 // connections opened per second of traffic
	Rehashes  int     // new router hash seeds during the traffic
	Drains    int     // drains and restores of h1 during the traffic
	Tunnelled uint64  // packets the hosts tunnelled to another host during the traffic
	Missed    uint64  // VIP packets handed to a kernel without a table entry during the traffic
	// The park's counters over every host during the traffic (homing_lcore_*park*
	// metrics): packets parked, released to their owner (redirect) or as local (local),
	// expired to the kernel, and not parked because the park was full.
	ParkIn, ParkRedirect, ParkLocal, ParkExpired, ParkFull uint64
	// TentativeExpired counts tentative claims withdrawn because their handshake did not
	// complete in probe.tentative_lifetime (from the hosts' debug logs).
	TentativeExpired int
	Errors           []string
	PIDs             []int
	Logs             string // tails of the hosts' logs when a connection broke with both mechanisms on
	Elapsed          time.Duration
}

// Broken is the number of connections that did not complete.
func (r *ChurnResult) Broken() int { return r.Handshake + r.Reset + r.Failed }

func (c *Churn) defaults() {
	if c.Hosts == 0 {
		c.Hosts = 3
	}
	if c.Rate == 0 {
		c.Rate = 400
	}
	if c.Duration == 0 {
		c.Duration = 12 * time.Second
	}
	if c.RehashEvery == 0 {
		c.RehashEvery = 600 * time.Millisecond
	}
	if c.Hold == 0 {
		c.Hold = 200 * time.Millisecond
	}
}

func (c *Churn) logf(format string, a ...any) { logTo(c.Log, format, a...) }

// Run builds a lab with the mode's switches (tunnel.redirect on), runs the churn and
// tears the lab down. The result holds what was measured up to an error.
func (c Churn) Run(ctx context.Context, mode RaceMode) (res *ChurnResult, err error) {
	c.defaults()
	t0 := time.Now()
	res = &ChurnResult{Mode: mode}
	park := "off"
	if !mode.NoPark {
		park = config.DefaultParkHold.String()
		if c.ParkHold > 0 {
			park = c.ParkHold.String()
		}
	}
	c.logf("== churn, %s (tunnel.park_hold %s): %d hosts, %d new connections/s for %v, rehash every %v, drain %v", mode,
		park, c.Hosts, c.Rate, c.Duration, c.RehashEvery, c.Drain)
	opts := Options{Homingd: c.Homingd, Serve: c.Serve, Redirect: true, NoTentative: mode.NoTentative,
		NoPark: mode.NoPark, Log: c.Log, KeepDir: c.KeepDir}
	opts.EditConfig = func(n int, toml string) string {
		if c.ParkHold > 0 && !mode.NoPark {
			toml = parkHold(c.ParkHold)(n, toml)
		}
		return churnObserve(n, toml)
	}
	l, err := New(opts)
	if err != nil {
		return res, err
	}
	res.LabID = l.ID
	defer func() {
		res.Logs, res.PIDs, res.Elapsed = l.end(&err, err != nil || res.Broken() > 0 && mode == (RaceMode{}), t0, c.Log)
	}()
	hosts := make([]int, c.Hosts)
	for i := range hosts {
		hosts[i] = i + 1
	}
	if err = l.AddHosts(ctx, hosts...); err != nil {
		return res, err
	}
	if err = l.SetRoute(hosts); err != nil {
		return res, err
	}
	before, err := l.classTotals(ctx)
	if err != nil {
		return res, err
	}
	parkBefore, err := l.parkTotals(ctx)
	if err != nil {
		return res, err
	}
	cl, err := startChurn(ctx, l.NS("cli"), l.Service().String(), c.Rate, c.Hold)
	if err != nil {
		return res, err
	}
	evErr := c.events(ctx, l, hosts, res)
	traffic := cl.stop()
	if err = errors.Join(evErr, l.Check()); err != nil {
		return res, err
	}
	after, err := l.classTotals(ctx)
	if err != nil {
		return res, err
	}
	res.Tunnelled = after["redirect"] - before["redirect"]
	res.Missed = after["miss"] - before["miss"]
	parkAfter, err := l.parkTotals(ctx)
	if err != nil {
		return res, err
	}
	res.ParkIn = parkAfter[parkIn] - parkBefore[parkIn]
	res.ParkRedirect = parkAfter[parkRedirect] - parkBefore[parkRedirect]
	res.ParkLocal = parkAfter[parkLocal] - parkBefore[parkLocal]
	res.ParkExpired = parkAfter[parkExpired] - parkBefore[parkExpired]
	res.ParkFull = parkAfter[parkFull] - parkBefore[parkFull]
	res.TentativeExpired = l.tentativeExpired()
	res.Opened = int(cl.opened.Load())
	res.Completed = int(cl.completed.Load())
	res.Handshake, res.Reset, res.Failed = int(cl.handshake.Load()), int(cl.reset.Load()), int(cl.failed.Load())
	res.Corrupted = cl.corrupted.Load()
	res.Rate = float64(res.Opened) / traffic.Seconds()
	res.Errors = cl.firstErrors()
	c.logf("  %s", res.line())
	return res, nil
}

// events rehashes the router every RehashEvery (and drains and restores h1) until
// Duration has passed.
func (c *Churn) events(ctx context.Context, l *Lab, hosts []int, res *ChurnResult) error {
	start := time.Now()
	tick := time.NewTicker(c.RehashEvery)
	defer tick.Stop()
	drainAt, restoreAt := start.Add(c.Duration/3), start.Add(2*c.Duration/3)
	drained := false
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case now := <-tick.C:
			if now.Sub(start) >= c.Duration {
				return nil
			}
			var err error
			switch {
			case c.Drain && !drained && now.After(drainAt) && now.Before(restoreAt):
				err = l.SetRoute(hosts[1:])
				drained = true
				res.Drains++
			case c.Drain && drained && now.After(restoreAt):
				err = l.SetRoute(hosts)
				drained = false
				res.Drains++
			default:
				err = l.Rehash(rand.Uint32() | 1)
				res.Rehashes++
			}
			if err != nil {
				return err
			}
		}
	}
}

func (r *ChurnResult) line() string {
	return fmt.Sprintf("%d connections (%.0f/s), %d rehashes, %d drains/restores: %d completed, %d handshakes failed, "+
		"%d reset, %d failed, %d corrupted bytes; %d packets tunnelled, %d misses to a kernel; parked %d "+
		"(released to the owner %d, local %d, expired %d, park full %d); %d tentative claims expired",
		r.Opened, r.Rate, r.Rehashes, r.Drains, r.Completed, r.Handshake, r.Reset, r.Failed, r.Corrupted, r.Tunnelled, r.Missed,
		r.ParkIn, r.ParkRedirect, r.ParkLocal, r.ParkExpired, r.ParkFull, r.TentativeExpired)
}

// churnMetricsPort is the port of each host's metrics endpoint in a churn lab, on the
// host's own address inside its namespace.
const churnMetricsPort = 9370

// churnObserve turns on what a churn run reads from host n: the metrics endpoint (the
// park's counters) and debug logging (the expiry of tentative claims).
func churnObserve(n int, toml string) string {
	toml = strings.Replace(toml, "\n[metrics]\nlisten = \"\"\n",
		fmt.Sprintf("\n[metrics]\nlisten = %q\n", netip.AddrPortFrom(HostAddr(n), churnMetricsPort).String()), 1)
	return toml + "\n[log]\nlevel = \"debug\"\n"
}

// The park's metrics (package metrics), summed over lcores.
const (
	parkIn       = "homing_lcore_parked_packets_total"
	parkRedirect = `homing_lcore_unparked_packets_total{outcome="redirect"}`
	parkLocal    = `homing_lcore_unparked_packets_total{outcome="local"}`
	parkExpired  = `homing_lcore_unparked_packets_total{outcome="expired"}`
	parkFull     = "homing_lcore_park_full_total"
)

// parkTotals reads the park's counters of every host from its metrics endpoint, asked
// from inside the host's namespace.
func (l *Lab) parkTotals(ctx context.Context) (map[string]uint64, error) {
	sum := map[string]uint64{}
	for _, n := range l.Hosts() {
		text, err := scrape(ctx, l.hosts[n].NS, netip.AddrPortFrom(HostAddr(n), churnMetricsPort).String())
		if err != nil {
			return nil, fmt.Errorf("h%d: metrics: %w", n, err)
		}
		for name, v := range parkCounters(text) {
			sum[name] += v
		}
	}
	return sum, nil
}

// parkCounters picks the park's counters out of a Prometheus text exposition, summed
// over the lcore label.
func parkCounters(text string) map[string]uint64 {
	out := map[string]uint64{}
	for _, line := range strings.Split(text, "\n") {
		name, rest, ok := strings.Cut(line, " ")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		metric, labels, _ := strings.Cut(name, "{")
		key := metric
		if metric == "homing_lcore_unparked_packets_total" {
			_, outcome, _ := strings.Cut(labels, `outcome="`)
			outcome, _, _ = strings.Cut(outcome, `"`)
			key = metric + `{outcome="` + outcome + `"}`
		}
		switch key {
		case parkIn, parkRedirect, parkLocal, parkExpired, parkFull:
			var v float64
			if _, err := fmt.Sscan(rest, &v); err == nil {
				out[key] += uint64(v)
			}
		}
	}
	return out
}

// scrape fetches http://addr/metrics from inside namespace ns.
func scrape(ctx context.Context, ns, addr string) (string, error) {
	target, err := netns.GetFromName(ns)
	if err != nil {
		return "", err
	}
	defer target.Close()
	var c net.Conn
	if err := dialIn(ctx, target, func(d *net.Dialer) (err error) {
		d.Timeout = 5 * time.Second
		c, err = d.DialContext(ctx, "tcp", addr)
		return err
	}); err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(c, "GET /metrics HTTP/1.0\r\nHost: %s\r\n\r\n", addr); err != nil {
		return "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s", addr, resp.Status)
	}
	return string(b), nil
}

// tentativeExpired sums the counts of the hosts' "tentative claims expired" debug lines.
func (l *Lab) tentativeExpired() int {
	total := 0
	for _, n := range l.Hosts() {
		b, err := os.ReadFile(l.hosts[n].LogFile)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if !strings.Contains(line, `msg="tentative claims expired"`) {
				continue
			}
			_, v, ok := strings.Cut(line, " count=")
			if !ok {
				continue
			}
			v, _, _ = strings.Cut(v, " ")
			if k, err := strconv.Atoi(v); err == nil {
				total += k
			}
		}
	}
	return total
}

// classTotals sums the data planes' packet classes (ctl.LcoreStats.Classes) over every
// host.
func (l *Lab) classTotals(ctx context.Context) (map[string]uint64, error) {
	sum := map[string]uint64{}
	for _, n := range l.Hosts() {
		st, err := l.Stats(ctx, n)
		if err != nil {
			return nil, err
		}
		for _, lc := range st.Lcores {
			for k, v := range lc.Classes {
				sum[k] += v
			}
		}
	}
	return sum, nil
}

// ChurnTable prints churn results side by side, one column per run.
func ChurnTable(w io.Writer, runs ...*ChurnResult) {
	fmt.Fprintf(w, "%-22s", "")
	for _, r := range runs {
		fmt.Fprintf(w, " | %14s", r.Mode)
	}
	fmt.Fprintf(w, "\n%s", strings.Repeat("-", 22))
	for range runs {
		fmt.Fprintf(w, "-+-%s", strings.Repeat("-", 14))
	}
	fmt.Fprintln(w)
	row := func(name string, f func(r *ChurnResult) string) {
		fmt.Fprintf(w, "%-22s", name)
		for _, r := range runs {
			fmt.Fprintf(w, " | %14s", f(r))
		}
		fmt.Fprintln(w)
	}
	row("connections", func(r *ChurnResult) string { return fmt.Sprint(r.Opened) })
	row("  per second", func(r *ChurnResult) string { return fmt.Sprintf("%.0f", r.Rate) })
	row("rehashes, drains", func(r *ChurnResult) string { return fmt.Sprintf("%d, %d", r.Rehashes, r.Drains) })
	row("broken", func(r *ChurnResult) string { return fmt.Sprint(r.Broken()) })
	row("  handshake failed", func(r *ChurnResult) string { return fmt.Sprint(r.Handshake) })
	row("  reset", func(r *ChurnResult) string { return fmt.Sprint(r.Reset) })
	row("  other (timeout)", func(r *ChurnResult) string { return fmt.Sprint(r.Failed) })
	row("corrupted bytes", func(r *ChurnResult) string { return fmt.Sprint(r.Corrupted) })
	row("packets tunnelled", func(r *ChurnResult) string { return fmt.Sprint(r.Tunnelled) })
	row("misses to a kernel", func(r *ChurnResult) string { return fmt.Sprint(r.Missed) })
	row("parked", func(r *ChurnResult) string { return fmt.Sprint(r.ParkIn) })
	row("  to the owner", func(r *ChurnResult) string { return fmt.Sprint(r.ParkRedirect) })
	row("  local", func(r *ChurnResult) string { return fmt.Sprint(r.ParkLocal) })
	row("  expired", func(r *ChurnResult) string { return fmt.Sprint(r.ParkExpired) })
	row("  park full", func(r *ChurnResult) string { return fmt.Sprint(r.ParkFull) })
	row("tentative expired", func(r *ChurnResult) string { return fmt.Sprint(r.TentativeExpired) })
}

// churnClients open connections at a steady rate until stop.
type churnClients struct {
	start     time.Time
	cancel    context.CancelFunc
	target    netns.NsHandle // the client namespace, closed by stop
	dialers   sync.WaitGroup
	conns     sync.WaitGroup
	opened    atomic.Int64
	completed atomic.Int64
	handshake atomic.Int64
	reset     atomic.Int64
	failed    atomic.Int64
	corrupted atomic.Uint64
	errMu     sync.Mutex // protects errs
	errs      []string
}

// churnDialers is the number of goroutines, each locked on a thread in the client
// namespace, that dial; each connection then runs on a goroutine of its own.
const churnDialers = 32

// churnTimeout bounds each step of a connection (a handshake, an echo, the close): far
// more than a few retransmissions in the lab, so that only a black hole hits it.
const churnTimeout = 5 * time.Second

// startChurn starts opening rate connections per second to addr from namespace ns.
func startChurn(ctx context.Context, ns, addr string, rate int, hold time.Duration) (*churnClients, error) {
	target, err := netns.GetFromName(ns)
	if err != nil {
		return nil, fmt.Errorf("lab: netns %s: %w", ns, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	cl := &churnClients{start: time.Now(), cancel: cancel, target: target}
	jobs := make(chan int, rate)
	for range churnDialers {
		cl.dialers.Add(1)
		go func() { // dialer, locked in ns
			defer cl.dialers.Done()
			err := dialIn(ctx, target, func(d *net.Dialer) error {
				d.Timeout = churnTimeout
				for id := range jobs {
					if ctx.Err() != nil {
						continue // stopping: drain the queue
					}
					c, err := d.DialContext(ctx, "tcp", addr)
					if err != nil {
						if ctx.Err() == nil { // else stopping: not counted
							cl.opened.Add(1)
							cl.handshake.Add(1)
							cl.note(id, "", "handshake", err)
						}
						continue
					}
					cl.opened.Add(1)
					cl.conns.Add(1)
					go func() { // one connection's exchanges
						defer cl.conns.Done()
						cl.exchange(ctx, c.(*net.TCPConn), id, hold)
					}()
				}
				return nil
			})
			if err != nil {
				cl.note(-1, "", "dialer", err)
			}
		}()
	}
	cl.dialers.Add(1)
	go func() {
		defer cl.dialers.Done()
		pace(ctx, cl.start, rate, jobs)
	}()
	return cl, nil
}

// pace sends the ids 0, 1, ... into jobs, rate per second counted from start (in
// steps of 5 ms), until ctx is done; then it closes jobs.
func pace(ctx context.Context, start time.Time, rate int, jobs chan<- int) {
	defer close(jobs)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	issued := 0
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			for due := int(now.Sub(start).Seconds() * float64(rate)); issued < due; issued++ {
				select {
				case jobs <- issued:
				case <-ctx.Done():
					return
				}
			}
		}
	}
}

// stop stops opening connections and waits for the open ones to finish. It returns
// how long connections were opened.
func (cl *churnClients) stop() time.Duration {
	cl.cancel()
	opening := time.Since(cl.start)
	cl.dialers.Wait()
	cl.conns.Wait()
	cl.target.Close()
	return opening
}

// exchange runs one connection: two exchanges, a pause, a third, a half close and
// the server's end of stream. It does not stop for ctx: a connection once open
// finishes (within churnTimeout per step).
func (cl *churnClients) exchange(_ context.Context, c *net.TCPConn, id int, hold time.Duration) {
	defer c.Close()
	local := c.LocalAddr().String()
	_ = c.SetNoDelay(true)
	want, got := make([]byte, ChunkLen), make([]byte, ChunkLen)
	echo := func(seq uint32) error {
		bad, err := echoChunk(c, want, got, id, seq, churnTimeout)
		cl.corrupted.Add(uint64(bad))
		return err
	}
	fail := func(step string, err error) {
		if IsReset(err) {
			cl.reset.Add(1)
		} else {
			cl.failed.Add(1)
		}
		cl.note(id, local, step, err)
	}
	for seq := range uint32(2) {
		if err := echo(seq); err != nil {
			fail(fmt.Sprintf("exchange %d", seq), err)
			return
		}
	}
	time.Sleep(rand.N(hold + 1))
	if err := echo(2); err != nil {
		fail("exchange 2", err)
		return
	}
	if err := c.CloseWrite(); err != nil {
		fail("close", err)
		return
	}
	_ = c.SetDeadline(time.Now().Add(churnTimeout))
	n, err := c.Read(got)
	switch {
	case n > 0:
		cl.corrupted.Add(uint64(n))
		fail("close", errors.New("bytes after the last echo"))
	case errors.Is(err, io.EOF):
		cl.completed.Add(1)
	default:
		fail("close", err) // a reset, or a timeout: the server's FIN never came
	}
}

// note keeps the first errors for the report.
func (cl *churnClients) note(id int, local, step string, err error) {
	cl.errMu.Lock()
	defer cl.errMu.Unlock()
	if len(cl.errs) < 10 {
		cl.errs = append(cl.errs, fmt.Sprintf("%.3fs connection %d %s, %s: %v", time.Since(cl.start).Seconds(), id, local, step, err))
	}
}

func (cl *churnClients) firstErrors() []string {
	cl.errMu.Lock()
	defer cl.errMu.Unlock()
	return slices.Clone(cl.errs)
}

// parkHold is an Options.EditConfig that sets tunnel.park_hold.
func parkHold(d time.Duration) func(int, string) string {
	return func(_ int, toml string) string {
		return strings.Replace(toml, "\n[tunnel]\n", fmt.Sprintf("\n[tunnel]\npark_hold = %q\n", d.String()), 1)
	}
}
