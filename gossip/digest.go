package gossip

import (
	"github.com/homing-dev/homing/gossip/wire"
	"github.com/homing-dev/homing/session"
)

// digestLocked returns the digest of host's sessions in the ownership map. n.mu is held.
func (n *Node) digestLocked(host uint16) *wire.Digest {
	d := n.digests[host]
	if d == nil {
		d = new(wire.Digest)
		n.digests[host] = d
	}
	return d
}

// putLocked sets k's entry in the ownership map and keeps the digests. n.mu is held.
func (n *Node) putLocked(k session.Key, e entry) {
	if old, ok := n.owners.put(k, e); ok {
		n.digestLocked(old.owner.Host).Remove(k, old.owner.Epoch)
	}
	n.digestLocked(e.owner.Host).Add(k, e.owner.Epoch)
}

// delLocked removes k from the ownership map and keeps the digests. n.mu is held.
func (n *Node) delLocked(k session.Key) {
	if old, ok := n.owners.del(k); ok {
		n.digestLocked(old.owner.Host).Remove(k, old.owner.Epoch)
	}
}
