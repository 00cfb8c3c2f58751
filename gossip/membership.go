package gossip

import (
	"context"
	"github.com/homing-dev/homing/gossip/wire"
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

	// Repair (with Config.Repair).
	covered      uint64    // sequence number of the last snapshot applied in inc
	needRepair   bool      // a repair is wanted ...
	needAt       uint64    // ... since the datagram of this sequence number in inc
	repairing    bool      // a repair is in flight
	lastRepair   time.Time // start of the last repair
	digestMiss   int       // consecutive heartbeats whose digest disagreed
	digestMissAt time.Time // the first of them

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
func (n *Node) heartbeatLocked(h wire.Header, hb *wire.Heartbeat, now time.Time) {
	if d, ok := n.discovery[h.Sender]; ok && !d.matches(hb) {
		inc(&n.stats.Mismatch)
		return
	}
	p := n.peers[h.Sender]
	info := Peer{
		ID: hb.Host, Addr: hb.Addr, AltAddr: hb.AltAddr, MAC: hb.MAC,
		TunnelPort: hb.TunnelPort, Domain: hb.Domain, Incarnation: hb.Incarnation,
	}
	p.lastHB = now
	if hb.HasDigest {
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
	for k, e := range n.owners {
		if due[hostInc{e.owner.Host, e.inc}] {
			n.delLocked(k)
			ups = append(ups, session.Update{Key: k, Owner: e.owner, Delete: true})
		}
	}
	n.applyLocked(ups)
	n.mu.Unlock()
	add(&n.stats.GraceDrops, len(ups))
	if len(ups) > 0 {
		n.log.Info("gossip dropped sessions of departed peer", "sessions", len(ups))
	}
}
