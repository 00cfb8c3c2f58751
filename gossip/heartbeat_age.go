package gossip

import "time"

// HeartbeatAges returns, for every peer this node has heard from (up, down or not yet
// up), the time from its last heartbeat (its first datagram, before one) to now. A peer
// that is down keeps growing its age until it comes back.
func (n *Node) HeartbeatAges(now time.Time) map[uint16]time.Duration {
	n.peersMu.Lock()
	defer n.peersMu.Unlock()
	ages := make(map[uint16]time.Duration, len(n.peers))
	for id, p := range n.peers {
		if !p.lastHB.IsZero() {
			ages[id] = now.Sub(p.lastHB)
		}
	}
	return ages
}
