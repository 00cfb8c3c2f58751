package gossiptest

import (
	"slices"
	"sync"
	"time"

	"github.com/homing-dev/homing/gossip"
)

// Clock is a fake gossip.Clock: its time moves only when Advance moves it, and its
// timers and tickers fire then, in deadline order. Nodes that share a Clock share its
// time. Like the time package's since Go 1.23, a timer's or ticker's channel holds at
// most one value and Reset and Stop discard a value not yet received.
type Clock struct {
	mu     sync.Mutex // protects now and timers
	now    time.Time
	timers []*fakeTimer // armed timers and tickers
}

var _ gossip.Clock = (*Clock)(nil)

// NewClock returns a Clock at start.
func NewClock(start time.Time) *Clock { return &Clock{now: start} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock d forward and fires the timers and tickers that come due,
// each at its deadline (a ticker once per Advance at most, as a real ticker drops ticks
// nobody received).
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	end := c.now.Add(d)
	for {
		slices.SortStableFunc(c.timers, func(a, b *fakeTimer) int { return a.at.Compare(b.at) })
		if len(c.timers) == 0 || c.timers[0].at.After(end) {
			break
		}
		t := c.timers[0]
		c.now = t.at
		select {
		case t.c <- t.at:
		default:
		}
		if t.period > 0 {
			for !t.at.After(end) {
				t.at = t.at.Add(t.period)
			}
		} else {
			c.timers = c.timers[1:]
		}
	}
	c.now = end
}

// NewTimer returns a timer that fires d after now.
func (c *Clock) NewTimer(d time.Duration) gossip.Timer {
	t := &fakeTimer{clock: c, c: make(chan time.Time, 1)}
	t.Reset(d)
	return t
}

// NewTicker returns a ticker of period d.
func (c *Clock) NewTicker(d time.Duration) gossip.Ticker {
	if d <= 0 {
		panic("gossiptest: non-positive ticker period")
	}
	t := &fakeTimer{clock: c, c: make(chan time.Time, 1), period: d}
	c.mu.Lock()
	t.at = c.now.Add(d)
	c.timers = append(c.timers, t)
	c.mu.Unlock()
	return fakeTicker{t}
}

// Timers returns how many timers and tickers are armed.
func (c *Clock) Timers() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

type fakeTimer struct {
	clock  *Clock
	c      chan time.Time
	at     time.Time
	period time.Duration // 0: a timer
}

func (t *fakeTimer) C() <-chan time.Time { return t.c }

// Reset re-arms the timer d after now and reports whether it was armed.
func (t *fakeTimer) Reset(d time.Duration) bool {
	c := t.clock
	c.mu.Lock()
	defer c.mu.Unlock()
	armed := t.disarmLocked()
	t.at = c.now.Add(d)
	c.timers = append(c.timers, t)
	return armed
}

// Stop disarms the timer and reports whether it was armed.
func (t *fakeTimer) Stop() bool {
	t.clock.mu.Lock()
	defer t.clock.mu.Unlock()
	return t.disarmLocked()
}

type fakeTicker struct{ *fakeTimer }

func (t fakeTicker) Stop() { t.fakeTimer.Stop() }

func (t *fakeTimer) disarmLocked() bool {
	select {
	case <-t.c:
	default:
	}
	c := t.clock
	i := slices.Index(c.timers, t)
	if i < 0 {
		return false
	}
	c.timers = slices.Delete(c.timers, i, i+1)
	return true
}
