package daemon

import (
	"errors"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/homing-dev/homing/config"
	"github.com/homing-dev/homing/ctl"
	"github.com/homing-dev/homing/session"
)

// fakeLearn is the lcores' rings: the reports the next drain returns, and the ticks.
type fakeLearn struct {
	next  []session.Key
	ticks int
}

func (f *fakeLearn) DrainLearned(dst []session.Key) []session.Key {
	dst = append(dst, f.next...)
	f.next = nil
	return dst
}

func (f *fakeLearn) LearnTick() { f.ticks++ }

func udpFlow(sport, dport uint16) session.Key {
	return session.Key{Src: netip.MustParseAddr("198.18.100.2"), Dst: netip.MustParseAddr("198.19.255.1"),
		SrcPort: sport, DstPort: dport, Proto: session.UDP}
}

// learnerRecord is what a test learner (newRecordingLearner) did: the ownership it
// claimed as host 1 (owners, which a test may change as another host), its claims and
// deletes in order.
type learnerRecord struct {
	owners          map[session.Key]uint16
	claims, deletes []session.Key
}

// newRecordingLearner returns a learner of ports 443 (idle 10 s) and 4433 (idle 2 s) as
// host 1 on a fake source, recording into rec; an error fails the test.
func newRecordingLearner(t *testing.T) (*fakeLearn, *udpLearner, *learnerRecord) {
	src := &fakeLearn{}
	l := newUDPLearner(src, 1, []config.UDPSession{{Port: 443, IdleTimeout: 10 * time.Second}, {Port: 4433, IdleTimeout: 2 * time.Second}})
	rec := &learnerRecord{owners: map[session.Key]uint16{}}
	l.owner = func(k session.Key) (session.Owner, bool) {
		h, ok := rec.owners[k]
		return session.Owner{Host: h}, ok
	}
	l.claim = func(k session.Key) error {
		rec.claims = append(rec.claims, k)
		rec.owners[k] = 1
		return nil
	}
	l.delete = func(k session.Key) error {
		rec.deletes = append(rec.deletes, k)
		delete(rec.owners, k)
		return nil
	}
	l.onErr = func(op string, k session.Key, err error) { t.Errorf("%s %v: %v", op, k, err) }
	return src, l, rec
}

// TestUDPLearner: a reported flow is claimed once; reported again it is refreshed
// without a claim (nothing gossiped) unless another host claimed it since; a flow not
// reported for its port's idle timeout is deleted if it is still this host's; each
// sweep starts a refresh tick.
func TestUDPLearner(t *testing.T) {
	src, l, rec := newRecordingLearner(t)
	t0 := time.Unix(1000, 0)
	a, b, c, plain := udpFlow(50000, 443), udpFlow(50001, 4433), udpFlow(50002, 443), udpFlow(50003, 53)
	src.next = []session.Key{a, b, plain}
	l.poll(t0)
	if !slices.Equal(rec.claims, []session.Key{a, b}) {
		t.Fatalf("rec.claims %v", rec.claims)
	}
	// Refreshes: a and b again, nothing claimed; c is new.
	src.next = []session.Key{a, b, c}
	l.poll(t0.Add(time.Second))
	if st := l.Stats(); !slices.Equal(rec.claims, []session.Key{a, b, c}) || st.Refreshed != 2 || st.Learned != 3 || st.Flows != 3 {
		t.Fatalf("rec.claims %v stats %+v", rec.claims, st)
	}
	// Another host rec.claims c; this host answers it again: claimed back.
	rec.owners[c] = 2
	src.next = []session.Key{c}
	l.poll(t0.Add(2 * time.Second))
	if len(rec.claims) != 4 || rec.claims[3] != c {
		t.Fatalf("c not claimed back: %v", rec.claims)
	}
	// At 3.5 s b (2 s idle timeout, last seen at 1 s) has expired; a (10 s) has not.
	l.sweep(t0.Add(3500 * time.Millisecond))
	if !slices.Equal(rec.deletes, []session.Key{b}) || src.ticks != 1 {
		t.Fatalf("rec.deletes %v ticks %d", rec.deletes, src.ticks)
	}
	// c is claimed by host 2 again before it idles out: forgotten without a delete.
	rec.owners[c] = 2
	l.sweep(t0.Add(13 * time.Second))
	if st := l.Stats(); !slices.Equal(rec.deletes, []session.Key{b, a}) || st.Expired != 3 || st.Flows != 0 {
		t.Fatalf("rec.deletes %v stats %+v", rec.deletes, st)
	}
	// A failed claim is counted and reported.
	l.claim = func(session.Key) error { return errors.New("queue full") }
	var failed int
	l.onErr = func(string, session.Key, error) { failed++ }
	src.next = []session.Key{udpFlow(50004, 443)}
	l.poll(t0.Add(14 * time.Second))
	if st := l.Stats(); st.Errors != 1 || failed != 1 {
		t.Fatalf("failed claim: %+v", st)
	}
}

func TestRefreshEvery(t *testing.T) {
	for _, tc := range []struct {
		idle []time.Duration
		want time.Duration
	}{
		{[]time.Duration{30 * time.Second}, 5 * time.Second},
		{[]time.Duration{30 * time.Second, 2 * time.Second}, 500 * time.Millisecond},
		{[]time.Duration{time.Second}, 250 * time.Millisecond},
		{nil, 5 * time.Second},
	} {
		m := map[uint16]time.Duration{}
		for i, d := range tc.idle {
			m[uint16(i+1)] = d
		}
		if got := refreshEvery(m); got != tc.want {
			t.Errorf("%v: %v, want %v", tc.idle, got, tc.want)
		}
	}
}

// TestUDPLearnerAdopt: flows found at start are claimed and then refreshed like
// reported ones.
func TestUDPLearnerAdopt(t *testing.T) {
	src := &fakeLearn{}
	l := newUDPLearner(src, 1, []config.UDPSession{{Port: 443, IdleTimeout: 10 * time.Second}})
	var claims []session.Key
	l.claim = func(k session.Key) error { claims = append(claims, k); return nil }
	a := udpFlow(50000, 443)
	l.adopt([]session.Key{a}, time.Unix(1000, 0))
	src.next = []session.Key{a}
	l.poll(time.Unix(1001, 0))
	if st := l.Stats(); !slices.Equal(claims, []session.Key{a}) || st.Learned != 1 || st.Refreshed != 1 || l.src != src {
		t.Fatalf("claims %v stats %+v", claims, st)
	}
}

// TestUDPLearnerCID: a server CID reported after its flow is claimed once and tied to
// that flow; reported again it claims nothing; it is deleted when its flow expires (not
// before, and not if another host took it since); a CID without a flow before it in the
// report, or of another port, is ignored.
func TestUDPLearnerCID(t *testing.T) {
	src, l, rec := newRecordingLearner(t)
	cid := func(b byte, port uint16) session.Key {
		k, ok := session.CIDKey([]byte{b, b, b, b}, port)
		if !ok {
			t.Fatal("CIDKey")
		}
		return k
	}
	t0 := time.Unix(1000, 0)
	a, b := udpFlow(50000, 443), udpFlow(50001, 4433)
	ca, cb, orphan, other := cid(1, 443), cid(2, 4433), cid(3, 443), cid(4, 443)
	src.next = []session.Key{orphan, a, ca, b, cb, udpFlow(50002, 53), other}
	l.poll(t0)
	if !slices.Equal(rec.claims, []session.Key{a, ca, b, cb}) {
		t.Fatalf("rec.claims %v", rec.claims)
	}
	if st := l.Stats(); st.Learned != 2 || st.CIDLearned != 2 || st.CIDs != 2 || st.Flows != 2 {
		t.Fatalf("stats %+v", st)
	}
	// Reported again with its flow: nothing claimed.
	src.next = []session.Key{a, ca}
	l.poll(t0.Add(time.Second))
	if len(rec.claims) != 4 {
		t.Fatalf("rec.claims %v", rec.claims)
	}
	// Another host took cb: at 3.5 s b expires (2 s), and cb with it, forgotten without
	// a delete; a and ca stay.
	rec.owners[cb] = 2
	l.sweep(t0.Add(3500 * time.Millisecond))
	if !slices.Equal(rec.deletes, []session.Key{b}) {
		t.Fatalf("rec.deletes %v", rec.deletes)
	}
	if st := l.Stats(); st.Expired != 1 || st.CIDExpired != 1 || st.CIDs != 1 {
		t.Fatalf("stats %+v", st)
	}
	// a refreshed alone (short headers) keeps ca alive; at 12 s (a last seen at 1.5 s)
	// both expire and are deleted.
	src.next = []session.Key{a}
	l.poll(t0.Add(1500 * time.Millisecond))
	l.sweep(t0.Add(11 * time.Second))
	if len(rec.deletes) != 1 {
		t.Fatalf("deleted early: %v", rec.deletes)
	}
	l.sweep(t0.Add(12 * time.Second))
	if !slices.Equal(rec.deletes, []session.Key{b, a, ca}) {
		t.Fatalf("rec.deletes %v", rec.deletes)
	}
	if st := l.Stats(); st.Expired != 2 || st.CIDExpired != 2 || st.CIDs != 0 || st.Flows != 0 {
		t.Fatalf("stats %+v", st)
	}
	// A CID reported with a new flow (the client rebound; its packets reach this host)
	// moves to it: the old flow's expiry leaves it.
	c, d := udpFlow(50010, 443), udpFlow(50011, 443)
	cc := cid(5, 443)
	src.next = []session.Key{c, cc}
	l.poll(t0.Add(20 * time.Second))
	src.next = []session.Key{d, cc}
	l.poll(t0.Add(25 * time.Second))
	l.sweep(t0.Add(32 * time.Second)) // c (last seen at 20 s) expires, d (25 s) not
	if slices.Contains(rec.deletes, cc) || l.Stats().CIDs != 1 {
		t.Fatalf("a moved CID expired with its old flow: rec.deletes %v, %+v", rec.deletes, l.Stats())
	}
	// A flow keeps at most maxCIDsPerFlow CIDs: the oldest go first (deleted).
	rec.deletes = nil
	src.next = []session.Key{d}
	for i := range maxCIDsPerFlow + 2 {
		src.next = append(src.next, cid(byte(10+i), 443))
	}
	l.poll(t0.Add(33 * time.Second))
	if want := []session.Key{cc, cid(10, 443), cid(11, 443)}; !slices.Equal(rec.deletes, want) {
		t.Fatalf("evicted %v, want %v", rec.deletes, want)
	}
	if st := l.Stats(); st.CIDs != maxCIDsPerFlow {
		t.Fatalf("%d CIDs kept, want %d", st.CIDs, maxCIDsPerFlow)
	}
}

// TestSessionView: homingctl sessions shows flows as addresses and a learnt QUIC CID as
// its hex and VIP port.
func TestSessionView(t *testing.T) {
	ow := session.Owner{Host: 2, Epoch: 7}
	if got, want := sessionView(udpFlow(50000, 443), ow), (ctl.Session{Proto: "udp", Client: "198.18.100.2:50000",
		VIP: "198.19.255.1:443", Owner: 2, Epoch: 7}); got != want {
		t.Errorf("flow: %+v, want %+v", got, want)
	}
	k, _ := session.CIDKey([]byte{0xc1, 0xd2, 0xe3, 0xf4}, 8443)
	if got, want := sessionView(k, ow), (ctl.Session{Proto: "quic-cid", Client: "c1d2e3f4", VIP: ":8443", Owner: 2, Epoch: 7}); got != want {
		t.Errorf("CID: %+v, want %+v", got, want)
	}
}
