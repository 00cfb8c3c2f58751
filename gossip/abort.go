package gossip

import (
	"fmt"

	"github.com/homing-dev/homing/session"
)

// LocalAbort withdraws this host's claim on k at once, without the linger: for a claim
// that never became a session (a tentative claim of a handshake that did not complete).
// It does nothing if this host does not own k; a pending linger of k is cancelled.
func (n *Node) LocalAbort(k session.Key) error {
	if !k.Valid() {
		return fmt.Errorf("local abort %v: %w", k, ErrInvalidKey)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	e, ok := n.owners.get(k)
	if !ok || e.owner.Host != n.cfg.HostID {
		return nil
	}
	delete(n.lingering, k)
	return n.deleteLocalLocked(k)
}
