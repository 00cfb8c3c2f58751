package daemon

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/homing-dev/homing/config"
	"github.com/homing-dev/homing/gossip"
	"github.com/homing-dev/homing/internal/counters"
	"github.com/homing-dev/homing/probe"
	"github.com/homing-dev/homing/session"
)

// UDP sessions (docs/PROTOCOL.md "UDP session lifetime"): the lcores report the UDP
// flows of [[udp_sessions]] ports that this host's kernel answers (lcore.DrainLearned);
// the learner claims a new one (gossiped like a TCP session), notes when a known one
// was reported again (the lcores report a live flow once per refresh tick: nothing is
// gossiped), and deletes (gossips the delete of) a flow not reported for its port's
// idle_timeout. Goroutine "udp learner" (udpLearner.run), ended by ctl.cancel.
//
// On a port with a cid_len, a report may carry the server's connection ID: the lcores
// put its key (session.CIDKey) right after the flow's. The learner claims the CID like a
// flow and ties it to that flow: the CID is deleted when its flow expires. The CIDs come
// from the server's handshake packets and from the DCIDs of its clients' packets that
// this host's kernel gets (the CIDs issued later, which clients switch to); a flow
// keeps at most maxCIDsPerFlow CIDs, the oldest are deleted first (a client that sends
// many DCIDs cannot fill the table).

// learnSource is the data plane as the learner sees it (lcore.DataPlane).
type learnSource interface {
	DrainLearned(dst []session.Key) []session.Key
	LearnTick()
}

// learnRing is each lcore's ring of learned flows, in records: 40 bytes each. A refresh
// tick reports every live flow once; between two drains (learnPoll) a ring takes
// learnRing reports (200,000 a second per lcore at 20 ms).
const learnRing = 4096

// learnPoll is how often the learner drains the rings.
const learnPoll = 20 * time.Millisecond

// refreshEvery is the refresh tick for the given idle timeouts: a quarter of the
// shortest, within 100 ms..5 s, so that a live flow is reported at least three times
// within any idle timeout.
func refreshEvery(idle map[uint16]time.Duration) time.Duration {
	r := 5 * time.Second
	for _, d := range idle {
		r = min(r, d/4)
	}
	return max(r, 100*time.Millisecond)
}

// UDPLearnStats are the learner's counters (declared in internal/counters: Learned,
// Refreshed, Expired, Errors, and Flows, a gauge).
type UDPLearnStats = counters.UDPLearn

type udpLearner struct {
	src  learnSource
	self uint16
	idle map[uint16]time.Duration // per VIP port
	// owner is the flow's owner as gossip knows it (nil: no gossip: a claimed flow
	// stays ours).
	owner  func(session.Key) (session.Owner, bool)
	claim  func(session.Key) error
	delete func(session.Key) error
	onErr  func(op string, k session.Key, err error)

	buf    []session.Key
	mu     sync.Mutex // protects flows, cids and st
	flows  map[session.Key]time.Time
	cids   map[session.Key]session.Key   // learnt CID -> the flow it came with
	byFlow map[session.Key][]session.Key // a flow's CIDs, oldest first
	st     UDPLearnStats
}

// maxCIDsPerFlow is the most CIDs a flow keeps: a connection uses one at a time, and
// a server offers a few more (quic-go: 4, the client's active_connection_id_limit).
const maxCIDsPerFlow = 8

func newUDPLearner(src learnSource, self uint16, ports []config.UDPSession) *udpLearner {
	l := &udpLearner{src: src, self: self, idle: map[uint16]time.Duration{}, flows: map[session.Key]time.Time{},
		cids: map[session.Key]session.Key{}, byFlow: map[session.Key][]session.Key{}}
	for _, p := range ports {
		l.idle[p.Port] = p.IdleTimeout
	}
	return l
}

// poll drains the lcores' reports and applies them at now.
func (l *udpLearner) poll(now time.Time) {
	l.buf = l.src.DrainLearned(l.buf[:0])
	var prev session.Key // the last flow
	for _, k := range l.buf {
		if _, ok := l.idle[k.DstPort]; !ok || !k.Valid() {
			prev = session.Key{}
			continue // not a session port (the lcores report only those)
		}
		if k.Proto == session.QUICCID {
			l.cid(k, prev)
			continue
		}
		prev = k
		l.mu.Lock()
		_, known := l.flows[k]
		l.flows[k] = now
		l.mu.Unlock()
		if known {
			if o, ok := l.ownerOf(k); !ok || o == l.self {
				l.count(func(s *UDPLearnStats) { s.Refreshed++ })
				continue
			}
			// Another host claimed it since, but this host answers it now: it is ours.
		}
		if err := l.claim(k); err != nil {
			l.count(func(s *UDPLearnStats) { s.Errors++ })
			l.onErr("claim", k, err)
			continue
		}
		l.count(func(s *UDPLearnStats) { s.Learned++ })
	}
}

// cid applies a reported CID k that came with flow (a zero flow: none, ignored).
func (l *udpLearner) cid(k, flow session.Key) {
	if flow.Proto == 0 || flow.DstPort != k.DstPort {
		return
	}
	var evict []session.Key
	l.mu.Lock()
	old, known := l.cids[k]
	if !known || old != flow {
		if known {
			l.byFlow[old] = slices.DeleteFunc(l.byFlow[old], func(c session.Key) bool { return c == k })
		}
		l.cids[k] = flow
		l.byFlow[flow] = append(l.byFlow[flow], k)
		if n := len(l.byFlow[flow]) - maxCIDsPerFlow; n > 0 {
			evict = slices.Clone(l.byFlow[flow][:n])
			l.byFlow[flow] = slices.Delete(l.byFlow[flow], 0, n)
			for _, c := range evict {
				delete(l.cids, c)
			}
		}
	}
	l.mu.Unlock()
	for _, c := range evict {
		l.count(func(s *UDPLearnStats) { s.CIDExpired++ })
		l.drop(c)
	}
	if known {
		if o, ok := l.ownerOf(k); !ok || o == l.self {
			return
		}
	}
	if err := l.claim(k); err != nil {
		l.count(func(s *UDPLearnStats) { s.Errors++ })
		l.onErr("claim", k, err)
		return
	}
	l.count(func(s *UDPLearnStats) { s.CIDLearned++ })
}

// drop deletes k if this host still owns it.
func (l *udpLearner) drop(k session.Key) {
	if o, ok := l.ownerOf(k); !ok || o != l.self {
		return
	}
	if err := l.delete(k); err != nil {
		l.count(func(s *UDPLearnStats) { s.Errors++ })
		l.onErr("expire", k, err)
	}
}

func (l *udpLearner) ownerOf(k session.Key) (uint16, bool) {
	if l.owner == nil {
		return l.self, true
	}
	o, ok := l.owner(k)
	return o.Host, ok
}

func (l *udpLearner) count(f func(*UDPLearnStats)) {
	l.mu.Lock()
	f(&l.st)
	l.mu.Unlock()
}

// sweep starts a new refresh tick and deletes the flows idle at now for longer than
// their port's idle timeout (this host's claims only: a flow another host claimed since
// is left to it).
func (l *udpLearner) sweep(now time.Time) {
	l.src.LearnTick()
	var idle []session.Key
	l.mu.Lock()
	for k, at := range l.flows {
		if now.Sub(at) > l.idle[k.DstPort] {
			idle = append(idle, k)
			delete(l.flows, k)
		}
	}
	nflows := len(idle)
	// The CIDs of the expired flows expire with them.
	for c, f := range l.cids {
		if _, live := l.flows[f]; !live {
			idle = append(idle, c)
			delete(l.cids, c)
			delete(l.byFlow, f)
		}
	}
	l.mu.Unlock()
	for i, k := range idle {
		if i < nflows {
			l.count(func(s *UDPLearnStats) { s.Expired++ })
		} else {
			l.count(func(s *UDPLearnStats) { s.CIDExpired++ })
		}
		if o, ok := l.ownerOf(k); !ok || o != l.self {
			continue
		}
		if err := l.delete(k); err != nil {
			l.count(func(s *UDPLearnStats) { s.Errors++ })
			l.onErr("expire", k, err)
		}
	}
}

// adopt claims flows found at start (connected sockets), as if reported at now.
func (l *udpLearner) adopt(keys []session.Key, now time.Time) {
	src := l.src
	l.src = adoptSource(keys)
	l.poll(now)
	l.src = src
}

// adoptSource drains a fixed list once.
type adoptSource []session.Key

func (a adoptSource) DrainLearned(dst []session.Key) []session.Key { return append(dst, a...) }
func (a adoptSource) LearnTick()                                   {}

// Stats returns the learner's counters.
func (l *udpLearner) Stats() UDPLearnStats {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.st
	s.Flows = uint64(len(l.flows))
	s.CIDs = uint64(len(l.cids))
	return s
}

// run polls and sweeps on clk until ctx ends.
func (l *udpLearner) run(ctx context.Context, clk gossip.Clock) {
	poll := clk.NewTicker(learnPoll)
	defer poll.Stop()
	sweep := clk.NewTicker(refreshEvery(l.idle))
	defer sweep.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-poll.C():
			l.poll(now)
		case now := <-sweep.C():
			l.poll(now)
			l.sweep(now)
		}
	}
}

// startUDPLearner starts the learner of the [[udp_sessions]] ports' flows (ctl.udp).
func (d *Daemon) startUDPLearner(ctx context.Context, c *control) {
	if d.DP == nil || len(d.Config.UDPSessions) == 0 {
		return
	}
	l := newUDPLearner(d.DP, d.Config.Host.ID, d.Config.UDPSessions)
	l.claim = d.claim
	l.delete = func(k session.Key) error {
		if n := c.node; n != nil {
			return n.LocalAbort(k) // the idle timeout was the linger
		}
		_, err := d.Table.ApplyBatch([]session.Update{{Key: k, Owner: session.Owner{Host: d.Config.Host.ID}, Delete: true}})
		return err
	}
	if n := c.node; n != nil {
		l.owner = n.Owner
	}
	l.onErr = func(op string, k session.Key, err error) {
		d.Log.Warn("udp session", "op", op, "session", k.String(), "err", err)
	}
	// Connected UDP sockets that outlived a previous homingd are this host's flows.
	ports := map[uint16]bool{}
	for _, u := range d.Config.UDPSessions {
		ports[u.Port] = true
	}
	if keys, err := probe.ListConnectedUDP(d.Config.Host.VIPs, ports); err != nil {
		d.Log.Warn("udp sessions: listing connected sockets", "err", err)
	} else {
		l.adopt(keys, d.clk().Now())
	}
	c.udp = l
	c.wg.Add(1)
	go func() { // udp learner
		defer c.wg.Done()
		l.run(ctx, d.clk())
	}()
}
