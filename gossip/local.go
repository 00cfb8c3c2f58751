package gossip

import (
	"context"
	"fmt"
	"github.com/homing-dev/homing/gossip/wire"
	"time"

	"github.com/homing-dev/homing/session"
)

// nextEpoch returns a fresh, strictly increasing epoch. n.mu is held.
func (n *Node) nextEpoch() uint64 {
	e := wire.EpochAt(n.clock.Now())
	if e <= n.lastEpoch {
		e = n.lastEpoch + 1
	}
	n.lastEpoch = e
	return e
}

// LocalAdd claims k for this host: the session is written to the own table and
// announced with a fresh epoch, which wins over any earlier claim. A pending delete of
// k (lingering) is cancelled. The table is written even when the announcement cannot be
// queued (ErrQueueFull).
func (n *Node) LocalAdd(k session.Key) error {
	if !k.Valid() {
		return fmt.Errorf("local add %v: %w", k, ErrInvalidKey)
	}
	n.mu.Lock()
	delete(n.lingering, k)
	o := session.Owner{Host: n.cfg.HostID, Epoch: n.nextEpoch()}
	n.putLocked(k, entry{owner: o, inc: n.inc})
	u := session.Update{Key: k, Owner: o}
	n.localUpd = append(n.localUpd, u)
	err := n.enqueueLocked(u)
	n.mu.Unlock()
	inc(&n.stats.LocalUpdates)
	n.wake(n.wakeSend)
	return err
}

// LocalDelete reports that the local session k closed. If this host owns k, the delete
// is announced (and k leaves the own table) after the linger, unless LocalAdd(k) comes
// first. Deleting a session this host does not own does nothing.
func (n *Node) LocalDelete(k session.Key) error {
	if !k.Valid() {
		return fmt.Errorf("local delete %v: %w", k, ErrInvalidKey)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	e, ok := n.owners.get(k)
	if !ok || e.owner.Host != n.cfg.HostID {
		return nil
	}
	if n.cfg.Linger < 0 {
		return n.deleteLocalLocked(k)
	}
	if _, ok := n.lingering[k]; ok {
		return nil // already lingering: the first close's deadline stands
	}
	n.lingerGen++
	n.lingering[k] = n.lingerGen
	n.lingerFIFO = append(n.lingerFIFO, lingerItem{key: k, gen: n.lingerGen, at: n.clock.Now().Add(n.cfg.Linger)})
	if len(n.lingerFIFO) == 1 {
		n.wake(n.wakeLing)
	}
	return nil
}

// deleteLocalLocked removes the own entry k and queues its delete. n.mu is held.
func (n *Node) deleteLocalLocked(k session.Key) error {
	n.delLocked(k)
	u := session.Update{Key: k, Owner: session.Owner{Host: n.cfg.HostID}, Delete: true}
	n.localUpd = append(n.localUpd, u)
	inc(&n.stats.LocalUpdates)
	err := n.enqueueLocked(u)
	n.wake(n.wakeSend)
	return err
}

// enqueueLocked queues u for announcement. n.mu is held.
func (n *Node) enqueueLocked(u session.Update) error {
	if n.queued.Load() >= int64(n.cfg.MaxQueue) {
		inc(&n.stats.QueueOverflow)
		return fmt.Errorf("announce %v: %w", u.Key, ErrQueueFull)
	}
	n.queued.Add(1)
	n.queue = append(n.queue, queued{rec: u, at: n.clock.Now().UnixNano()})
	return nil
}

func (n *Node) wake(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

type lingerItem struct {
	key session.Key
	gen uint64
	at  time.Time
}

// linger is the goroutine that announces local deletes when their linger ends. The
// linger is the same for every delete, so the FIFO is in deadline order.
func (n *Node) linger(ctx context.Context) {
	t := n.clock.NewTimer(time.Hour)
	defer t.Stop()
	for {
		now := n.clock.Now()
		next := time.Duration(-1)
		n.mu.Lock()
		i := 0
		for ; i < len(n.lingerFIFO); i++ {
			it := n.lingerFIFO[i]
			if it.at.After(now) {
				next = it.at.Sub(now)
				break
			}
			if n.lingering[it.key] != it.gen {
				continue // cancelled by LocalAdd, or superseded
			}
			delete(n.lingering, it.key)
			if e, ok := n.owners.get(it.key); ok && e.owner.Host == n.cfg.HostID {
				_ = n.deleteLocalLocked(it.key) // overflow is counted
			}
		}
		if i > 0 {
			rest := copy(n.lingerFIFO, n.lingerFIFO[i:])
			clear(n.lingerFIFO[rest:])
			n.lingerFIFO = n.lingerFIFO[:rest]
		}
		n.mu.Unlock()
		if next >= 0 {
			t.Reset(next)
		}
		select {
		case <-ctx.Done():
			return
		case <-n.wakeLing:
		case <-t.C():
		}
	}
}
