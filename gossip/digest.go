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
	var r mref
	n.owners.ref(k, &r)
	n.putRefLocked(k, &r, e)
}

// putRefLocked is putLocked with k's ref r. n.mu is held.
func (n *Node) putRefLocked(k session.Key, r *mref, e entry) {
	if old, ok := n.owners.putRef(r, e); ok {
		n.digestLocked(old.owner.Host).Remove(k, old.owner.Epoch)
	}
	n.digestLocked(e.owner.Host).Add(k, e.owner.Epoch)
}

// delLocked removes k from the ownership map and keeps the digests. n.mu is held.
func (n *Node) delLocked(k session.Key) {
	var r mref
	n.owners.ref(k, &r)
	n.delRefLocked(k, &r)
}

// delRefLocked is delLocked with k's ref r. n.mu is held.
func (n *Node) delRefLocked(k session.Key, r *mref) {
	if old, ok := n.owners.delRef(r); ok {
		n.digestLocked(old.owner.Host).Remove(k, old.owner.Epoch)
	}
}
