//go:build linux

package probe

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	"github.com/homing-dev/homing/session"
)

const tcpTimeWait = 6

// stream records what a tracker emits and checks, per cookie, that the events are
// a prefix of Add, Delete, and, per key, that a Delete is for the cookie of the
// key's last Add (the consumer acts per key: Add, [Delete], Add, [Delete]...).
type stream struct {
	t      *testing.T
	events []Event
	state  map[uint64]Kind        // last event per cookie
	newest map[session.Key]uint64 // cookie of the last Add per key, until its Delete
}

func newStream(t *testing.T) *stream {
	return &stream{t: t, state: make(map[uint64]Kind), newest: make(map[session.Key]uint64)}
}

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
	newest, held := s.newest[e.Key]
	switch {
	case e.Kind == Add:
		s.newest[e.Key] = e.Cookie
	case !held || newest != e.Cookie:
		s.t.Fatalf("%v: the key's last Add is cookie %d (held %v)", e, newest, held)
	default:
		delete(s.newest, e.Key)
	}
}

// liveKeys returns, per key whose last event is an Add, that Add's cookie.
func (s *stream) liveKeys() map[session.Key]uint64 { return maps.Clone(s.newest) }

// take returns the events emitted since the last take.
func (s *stream) take() []Event {
	e := s.events
	s.events = nil
	return e
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
		a, d, _ := tr.reconcile(dumpOf(est(1)), tr.mark(), true, s.emit)
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
		a, d, _ := tr.reconcile(dumpOf(nil), mark, true, s.emit)
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
		a, d, _ := tr.reconcile(dump, tr.mark(), true, s.emit)
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

// TestTrackerKeyReuse: a client reconnects from the same port, so a new socket
// (cookie) takes the key of an announced one. The consumer acts per key: the key's
// last event must be an Add while its newest socket lives, whichever way the older
// socket's end is learned.
func TestTrackerKeyReuse(t *testing.T) {
	k := conn(1)
	lastIsAdd := func(t *testing.T, s *stream) {
		t.Helper()
		if c, ok := s.liveKeys()[k]; !ok || c != 2 {
			t.Fatalf("events %v: the key's last Add is not cookie 2's", s.events)
		}
	}
	t.Run("polled socket closes, new one announced by the ring", func(t *testing.T) {
		s := newStream(t)
		tr := newTracker(trackVIPs, false)
		// Cookie 1 predates Open: announced by the start-up sync, polled.
		tr.reconcile(dumpOf(est(1)), tr.mark(), true, s.emit)
		// The server closes it (TIME_WAIT, unmarked: no ring Delete); the client
		// reconnects from the same port: cookie 2, same key, ring Add.
		tr.event(Event{Kind: Add, Key: k, Cookie: 2}, s.emit)
		if tr.polled != 0 || len(tr.sess) != 1 {
			t.Fatalf("polled %d, %d sessions: cookie 1 not superseded", tr.polled, len(tr.sess))
		}
		// The next poll finds cookie 1 in TIME_WAIT and cookie 2 established.
		dump := append(dumpOf(map[uint64]uint8{1: tcpTimeWait}), diagSocket{key: k, state: tcpEstablished, cookie: 2})
		tr.reconcile(dump, tr.mark(), false, s.emit)
		tr.reconcile(dump, tr.mark(), true, s.emit)
		wantEvents(t, "events", s.take(), ev(Add, 1), Event{Kind: Add, Key: k, Cookie: 2})
		lastIsAdd(t, s)
		tr.event(Event{Kind: Delete, Key: k, Cookie: 2}, s.emit)
		wantEvents(t, "cookie 2 closes", s.take(), Event{Kind: Delete, Key: k, Cookie: 2})
		if len(tr.sess) != 0 || len(tr.keys) != 0 {
			t.Fatalf("%d sessions, %d keys left", len(tr.sess), len(tr.keys))
		}
	})
	t.Run("lost delete, new one announced by the ring, resync", func(t *testing.T) {
		s := newStream(t)
		tr := newTracker(trackVIPs, false)
		tr.event(ev(Add, 1), s.emit) // marked; its Delete is lost (ring full)
		tr.event(Event{Kind: Add, Key: k, Cookie: 2}, s.emit)
		dump := append(dumpOf(nil), diagSocket{key: k, state: tcpEstablished, cookie: 2})
		tr.reconcile(dump, tr.mark(), true, s.emit)
		if out := s.events; out[len(out)-1].Kind == Delete {
			t.Fatalf("events %v: the key's last event is a Delete while cookie 2 is live", out)
		}
		lastIsAdd(t, s)
	})
	t.Run("old ring delete after the new ring add", func(t *testing.T) {
		// TIME_WAIT reuse (SO_REUSEADDR): the old socket's STATE_CB to CLOSE may be
		// written after the new socket's PASSIVE_ESTABLISHED.
		s := newStream(t)
		tr := newTracker(trackVIPs, false)
		tr.event(ev(Add, 1), s.emit)
		tr.event(Event{Kind: Add, Key: k, Cookie: 2}, s.emit)
		tr.event(ev(Delete, 1), s.emit)
		wantEvents(t, "events", s.take(), ev(Add, 1), Event{Kind: Add, Key: k, Cookie: 2})
		lastIsAdd(t, s)
	})
	t.Run("resync: old socket gone, new one unannounced", func(t *testing.T) {
		// Both cookie 1's Delete and cookie 2's Add were lost: the resync deletes
		// cookie 1 before it announces cookie 2.
		s := newStream(t)
		tr := newTracker(trackVIPs, false)
		tr.event(ev(Add, 1), s.emit)
		dump := append(dumpOf(nil), diagSocket{key: k, state: tcpEstablished, cookie: 2})
		tr.reconcile(dump, tr.mark(), true, s.emit)
		wantEvents(t, "events", s.take(), ev(Add, 1), ev(Delete, 1), Event{Kind: Add, Key: k, Cookie: 2})
		lastIsAdd(t, s)
	})
	t.Run("dump older than the ring", func(t *testing.T) {
		// The dump shows cookie 1 established (its Add lost); then it closes and the
		// client reconnects: cookie 2's ring Add is read by the second drain. The
		// dump's cookie 1 must not be announced over cookie 2: a later poll would
		// find it gone and delete the key.
		s := newStream(t)
		tr := newTracker(trackVIPs, false)
		mark := tr.mark()
		tr.event(Event{Kind: Add, Key: k, Cookie: 2}, s.emit)
		tr.reconcile(dumpOf(est(1)), mark, true, s.emit)
		tr.reconcile(append(dumpOf(nil), diagSocket{key: k, state: tcpEstablished, cookie: 2}), tr.mark(), false, s.emit)
		wantEvents(t, "events", s.take(), Event{Kind: Add, Key: k, Cookie: 2})
		lastIsAdd(t, s)
	})
	t.Run("superseded cookie not announced again", func(t *testing.T) {
		// A dump that still shows the old socket established (it was read before the
		// socket closed) must not bring it back over the new one.
		s := newStream(t)
		tr := newTracker(trackVIPs, false)
		tr.reconcile(dumpOf(est(1)), tr.mark(), true, s.emit)
		tr.event(Event{Kind: Add, Key: k, Cookie: 2}, s.emit)
		s.take()
		dump := append(dumpOf(est(1)), diagSocket{key: k, state: tcpEstablished, cookie: 2})
		tr.reconcile(dump, tr.mark(), true, s.emit)
		wantEvents(t, "resync", s.take())
		lastIsAdd(t, s)
	})
}

// confirmer is a fake exact lookup: the cookies it reports alive, the calls.
type confirmer struct {
	alive map[uint64]bool
	err   error
	calls []uint64
}

func (c *confirmer) confirm(k session.Key, cookie uint64) (bool, error) {
	c.calls = append(c.calls, cookie)
	if k != conn(cookie) {
		return false, fmt.Errorf("cookie %d asked with key %v", cookie, k)
	}
	return c.alive[cookie], c.err
}

// TestTrackerConfirm: a dump may miss a live socket (tracker, case 8), so a sync
// deletes an entry only once an exact lookup confirms its socket is not alive.
func TestTrackerConfirm(t *testing.T) {
	t.Run("dump misses live sockets", func(t *testing.T) {
		s := newStream(t)
		tr := newTracker(trackVIPs, false)
		c := &confirmer{alive: map[uint64]bool{1: true, 3: true}}
		tr.confirm = c.confirm
		tr.reconcile(dumpOf(est(3)), tr.mark(), true, s.emit) // 3: polled
		tr.event(ev(Add, 1), s.emit)                          // marked
		tr.event(ev(Add, 2), s.emit)                          // marked, its Delete lost
		tr.event(ev(Add, 4), s.emit)
		s.take()
		// The dump misses 1 and 3 (alive), shows 4; 2 is gone.
		a, d, err := tr.reconcile(dumpOf(est(4)), tr.mark(), true, s.emit)
		if err != nil || a != 0 || d != 1 {
			t.Fatalf("added %d deleted %d, %v", a, d, err)
		}
		wantEvents(t, "resync", s.take(), ev(Delete, 2))
		slices.Sort(c.calls)
		if !slices.Equal(c.calls, []uint64{1, 2, 3}) {
			t.Fatalf("confirmed %v, want the entries the dump does not show: [1 2 3]", c.calls)
		}
		// A poll judges only the polled entry (3), and keeps it.
		c.calls = nil
		tr.reconcile(dumpOf(nil), tr.mark(), false, s.emit)
		wantEvents(t, "poll", s.take())
		if !slices.Equal(c.calls, []uint64{3}) {
			t.Fatalf("poll confirmed %v, want [3]", c.calls)
		}
		// Ring Deletes need no lookup.
		c.calls = nil
		tr.event(ev(Delete, 1), s.emit)
		wantEvents(t, "ring delete", s.take(), ev(Delete, 1))
		if len(c.calls) != 0 {
			t.Fatalf("ring Delete confirmed %v", c.calls)
		}
	})
	t.Run("failed lookup keeps the entry", func(t *testing.T) {
		s := newStream(t)
		tr := newTracker(trackVIPs, false)
		errLookup := errors.New("lookup failed")
		c := &confirmer{err: errLookup}
		tr.confirm = c.confirm
		tr.event(ev(Add, 1), s.emit)
		tr.event(ev(Add, 2), s.emit)
		s.take()
		a, d, err := tr.reconcile(dumpOf(est(3)), tr.mark(), true, s.emit)
		if !errors.Is(err, errLookup) || a != 1 || d != 0 {
			t.Fatalf("added %d deleted %d, %v; want 1, 0, the lookup's error", a, d, err)
		}
		if len(c.calls) != 1 {
			t.Fatalf("%d lookups after the first failed", len(c.calls))
		}
		wantEvents(t, "failed resync still announces", s.take(), ev(Add, 3))
		c.err = nil // Run syncs again later
		_, d, err = tr.reconcile(dumpOf(est(3)), tr.mark(), true, s.emit)
		got := s.take()
		slices.SortFunc(got, func(a, b Event) int { return int(a.Cookie) - int(b.Cookie) })
		if err != nil || d != 2 {
			t.Fatalf("retry: deleted %d, %v", d, err)
		}
		wantEvents(t, "retry", got, ev(Delete, 1), ev(Delete, 2))
	})
}

// simConn is a socket of the simulated kernel.
type simConn struct {
	key     session.Key
	state   uint8 // tcpEstablished, tcpCloseWait (closing, Delete written), or 0 (gone)
	pending bool  // established, Add not written yet (case 2)
	marked  bool  // Add reached the ring
}

// TestTrackerModel runs the tracker against a simulated kernel in random orders:
// sockets are established (Add written a step later), close (Delete written if
// marked, the socket leaves the hash a step later), events are lost at random, and
// Run reads the ring, polls and resyncs with kernel steps between its dump and its
// second drain. New connections often reuse the key of a closing or closed one (a
// client reconnecting from the same port). Dumps miss live sockets at random (case
// 8), and the tracker confirms with the kernel's truth. The stream must keep the invariants (per
// cookie and per key), never delete a socket still established, and after a last
// resync the announced sessions must be the established sockets, one per key.
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
	keys := make(map[uint64]session.Key) // of every cookie so far
	var ring []Event
	var next uint64 = 1
	ev := func(k Kind, c uint64) Event { return Event{Kind: k, Key: keys[c], Cookie: c} }
	skipRate := rng.Float64() * 0.3 // of live sockets a dump misses
	tr.confirm = func(k session.Key, c uint64) (bool, error) {
		if k != keys[c] {
			return false, fmt.Errorf("cookie %d confirmed with key %v", c, k)
		}
		sc, ok := conns[c]
		return ok && alive(sc.state), nil
	}
	emit := func(e Event) {
		t.Helper()
		if e.Kind == Delete {
			// Neither its socket nor an announced one of the same key is established.
			for c, sc := range conns {
				if sc.key == e.Key && sc.state == tcpEstablished && (c == e.Cookie || s.state[c] == Add) {
					t.Fatalf("%v while cookie %d of that key is established", e, c)
				}
			}
		}
		s.emit(e)
	}
	// newKey is a fresh key, or the key of a closing socket, or of a closed one,
	// that no established socket holds.
	newKey := func() session.Key {
		if rng.IntN(2) == 0 {
			busy := make(map[session.Key]bool)
			for _, sc := range conns {
				if sc.state == tcpEstablished {
					busy[sc.key] = true
				}
			}
			for _, sc := range conns {
				if sc.state == tcpCloseWait && !busy[sc.key] {
					return sc.key
				}
			}
			if next > 1 {
				if k := keys[1+rng.Uint64N(next-1)]; !busy[k] {
					return k
				}
			}
		}
		return conn(next)
	}
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
		switch rng.IntN(5) {
		case 0: // a connection is established
			k := newKey()
			keys[next] = k
			conns[next] = &simConn{key: k, state: tcpEstablished, pending: true}
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
		case 4: // a connection closes and its client reconnects from the same port
			for c, sc := range conns {
				if sc.state == tcpEstablished && !sc.pending {
					sc.state = tcpCloseWait
					if sc.marked {
						write(ev(Delete, c))
					}
					keys[next] = sc.key
					conns[next] = &simConn{key: sc.key, state: tcpEstablished, pending: true}
					next++
					return
				}
			}
		}
	}
	dump := func() []diagSocket {
		d := dumpOf(nil)
		for c, sc := range conns {
			if rng.Float64() >= skipRate {
				d = append(d, diagSocket{key: sc.key, state: sc.state, cookie: c})
			}
		}
		return d
	}
	drain := func() {
		for len(ring) > 0 {
			e := ring[0]
			ring = ring[1:]
			tr.event(e, emit)
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
		if _, _, err := tr.reconcile(d, mark, full, emit); err != nil {
			t.Fatal(err)
		}
	}
	sync(true, rng.IntN(4)) // start
	for range 400 {
		switch r := rng.IntN(20); {
		case r < 12:
			kernelStep()
		case r < 16:
			if len(ring) > 0 {
				e := ring[0]
				ring = ring[1:]
				tr.event(e, emit)
			}
		case r < 17:
			sync(false, rng.IntN(4))
		case r < 19:
			sync(true, rng.IntN(4))
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
	skipRate = 0
	sync(true, 0)
	want := make(map[session.Key]uint64)
	for c, sc := range conns {
		want[sc.key] = c
	}
	if got := s.liveKeys(); !maps.Equal(got, want) {
		t.Fatalf("loss rate %.2f: announced %v, established %v", lossRate, got, want)
	}
	if len(tr.sess) != len(want) || len(tr.keys) != len(want) {
		t.Fatalf("%d sessions, %d keys held, %d established", len(tr.sess), len(tr.keys), len(want))
	}
	for c, en := range tr.sess {
		if en.key != keys[c] || tr.keys[en.key] != c {
			t.Fatalf("cookie %d: key %v, held by %d", c, en.key, tr.keys[en.key])
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
