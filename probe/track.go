//go:build linux

package probe

import (
	"net/netip"

	"github.com/homing-dev/homing/session"
)

// The tracker is Run's memory of what it announced, and the rules that keep the
// event stream true to the sockets after events were lost. It does no I/O: Run
// feeds it the ring's records (event) and sock_diag dumps (reconcile), and it
// calls emit.
//
// Invariant, per socket cookie: at most one Add, then at most one Delete, never a
// Delete without its Add. The tracker keeps it by itself: an Add is emitted only for
// a cookie it does not hold (and never held: a resync does not bring back a cookie
// whose Delete it saw recently, see below), a Delete only for a cookie it holds,
// which it then forgets. Socket cookies are never reused.
//
// Invariant, per key: the consumer acts per key (the 5-tuple: homingd claims it on
// an Add and disowns it on a Delete), and a key is reused by a new socket when a
// client reconnects from the same port (the old socket in TIME_WAIT, or gone). So
// the events of a key are Add, [Delete], Add, [Delete]...: a Delete is only ever for
// the newest socket announced for its key. The tracker holds at most one entry per
// key (keys):
//   - a ring Add for a key held by another cookie forgets the older entry without
//     any event (supersede), and remembers the older cookie as closed so that a sync
//     does not announce it again. The ring is in time order and a socket's Add is
//     written before it can close, so before a newer socket can take its key. The
//     older socket's Delete, from the ring (the kernel may write the old socket's
//     close after the new one's Add: TIME_WAIT reuse) or from a sync, then finds no
//     entry and is dropped;
//   - a sync never supersedes: it announces a socket only for a key nobody holds,
//     after it deleted the holders it found closed. A holder it kept is alive, or
//     was announced after the mark, by the ring, so is newer than the dump.
//
// Without this, the older cookie's Delete (a poll finding it gone, a resync after
// its lost ring Delete, or its late ring Delete) would disown the key while the
// newer connection lives.
//
// Sources of Adds and Deletes:
//   - the ring: Add for a connection the kernel marked (its Add reached the ring);
//     the kernel then reports its close as a Delete unless that Delete is lost;
//   - a sync (start-up listing, resync after a loss): Add for an ESTABLISHED VIP
//     socket the tracker does not hold. Such a socket is unmarked (its Add never
//     reached the ring, or it predates Open), the kernel will not report its close,
//     so the entry is polled: a later sync deletes it once its socket is gone;
//   - a sync: Delete for an entry whose socket is no longer alive in the dump
//     (gone, or TIME_WAIT), when the entry is polled or the sync is a resync.
//
// A sync is: drain the ring, take a mark, dump, drain the ring again, reconcile.
// The races between the dump and the records still in the ring, case by case:
//
//  1. An Add in the ring for a socket the dump shows: the second drain reads it
//     (the Add was written when the socket became established, so before the dump
//     returned), and reconcile finds the cookie held: no second Add.
//  2. The kernel sets ESTABLISHED a moment before the sock_ops callback writes the
//     Add, so a dump may show a socket whose Add is not in the ring yet, even after
//     the second drain. The sync announces it (polled); when the ring's Add comes,
//     the cookie is held: nothing is emitted, and the entry is no longer polled (the
//     socket is marked, its close will come from the ring, and a lost Delete is a
//     loss that triggers a resync). A later sync that finds the socket gone cannot
//     overtake that Add: the Add was written before the socket could close, so
//     before that sync's dump, and its second drain reads it. If the sync deletes
//     the entry, the ring's Delete that follows finds no entry and is dropped.
//  3. A socket established after the dump started is missing from the dump but its
//     Add may be read by the second drain: reconcile deletes only entries announced
//     before the mark (the Add came from the ring before the dump, so the socket was
//     established before it; absent or not alive in the dump means it closed).
//  4. A socket closed between the dump and reconcile: the dump shows it alive, so it
//     stays; its ring Delete (read by a drain, later) deletes it, or, if that Delete
//     was lost, the next resync (the loss is counted) or poll.
//  5. The kernel writes the Delete of a socket (STATE_CB to TCP_CLOSE) before it
//     unhashes the socket, so a dump may still show a socket whose Delete was
//     already read and emitted. Reconcile does not announce a cookie whose ring
//     Delete was read in the current or the previous period of closed (at least
//     closedKeep, rotated by Run), so such a socket is not announced again. (A
//     closing thread stalled between the two for longer than that would get its
//     socket announced once more and deleted by the next poll: a spurious Add and
//     Delete pair, not a stale entry.)
//  6. A socket that goes to TIME_WAIT: the timewait socket (same cookie, not alive)
//     replaces it in the hash before the Delete is written: the sync deletes the
//     entry, the ring's Delete is then dropped.
//  7. A connection whose Add was lost and that closed before the dump: never
//     announced; the kernel sends no Delete (unmarked).
//  8. A dump may miss a live socket: inet_diag_dump_icsk resumes each netlink batch
//     (one recvmsg) at a position counted inside a hash bucket, and does not set
//     NLM_F_DUMP_INTR, so a socket removed from a bucket between two batches shifts
//     the sockets after it by one, and the first of them is never sent. A sync
//     therefore does not trust the dump to delete: before it deletes an entry the
//     dump does not show alive, it confirms with confirm, an exact lookup of the
//     cookie's 4-tuple (lookupTCP), which is not subject to that race, and keeps the
//     entry if the socket is alive. (The other way, absence from two consecutive
//     dumps, would delay every recovered Delete by a resync and keep state across
//     syncs; a lookup costs one netlink round trip per entry to delete, and those
//     are few: lost Deletes, closed polled sockets.) Deletes from the ring need no
//     confirmation. A failed lookup keeps the entry and fails the sync, which Run
//     then retries.
//
// With AllNetNS the ring reports every netns but dumps list only the netns of Open:
// an entry is judged by a dump only once a dump has shown its cookie (local), so the
// lost Delete of a connection in another netns is not recovered.
type tracker struct {
	vips     []netip.Prefix
	allNetNS bool
	// confirm reports whether the socket of cookie, with key, is still alive, by an
	// exact lookup (case 8); nil trusts the dump.
	confirm func(key session.Key, cookie uint64) (bool, error)

	sess   map[uint64]entry       // announced: Add emitted, no Delete yet
	keys   map[session.Key]uint64 // key → the cookie of its entry in sess
	seq    uint64                 // Adds emitted so far; entry.seq orders them against marks
	polled int                    // entries with polled set

	// Cookies whose ring Delete was handled, or whose entry was superseded by a
	// newer cookie of the same key, in this period and the previous one (case 5
	// above); Run rotates them at least closedKeep apart.
	closed, closedPrev map[uint64]struct{}
}

// entry is one announced session.
type entry struct {
	key    session.Key
	seq    uint64 // value of tracker.seq when its Add was emitted
	polled bool   // unmarked socket: only a sync can see it close
	local  bool   // in the netns the dumps list (always, unless AllNetNS)
}

func newTracker(vips []netip.Prefix, allNetNS bool) *tracker {
	return &tracker{
		vips:       vips,
		allNetNS:   allNetNS,
		sess:       make(map[uint64]entry),
		keys:       make(map[session.Key]uint64),
		closed:     make(map[uint64]struct{}),
		closedPrev: make(map[uint64]struct{}),
	}
}

// event handles a record read from the ring.
func (t *tracker) event(e Event, emit func(Event)) {
	switch e.Kind {
	case Add:
		if en, ok := t.sess[e.Cookie]; ok { // case 2: a sync announced it first
			if en.polled {
				en.polled = false
				t.polled--
				t.sess[e.Cookie] = en
			}
			return
		}
		t.add(e.Cookie, entry{key: e.Key, local: !t.allNetNS})
	case Delete:
		en, ok := t.sess[e.Cookie]
		if !ok { // a sync deleted it first (cases 2 and 6)
			return
		}
		t.forget(e.Cookie, en)
		t.closed[e.Cookie] = struct{}{}
	}
	emit(e)
}

// add holds the entry of a cookie about to be announced, superseding the entry
// another cookie holds for the same key (see the per-key invariant).
func (t *tracker) add(cookie uint64, en entry) {
	if old, ok := t.keys[en.key]; ok && old != cookie {
		t.forget(old, t.sess[old])
		t.closed[old] = struct{}{}
	}
	en.seq = t.seq
	t.seq++
	if en.polled {
		t.polled++
	}
	t.sess[cookie] = en
	t.keys[en.key] = cookie
}

func (t *tracker) forget(cookie uint64, en entry) {
	delete(t.sess, cookie)
	if t.keys[en.key] == cookie {
		delete(t.keys, en.key)
	}
	if en.polled {
		t.polled--
	}
}

// mark is taken before a dump: entries announced before it existed before the dump.
func (t *tracker) mark() uint64 { return t.seq }

// reconcile compares the entries with a dump taken after mark (and followed by a
// drain of the ring). It deletes the entries announced before mark whose socket is
// not alive in the dump, and not alive either by confirm: every one when full, the
// polled ones otherwise. When full, it announces the established VIP sockets it
// does not hold, polled. err is the first failed confirmation: the entries it did
// not confirm are kept, and the caller should sync again later.
func (t *tracker) reconcile(socks []diagSocket, mark uint64, full bool, emit func(Event)) (added, deleted int, err error) {
	live := make(map[uint64]bool, len(t.sess))
	for _, s := range socks {
		en, ok := t.sess[s.cookie]
		if !ok {
			continue
		}
		if !en.local {
			en.local = true
			t.sess[s.cookie] = en
		}
		if alive(s.state) {
			live[s.cookie] = true
		}
	}
	for c, en := range t.sess {
		if en.seq >= mark || !en.local || (!full && !en.polled) || live[c] {
			continue
		}
		if t.confirm != nil {
			if err != nil {
				continue
			}
			var alive bool
			if alive, err = t.confirm(en.key, c); err != nil || alive {
				continue
			}
		}
		t.forget(c, en)
		deleted++
		emit(Event{Kind: Delete, Key: en.key, Cookie: c})
	}
	if !full {
		return added, deleted, err
	}
	for _, s := range established(socks, t.vips) {
		if _, ok := t.keys[s.key]; ok { // this cookie, or another of its key: kept
			continue
		}
		if _, ok := t.closed[s.cookie]; ok {
			continue
		}
		if _, ok := t.closedPrev[s.cookie]; ok {
			continue
		}
		t.add(s.cookie, entry{key: s.key, polled: true, local: true})
		added++
		emit(Event{Kind: Add, Key: s.key, Cookie: s.cookie})
	}
	return added, deleted, err
}

// rotate starts a new period of closed cookies, forgetting the previous one.
func (t *tracker) rotate() {
	t.closed, t.closedPrev = t.closedPrev, t.closed
	clear(t.closed)
}
