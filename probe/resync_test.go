//go:build linux

package probe

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/homing-dev/homing/session"
)

// checkStream requires, per cookie, at most one Add and then at most one Delete.
func (c *collector) checkStream(t *testing.T) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	last := make(map[uint64]Kind)
	for i, e := range c.events {
		if e.Kind == Tentative {
			continue
		}
		prev, seen := last[e.Cookie]
		if (e.Kind == Add && seen) || (e.Kind == Delete && prev != Add) {
			t.Fatalf("event %d: %v after %v (seen %v)", i, e, prev, seen)
		}
		last[e.Cookie] = e.Kind
	}
}

// live returns the sessions announced and not deleted, by cookie.
func (c *collector) live() map[uint64]session.Key {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := make(map[uint64]session.Key)
	for _, e := range c.events {
		switch e.Kind {
		case Add:
			m[e.Cookie] = e.Key
		case Delete:
			delete(m, e.Cookie)
		}
	}
	return m
}

// gatedProbe runs p with an emit that blocks while the gate is held.
func gatedProbe(t *testing.T, p *Probe) (*collector, *gate) {
	t.Helper()
	c := &collector{done: make(chan error, 1)}
	g := &gate{}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		c.done <- p.Run(ctx, func(e Event) {
			g.pass()
			c.mu.Lock()
			c.events = append(c.events, e)
			c.mu.Unlock()
		})
	}()
	t.Cleanup(func() {
		g.release()
		cancel()
		if err := <-c.done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run returned %v, want context.Canceled", err)
		}
		if err := p.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return c, g
}

// gate makes emit slow: while held, the next emit waits for the release.
type gate struct{ ch atomic.Pointer[chan struct{}] }

func (g *gate) hold() {
	ch := make(chan struct{})
	g.ch.Store(&ch)
}

func (g *gate) release() {
	if ch := g.ch.Swap(nil); ch != nil {
		close(*ch)
	}
}

func (g *gate) pass() {
	if ch := g.ch.Load(); ch != nil {
		<-*ch
	}
}

// truth lists the established VIP connections of the netns through h, by cookie.
func truth(t *testing.T, h *netlink.Handle) map[uint64]session.Key {
	t.Helper()
	socks, err := dumpTCP(h)
	if err != nil {
		t.Fatal(err)
	}
	m := make(map[uint64]session.Key)
	for _, s := range established(socks, testVIPs) {
		m[s.cookie] = s.key
	}
	return m
}

// converge waits until the sessions c announced are the established VIP connections
// and stay so for a moment; it returns how long that took.
func converge(t *testing.T, what string, c *collector, h *netlink.Handle, want int) time.Duration {
	t.Helper()
	start := time.Now()
	var live, est map[uint64]session.Key
	for time.Since(start) < 20*time.Second {
		live, est = c.live(), truth(t, h)
		if len(est) == want && maps.Equal(live, est) {
			took := time.Since(start)
			time.Sleep(300 * time.Millisecond) // anything extra would show up now
			if live, est = c.live(), truth(t, h); len(est) == want && maps.Equal(live, est) {
				return took
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	missing, extra := 0, 0
	for k := range est {
		if _, ok := live[k]; !ok {
			missing++
		}
	}
	for k := range live {
		if _, ok := est[k]; !ok {
			extra++
		}
	}
	t.Fatalf("%s: %d sessions announced, %d established (want %d): %d missing, %d stale",
		what, len(live), len(est), want, missing, extra)
	return 0
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(b), "\n"))
	return len(b), nil
}

// TestProbeResync overflows a one-page ring while emit is stuck: 2000 connections
// opened at once, then 300 marked connections and 1000 of the first ones closed at
// once. After each burst the kernel has lost events (Lost grows) and Run's resync
// brings the announced sessions (Adds minus Deletes, by cookie) back to exactly the
// established VIP connections; no cookie gets two Adds or a Delete without its Add.
// The poll interval is a minute: the repair comes from the resyncs, not from polls.
func TestProbeResync(t *testing.T) {
	ns, cg, h, vip := vipLab(t)

	var p *Probe
	var diag *netlink.Handle
	inNetns(t, ns, func() {
		var err error
		p, err = Open(Config{
			CgroupPath: cg, VIPs: testVIPs, RingBytes: os.Getpagesize(),
			ResyncInterval: time.Minute, Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil)),
		})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		if diag, err = newDiagHandle(); err != nil {
			t.Fatal(err)
		}
	})
	defer diag.Close()
	c, g := gatedProbe(t, p)
	<-p.Synced()

	// 1. Lost Adds: emit is stuck on the first event while 2000 connections open.
	g.hold()
	h.dial("a", 1000, client4, vip)
	h.dial("b", 1000, client4, vip)
	lost1 := p.Lost()
	g.release()
	took := converge(t, "after 2000 connections", c, diag, 2000)
	st := p.Stats()
	t.Logf("2000 connections: %d events lost, converged %v after emit resumed; %+v", lost1, took, st)
	if lost1 < 1000 {
		t.Fatalf("only %d events lost: the ring did not overflow", lost1)
	}
	if st.Resyncs == 0 || st.ResyncAdds == 0 {
		t.Fatalf("no resync announced the lost connections: %+v", st)
	}

	// 2. Lost Deletes: 300 connections announced by the ring (marked), then closed
	// with 1000 of the first ones (mostly unmarked, announced by the resync) while
	// emit is stuck again.
	h.dial("c", 300, client4, vip)
	converge(t, "after 300 more", c, diag, 2300)
	before := p.Stats()
	g.hold()
	h.do("close c client-first")
	h.do("close a rst")
	lost2 := p.Lost() - before.Lost
	g.release()
	took = converge(t, "after closing 1300", c, diag, 1000)
	st = p.Stats()
	t.Logf("1300 closed: %d events lost, converged %v after emit resumed; %+v", lost2, took, st)
	if lost2 == 0 {
		t.Fatal("no Delete lost: the ring did not overflow")
	}
	if st.Resyncs == before.Resyncs || st.ResyncDeletes == before.ResyncDeletes {
		t.Fatalf("no resync deleted the closed connections: before %+v, after %+v", before, st)
	}
	c.checkStream(t)
	if got := uint64(len(c.live())); st.Sessions != got {
		t.Errorf("Stats.Sessions %d, %d sessions announced", st.Sessions, got)
	}
}

// TestProbeNoLossNoResync: without a lost event Run never resyncs, however often
// it checks.
func TestProbeNoLossNoResync(t *testing.T) {
	ns, cg, h, vip := vipLab(t)
	old := h.dial("old", 10, client4, vip) // polled: partial syncs every 20 ms

	var p *Probe
	inNetns(t, ns, func() {
		var err error
		p, err = Open(Config{CgroupPath: cg, VIPs: testVIPs, ResyncInterval: 20 * time.Millisecond})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
	})
	c := runProbe(t, p)
	keys := h.dial("new", 300, client4, vip)
	c.waitFor(t, "adds", Add, append(keys, old...))
	h.do("close new server-first")
	h.do("close old client-first")
	c.waitFor(t, "deletes", Delete, append(keys, old...))
	c.checkStream(t)
	want := Stats{}
	if st := p.Stats(); st != want {
		t.Fatalf("stats %+v, want all zero", st)
	}
}
