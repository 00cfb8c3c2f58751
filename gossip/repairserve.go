package gossip

import (
	"context"
	"errors"
	"fmt"
	"github.com/homing-dev/homing/gossip/wire"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"
)

// repairServer is the goroutine that accepts repair and NACK connections and answers
// each in a goroutine of its own (in wg). It keeps the listener for the POP's live
// peers (an outsider once held all its slots, 1,278 connections in 20 s, and a peer's
// repairs failed 16 times in a row):
//   - a connection whose source is not a live peer's address (up, or listed in the
//     discovery file) is closed at accept (RepairServeStranger);
//   - a source holds at most RepairPerSource connections at once (RepairServePerSource);
//   - RepairConcurrency + nackServeConcurrency connections are served at once, but a
//     source that holds none always gets one: every peer keeps a slot
//     (RepairServeRefused beyond);
//   - a connection has RepairAuthTimeout from accept to send its authenticated request
//     (serve; RepairServeSlow).
func (n *Node) repairServer(ctx context.Context, wg *sync.WaitGroup) {
	l := n.cfg.RepairListener
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			inc(&n.stats.RepairServeErrors)
			n.log.Warn("gossip repair accept", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		src, ok := remoteAddr(c)
		if !ok || !n.livePeerAddr(src) {
			inc(&n.stats.RepairServeStranger)
			c.Close()
			continue
		}
		if p := n.takeSource(src); p != nil {
			inc(p)
			c.Close()
			continue
		}
		wg.Go(func() {
			defer n.releaseSource(src)
			n.serve(ctx, c)
		})
	}
}

// remoteAddr returns a connection's source address.
func remoteAddr(c net.Conn) (netip.Addr, bool) {
	a := c.RemoteAddr()
	if t, ok := a.(*net.TCPAddr); ok {
		return t.AddrPort().Addr().Unmap(), true
	}
	if a == nil {
		return netip.Addr{}, false
	}
	ap, err := netip.ParseAddrPort(a.String())
	return ap.Addr().Unmap(), err == nil
}

// livePeerAddr reports whether a is the address of a peer that is up, or of a host of
// the discovery file.
func (n *Node) livePeerAddr(a netip.Addr) bool {
	n.peersMu.Lock()
	defer n.peersMu.Unlock()
	for _, d := range n.discovery {
		if d.Addr == a {
			return true
		}
	}
	for _, p := range n.peers {
		if p.state == peerUp && (p.info.Addr == a || p.info.AltAddr == a) {
			return true
		}
	}
	return false
}

// takeSource takes a serving slot for source a; it returns the counter of the
// refusal, or nil.
func (n *Node) takeSource(a netip.Addr) *uint64 {
	n.servedMu.Lock()
	defer n.servedMu.Unlock()
	held := n.sources[a]
	switch {
	case held >= n.cfg.RepairPerSource:
		return &n.stats.RepairServePerSource
	case held > 0 && n.serving >= n.cfg.RepairConcurrency+nackServeConcurrency:
		return &n.stats.RepairServeRefused
	}
	n.sources[a] = held + 1
	n.serving++
	return nil
}

func (n *Node) releaseSource(a netip.Addr) {
	n.servedMu.Lock()
	defer n.servedMu.Unlock()
	n.serving--
	if n.sources[a]--; n.sources[a] <= 0 {
		delete(n.sources, a)
	}
}

// errRefused: a requester asking again within RepairInterval/2.
var errRefused = errors.New("repair requested too often")

// errSlow: no authenticated request within RepairAuthTimeout.
var errSlow = errors.New("no authenticated request in time")

// serve answers one repair connection and counts the outcome.
func (n *Node) serve(ctx context.Context, c net.Conn) {
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, n.cfg.RepairTimeout)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	dl, _ := ctx.Deadline()
	// Until it is authenticated, a connection has RepairAuthTimeout (real time).
	authDL := time.Now().Add(n.cfg.RepairAuthTimeout)
	_ = c.SetDeadline(authDL)
	authed := false
	sent, nack, err := n.answer(c, func() { authed = true; _ = c.SetDeadline(dl) })
	if err != nil && !authed && errors.Is(err, os.ErrDeadlineExceeded) {
		err = fmt.Errorf("%w: %w", errSlow, err)
	}
	switch {
	case nack:
		add(&n.stats.NackBytesSent, sent)
	default:
		add(&n.stats.RepairBytesSent, sent)
	}
	switch {
	case err == nil && nack:
		inc(&n.stats.NacksServed)
	case err == nil:
		inc(&n.stats.RepairsServed)
	case errors.Is(err, errRefused):
		inc(&n.stats.RepairServeRefused)
	case errors.Is(err, errSlow):
		inc(&n.stats.RepairServeSlow)
	case errors.Is(err, wire.ErrBadTag), errors.Is(err, ErrRepairMismatch), errors.Is(err, wire.ErrMalformed),
		errors.Is(err, wire.ErrTruncated), errors.Is(err, wire.ErrBadMagic), errors.Is(err, wire.ErrBadVersion),
		errors.Is(err, wire.ErrUnknownType), errors.Is(err, wire.ErrOversize):
		inc(&n.stats.RepairServeRejects)
		n.log.Warn("gossip repair request rejected", "remote", c.RemoteAddr(), "err", err)
	default:
		inc(&n.stats.RepairServeErrors)
		if ctx.Err() == nil || errors.Is(ctx.Err(), context.DeadlineExceeded) {
			n.log.Warn("gossip repair serve", "remote", c.RemoteAddr(), "err", err)
		}
	}
}

// answer runs the server side of the exchange (a full repair or a NACK) and returns
// the bytes it wrote and whether the request was a NACK; it calls authed once the
// request is authenticated and comes from a listed host.
func (n *Node) answer(c net.Conn, authed func()) (int, bool, error) {
	sealer := wire.NewSealer(n.keys.Load())
	sent := 0
	write := func(f []byte, h wire.Header) error {
		h.Sender, h.Incarnation = n.cfg.HostID, n.inc
		sealer.Seal(f, h)
		m, err := c.Write(f)
		sent += m
		return err
	}
	var nonce [wire.NonceLen]byte
	n.nonce(nonce[:])
	f := append(make([]byte, wire.HeaderLen, wire.Overhead+wire.NonceLen), nonce[:]...)
	if err := write(f[:len(f)+wire.TagLen], wire.Header{Type: wire.TypeRepairChallenge, Timestamp: n.clock.Now().UnixNano()}); err != nil {
		return sent, false, fmt.Errorf("repair challenge: %w", err)
	}

	d, _, err := wire.ReadFrame(c, nil, wire.MaxNackRequestLen)
	if err == nil {
		err = wire.NewOpener(n.keys.Load(), 0).OpenFrame(d)
	}
	if err != nil {
		return sent, false, fmt.Errorf("repair request: %w", err)
	}
	from := d.Sender()
	if from == n.cfg.HostID || from == 0 {
		return sent, false, fmt.Errorf("repair %v from %d: %w", d.Type(), from, ErrRepairMismatch)
	}
	n.peersMu.Lock()
	_, listed := n.discovery[from]
	listed = listed || n.discovery == nil
	n.peersMu.Unlock()
	if !listed {
		return sent, false, fmt.Errorf("repair request from unlisted host %d: %w", from, ErrRepairMismatch)
	}
	authed()
	if d.Type() == wire.TypeNackRequest {
		return sent, true, n.answerNack(d, from, nonce, write)
	}
	err = n.answerFull(d, from, nonce, write)
	return sent, false, err
}

// answerFull answers a repair request (frame d, authenticated, from a listed host)
// with a snapshot of the own sessions.
func (n *Node) answerFull(d wire.Datagram, from uint16, nonce [wire.NonceLen]byte, write func([]byte, wire.Header) error) error {
	req, err := wire.ParseRepairRequest(d.Body())
	if err != nil {
		return err
	}
	if d.Type() != wire.TypeRepairRequest || req.ServerNonce != nonce || req.Target != n.cfg.HostID {
		return fmt.Errorf("repair %v from %d for host %d: %w", d.Type(), from, req.Target, ErrRepairMismatch)
	}
	select {
	case n.fullSem <- struct{}{}:
		defer func() { <-n.fullSem }()
	default:
		return fmt.Errorf("host %d: %d full answers running: %w", from, cap(n.fullSem), errRefused)
	}
	now := n.clock.Now()
	n.servedMu.Lock()
	last, ok := n.served[from]
	if !ok || now.Sub(last) >= n.cfg.RepairInterval/2 {
		n.served[from] = now
	}
	n.servedMu.Unlock()
	if ok && now.Sub(last) < n.cfg.RepairInterval/2 {
		return fmt.Errorf("host %d: %w", from, errRefused)
	}

	// Snapshot: the own sessions, and the last sequence number sent. Every datagram
	// up to it carried records already in the map (the map changes before a record is
	// queued), so the snapshot is at least as new as all of them.
	limit := n.cfg.RepairMaxRecords
	n.mu.Lock()
	n.sendMu.Lock()
	seq := n.seq
	n.sendMu.Unlock()
	recs := make([]wire.Record, 0, min(limit, int(n.digestLocked(n.cfg.HostID).Count)+1))
	truncated := false
	for k, e := range n.owners.all() {
		if e.owner.Host != n.cfg.HostID {
			continue
		}
		if len(recs) == limit {
			truncated = true
			break
		}
		recs = append(recs, wire.Record{Op: wire.OpAdd, Key: k, Owner: e.owner})
	}
	n.mu.Unlock()

	h := wire.Header{Type: wire.TypeRepairResponse, Seq: seq, Timestamp: now.UnixNano()}
	resp := wire.RepairResponse{Nonce: req.ClientNonce}
	buf := make([]byte, 0, wire.MaxFrameLen)
	for i := 0; ; resp.Index++ {
		f := wire.AppendRepairResponse(buf[:wire.HeaderLen], &resp)
		for ; i < len(recs) && len(f)+recs[i].Len()+wire.TagLen <= wire.MaxFrameLen; i++ {
			f = wire.AppendRecord(f, recs[i])
		}
		if i == len(recs) {
			resp.Last, resp.Truncated = true, truncated
			// Rewrite the response header in place with the flags; the records stay.
			f = wire.AppendRepairResponse(f[:wire.HeaderLen], &resp)[:len(f)]
		}
		if err := write(f[:len(f)+wire.TagLen], h); err != nil {
			return fmt.Errorf("repair response: %w", err)
		}
		if resp.Last {
			return nil
		}
	}
}
