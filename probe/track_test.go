//go:build linux

package probe

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	"github.com/homing-dev/homing/session"
)

const tcpTimeWait = 6

// stream records what a tracker emits and checks, per cookie, that the events are
// a prefix of Add, Delete.
type stream struct {
	t      *testing.T
	events []Event
	state  map[uint64]Kind // last event per cookie
}

func newStream(t *testing.T) *stream { return &stream{t: t, state: make(map[uint64]Kind)} }

func (s *stream) emit(e Event) {
	s.t.Helper()
	s.events = append(s.events, e)
	if e.Kind == Tentative {
		return
	}
	prev, seen := s.state[e.Cookie]
	switch {
	case e.Kind == Add && seen:
		s.t.Fatalf("%v after %v", e, prev)
	case e.Kind == Delete && prev != Add:
		s.t.Fatalf("%v without its Add (last %v, seen %v)", e, prev, seen)
	}
	s.state[e.Cookie] = e.Kind
}

// take returns the events emitted since the last take.
func (s *stream) take() []Event {
	e := s.events
	s.events = nil
	return e
}

// live returns the cookies added and not deleted, sorted.
func (s *stream) live() []uint64 {
	var out []uint64
	for c, k := range s.state {
		if k == Add {
			out = append(out, c)
		}
	}
	slices.Sort(out)
	return out
}

var trackVIPs = []netip.Prefix{netip.MustParsePrefix("198.19.255.1/32")}

func conn(cookie uint64) session.Key {
	return session.Key{
		Src: netip.MustParseAddr("198.18.100.2"), SrcPort: uint16(10000 + cookie),
		Dst: netip.MustParseAddr("198.19.255.1"), DstPort: 80, Proto: session.TCP,
	}
}

func ev(k Kind, cookie uint64) Event { return Event{Kind: k, Key: conn(cookie), Cookie: cookie} }

// dumpOf is a sock_diag dump: a listener on the VIP port, and the given sockets.
func dumpOf(states map[uint64]uint8) []diagSocket {
	out := []diagSocket{{key: session.Key{Dst: netip.MustParseAddr("198.19.255.1"), DstPort: 80, Proto: session.TCP}, state: tcpListen, cookie: 1 << 40}}
	for c, st := range states {
		out = append(out, diagSocket{key: conn(c), state: st, cookie: c})
	}
	return out
}

func est(cookies ...uint64) map[uint64]uint8 {
	m := make(map[uint64]uint8)
	for _, c := range cookies {
		m[c] = tcpEstablished
	}
	return m
}

func wantEvents(t *testing.T, what string, got []Event, want ...Event) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("%s: emitted %v, want %v", what, got, want)
	}
}

// TestTrackerRaces walks the cases of the tracker's comment one by one.
func TestTrackerRaces(t *testing.T) {
	t.Run("ring", func(t *testing.T) {
		s := newStream(t)
		tr := newTracker(trackVIPs, false)
		tr.event(ev(Tentative, 1), s.emit)
		tr.event(ev(Add, 1), s.emit)
		tr.event(ev(Delete, 1), s.emit)
		tr.event(ev(Delete, 1), s.emit) // cannot happen; dropped all the same
		tr.event(ev(Delete, 2), s.emit) // Delete of a cookie never added: dropped
		wantEvents(t, "ring", s.take(), ev(Tentative, 1), ev(Add, 1), ev(Delete, 1))
	})
	t.Run("lost add then poll", func(t *testing.T) {
		s := newStream(t)
		tr := newTracker(trackVIPs, false)
		a, d := tr.reconcile(dumpOf(est(1)), tr.mark(), true, s.emit)
		wantEvents(t, "resync", s.take(), ev(Add, 1))
		if a != 1 || d != 0 || tr.polled != 1 {
			t.Fatalf("added %d deleted %d polled %d", a, d, tr.polled)
		}
		tr.reconcile(dumpOf(est(1)), tr.mark(), false, s.emit)
		wantEvents(t, "poll, alive", s.take())
		tr.reconcile(dumpOf(nil), tr.mark(), false, s.emit)
		wantEvents(t, "poll, gone", s.take(), ev(Delete, 1))
		if tr.polled != 0 || len(tr.sess) != 0 {
			t.Fatalf("polled %d, %d sessions", tr.polled, len(tr.sess))
		}
	})
	t.Run("case 1: add read by the second drain", func(t *testing.T) {
		s := newStream(t)
		tr := newTracker(trackVIPs, false)
		mark := tr.mark()
		tr.event(ev(Add, 1), s.emit)
		tr.reconcile(dumpOf(est(1)), mark, true, s.emit)
		wantEvents(t, "sync", s.take(), ev(Add, 1))
		if tr.polled != 0 {
			t.Fatal("a ring Add is polled")
		}
	})
	t.Run("case 2: add after the sync announced it", func(t *testing.T) {
		s := newStream(t)
		tr := newTracker(trackVIPs, false)
		tr.reconcile(dumpOf(est(1, 2)), tr.mark(), true, s.emit)
		s.take()
		tr.event(ev(Add, 1), s.emit)
		tr.event(ev(Add, 2), s.emit)
		wantEvents(t, "late ring adds", s.take())
		if tr.polled != 0 {
			t.Fatalf("polled %d after the ring reported both", tr.polled)
		}
		tr.event(ev(Delete, 1), s.emit)
		wantEvents(t, "ring delete", s.take(), ev(Delete, 1))
		tr.reconcile(dumpOf(nil), tr.mark(), true, s.emit) // 2's ring Delete was lost
		tr.event(ev(Delete, 2), s.emit)                    // or comes after the resync
		wantEvents(t, "resync", s.take(), ev(Delete, 2))
	})
	t.Run("case 3: established after the mark", func(t *testing.T) {
		s := newStream(t)
		tr := newTracker(trackVIPs, false)
		mark := tr.mark()
		tr.event(ev(Add, 1), s.emit) // second drain; the dump missed it
		a, d := tr.reconcile(dumpOf(nil), mark, true, s.emit)
		wantEvents(t, "sync", s.take(), ev(Add, 1))
		if a != 0 || d != 0 {
			t.Fatalf("added %d deleted %d", a, d)
		}
	})
	t.Run("case 5: delete read before the socket left the hash", func(t *testing.T) {
		s := newStream(t)
		tr := newTracker(trackVIPs, false)
		tr.event(ev(Add, 1), s.emit)
		tr.event(ev(Delete, 1), s.emit)
		s.take()
		tr.rotate()
		tr.reconcile(dumpOf(est(1)), tr.mark(), true, s.emit)
		wantEvents(t, "dump shows it established", s.take())
		tr.rotate() // past closedKeep: only then would it be announced again
		if _, ok := tr.closedPrev[1]; ok || len(tr.closed) != 0 {
			t.Fatal("closed cookies not forgotten after two rotations")
		}
	})
	t.Run("case 6 and lost delete", func(t *testing.T) {
		s := newStream(t)
		tr := newTracker(trackVIPs, false)
		tr.event(ev(Add, 1), s.emit)
		tr.event(ev(Add, 2), s.emit)
		tr.event(ev(Add, 3), s.emit)
		s.take()
		dump := dumpOf(map[uint64]uint8{1: tcpTimeWait, 3: tcpCloseWait})
		tr.reconcile(dump, tr.mark(), false, s.emit)
		wantEvents(t, "poll leaves marked sockets to the ring", s.take())
		a, d := tr.reconcile(dump, tr.mark(), true, s.emit)
		got := s.take()
		slices.SortFunc(got, func(a, b Event) int { return int(a.Cookie) - int(b.Cookie) })
		wantEvents(t, "resync", got, ev(Delete, 1), ev(Delete, 2))
		if a != 0 || d != 2 {
			t.Fatalf("added %d deleted %d", a, d)
		}
		tr.event(ev(Delete, 1), s.emit)
		wantEvents(t, "ring delete after the resync's", s.take())
	})
	t.Run("not announced", func(t *testing.T) {
		s := newStream(t)
		tr := newTracker(trackVIPs, false)
		dump := dumpOf(map[uint64]uint8{1: tcpSynRecv, 2: tcpCloseWait, 3: tcpTimeWait})
		other := conn(4)
		other.Dst = netip.MustParseAddr("198.18.77.1")
		noListener := conn(5)
		noListener.DstPort = 81
		dump = append(dump, diagSocket{key: other, state: tcpEstablished, cookie: 4},
			diagSocket{key: noListener, state: tcpEstablished, cookie: 5})
		tr.reconcile(dump, tr.mark(), true, s.emit)
		wantEvents(t, "resync", s.take())
	})
	t.Run("all netns", func(t *testing.T) {
		s := newStream(t)
		tr := newTracker(trackVIPs, true)
		tr.event(ev(Add, 1), s.emit) // another netns, or this one
		tr.event(ev(Add, 2), s.emit)
		s.take()
		tr.reconcile(dumpOf(est(2)), tr.mark(), true, s.emit)
		wantEvents(t, "never seen by a dump: not judged", s.take())
		tr.reconcile(dumpOf(nil), tr.mark(), true, s.emit)
		wantEvents(t, "seen, then gone", s.take(), ev(Delete, 2))
	})
}

// simConn is a socket of the simulated kernel.
type simConn struct {
	state   uint8 // tcpEstablished, tcpCloseWait (closing, Delete written), or 0 (gone)
	pending bool  // established, Add not written yet (case 2)
	marked  bool  // Add reached the ring
}

// TestTrackerModel runs the tracker against a simulated kernel in random orders:
// sockets are established (Add written a step later), close (Delete written if
// marked, the socket leaves the hash a step later), events are lost at random, and
// Run reads the ring, polls and resyncs with kernel steps between its dump and its
// second drain. The stream must keep the invariant, and after a last resync the
// announced sessions must be the established sockets.
func TestTrackerModel(t *testing.T) {
	for seed := range uint64(300) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { simulate(t, seed) })
	}
}

func simulate(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 1))
	lossRate := rng.Float64() * 0.5
	s := newStream(t)
	tr := newTracker(trackVIPs, false)
	conns := make(map[uint64]*simConn)
	var ring []Event
	var next uint64 = 1
	write := func(e Event) bool {
		if rng.Float64() < lossRate {
			return false
		}
		ring = append(ring, e)
		return true
	}
	closing := func() bool {
		for _, c := range conns {
			if c.state == tcpCloseWait {
				return true
			}
		}
		return false
	}
	kernelStep := func() {
		switch rng.IntN(4) {
		case 0: // a connection is established
			conns[next] = &simConn{state: tcpEstablished, pending: true}
			next++
			return
		case 1: // its Add is written
			for c, sc := range conns {
				if sc.pending {
					sc.pending = false
					sc.marked = write(ev(Add, c))
					return
				}
			}
		case 2: // a connection closes: Delete written while still hashed
			c := 1 + rng.Uint64N(next)
			if sc, ok := conns[c]; ok && sc.state == tcpEstablished && !sc.pending {
				sc.state = tcpCloseWait
				if sc.marked {
					write(ev(Delete, c))
				}
			}
		case 3: // it leaves the hash
			for c, sc := range conns {
				if sc.state == tcpCloseWait {
					delete(conns, c)
					return
				}
			}
		}
	}
	dump := func() []diagSocket {
		st := make(map[uint64]uint8)
		for c, sc := range conns {
			st[c] = sc.state
		}
		return dumpOf(st)
	}
	drain := func() {
		for len(ring) > 0 {
			e := ring[0]
			ring = ring[1:]
			tr.event(e, s.emit)
		}
	}
	sync := func(full bool, steps int) {
		drain()
		mark := tr.mark()
		d := dump()
		for range steps {
			kernelStep()
		}
		drain()
		tr.reconcile(d, mark, full, s.emit)
	}
	sync(true, rng.IntN(3)) // start
	for range 400 {
		switch r := rng.IntN(20); {
		case r < 12:
			kernelStep()
		case r < 16:
			if len(ring) > 0 {
				e := ring[0]
				ring = ring[1:]
				tr.event(e, s.emit)
			}
		case r < 17:
			sync(false, rng.IntN(3))
		case r < 19:
			sync(true, rng.IntN(3))
		default:
			// Rotation every closedKeep: the model keeps a socket in the hash after
			// its Delete for less than that (case 5).
			if !closing() {
				tr.rotate()
			}
		}
	}
	// Quiesce the kernel, then the resync Run does after a loss.
	for _, sc := range conns {
		if sc.pending {
			sc.pending = false
		}
	}
	for c, sc := range conns {
		if sc.state == tcpCloseWait {
			delete(conns, c)
		}
	}
	sync(true, 0)
	var want []uint64
	for c := range conns {
		want = append(want, c)
	}
	slices.Sort(want)
	if got := s.live(); !slices.Equal(got, want) {
		t.Fatalf("loss rate %.2f: announced %v, established %v", lossRate, got, want)
	}
	for c, en := range tr.sess {
		if en.key != conn(c) {
			t.Fatalf("cookie %d: key %v", c, en.key)
		}
	}
}

// BenchmarkTrackerEvent is the cost the tracker adds to each ring record: an Add
// and its Delete per iteration, with 10000 other sessions held.
func BenchmarkTrackerEvent(b *testing.B) {
	tr := newTracker(trackVIPs, false)
	nop := func(Event) {}
	for c := range uint64(10000) {
		tr.event(ev(Add, 1<<32+c), nop)
	}
	add, del := ev(Add, 0), ev(Delete, 0)
	b.ReportAllocs()
	for i := range uint64(b.N) {
		add.Cookie, del.Cookie = i, i
		tr.event(add, nop)
		tr.event(del, nop)
		if i%1024 == 0 {
			tr.rotate()
		}
	}
}
