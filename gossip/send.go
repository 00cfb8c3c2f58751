package gossip

import (
	"context"
	"github.com/homing-dev/homing/gossip/wire"
	"time"

	"github.com/homing-dev/homing/session"
)

// tokenBucket bounds datagrams per second. Owned by the sender goroutine.
type tokenBucket struct {
	rate, burst, tokens float64
	last                time.Time
}

func newTokenBucket(rate, burst int) tokenBucket {
	return tokenBucket{rate: float64(rate), burst: float64(burst), tokens: float64(burst)}
}

func (b *tokenBucket) refill(now time.Time) {
	if !b.last.IsZero() {
		b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	}
	b.last = now
}

// take takes a token if there is one.
func (b *tokenBucket) take(now time.Time) bool {
	b.refill(now)
	if b.tokens >= 1 {
		b.tokens--
		return true
	}
	return false
}

// wait returns how long until a token is available.
func (b *tokenBucket) wait(now time.Time) time.Duration {
	b.refill(now)
	if b.tokens >= 1 {
		return 0
	}
	return time.Duration((1 - b.tokens) / b.rate * float64(time.Second))
}

// batch is the records datagram being built by the sender goroutine.
type batch struct {
	dg      []byte            // header space + records so far; cap MaxDatagram + slack
	w       wire.RecordWriter // encodes dg's records
	recs    int               // records in dg
	opened  time.Time         // when the first record went in
	oldest  int64             // when the oldest record in dg was queued (unix ns)
	flushes uint64            // datagrams flushed so far
}

// sender is the goroutine that writes local updates to the table and batches the
// queued records into datagrams: a datagram goes out when the next record would not
// fit, or FlushDelay after its first record, whichever comes first, and only when the
// token bucket has a token. While it waits for tokens, records stay in the bounded
// queue (LocalAdd counts and reports what does not fit).
//
// The sender also sends the heartbeats, every HeartbeatInterval, so that a heartbeat's
// digest is exact: the digest of the own sessions is read whenever the queue is taken;
// when every record taken so far has been sent, that digest describes exactly what the
// datagrams sent so far announced, and it stays so until the next datagram goes out
// with records still behind it. A heartbeat carries the last such digest, or none if
// records taken before the last datagram are still waiting (a long FlushDelay, or no
// tokens). A receiver that got every datagram before the heartbeat then holds the same
// sessions for this host (conflicting claims by other hosts aside).
//
// One turn of its loop (sender.run): pull (local updates to the table, the queue into
// the backlog), place (records into the batch, full datagrams out while tokens last),
// flushDue (the batch out when its delay is up, and how long to wait), noteDigest,
// tailProbe, heartbeat, then sleep until the wait ends or something wakes it.
type sender struct {
	n      *Node
	max    int // MaxDatagram
	b      batch
	bucket tokenBucket

	backlog  []queued         // records taken from the queue, not yet in a datagram
	updSpare []session.Update // applyLocalLocked's spare slice

	timer  Timer  // flush and token waits longer than maxPrecise
	hbTick Ticker // heartbeat interval
	hr     *hrTimer
	hbBuf  []byte
	hbDue  bool

	probes  int       // tail probes left after the last records datagram
	probeAt time.Time // when the next tail probe is due

	exact    wire.Digest // see above
	exactOK  bool
	lastSent time.Time // when the last records datagram went out (adaptive flush)
}

func (n *Node) sender(ctx context.Context) {
	s := newSender(n)
	defer s.close()
	s.run(ctx)
}

func newSender(n *Node) *sender {
	s := &sender{
		n:      n,
		max:    n.cfg.MaxDatagram,
		b:      batch{dg: make([]byte, wire.HeaderLen, n.cfg.MaxDatagram+wire.RecordAdd6Len+wire.TagLen)},
		bucket: newTokenBucket(n.cfg.MaxRate, n.cfg.MaxBurst),
		timer:  n.clock.NewTimer(time.Hour),
		hbTick: n.clock.NewTicker(n.cfg.HeartbeatInterval),
		hbDue:  true,
	}
	if _, real := n.clock.(realClock); real {
		hr, err := newHRTimer()
		if err != nil {
			n.log.Warn("gossip sender: no precise timer, flush waits are Go timers", "err", err)
		}
		s.hr = hr
	}
	return s
}

func (s *sender) close() {
	s.timer.Stop()
	s.hbTick.Stop()
	if s.hr != nil {
		s.hr.close()
	}
}

func (s *sender) run(ctx context.Context) {
	// The heartbeat goes first: peers admit a new incarnation of a live host by its
	// heartbeat only (membership.go), so records queued before Run must follow it.
	s.heartbeat()
	for {
		digest := s.pull()
		now := s.n.clock.Now()
		flushes := s.b.flushes
		blocked := s.place(now)
		wait := s.flushDue(now, blocked)
		if s.b.flushes != flushes {
			s.lastSent = now
		}
		s.noteDigest(digest, flushes)
		wait = s.tailProbe(now, flushes, wait)
		s.heartbeat()
		if !s.sleep(ctx, wait) {
			return
		}
	}
}

// pull applies the pending local updates, takes the queue into the backlog and returns
// the digest of the own sessions as of now.
func (s *sender) pull() wire.Digest {
	n := s.n
	n.mu.Lock()
	defer n.mu.Unlock()
	digest := *n.digestLocked(n.cfg.HostID)
	s.updSpare = n.applyLocalLocked(s.updSpare)
	if len(n.queue) > 0 {
		s.backlog = append(s.backlog, n.queue...)
		clear(n.queue)
		n.queue = n.queue[:0]
	}
	return digest
}

// place puts the backlog's records into the batch, flushing full datagrams while
// tokens last. It reports whether it stopped for want of a token.
func (s *sender) place(now time.Time) (blocked bool) {
	b := &s.b
	i := 0
	for i < len(s.backlog) {
		q := s.backlog[i]
		r := wire.Record{Op: wire.OpAdd, Key: q.rec.Key, Owner: q.rec.Owner}
		if q.rec.Delete {
			r.Op = wire.OpDelete
		}
		if b.recs == 0 {
			b.opened, b.oldest = now, q.at
			b.w = wire.NewRecordWriter(s.n.cfg.HostID, q.at)
		}
		l, w := len(b.dg), b.w
		b.dg = b.w.Append(b.dg, r)
		if len(b.dg)+wire.TagLen > s.max {
			// Does not fit (never the first: MaxDatagram holds a full IPv6 add).
			b.dg, b.w = b.dg[:l], w
			if !s.bucket.take(now) {
				blocked = true
				break
			}
			s.n.flush(b)
			continue
		}
		b.recs++
		i++
	}
	s.n.queued.Add(-int64(i))
	if i > 0 {
		rest := copy(s.backlog, s.backlog[i:])
		clear(s.backlog[rest:])
		s.backlog = s.backlog[:rest]
	}
	return blocked
}

// flushDue flushes the batch if its delay is up and returns how long to wait (negative:
// until woken).
func (s *sender) flushDue(now time.Time, blocked bool) time.Duration {
	b, cfg := &s.b, &s.n.cfg
	wait := time.Duration(-1)
	if blocked {
		wait = s.bucket.wait(now)
	} else if b.recs > 0 {
		due := s.lastSent.Add(cfg.FlushDelay)
		if cfg.FixedFlush {
			due = b.opened.Add(cfg.FlushDelay)
		}
		// Adaptive: the link is idle unless a records datagram went out within
		// FlushDelay; a record that finds it idle goes at once, records that
		// arrive while datagrams go out back to back wait for the next slot.
		if d := due.Sub(now); d > 0 {
			wait = d
		} else if s.bucket.take(now) {
			s.n.flush(b)
			s.lastSent = now
		} else {
			wait = s.bucket.wait(now)
		}
	}
	return wait
}

// noteDigest keeps the last exact digest (see sender): flushes is the batch's flush
// count before this turn.
func (s *sender) noteDigest(digest wire.Digest, flushes uint64) {
	if s.b.recs == 0 && len(s.backlog) == 0 {
		s.exact, s.exactOK = digest, true
	} else if s.b.flushes != flushes {
		s.exactOK = false
	}
}

// tailProbe schedules the tail probes and returns wait, shortened to the next one.
// A receiver sees a lost datagram only when a later one arrives; after the last
// records datagram of a burst, heartbeats follow soon (unless records do), so that a
// lost tail is NACKed within milliseconds, not a heartbeat interval later.
func (s *sender) tailProbe(now time.Time, flushes uint64, wait time.Duration) time.Duration {
	probe := s.n.cfg.TailProbe
	if probe <= 0 {
		return wait
	}
	if s.b.flushes != flushes {
		s.probes, s.probeAt = 2, now.Add(probe)
	}
	if s.probes > 0 && !now.Before(s.probeAt) {
		s.hbDue = true
		s.probes--
		s.probeAt = now.Add(3 * probe)
	}
	if d := s.probeAt.Sub(now); s.probes > 0 && (wait < 0 || d < wait) {
		wait = d
	}
	return wait
}

// heartbeat sends a heartbeat if one is due. The tick is also looked at here, not only
// in sleep's select: a sender that waits on its precise timer (a flush slot, a token
// while rate-limited) does not reach the select for as long as the backlog lasts, and
// peers would take this host down for want of heartbeats.
func (s *sender) heartbeat() {
	select {
	case <-s.hbTick.C():
		s.hbDue = true
	default:
	}
	if s.hbDue {
		s.hbBuf = s.n.sendHeartbeat(s.hbBuf, s.exact, s.exactOK && s.n.gapPeers.Load() == 0)
		s.hbDue = false
	}
}

// sleep waits for wait (negative: until woken), a wake-up, the heartbeat tick or the
// end of ctx. At the end of ctx it flushes the batch and reports false.
func (s *sender) sleep(ctx context.Context, wait time.Duration) bool {
	if s.hr != nil && wait >= 0 && wait <= maxPrecise && ctx.Err() == nil {
		// A short wait (a flush slot, a token): sleep precisely. Records queued
		// meanwhile are taken when it ends; heartbeats and the context wait.
		if err := s.hr.sleep(wait); err != nil {
			s.n.log.Warn("gossip sender: precise timer failed, using Go timers", "err", err)
			s.hr.close()
			s.hr = nil
		}
		return true
	}
	if wait >= 0 {
		s.timer.Reset(max1(wait))
	}
	select {
	case <-ctx.Done():
		if s.b.recs > 0 {
			s.n.flush(&s.b)
		}
		return false
	case <-s.n.wakeSend:
	case <-s.timer.C():
	case <-s.hbTick.C():
		s.hbDue = true
	}
	return true
}

// applyLocalLocked writes the keys of the pending local updates to the table, as the
// ownership map has them now, and returns spare for the next batch. The map, not the
// update, is the truth: a newer claim of another host may have been applied to map and
// table since the local update was queued (the receiver writes at once, local updates
// wait for the sender), and writing the queued one would put the older local claim back
// in the table only. n.mu is held.
func (n *Node) applyLocalLocked(spare []session.Update) []session.Update {
	ups := n.localUpd
	if len(ups) == 0 {
		return spare
	}
	n.localUpd = spare[:0]
	for i, u := range ups {
		if e, ok := n.owners.get(u.Key); ok {
			ups[i] = session.Update{Key: u.Key, Owner: e.owner}
		} else {
			ups[i] = session.Update{Key: u.Key, Owner: u.Owner, Delete: true}
		}
	}
	n.applyLocked(ups)
	clear(ups)
	return ups
}

// maxPrecise is the longest wait the sender sleeps on its timerfd; longer ones use a
// Go timer (a millisecond late at worst is then a small part of the wait) so that
// wake-ups, heartbeats and the context are seen while it waits.
const maxPrecise = 2 * time.Millisecond

func max1(d time.Duration) time.Duration { return max(d, time.Microsecond) }

// flush seals and sends the batch and empties it.
func (n *Node) flush(b *batch) {
	recs := b.recs
	b.dg = b.dg[:len(b.dg)+wire.TagLen]
	if n.send(wire.Header{Type: wire.TypeRecords, Timestamp: b.oldest}, b.dg) {
		add(&n.stats.RecordsSent, recs)
	}
	b.dg = b.dg[:wire.HeaderLen]
	b.recs = 0
	b.flushes++
}

// send assigns the next sequence number, seals d (its body in place, room for the tag
// at the end) and sends it. It reports whether the Conn took it.
func (n *Node) send(h wire.Header, d wire.Datagram) bool {
	h.Sender, h.Incarnation = n.cfg.HostID, n.inc
	n.sendMu.Lock()
	n.seq++
	h.Seq = n.seq
	n.sealer.Seal(d, h)
	if n.ring != nil {
		n.ring.push(h.Seq, d)
	}
	err := n.conn.Send(d)
	n.sendMu.Unlock()
	if err != nil {
		inc(&n.stats.SendErrors)
		n.log.Warn("gossip send", "type", h.Type, "err", err)
		return false
	}
	inc(&n.stats.DatagramsSent)
	add(&n.stats.BytesSent, len(d))
	return true
}

// sendHeartbeat announces this host, with digest if hasDigest. Heartbeats do not take
// tokens.
func (n *Node) sendHeartbeat(buf []byte, digest wire.Digest, hasDigest bool) []byte {
	hb := wire.Heartbeat{
		Host: n.cfg.HostID, Incarnation: n.inc, Addr: n.cfg.Addr, AltAddr: n.cfg.AltAddr,
		MAC: n.cfg.MAC, TunnelPort: n.cfg.TunnelPort, Domain: n.cfg.Domain,
		Digest: digest, HasDigest: hasDigest,
	}
	buf = wire.AppendHeartbeat(append(buf[:0], make([]byte, wire.HeaderLen)...), &hb)
	buf = append(buf, make([]byte, wire.TagLen)...)
	if n.send(wire.Header{Type: wire.TypeHeartbeat, Timestamp: n.clock.Now().UnixNano()}, buf) {
		inc(&n.stats.HeartbeatsSent)
	}
	return buf
}
