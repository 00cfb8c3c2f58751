package lab

import (
	"context"
	"fmt"
	"io"
	"slices"
	"time"
)

// RackHosts are the started hosts of rack r.
func (l *Lab) RackHosts(r int) []int {
	return slices.DeleteFunc(l.Hosts(), func(n int) bool { return l.Rack(n) != r })
}

// RackScenario is the two-rack run: racks A (h1, h3) and B (h2, h4) behind the router,
// each its own L2 domain and gossip multicast group, every host a gossip relay. The
// connections are opened to rack A (their owners are h1 and h3), the router then sends
// them to rack B (whose hosts tunnel them through the router, to the owners' routed
// addresses), and back; a relay of rack B is killed, more connections open to rack A
// and their ownership reaches rack B through its other relay; the router sends
// everything to that relay's host.
type RackScenario struct {
	Conns   int           // connections opened first (default 500)
	More    int           // connections opened after the relay is killed (default 200)
	Homingd string        // homingd executable
	Serve   []string      // Options.Serve
	Settle  time.Duration // wait for the tables, at most (default 10s)
	Step    time.Duration // traffic after each step (default 3s)
	Log     io.Writer
	KeepDir bool
}

// Run runs the two-rack scenario with homing and tears the lab down.
func (s RackScenario) Run(ctx context.Context) (res *Result, err error) {
	if s.Conns == 0 {
		s.Conns = 500
	}
	if s.More == 0 {
		s.More = 200
	}
	sc := &Scenario{Settle: s.Settle, Step: s.Step, Log: s.Log}
	sc.defaults()
	t0 := time.Now()
	res = &Result{Redirect: true, Conns: s.Conns + s.More}
	sc.logf("== homing across two racks: rack A h1,h3 and rack B h2,h4 (every host a relay), %d+%d connections", s.Conns, s.More)
	hosts := []int{1, 2, 3, 4}
	l, err := New(Options{Homingd: s.Homingd, Serve: s.Serve, Redirect: true, Log: s.Log, KeepDir: s.KeepDir,
		Racks: 2, Relays: hosts})
	if err != nil {
		return res, err
	}
	res.LabID = l.ID
	defer func() {
		res.Logs, res.PIDs, res.Elapsed = l.end(&err, err != nil || res.TotalReset() > 0, t0, s.Log)
	}()
	// AddHosts returns once every host sees the three others: those of the other rack
	// through the relays (heartbeats relayed).
	if err = l.AddHosts(ctx, hosts...); err != nil {
		return res, err
	}
	rackA, rackB := l.RackHosts(0), l.RackHosts(1)
	if err = l.SetRoute(rackA); err != nil {
		return res, err
	}
	vip := l.Service().String()
	first, err := Dial(ctx, l.NS("cli"), vip, s.Conns, 16)
	if err != nil {
		return res, fmt.Errorf("connect: %w", err)
	}
	first.Start()
	defer first.Stop()
	fleets := []*Fleet{first}
	if err = sc.converge(ctx, l, hosts, s.Conns); err != nil {
		return res, err
	}
	prev := sumCounts(fleets)
	prevTun, _ := l.Redirected(ctx)
	measure := func(name string) error {
		if err := sc.watchAll(ctx, l, fleets, name, prev); err != nil {
			return err
		}
		now := sumCounts(fleets)
		tun, _ := l.Redirected(ctx)
		res.Steps = append(res.Steps, StepResult{Name: name, Alive: now.Alive + now.Stalled, Stalled: now.Stalled,
			Reset: now.Reset - prev.Reset, Failed: now.Failed - prev.Failed, Corrupted: now.Corrupted - prev.Corrupted,
			Tunnelled: tun - prevTun})
		prev, prevTun = now, tun
		return nil
	}
	steps := []struct {
		name  string
		route []int
	}{{"rack A", rackA}, {"to rack B", rackB}, {"back to rack A", rackA}}
	for _, st := range steps {
		if err = l.SetRoute(st.route); err != nil {
			return res, err
		}
		if err = measure(st.name); err != nil {
			return res, err
		}
	}
	killed, kept := rackB[1], rackB[0]
	if err = l.Destroy(killed); err != nil {
		return res, err
	}
	sc.logf("  relay h%d destroyed (processes killed, namespace deleted)", killed)
	prevTun, _ = l.Redirected(ctx) // without the destroyed host's count
	more, err := Dial(ctx, l.NS("cli"), vip, s.More, 16)
	if err != nil {
		return res, fmt.Errorf("connect: %w", err)
	}
	more.Start()
	defer more.Stop()
	fleets = append(fleets, more)
	c := sumCounts(fleets)
	if err = sc.converge(ctx, l, []int{kept}, c.Alive+c.Stalled); err != nil {
		return res, err
	}
	if err = l.SetRoute([]int{kept}); err != nil {
		return res, err
	}
	if err = measure(fmt.Sprintf("relay h%d dead, to h%d", killed, kept)); err != nil {
		return res, err
	}
	if err = l.SetRoute(rackA); err != nil {
		return res, err
	}
	if err = measure("back to rack A"); err != nil {
		return res, err
	}
	for end := time.Now().Add(5 * time.Second); ; {
		c = sumCounts(fleets)
		if c.Stalled == 0 || time.Now().After(end) {
			break
		}
		if err = sleep(ctx, 100*time.Millisecond); err != nil {
			return res, err
		}
	}
	res.Stalled, res.Exchanges = c.Stalled, c.Exchanges
	for _, f := range fleets {
		for _, cn := range f.Ended() {
			if len(res.Ended) < 10 {
				res.Ended = append(res.Ended, fmt.Sprintf("connection %d from %s: %v", cn.ID, cn.Local, cn.Err()))
			}
		}
	}
	return res, l.Check()
}

// sumCounts adds the fleets' counts.
func sumCounts(fleets []*Fleet) Counts {
	var s Counts
	for _, f := range fleets {
		c := f.Counts()
		s.Alive += c.Alive
		s.Stalled += c.Stalled
		s.Reset += c.Reset
		s.Failed += c.Failed
		s.Corrupted += c.Corrupted
		s.Exchanges += c.Exchanges
	}
	return s
}

// watchAll is watch over several fleets.
func (s *Scenario) watchAll(ctx context.Context, l *Lab, fleets []*Fleet, name string, start Counts) error {
	end := time.Now().Add(s.Step)
	for time.Now().Before(end) {
		if err := sleep(ctx, min(time.Until(end), time.Second)); err != nil {
			return err
		}
		if err := l.Check(); err != nil {
			return err
		}
	}
	c := sumCounts(fleets)
	s.logf("  %-24s alive %5d  stalled %4d  reset %4d  corrupted bytes %d", name, c.Alive, c.Stalled,
		c.Reset+c.Failed-start.Reset-start.Failed, c.Corrupted-start.Corrupted)
	return nil
}
