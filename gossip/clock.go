package gossip

import "time"

// Clock is the node's time: the time it stamps datagrams and epochs with, and the
// timers of its protocol (heartbeats, flush and token waits, the linger, peers' down
// detection and drops, repair pacing). Network deadlines (repair exchanges, accept
// retries) are always real time. Config.Clock nil is the real clock; tests may pass a
// fake one that moves only when the test advances it (gossiptest.Clock).
type Clock interface {
	Now() time.Time
	// NewTimer returns a running timer that fires once after d.
	NewTimer(d time.Duration) Timer
	// NewTicker returns a ticker of period d (d > 0).
	NewTicker(d time.Duration) Ticker
}

// Timer is a time.Timer of a Clock.
type Timer interface {
	C() <-chan time.Time
	Reset(d time.Duration) bool
	Stop() bool
}

// Ticker is a time.Ticker of a Clock.
type Ticker interface {
	C() <-chan time.Time
	Stop()
}

// realClock is the time package's clock.
type realClock struct{}

func (realClock) Now() time.Time                   { return time.Now() }
func (realClock) NewTimer(d time.Duration) Timer   { return realTimer{time.NewTimer(d)} }
func (realClock) NewTicker(d time.Duration) Ticker { return realTicker{time.NewTicker(d)} }
func (t realTimer) C() <-chan time.Time            { return t.t.C }
func (t realTimer) Reset(d time.Duration) bool     { return t.t.Reset(d) }
func (t realTimer) Stop() bool                     { return t.t.Stop() }
func (t realTicker) C() <-chan time.Time           { return t.t.C }
func (t realTicker) Stop()                         { t.t.Stop() }

type realTimer struct{ t *time.Timer }
type realTicker struct{ t *time.Ticker }

// RealClock returns the real clock (what a nil Config.Clock means).
func RealClock() Clock { return realClock{} }
