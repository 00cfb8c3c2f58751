package gossip

import (
	"context"
	"errors"
	"fmt"
	"github.com/homing-dev/homing/gossip/wire"
	"io"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/homing-dev/homing/session"
)

// Repair (anti-entropy). Multicast loses datagrams and a host that starts late has seen
// none of what was announced before; so a receiver fetches a peer's own sessions over
// an authenticated unicast stream and reconciles (gossip/wire/repair.go has the exchange):
//
//	receiver (client)                               peer (server)
//	admit: gap, new peer, new incarnation ─┐
//	heartbeat: digest differs twice ───────┴▶ needRepair
//	[repairer] at most one per peer, RepairInterval apart, RepairConcurrency at once
//	  track the peer's multicast records ──▶ dial ───────▶ [repair server] accept (bounded)
//	                                  ◀── challenge (server nonce)
//	                 request (nonces, target) ──▶ check tag, nonce, target, sender
//	                                               snapshot own sessions under n.mu,
//	                                               S = highest sequence number sent
//	                                  ◀── response frames (client nonce, S, records)
//	  reconcile under peersMu + mu:
//	    snapshot records: the usual conflict rules, except keys the peer's multicast
//	    touched after S (newer than the snapshot);
//	    the peer's entries the snapshot does not list and multicast did not touch after
//	    S: removed (a full snapshot only);
//	    datagrams of the peer up to S not yet received: dropped when they come.
//
// Restart: a new incarnation of a peer triggers a repair; its snapshot lists what the
// new incarnation owns, so entries of the old incarnation that it did not re-announce
// go when the snapshot is applied, or at the latest Grace after the new incarnation
// was seen (membership.go), whichever comes first.

// Dialer opens repair connections; *net.Dialer is one.
type Dialer interface {
	DialContext(ctx context.Context, network, address string) (net.Conn, error)
}

// sourceDialer is the default Dialer: TCP from this host's own address of the
// destination's family, the address its peers know it by (their repair listeners serve
// live peers' addresses only).
type sourceDialer struct{ addr, alt netip.Addr }

func (d sourceDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	var nd net.Dialer
	if to, err := netip.ParseAddrPort(address); err == nil {
		for _, a := range []netip.Addr{d.addr, d.alt} {
			if a.IsValid() && a.Is4() == to.Addr().Unmap().Is4() {
				nd.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(a, 0))
				break
			}
		}
	}
	return nd.DialContext(ctx, network, address)
}

// ListenRepair opens the TCP listener a node answers repair requests on; addr is this
// host's address and the repair port. Like the multicast socket, it belongs to the
// network namespace of the thread that opens it.
func ListenRepair(addr netip.AddrPort) (net.Listener, error) {
	var lc net.ListenConfig
	l, err := lc.Listen(context.Background(), "tcp", addr.String())
	if err != nil {
		return nil, fmt.Errorf("gossip repair listen %s: %w", addr, err)
	}
	return l, nil
}

// Repair errors (the client side). Each failed repair counts in RepairsFailed and,
// for these reasons, in one more counter.
var (
	// ErrRepairMismatch: an authenticated answer that is not for this request (wrong
	// nonce, sender, incarnation, frame order, or records of another owner).
	ErrRepairMismatch = errors.New("repair answer does not match the request")
	// ErrRepairTooLarge: an answer with more records than RepairMaxRecords.
	ErrRepairTooLarge = errors.New("repair answer too large")
	errPeerGone       = errors.New("peer restarted or left during the repair")
)

// repairTrack records, while a repair from a peer is in flight, the keys the peer's
// multicast records touched and the highest sequence number that touched each.
// Protected by Node.mu.
// The same type tracks, per peer with missing datagrams, the keys that recovered
// datagrams must not overwrite (nack.go); pruneAt is its size bound before a prune.
type repairTrack struct {
	keys    map[session.Key]uint64
	pruneAt int
}

func (t *repairTrack) touch(k session.Key, seq uint64) {
	if t.keys[k] < seq {
		t.keys[k] = seq
	}
}

// after reports whether k was touched by a datagram after sequence number s.
func (t *repairTrack) after(k session.Key, s uint64) bool { return t != nil && t.keys[k] > s }

// wantRepairLocked marks that a repair from p is needed since the datagram of sequence
// number seq. n.peersMu is held.
func (n *Node) wantRepairLocked(p *peerState, seq uint64) {
	if !n.cfg.Repair {
		return
	}
	if !p.needRepair || seq < p.needAt {
		p.needAt = seq
	}
	p.needRepair = true
	n.wake(n.wakeRepair)
}

// compareDigestLocked compares a peer's heartbeat digest with our view of its sessions;
// a mismatch on heartbeats in a row over a heartbeat interval asks for a repair. n.peersMu is held.
func (n *Node) compareDigestLocked(h wire.Header, p *peerState, d wire.Digest) {
	if !n.cfg.Repair || n.cfg.NoDigest || p.needRepair || p.repairing || n.gapPeers.Load() > 0 {
		p.digestMiss = 0
		return
	}
	n.mu.Lock()
	mine := *n.digestLocked(h.Sender)
	n.mu.Unlock()
	if mine == d {
		p.digestMiss = 0
		return
	}
	inc(&n.stats.DigestMismatches)
	p.digestMiss++
	now := n.clock.Now()
	if p.digestMiss == 1 {
		p.digestMissAt = now
	}
	// Two in a row, a heartbeat interval apart at least (tail probes come closer).
	if p.digestMiss >= 2 && now.Sub(p.digestMissAt) >= n.cfg.HeartbeatInterval {
		n.log.Info("gossip digest mismatch", "host", h.Sender, "peer", d.Count, "ours", mine.Count)
		p.digestMiss = 0
		n.wantRepairLocked(p, h.Seq)
	}
}

// repairJob is one repair from one peer.
type repairJob struct {
	id   uint16
	addr netip.AddrPort
	inc  uint64
	hint int // the sessions the peer's last heartbeat counted: the snapshot's expected size
}

// repairer is the goroutine that starts repairs: for each peer that is up and needs
// one, with none in flight and the last one RepairInterval ago, up to
// RepairConcurrency at once. Each repair runs in a goroutine of its own, in wg.
func (n *Node) repairer(ctx context.Context, wg *sync.WaitGroup) {
	t := n.clock.NewTicker(min(n.cfg.HeartbeatInterval, n.cfg.RepairInterval))
	defer t.Stop()
	for {
		jobs, nacks := n.dueRepairs(n.clock.Now())
		for _, job := range jobs {
			wg.Go(func() { n.repair(ctx, job) })
		}
		for _, job := range nacks {
			wg.Go(func() { n.nack(ctx, job) })
		}
		select {
		case <-ctx.Done():
			return
		case <-n.wakeRepair:
		case <-t.C():
		}
	}
}

// dueRepairs marks the repairs and NACKs to start now as in flight and returns them.
func (n *Node) dueRepairs(now time.Time) ([]repairJob, []nackJob) {
	n.peersMu.Lock()
	defer n.peersMu.Unlock()
	nacks := n.dueNacksLocked()
	var jobs []repairJob
	for id, p := range n.peers {
		if n.inFlight >= n.cfg.RepairConcurrency {
			break
		}
		if !p.needRepair || p.repairing || p.state != peerUp || now.Sub(p.lastRepair) < n.cfg.RepairInterval {
			continue
		}
		p.needRepair, p.repairing, p.lastRepair = false, true, now
		n.inFlight++
		// Track the peer's multicast from now: the snapshot is taken later.
		n.mu.Lock()
		n.tracks[id] = &repairTrack{keys: make(map[session.Key]uint64)}
		n.mu.Unlock()
		jobs = append(jobs, repairJob{id: id, addr: netip.AddrPortFrom(p.info.Addr, n.cfg.RepairPort), inc: p.inc, hint: int(p.announced)})
	}
	return jobs, nacks
}

// repair fetches a peer's sessions and reconciles; on failure the peer is marked for
// another repair (RepairInterval later).
func (n *Node) repair(ctx context.Context, job repairJob) {
	inc(&n.stats.RepairsStarted)
	start := time.Now()
	snap, err := n.fetch(ctx, job)
	if err == nil {
		err = n.reconcile(job, snap)
	}
	n.mu.Lock()
	delete(n.tracks, job.id)
	n.mu.Unlock()
	n.peersMu.Lock()
	n.inFlight--
	p := n.peers[job.id]
	if p != nil {
		p.repairing = false
		if err != nil && p.state == peerUp && !p.needRepair {
			p.needRepair, p.needAt = true, p.highest
		}
	}
	n.peersMu.Unlock()
	if err != nil {
		inc(&n.stats.RepairsFailed)
		switch {
		case errors.Is(err, wire.ErrBadTag):
			inc(&n.stats.RepairAuthFailures)
		case errors.Is(err, ErrRepairMismatch):
			inc(&n.stats.RepairMismatches)
		case errors.Is(err, wire.ErrMalformed), errors.Is(err, wire.ErrTruncated), errors.Is(err, wire.ErrBadMagic),
			errors.Is(err, wire.ErrBadVersion), errors.Is(err, wire.ErrUnknownType), errors.Is(err, wire.ErrOversize),
			errors.Is(err, ErrRepairTooLarge):
			inc(&n.stats.RepairMalformed)
		}
		if ctx.Err() == nil {
			n.log.Warn("gossip repair failed", "host", job.id, "addr", job.addr, "err", err)
		}
	} else {
		inc(&n.stats.RepairsCompleted)
		n.log.Debug("gossip repair", "host", job.id, "records", len(snap.recs), "took", time.Since(start))
	}
	n.wake(n.wakeRepair)
}

// snapshot is a peer's authenticated answer.
type snapshot struct {
	seq       uint64 // S: the peer's highest sequence number sent at snapshot time
	recs      []wire.Record
	truncated bool
}

// repairStream is the client's end of a repair connection, after the challenge.
type repairStream struct {
	n    *Node
	c    net.Conn
	keys *wire.KeyRing // the exchange's keys, from its start to its end
	op   *wire.Opener
	buf  []byte
	id   uint16
	inc  uint64

	stop func() bool
}

// request seals the request frame f (header space and body; the tag is appended) with
// the exchange's keys and the next request sequence number, and sends it.
func (rs *repairStream) request(typ wire.Type, f []byte) error {
	n := rs.n
	f = f[:len(f)+wire.TagLen]
	wire.NewSealer(rs.keys).Seal(f, wire.Header{Type: typ, Sender: n.cfg.HostID, Incarnation: n.inc,
		Seq: n.reqSeq.Add(1), Timestamp: n.clock.Now().UnixNano()})
	if _, err := rs.c.Write(f); err != nil {
		return fmt.Errorf("%v: %w", typ, err)
	}
	return nil
}

// dialRepair connects to a peer's repair listener (ctx bounds the whole exchange) and
// reads its challenge; it returns the stream and the server's nonce. A listener serves
// live peers only and closes other connections at accept: a host that dials a peer as
// soon as it hears it may reach it before the peer has admitted its heartbeat, and finds
// the connection closed before the challenge. Such a dial is made again after 25, 50,
// 100 and 200 ms (within ctx) before the exchange counts as failed.
func (n *Node) dialRepair(ctx context.Context, id uint16, addr netip.AddrPort, inc uint64) (*repairStream, [wire.NonceLen]byte, error) {
	for wait := 25 * time.Millisecond; ; wait *= 2 {
		rs, nonce, err := n.dialRepairOnce(ctx, id, addr, inc)
		if err == nil || wait > 200*time.Millisecond || !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
			return rs, nonce, err
		}
		t := time.NewTimer(wait) // network time, like the exchange's deadlines
		select {
		case <-ctx.Done():
			t.Stop()
			return rs, nonce, err
		case <-t.C:
		}
	}
}

func (n *Node) dialRepairOnce(ctx context.Context, id uint16, addr netip.AddrPort, inc uint64) (*repairStream, [wire.NonceLen]byte, error) {
	var nonce [wire.NonceLen]byte
	c, err := n.dialer.DialContext(ctx, "tcp", addr.String())
	if err != nil {
		return nil, nonce, fmt.Errorf("repair dial %s: %w", addr, err)
	}
	keys := n.keys.Load()
	rs := &repairStream{n: n, c: c, keys: keys, op: wire.NewOpener(keys, 0), id: id, inc: inc}
	rs.stop = context.AfterFunc(ctx, func() { c.Close() })
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	d, err := rs.read(wire.Overhead+wire.NonceLen, wire.TypeRepairChallenge)
	if err == nil {
		nonce, err = wire.ParseRepairChallenge(d.Body())
	}
	if err != nil {
		rs.close()
		return nil, nonce, fmt.Errorf("repair challenge: %w", err)
	}
	return rs, nonce, nil
}

func (rs *repairStream) close() {
	rs.stop()
	rs.c.Close()
}

// read reads and opens the next frame, which must be of type want, from the peer and
// incarnation of the stream.
func (rs *repairStream) read(max int, want wire.Type) (wire.Datagram, error) {
	d, buf, err := wire.ReadFrame(rs.c, rs.buf, max)
	rs.buf = buf
	if err == nil {
		if want != wire.TypeNackResponse {
			add(&rs.n.stats.RepairBytes, len(d))
		}
		err = rs.op.OpenFrame(d)
	}
	if err != nil {
		return nil, err
	}
	if d.Type() != want || d.Sender() != rs.id || d.Incarnation() != rs.inc {
		return nil, fmt.Errorf("%v from host %d incarnation %d, want %v from %d incarnation %d: %w",
			d.Type(), d.Sender(), d.Incarnation(), want, rs.id, rs.inc, ErrRepairMismatch)
	}
	return d, nil
}

// fetch runs the client side of the exchange with job's peer.
func (n *Node) fetch(ctx context.Context, job repairJob) (*snapshot, error) {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.RepairTimeout)
	defer cancel()
	rs, serverNonce, err := n.dialRepair(ctx, job.id, job.addr, job.inc)
	if err != nil {
		return nil, err
	}
	defer rs.close()
	req := wire.RepairRequest{Target: job.id, ServerNonce: serverNonce}
	n.nonce(req.ClientNonce[:])
	if err := rs.request(wire.TypeRepairRequest, wire.AppendRepairRequest(make([]byte, wire.HeaderLen, wire.Overhead+wire.RepairRequestLen), &req)); err != nil {
		return nil, err
	}

	// Sized from the peer's own count (bounded by the cap): a 1M-session snapshot
	// grown by append copied and zeroed 80 MB several times.
	snap := &snapshot{recs: make([]wire.Record, 0, min(job.hint, n.cfg.RepairMaxRecords)+wire.MaxFrameLen/wire.RecordAdd4Len)}
	for i := uint32(0); ; i++ {
		d, err := rs.read(wire.MaxFrameLen, wire.TypeRepairResponse)
		if err != nil {
			return nil, fmt.Errorf("repair response frame %d: %w", i, err)
		}
		if i == 0 {
			snap.seq = d.Seq()
		}
		before := len(snap.recs)
		var r wire.RepairResponse
		r, snap.recs, err = wire.ParseRepairResponse(snap.recs, d.Body())
		if err != nil {
			return nil, err
		}
		if r.Nonce != req.ClientNonce || r.Index != i || d.Seq() != snap.seq {
			return nil, fmt.Errorf("repair response frame %d: index %d, sequence %d (first %d), nonce %x: %w",
				i, r.Index, d.Seq(), snap.seq, r.Nonce[:4], ErrRepairMismatch)
		}
		for _, rec := range snap.recs[before:] {
			if rec.Owner.Host != job.id {
				return nil, fmt.Errorf("repair record owned by %d from host %d: %w", rec.Owner.Host, job.id, ErrRepairMismatch)
			}
		}
		if len(snap.recs) > n.cfg.RepairMaxRecords {
			return nil, fmt.Errorf("%d records > %d: %w", len(snap.recs), n.cfg.RepairMaxRecords, ErrRepairTooLarge)
		}
		if r.Last {
			snap.truncated = r.Truncated
			return snap, nil
		}
	}
}

// reconcileChunk bounds the updates of one Table.Apply during a reconcile;
// reconcileBatch is the snapshot records whose keys are touched together.
const (
	reconcileChunk = 8192
	reconcileBatch = 64
)

// reconcile applies a peer's snapshot (see the comment at the top of this file).
func (n *Node) reconcile(job repairJob, snap *snapshot) error {
	n.peersMu.Lock()
	defer n.peersMu.Unlock()
	p := n.peers[job.id]
	if p == nil || p.inc != job.inc {
		return errPeerGone
	}
	n.mu.Lock()
	tr := n.tracks[job.id]
	var ups []session.Update
	flush := func(force bool) {
		if len(ups) >= reconcileChunk || (force && len(ups) > 0) {
			n.applyLocked(ups)
			ups = ups[:0]
		}
	}
	// The entries the snapshot lists are marked (entry.listed) until the scan below,
	// which removes the peer's unmarked ones and clears every mark.
	applied, stale := 0, 0
	var refs [reconcileBatch]mref
	for at := 0; at < len(snap.recs); at += reconcileBatch {
		recs := snap.recs[at:min(at+reconcileBatch, len(snap.recs))]
		// As applyRecords: pack, hash and touch a batch of keys first.
		var sink uint64
		for i := range recs {
			n.owners.ref(recs[i].Key, &refs[i])
			sink += refs[i].touch()
		}
		for i := range recs {
			sink += refs[i].touchSlot()
		}
		n.sink = sink
		for i, r := range recs {
			ref := &refs[i]
			if tr.after(r.Key, snap.seq) {
				continue // the peer's multicast since the snapshot is newer
			}
			cur, ok := n.owners.getRef(ref)
			if ok && cur.owner == r.Owner {
				cur.inc, cur.listed = job.inc, true
				n.owners.putRef(ref, cur)
				continue
			}
			if ok && !wins(r.Owner, cur.owner) {
				stale++
				continue
			}
			n.putRefLocked(r.Key, ref, entry{owner: r.Owner, inc: job.inc, listed: true})
			ups = append(ups, session.Update{Key: r.Key, Owner: r.Owner})
			applied++
			flush(false)
		}
	}
	removed := 0
	n.owners.sweepListed(job.id, func(k session.Key, e entry) bool {
		if snap.truncated || tr.after(k, snap.seq) {
			return false
		}
		n.digestLocked(e.owner.Host).Remove(k, e.owner.Epoch)
		ups = append(ups, session.Update{Key: k, Owner: e.owner, Delete: true})
		removed++
		flush(false)
		return true
	})
	flush(true)
	n.mu.Unlock()
	if snap.seq > p.highest && snap.seq > p.covered {
		p.covered = snap.seq
	}
	n.forgetMissingLocked(job.id, p, snap.seq)
	if p.needRepair && p.needAt <= snap.seq {
		p.needRepair = false
	}
	p.digestMiss = 0
	add(&n.stats.RepairRecords, len(snap.recs))
	add(&n.stats.RecordsApplied, applied)
	add(&n.stats.StaleRecords, stale)
	add(&n.stats.RepairRemoved, removed)
	if snap.truncated {
		inc(&n.stats.RepairTruncated)
	}
	return nil
}
