package gossiptest

import (
	"testing"
	"time"
)

func fired(c <-chan time.Time) (time.Time, bool) {
	select {
	case t := <-c:
		return t, true
	default:
		return time.Time{}, false
	}
}

func TestClock(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	c := NewClock(t0)
	tm := c.NewTimer(10 * time.Millisecond)
	tk := c.NewTicker(4 * time.Millisecond)
	c.Advance(9 * time.Millisecond)
	if _, ok := fired(tm.C()); ok {
		t.Fatal("timer fired early")
	}
	if at, ok := fired(tk.C()); !ok || !at.Equal(t0.Add(4*time.Millisecond)) {
		t.Fatalf("ticker: %v %v, want the first tick at 4ms", at, ok)
	}
	c.Advance(time.Millisecond)
	if at, ok := fired(tm.C()); !ok || !at.Equal(t0.Add(10*time.Millisecond)) {
		t.Fatalf("timer: %v %v", at, ok)
	}
	if got := c.Now(); !got.Equal(t0.Add(10 * time.Millisecond)) {
		t.Fatalf("now %v", got)
	}
	// The tick at 8ms found the 4ms one not yet received: dropped, as a real
	// ticker drops it. The next is at 12ms.
	if at, ok := fired(tk.C()); ok {
		t.Fatalf("ticker: %v, want none at 10ms", at)
	}
	c.Advance(2 * time.Millisecond)
	if at, ok := fired(tk.C()); !ok || !at.Equal(t0.Add(12*time.Millisecond)) {
		t.Fatalf("ticker: %v %v, want the tick at 12ms", at, ok)
	}
	// Reset discards a value not received and re-arms from now.
	if tm.Reset(3 * time.Millisecond) {
		t.Error("Reset of a fired timer reports it armed")
	}
	c.Advance(time.Millisecond)
	if !tm.Reset(time.Hour) {
		t.Error("Reset of an armed timer reports it not armed")
	}
	if _, ok := fired(tm.C()); ok {
		t.Error("value kept across Reset")
	}
	tk.Stop()
	if tm.Stop(); c.Timers() != 0 {
		t.Errorf("%d timers armed after Stop", c.Timers())
	}
}
