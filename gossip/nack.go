package gossip

import (
	"context"
	"fmt"
	"github.com/homing-dev/homing/gossip/wire"
	"net/netip"
	"slices"
	"sync"

	"github.com/homing-dev/homing/session"
)

// NACK retransmission. A full repair (repair.go) mends any divergence but costs a
// snapshot of the peer's sessions and runs at most once per RepairInterval; a lost
// datagram is mended sooner and cheaper by asking its sender for it again:
//
//	sender                                          receiver
//	send: seal, multicast, keep in the ring ──▶ (lost)
//	        (last NackRing datagrams,           admit a later datagram: gap
//	         NackRingBytes at most)             ─▶ its sequence numbers are missing
//	                                            [repairer] at once, one NACK in flight a peer:
//	[repair server] ◀── challenge / NACK request (the missing ones, up to MaxNackSeqs)
//	  look each up in the ring ──▶ NACK response: the original sealed datagrams
//	                                            open each (tag, sender, incarnation); a
//	                                            missing sequence number is admitted once,
//	                                            its records applied except keys a later
//	                                            datagram of the peer already touched
//	                                            still missing after the answer (no longer
//	                                            in the ring, or the exchange failed):
//	                                            full repair, as before
//
// A missed datagram that arrives late by multicast fills its gap the same way. The
// missing set of a peer is bounded by NackRing: a larger gap asks for a full repair at
// once. While a node has missing datagrams from any peer, it neither compares digests
// nor sends its own (a claim of a third host on a shared key may be among the missing:
// the views differ until it is recovered); digests catch silent divergence once the
// gaps are mended.

// Defaults of the NACK ring.
const (
	DefaultNackRing      = 8192
	DefaultNackRingBytes = 8 << 20
	// nackServeConcurrency is how many NACK answers a server runs at once, beyond
	// RepairConcurrency full answers.
	nackServeConcurrency = 32
)

// resendRing keeps the latest datagrams sent, by sequence number, for NACK answers.
// Its sequence numbers are consecutive: first .. next-1.
type resendRing struct {
	mu          sync.Mutex
	slots       [][]byte // seq s in slots[s%len(slots)]
	first, next uint64
	bytes, max  int
}

func newResendRing(n, maxBytes int) *resendRing {
	return &resendRing{slots: make([][]byte, n), max: maxBytes}
}

// push keeps a copy of d, the datagram of sequence number seq, evicting the oldest to
// stay within the bounds.
func (r *resendRing) push(seq uint64, d []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if seq != r.next || len(d) > r.max {
		r.evict(r.next)
		r.first, r.next = seq, seq
		if len(d) > r.max {
			r.first, r.next = seq+1, seq+1
			return
		}
	}
	for r.first < r.next && (r.next-r.first >= uint64(len(r.slots)) || r.bytes+len(d) > r.max) {
		r.evict(r.first + 1)
	}
	i := seq % uint64(len(r.slots))
	r.slots[i] = append(r.slots[i][:0], d...)
	r.bytes += len(d)
	r.next = seq + 1
}

// evict drops the datagrams before sequence number upTo. r.mu is held.
func (r *resendRing) evict(upTo uint64) {
	for ; r.first < upTo && r.first < r.next; r.first++ {
		i := r.first % uint64(len(r.slots))
		r.bytes -= len(r.slots[i])
		r.slots[i] = r.slots[i][:0]
	}
}

// get appends the datagram of sequence number seq to dst, if the ring holds it.
func (r *resendRing) get(seq uint64, dst []byte) ([]byte, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if seq < r.first || seq >= r.next {
		return dst, false
	}
	return append(dst, r.slots[seq%uint64(len(r.slots))]...), true
}

// nackOn reports whether this node sends NACKs and answers them.
func (n *Node) nackOn() bool { return n.cfg.Repair && n.cfg.NackRing > 0 }

// trackMissingLocked adds count sequence numbers from first to the peer's missing set,
// for a NACK; it reports false when NACK is off or the set would grow beyond NackRing
// (the caller asks for a full repair). n.peersMu is held.
func (n *Node) trackMissingLocked(id uint16, p *peerState, first, count uint64) bool {
	if !n.nackOn() || uint64(len(p.missing))+count > uint64(n.cfg.NackRing) {
		return false
	}
	if p.missing == nil {
		p.missing = make(map[uint64]struct{}, count)
		n.gapPeers.Add(1)
		n.mu.Lock()
		if n.nackTracks[id] == nil {
			n.nackTracks[id] = &repairTrack{keys: make(map[session.Key]uint64)}
		}
		n.mu.Unlock()
	}
	for s := first; s < first+count; s++ {
		p.missing[s] = struct{}{}
	}
	n.wake(n.wakeRepair)
	return true
}

// forgetMissingLocked removes the peer's missing sequence numbers up to upTo (a
// snapshot covers them, or the incarnation ended) and, once none is left, the key
// track of recovered datagrams. n.peersMu is held, n.mu not.
func (n *Node) forgetMissingLocked(id uint16, p *peerState, upTo uint64) {
	for s := range p.missing {
		if s <= upTo {
			delete(p.missing, s)
		}
	}
	if len(p.missing) == 0 {
		if p.missing != nil {
			n.gapPeers.Add(-1)
		}
		p.missing = nil
		n.mu.Lock()
		delete(n.nackTracks, id)
		n.mu.Unlock()
	}
}

// recoverLocked applies a missed datagram that was just admitted (its sequence number
// taken out of the missing set), records or heartbeat: an old heartbeat only fills its
// gap. n.peersMu is held: recovered datagrams and the end of the key track are
// serialised (see applyRecords).
func (n *Node) recoverLocked(h wire.Header, records bool, recs []wire.Record) {
	if records {
		n.applyRecords(h, recs, true)
	}
	p := n.peers[h.Sender]
	if len(p.missing) == 0 {
		n.forgetMissingLocked(h.Sender, p, 0)
		return
	}
	// Keys touched before the oldest missing datagram cannot be newer than any
	// datagram still to come: prune them now and then.
	n.mu.Lock()
	if t := n.nackTracks[h.Sender]; t != nil && len(t.keys) > max(t.pruneAt, 4096) {
		least := ^uint64(0)
		for s := range p.missing {
			least = min(least, s)
		}
		for k, s := range t.keys {
			if s < least {
				delete(t.keys, k)
			}
		}
		t.pruneAt = 2 * len(t.keys)
	}
	n.mu.Unlock()
}

// nackJob is one NACK exchange with one peer.
type nackJob struct {
	id   uint16
	addr netip.AddrPort
	inc  uint64
	seqs []uint64 // sorted
}

// dueNacksLocked marks the NACKs to send now as in flight and returns them: one per
// peer that is up, has missing datagrams and no NACK in flight. n.peersMu is held.
func (n *Node) dueNacksLocked() []nackJob {
	var jobs []nackJob
	for id, p := range n.peers {
		if len(p.missing) == 0 || p.nacking || p.state != peerUp {
			continue
		}
		seqs := make([]uint64, 0, len(p.missing))
		for s := range p.missing {
			seqs = append(seqs, s)
		}
		slices.Sort(seqs)
		seqs = seqs[:min(len(seqs), wire.MaxNackSeqs)]
		for len(wire.NackRanges(seqs)) > wire.MaxNackRanges {
			seqs = seqs[:len(seqs)/2]
		}
		p.nacking = true
		jobs = append(jobs, nackJob{id: id, addr: netip.AddrPortFrom(p.info.Addr, n.cfg.RepairPort), inc: p.inc, seqs: seqs})
	}
	return jobs
}

// nack asks a peer for the datagrams of job, applies those it resends, and falls back
// to a full repair for those still missing.
func (n *Node) nack(ctx context.Context, job nackJob) {
	inc(&n.stats.NacksSent)
	add(&n.stats.NackSeqsRequested, len(job.seqs))
	dgs, err := n.fetchNack(ctx, job)
	if err == nil {
		op := wire.NewOpener(n.keys.Load(), n.cfg.MaxDatagram)
		var recs []wire.Record
		for _, d := range dgs {
			recs = n.handleResent(op, job, d, recs[:0])
		}
	} else {
		inc(&n.stats.NackFailures)
		if ctx.Err() == nil {
			n.log.Warn("gossip nack failed", "host", job.id, "addr", job.addr, "err", err)
		}
	}
	n.peersMu.Lock()
	left := 0
	if p := n.peers[job.id]; p != nil {
		p.nacking = false
		if p.inc == job.inc {
			first := uint64(0)
			for _, s := range job.seqs {
				if _, ok := p.missing[s]; ok {
					delete(p.missing, s)
					if left == 0 {
						first = s
					}
					left++
				}
			}
			if left > 0 {
				n.forgetMissingLocked(job.id, p, 0)
				n.wantRepairLocked(p, first)
			}
		}
	}
	n.peersMu.Unlock()
	if left > 0 {
		inc(&n.stats.NackFallbacks)
		if err == nil {
			add(&n.stats.NackUnavailable, left)
		}
		n.log.Debug("gossip nack: full repair", "host", job.id, "missing", left, "err", err)
	}
	n.wake(n.wakeRepair)
}

// handleResent checks and applies one datagram of a NACK answer. recs is scratch
// space, returned for reuse.
func (n *Node) handleResent(op *wire.Opener, job nackJob, d wire.Datagram, recs []wire.Record) []wire.Record {
	if err := op.Open(d); err != nil {
		inc(&n.stats.NackRejects)
		return recs
	}
	h := d.Header()
	var err error
	switch h.Type {
	case wire.TypeHeartbeat:
		var hb wire.Heartbeat
		hb, err = wire.ParseHeartbeat(d.Body())
		if err == nil && (hb.Host != h.Sender || hb.Incarnation != h.Incarnation) {
			err = wire.ErrMalformed
		}
	case wire.TypeRecords:
		recs, err = wire.ParseRecords(recs, d.Body(), h.Sender, h.Timestamp)
	}
	if err != nil || h.Sender != job.id || h.Incarnation != job.inc || !slices.Contains(job.seqs, h.Seq) {
		inc(&n.stats.NackRejects)
		return recs
	}
	n.peersMu.Lock()
	defer n.peersMu.Unlock()
	p := n.peers[job.id]
	if p == nil || p.inc != job.inc {
		return recs
	}
	if _, ok := p.missing[h.Seq]; !ok {
		inc(&n.stats.NackDuplicates) // arrived meanwhile, or a snapshot covered it
		return recs
	}
	delete(p.missing, h.Seq)
	inc(&n.stats.NackRecovered)
	n.recoverLocked(h, h.Type == wire.TypeRecords, recs)
	return recs
}

// fetchNack runs the client side of a NACK exchange and returns the datagrams of the
// answer, not yet opened.
func (n *Node) fetchNack(ctx context.Context, job nackJob) ([]wire.Datagram, error) {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.RepairTimeout)
	defer cancel()
	rs, serverNonce, err := n.dialRepair(ctx, job.id, job.addr, job.inc)
	if err != nil {
		return nil, err
	}
	defer rs.close()
	req := wire.NackRequest{ServerNonce: serverNonce, Target: job.id, Incarnation: job.inc, Ranges: wire.NackRanges(job.seqs)}
	n.nonce(req.ClientNonce[:])
	if err := rs.request(wire.TypeNackRequest, wire.AppendNackRequest(make([]byte, wire.HeaderLen, wire.MaxNackRequestLen), &req)); err != nil {
		return nil, err
	}
	var dgs []wire.Datagram
	for i := uint32(0); ; i++ {
		d, err := rs.read(wire.MaxFrameLen, wire.TypeNackResponse)
		if err != nil {
			return nil, fmt.Errorf("nack response frame %d: %w", i, err)
		}
		add(&n.stats.NackBytes, len(d))
		before := len(dgs)
		var r wire.NackResponse
		r, dgs, err = wire.ParseNackResponse(dgs, d.Body())
		if err != nil {
			return nil, err
		}
		if r.Nonce != req.ClientNonce || r.Index != i || len(dgs) > len(job.seqs) {
			return nil, fmt.Errorf("nack response frame %d: index %d, %d datagrams for %d, nonce %x: %w",
				i, r.Index, len(dgs), len(job.seqs), r.Nonce[:4], ErrRepairMismatch)
		}
		// The frame buffer is reused: copy this frame's datagrams out.
		for j := before; j < len(dgs); j++ {
			dgs[j] = append(wire.Datagram(nil), dgs[j]...)
		}
		if r.Last {
			return dgs, nil
		}
	}
}

// answerNack answers a NACK request (frame d, authenticated, from a listed host) with
// the datagrams the ring still holds.
func (n *Node) answerNack(d wire.Datagram, from uint16, nonce [wire.NonceLen]byte, write func([]byte, wire.Header) error) error {
	req, err := wire.ParseNackRequest(d.Body())
	if err != nil {
		return err
	}
	if req.ServerNonce != nonce || req.Target != n.cfg.HostID {
		return fmt.Errorf("nack request from %d for host %d: %w", from, req.Target, ErrRepairMismatch)
	}
	// One answer at a time per requester. The mark goes before the last frame is
	// written: the requester's next NACK may come as soon as it has that frame.
	n.servedMu.Lock()
	busy := n.nackServing[from]
	n.nackServing[from] = true
	n.servedMu.Unlock()
	if busy {
		return fmt.Errorf("nack from host %d: %w", from, errRefused)
	}
	done := false
	release := func() {
		if !done {
			done = true
			n.servedMu.Lock()
			delete(n.nackServing, from)
			n.servedMu.Unlock()
		}
	}
	defer release()

	h := wire.Header{Type: wire.TypeNackResponse, Timestamp: n.clock.Now().UnixNano()}
	resp := wire.NackResponse{Nonce: req.ClientNonce}
	f := wire.AppendNackResponse(make([]byte, wire.HeaderLen, wire.MaxFrameLen), &resp)
	var dg []byte
	resent, missed := 0, 0
	for _, g := range req.Ranges {
		for s := g.First; s < g.First+uint64(g.Count); s++ {
			ok := false
			if n.ring != nil && req.Incarnation == n.inc {
				dg, ok = n.ring.get(s, dg[:0])
			}
			if !ok {
				missed++
				continue
			}
			if len(f)+2+len(dg)+wire.TagLen > wire.MaxFrameLen {
				if err := write(f[:len(f)+wire.TagLen], h); err != nil {
					return fmt.Errorf("nack response: %w", err)
				}
				resp.Index++
				f = wire.AppendNackResponse(f[:wire.HeaderLen], &resp)
			}
			f = wire.AppendNackDatagram(f, dg)
			resent++
		}
	}
	resp.Last = true
	f = wire.AppendNackResponse(f[:wire.HeaderLen], &resp)[:len(f)]
	release()
	if err := write(f[:len(f)+wire.TagLen], h); err != nil {
		return fmt.Errorf("nack response: %w", err)
	}
	add(&n.stats.NackResent, resent)
	add(&n.stats.NackMissed, missed)
	return nil
}
