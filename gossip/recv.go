package gossip

import (
	"context"
	"errors"
	"github.com/homing-dev/homing/gossip/wire"
	"net"
	"sync/atomic"
	"time"

	"github.com/homing-dev/homing/session"
)

// receiver is the goroutine that reads, checks and applies datagrams.
func (n *Node) receiver(ctx context.Context) {
	buf := make([]byte, wire.MaxDatagramLen+1) // one more byte than acceptable: oversize shows
	gen := n.keyGen.Load()
	op := wire.NewOpener(n.keys.Load(), n.cfg.MaxDatagram)
	var recs []wire.Record
	for {
		m, _, err := n.conn.Recv(buf)
		if g := n.keyGen.Load(); g != gen {
			gen, op = g, wire.NewOpener(n.keys.Load(), n.cfg.MaxDatagram)
		}
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			inc(&n.stats.RecvErrors)
			n.log.Warn("gossip receive", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		recs = n.handle(op, wire.Datagram(buf[:m]), recs[:0])
	}
}

// countReject counts a decoder error under its reason.
func (n *Node) countReject(err error) {
	p := &n.stats.Malformed
	switch {
	case errors.Is(err, wire.ErrBadMagic):
		p = &n.stats.BadMagic
	case errors.Is(err, wire.ErrBadVersion):
		p = &n.stats.BadVersion
	case errors.Is(err, wire.ErrUnknownType):
		p = &n.stats.UnknownType
	case errors.Is(err, wire.ErrTruncated):
		p = &n.stats.Truncated
	case errors.Is(err, wire.ErrOversize):
		p = &n.stats.Oversize
	case errors.Is(err, wire.ErrBadTag):
		p = &n.stats.AuthFailures
	}
	inc(p)
}

// handle processes one datagram. recs is scratch space, returned for reuse.
func (n *Node) handle(op *wire.Opener, d wire.Datagram, recs []wire.Record) []wire.Record {
	inc(&n.stats.DatagramsReceived)
	add(&n.stats.BytesReceived, len(d))
	if err := op.Open(d); err != nil {
		n.countReject(err)
		return recs
	}
	h := d.Header()
	if h.Sender == n.cfg.HostID {
		inc(&n.stats.OwnDatagrams)
		return recs
	}
	var hb wire.Heartbeat
	var err error
	switch h.Type {
	case wire.TypeHeartbeat:
		hb, err = wire.ParseHeartbeat(d.Body())
		if err == nil && (hb.Host != h.Sender || hb.Incarnation != h.Incarnation) {
			err = wire.ErrMalformed
		}
	case wire.TypeRecords:
		recs, err = wire.ParseRecords(recs, d.Body(), h.Sender, h.Timestamp)
	}
	if err != nil {
		inc(&n.stats.Malformed)
		return recs
	}
	now := n.clock.Now()
	n.peersMu.Lock()
	if h.Type == wire.TypeHeartbeat && !n.identityLocked(h, &hb, now) {
		n.peersMu.Unlock()
		return recs
	}
	switch n.admitLocked(h, now) {
	case admitReject:
		n.peersMu.Unlock()
		return recs
	case admitMissing:
		// A datagram missed before arrives late (reordered): it fills its gap.
		inc(&n.stats.NackLate)
		n.recoverLocked(h, h.Type == wire.TypeRecords, recs)
		n.peersMu.Unlock()
		return recs
	}
	if h.Type == wire.TypeHeartbeat {
		n.heartbeatLocked(h, &hb, now)
		n.peersMu.Unlock()
		inc(&n.stats.HeartbeatsReceived)
		return recs
	}
	n.peersMu.Unlock()
	n.applyRecords(h, recs, false)
	return recs
}

// wins reports whether claim a beats claim b: a newer epoch wins; at equal epochs the
// lower host id wins.
func wins(a, b session.Owner) bool {
	return a.Epoch > b.Epoch || (a.Epoch == b.Epoch && a.Host < b.Host)
}

// applyRecords merges a peer's records into the ownership map and writes the changes to
// the table in one Apply. A recovered datagram (one that filled a gap, late or resent
// after a NACK; n.peersMu is held then) skips the keys that a later datagram of its
// sender already touched: they are newer.
func (n *Node) applyRecords(h wire.Header, recs []wire.Record, recovered bool) {
	n.mu.Lock()
	ups := n.updBuf[:0]
	tr := n.tracks[h.Sender]
	nt := n.nackTracks[h.Sender]
	// Pack and hash every key first, touching its place in the map: the cache misses
	// of a datagram's records overlap instead of coming one after the other.
	refs := n.refBuf[:0]
	var sink uint64
	for i := range recs {
		refs = append(refs, mref{})
		n.owners.ref(recs[i].Key, &refs[i])
		sink += refs[i].touch()
	}
	for i := range refs {
		sink += refs[i].touchSlot()
	}
	n.refBuf, n.sink = refs, sink
	for i, r := range recs {
		ref := &refs[i]
		if r.Owner.Host != h.Sender {
			inc(&n.stats.ForeignRecords)
			continue
		}
		if recovered && nt.after(r.Key, h.Seq) {
			inc(&n.stats.NackSuperseded)
			continue
		}
		if tr != nil {
			tr.touch(r.Key, h.Seq)
		}
		if nt != nil {
			nt.touch(r.Key, h.Seq)
		}
		cur, ok := n.owners.getRef(ref)
		switch r.Op {
		case wire.OpAdd:
			if ok && cur.owner == r.Owner {
				cur.inc = h.Incarnation // idempotent repeat; the claim now lives in this incarnation
				n.owners.putRef(ref, cur)
				continue
			}
			if ok && !wins(r.Owner, cur.owner) {
				inc(&n.stats.StaleRecords)
				continue
			}
			n.putRefLocked(r.Key, ref, entry{owner: r.Owner, inc: h.Incarnation})
			ups = append(ups, session.Update{Key: r.Key, Owner: r.Owner})
		case wire.OpDelete:
			if !ok || cur.owner.Host != r.Owner.Host {
				inc(&n.stats.StaleRecords)
				continue
			}
			n.delRefLocked(r.Key, ref)
			ups = append(ups, session.Update{Key: r.Key, Owner: cur.owner, Delete: true})
		}
	}
	n.applyLocked(ups)
	clear(ups)
	n.updBuf = ups[:0]
	n.mu.Unlock()
	add(&n.stats.RecordsReceived, len(recs))
	add(&n.stats.RecordsApplied, len(ups))
	if f := n.cfg.OnConverge; f != nil {
		f(ConvergeSample{From: h.Sender, Records: len(recs), Sent: time.Unix(0, h.Timestamp), Applied: n.clock.Now()})
	}
}

// admit verdicts.
type admitVerdict uint8

const (
	admitReject  admitVerdict = iota // drop the datagram
	admitNew                         // the next datagram(s) of the sender: handle it
	admitMissing                     // a datagram this node missed and tracks (NACK): recoverLocked
)

// admitLocked checks the sender against the discovery list, its incarnation against
// our clock and its sequence numbers: per sender and incarnation, sequence numbers must
// grow; a jump counts the datagrams missed, which are tracked for a NACK (or ask for a
// full repair); a missed datagram that arrives later is admitted once; a higher
// incarnation starts over (and the older incarnation's sessions go after the grace).
// The first datagram of a peer or of an incarnation must be timestamped within
// ReplayWindow; see membership.go for the identity rules. A heartbeat's identity is
// checked before (identityLocked). n.peersMu is held.
func (n *Node) admitLocked(h wire.Header, now time.Time) admitVerdict {
	if n.discovery != nil {
		if _, ok := n.discovery[h.Sender]; !ok {
			inc(&n.stats.UnknownHost)
			return admitReject
		}
	}
	if n.ahead(h.Incarnation, now) {
		inc(&n.stats.FutureIncarnations)
		n.alarmLocked(h.Sender, now, "gossip incarnation ahead of our clock beyond max_clock_skew; refused until our clock catches up",
			"incarnation", h.Incarnation, "ahead", time.Unix(0, int64(min(h.Incarnation, 1<<63-1))).Sub(now))
		return admitReject
	}
	p := n.peers[h.Sender]
	if p == nil {
		if !n.inWindow(h, now) {
			inc(&n.stats.OutsideWindow)
			return admitReject
		}
		p = &peerState{state: peerNew, inc: h.Incarnation, highest: h.Seq, lastHB: now}
		n.peers[h.Sender] = p
		n.wantRepairLocked(p, h.Seq)
		return admitNew
	}
	hb := h.Type == wire.TypeHeartbeat
	switch {
	case h.Incarnation < p.inc && hb && p.state == peerDown && n.inWindow(h, now):
		// A bound peer back with a lower incarnation (its clock was ahead): a restart.
		n.log.Warn("gossip peer back with a lower incarnation", "host", h.Sender, "incarnation", h.Incarnation, "was", p.inc)
		return n.restartLocked(h, p, now)
	case h.Incarnation < p.inc && hb && p.state == peerUp && n.inWindow(h, now):
		inc(&n.stats.DuplicateIDs)
		n.alarmLocked(h.Sender, now, "gossip duplicate host id: an older incarnation still heartbeats from the bound address and MAC; refused",
			"incarnation", h.Incarnation, "current", p.inc)
		return admitReject
	case h.Incarnation < p.inc:
		inc(&n.stats.Replays)
		return admitReject
	case h.Incarnation > p.inc:
		if !n.inWindow(h, now) {
			inc(&n.stats.OutsideWindow)
			return admitReject
		}
		if p.state == peerUp && !hb {
			inc(&n.stats.Unannounced)
			return admitReject
		}
		n.log.Info("gossip peer restarted", "host", h.Sender, "incarnation", h.Incarnation)
		return n.restartLocked(h, p, now)
	}
	if h.Seq <= p.highest {
		if _, ok := p.missing[h.Seq]; ok {
			delete(p.missing, h.Seq)
			return admitMissing
		}
		if hb && h.Seq+seqConflictMargin < p.highest && h.Timestamp > p.hbTS && n.inWindow(h, now) {
			// A heartbeat newer than any admitted, far below the highest sequence
			// number: datagrams the sender did not send pushed it (membership.go).
			inc(&n.stats.SeqConflicts)
			n.alarmLocked(h.Sender, now, "gossip sequence numbers pushed ahead of the host's own (a keyed impostor sent datagrams in its name); reset",
				"incarnation", h.Incarnation, "seq", h.Seq, "highest", p.highest)
			n.forgetMissingLocked(h.Sender, p, ^uint64(0))
			p.highest = h.Seq
			n.wantRepairLocked(p, h.Seq)
			return admitNew
		}
		inc(&n.stats.Replays)
		return admitReject
	}
	if h.Seq <= p.covered {
		// Not seen before, but a repair snapshot taken after it was sent is applied.
		p.highest = h.Seq
		inc(&n.stats.RepairSuperseded)
		return admitReject
	}
	if last := max(p.highest, p.covered); h.Seq > last+1 {
		gap := h.Seq - last - 1
		atomic.AddUint64(&n.stats.SeqGaps, gap)
		if !n.trackMissingLocked(h.Sender, p, last+1, gap) {
			n.wantRepairLocked(p, h.Seq)
		}
	}
	p.highest = h.Seq
	return admitNew
}

// restartLocked starts a new incarnation of peer p with datagram h. n.peersMu is held.
func (n *Node) restartLocked(h wire.Header, p *peerState, now time.Time) admitVerdict {
	n.scheduleDropLocked(h.Sender, p.inc, now)
	p.inc, p.highest, p.covered, p.digestMiss, p.hbTS = h.Incarnation, h.Seq, 0, 0, 0
	n.forgetMissingLocked(h.Sender, p, ^uint64(0))
	if p.state == peerNew {
		p.lastHB = now
	}
	n.wantRepairLocked(p, h.Seq)
	return admitNew
}
