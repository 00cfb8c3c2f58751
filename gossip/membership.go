package gossip

import (
	"bytes"
	"context"
	"errors"
	"github.com/homing-dev/homing/gossip/wire"
	"net"
	"net/netip"
	"time"

	"github.com/homing-dev/homing/session"
)

// Membership (patent FIG. 4): a peer is up from its first valid heartbeat, down after
// DownAfter heartbeat intervals without one (or when the discovery file stops listing
// it). Up calls Templates.Publish, down Templates.Withdraw. The sessions a peer owned
// in an incarnation are dropped Grace after that incarnation ended (the peer went down
// or restarted with a higher incarnation), unless the peer comes back up with the same
// incarnation first.

type peerStateKind uint8

const (
	peerNew  peerStateKind = iota // heard from, no heartbeat yet
	peerUp                        // heartbeats arrive
	peerDown                      // stopped heartbeating, or excluded
)

// peerState is what we track of one sender. Protected by Node.peersMu.
type peerState struct {
	state   peerStateKind
	info    Peer      // last announcement (valid once up)
	inc     uint64    // current incarnation
	highest uint64    // highest sequence number seen in inc
	lastHB  time.Time // last heartbeat (first datagram for peerNew)
	hbTS    int64     // sender timestamp of the newest heartbeat admitted in inc

	// Repair (with Config.Repair).
	covered      uint64    // sequence number of the last snapshot applied in inc
	needRepair   bool      // a repair is wanted ...
	needAt       uint64    // ... since the datagram of this sequence number in inc
	repairing    bool      // a repair is in flight
	lastRepair   time.Time // start of the last repair
	digestMiss   int       // consecutive heartbeats whose digest disagreed
	digestMissAt time.Time // the first of them
	announced    uint32    // sessions the peer's last heartbeat digest counted (sizes a repair's snapshot)

	// NACK (nack.go).
	missing map[uint64]struct{} // sequence numbers missed in inc, not yet recovered
	nacking bool                // a NACK is in flight
}

// pendingDrop drops the sessions of host id learnt in incarnation inc at time at.
type pendingDrop struct {
	id  uint16
	inc uint64
	at  time.Time
}

// heartbeatLocked handles a peer's admitted heartbeat. n.peersMu is held.
// (identityLocked checked it against its binding before it was admitted.)
func (n *Node) heartbeatLocked(h wire.Header, hb *wire.Heartbeat, now time.Time) {
	n.bindLocked(hb)
	p := n.peers[h.Sender]
	p.hbTS = max(p.hbTS, h.Timestamp)
	info := Peer{
		ID: hb.Host, Addr: hb.Addr, AltAddr: hb.AltAddr, MAC: hb.MAC,
		TunnelPort: hb.TunnelPort, Domain: hb.Domain, Incarnation: hb.Incarnation,
	}
	p.lastHB = now
	if hb.HasDigest {
		p.announced = hb.Digest.Count
		n.compareDigestLocked(h, p, hb.Digest)
	}
	if p.state == peerUp && p.info.equal(info) {
		return
	}
	if n.cfg.Repair {
		n.wake(n.wakeRepair) // a peer that came up may have a repair waiting
	}
	if p.state != peerUp {
		n.log.Info("gossip peer up", "host", info.ID, "addr", info.Addr, "incarnation", info.Incarnation)
		n.cancelDropLocked(h.Sender, p.inc)
	}
	p.state, p.info = peerUp, info
	if err := n.templates.Publish(info); err != nil {
		inc(&n.stats.TemplateErrors)
		n.log.Error("gossip publish template", "host", info.ID, "err", err)
	}
	n.countPeersLocked()
}

// downLocked takes a peer down. n.peersMu is held.
func (n *Node) downLocked(id uint16, p *peerState, now time.Time, why string) {
	if p.state == peerDown {
		return
	}
	if p.state == peerUp {
		n.log.Info("gossip peer down", "host", id, "why", why)
		if err := n.templates.Withdraw(id); err != nil {
			inc(&n.stats.TemplateErrors)
			n.log.Error("gossip withdraw template", "host", id, "err", err)
		}
	}
	p.state = peerDown
	if len(p.missing) > 0 { // no NACK to a peer that is down: a full repair when it is back
		n.forgetMissingLocked(id, p, ^uint64(0))
		n.wantRepairLocked(p, p.highest)
	}
	n.scheduleDropLocked(id, p.inc, now)
	n.countPeersLocked()
}

func (n *Node) countPeersLocked() {
	up := 0
	for _, p := range n.peers {
		if p.state == peerUp {
			up++
		}
	}
	setGauge(&n.stats.PeersUp, up)
}

func (n *Node) scheduleDropLocked(id uint16, inc uint64, now time.Time) {
	for _, d := range n.drops {
		if d.id == id && d.inc == inc {
			return
		}
	}
	n.drops = append(n.drops, pendingDrop{id: id, inc: inc, at: now.Add(n.cfg.Grace)})
}

func (n *Node) cancelDropLocked(id uint16, inc uint64) {
	for i, d := range n.drops {
		if d.id == id && d.inc == inc {
			n.drops = append(n.drops[:i], n.drops[i+1:]...)
			return
		}
	}
}

// housekeeper is the goroutine that takes silent peers down, drops their sessions after
// the grace and polls the discovery file (the sender sends the heartbeats).
func (n *Node) housekeeper(ctx context.Context) {
	t := n.clock.NewTicker(n.cfg.HeartbeatInterval)
	defer t.Stop()
	lastPoll := n.clock.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		}
		now := n.clock.Now()
		if n.cfg.DiscoveryFile != "" && now.Sub(lastPoll) >= n.cfg.DiscoveryPoll {
			lastPoll = now
			_ = n.pollDiscovery(now, false) // errors are counted and logged
		}
		n.checkPeers(now)
	}
}

// checkPeers takes down peers whose heartbeats stopped and runs the due drops.
func (n *Node) checkPeers(now time.Time) {
	limit := time.Duration(n.cfg.DownAfter) * n.cfg.HeartbeatInterval
	n.peersMu.Lock()
	defer n.peersMu.Unlock()
	for id, p := range n.peers {
		if p.state != peerDown && now.Sub(p.lastHB) > limit {
			n.downLocked(id, p, now, "missed heartbeats")
		}
	}
	type hostInc struct {
		id  uint16
		inc uint64
	}
	due := map[hostInc]bool{}
	kept := n.drops[:0]
	for _, d := range n.drops {
		if d.at.After(now) {
			kept = append(kept, d)
		} else {
			due[hostInc{d.id, d.inc}] = true
		}
	}
	n.drops = kept
	if len(due) == 0 {
		return
	}
	n.mu.Lock()
	var ups []session.Update
	for k, e := range n.owners.all() {
		if due[hostInc{e.owner.Host, e.inc}] {
			n.delLocked(k)
			ups = append(ups, session.Update{Key: k, Owner: e.owner, Delete: true})
		}
	}
	// Counted before the table changes: whoever sees the sessions gone from the table
	// (TestPeerDownAndGrace) sees them counted.
	add(&n.stats.GraceDrops, len(ups))
	n.applyLocked(ups)
	n.mu.Unlock()
	if len(ups) > 0 {
		n.log.Info("gossip dropped sessions of departed peer", "sessions", len(ups))
	}
}

// Identity. A keyed host is trusted to speak for its own host id only, so membership
// binds each host id to the address and MAC it announces before any state changes: the
// discovery file's line where there is one, otherwise the first heartbeat admitted
// (first contact). A heartbeat that claims a bound id with another address or MAC is
// refused before its incarnation or sequence number is looked at (IDConflicts, and a
// log line at most every alarmEvery per id): a rogue cannot take over a live peer's
// template, and the real host is not refused afterwards. Rebind forgets a binding made
// at first contact (an operator's decision: the host moved, or its NIC changed).
//
// Incarnations are the senders' start times (unix ns, their clock): one later than our
// clock plus MaxClockSkew is refused, and admitted once our clock catches up, so that a
// huge incarnation cannot lock the real host out (it would be refused as a replay). A
// new incarnation of a live peer starts only with a heartbeat (checked against the
// binding), not with records. A bound peer that is down may come back with a lower
// incarnation (a host whose clock ran ahead, fixed and restarted), with a heartbeat
// timestamped inside ReplayWindow. A heartbeat of a live peer, bound address and MAC,
// with an older incarnation and a fresh timestamp is a second host running with the
// same id: refused and reported (DuplicateIDs).
//
// Replays to a receiver that has no state for a peer (it restarted, or the peer is new
// to it): the first datagram of a peer, or of a new incarnation, is accepted only if
// its timestamp is within ReplayWindow of our clock (OutsideWindow); later ones are
// checked by sequence number as before.

// Sequence numbers pushed ahead. Records carry no address to check against the
// binding, so a keyed host can send datagrams under a live host's id and incarnation;
// with sequence numbers far ahead, the real host's next datagrams would look like
// replays until it restarted. A heartbeat (checked against the binding) timestamped
// later than every heartbeat admitted from the host in this incarnation, and within
// ReplayWindow, whose sequence number is more than seqConflictMargin below the highest
// seen, resets the highest to it (SeqConflicts, alarmed) and asks for a repair. A
// replayed heartbeat is not later than the last admitted one; a reordered one (two
// relay paths) is not that far behind. A jump of at most the margin heals by itself.
const seqConflictMargin = 1024

// alarmEvery rate-limits the identity alarms' log lines, per host id.
const alarmEvery = 10 * time.Second

// binding is the address and MAC a host id is bound to.
type binding struct {
	addr, alt netip.Addr
	mac       net.HardwareAddr
}

func (b binding) matches(hb *wire.Heartbeat) bool {
	return hb.Addr == b.addr && hb.AltAddr == b.alt && bytes.Equal(hb.MAC, b.mac)
}

// identityLocked checks a heartbeat against the id's binding before anything else:
// false refuses it (counted, alarmed). n.peersMu is held.
func (n *Node) identityLocked(h wire.Header, hb *wire.Heartbeat, now time.Time) bool {
	if d, ok := n.discovery[h.Sender]; ok {
		if !d.matches(hb) {
			inc(&n.stats.Mismatch)
			n.alarmLocked(h.Sender, now, "gossip heartbeat disagrees with the discovery file",
				"listed", d.Addr, "addr", hb.Addr, "mac", hb.MAC)
			return false
		}
		return true
	}
	b, ok := n.bindings[h.Sender]
	if !ok || b.matches(hb) {
		return true
	}
	inc(&n.stats.IDConflicts)
	n.alarmLocked(h.Sender, now, "gossip host id claimed from another address or MAC (impostor or duplicate host id); refused",
		"bound_addr", b.addr, "bound_mac", b.mac, "addr", hb.Addr, "mac", hb.MAC, "incarnation", hb.Incarnation)
	return false
}

// bindLocked binds an admitted heartbeat's id at first contact. n.peersMu is held.
func (n *Node) bindLocked(hb *wire.Heartbeat) {
	if _, ok := n.discovery[hb.Host]; ok {
		return
	}
	if _, ok := n.bindings[hb.Host]; !ok {
		n.bindings[hb.Host] = binding{addr: hb.Addr, alt: hb.AltAddr, mac: append(net.HardwareAddr(nil), hb.MAC...)}
		n.log.Info("gossip host id bound", "host", hb.Host, "addr", hb.Addr, "mac", hb.MAC)
	}
}

// alarmLocked logs an identity alarm, at most once per alarmEvery per host id.
func (n *Node) alarmLocked(id uint16, now time.Time, msg string, args ...any) {
	if last, ok := n.alarms[id]; ok && now.Sub(last) < alarmEvery {
		return
	}
	n.alarms[id] = now
	n.log.Warn(msg, append([]any{"host", id}, args...)...)
}

// inWindow reports whether a datagram's timestamp is within ReplayWindow of now.
func (n *Node) inWindow(h wire.Header, now time.Time) bool {
	d := now.Sub(time.Unix(0, h.Timestamp))
	return d <= n.cfg.ReplayWindow && d >= -n.cfg.ReplayWindow
}

// ahead reports whether an incarnation runs ahead of now by more than MaxClockSkew.
func (n *Node) ahead(inc uint64, now time.Time) bool {
	lim := now.Add(n.cfg.MaxClockSkew).UnixNano()
	return lim > 0 && inc > uint64(lim)
}

// ErrBoundByDiscovery: Rebind of a host id that the discovery file binds.
var ErrBoundByDiscovery = errors.New("host id is bound by the discovery file: edit the file")

// Rebind forgets host id's binding and its membership state (incarnation, sequence
// numbers): its next heartbeat binds it again, as at first contact. Its sessions stay
// until the grace runs out, unless it comes back with the same incarnation. It reports
// whether the id was bound.
func (n *Node) Rebind(id uint16) (bool, error) {
	n.peersMu.Lock()
	defer n.peersMu.Unlock()
	if _, ok := n.discovery[id]; ok {
		return false, ErrBoundByDiscovery
	}
	b, bound := n.bindings[id]
	delete(n.bindings, id)
	delete(n.alarms, id)
	if p := n.peers[id]; p != nil {
		now := n.clock.Now()
		n.downLocked(id, p, now, "rebind")
		n.forgetMissingLocked(id, p, ^uint64(0))
		delete(n.peers, id)
	}
	n.log.Info("gossip host id unbound by the operator", "host", id, "was_addr", b.addr, "was_mac", b.mac)
	return bound, nil
}
