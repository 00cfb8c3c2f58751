package gossipbench

import (
	"fmt"
	"io"
	"log"
	"net/netip"
	"sync"

	"github.com/hashicorp/memberlist"

	"github.com/homing-dev/homing/session"
)

// memberlistPort is the memberlist members' UDP and TCP port.
const memberlistPort = 7946

// mlBroadcast is one record in memberlist's broadcast queue.
type mlBroadcast []byte

func (m mlBroadcast) Invalidates(memberlist.Broadcast) bool { return false }
func (m mlBroadcast) Message() []byte                       { return m }
func (m mlBroadcast) Finished()                             {}

// UniqueBroadcast marks every record as unique: the queue does not compare a new
// broadcast with every queued one (Invalidates), which costs O(queue) per broadcast
// and does not keep up at 50k records per second.
func (m mlBroadcast) UniqueBroadcast() {}

// mlNode is a memberlist member (LAN defaults) whose user messages are gossip records,
// each one a broadcast in its TransmitLimitedQueue: a member applies the records it has
// not seen and queues them again (epidemic spread), as an application built on
// memberlist's broadcasts would.
type mlNode struct {
	ml    *memberlist.Memberlist
	queue *memberlist.TransmitLimitedQueue
	rec   *recorder

	mu   sync.Mutex // protects seen
	seen map[session.Key]bool
}

func (n *mlNode) NodeMeta(int) []byte           { return nil }
func (n *mlNode) LocalState(bool) []byte        { return nil }
func (n *mlNode) MergeRemoteState([]byte, bool) {}
func (n *mlNode) GetBroadcasts(overhead, limit int) [][]byte {
	return n.queue.GetBroadcasts(overhead, limit)
}

// NotifyMsg is memberlist's delivery of a user message.
func (n *mlNode) NotifyMsg(b []byte) {
	k, err := decodeRecord(b)
	if err != nil {
		return
	}
	n.mu.Lock()
	fresh := !n.seen[k]
	n.seen[k] = true
	n.mu.Unlock()
	if fresh {
		n.rec.applied(Index(k), mono())
		n.queue.QueueBroadcast(mlBroadcast(append([]byte(nil), b...)))
	}
}

// startMemberlist starts a member at addr:7946 and, with join, joins that member.
func startMemberlist(id int, addr netip.Addr, join string, rec *recorder) (*mlNode, error) {
	n := &mlNode{rec: rec, seen: make(map[session.Key]bool)}
	conf := memberlist.DefaultLANConfig()
	conf.Name = fmt.Sprintf("h%d", id)
	conf.BindAddr = addr.String()
	conf.AdvertiseAddr = conf.BindAddr
	conf.BindPort, conf.AdvertisePort = memberlistPort, memberlistPort
	conf.Delegate = n
	conf.Logger = log.New(io.Discard, "", 0)
	var err error
	if n.ml, err = memberlist.Create(conf); err != nil {
		return nil, fmt.Errorf("memberlist %d: %w", id, err)
	}
	n.queue = &memberlist.TransmitLimitedQueue{NumNodes: n.ml.NumMembers, RetransmitMult: conf.RetransmitMult}
	if join != "" {
		if _, err := n.ml.Join([]string{join}); err != nil {
			_ = n.ml.Shutdown()
			return nil, fmt.Errorf("memberlist %d join %s: %w", id, join, err)
		}
	}
	return n, nil
}

func (n *mlNode) peers() int { return n.ml.NumMembers() - 1 }

func (n *mlNode) announce(i int) error {
	k := Key(i)
	n.mu.Lock()
	n.seen[k] = true
	n.mu.Unlock()
	n.queue.QueueBroadcast(mlBroadcast(encodeRecord(i)))
	return nil
}

// stats: memberlist exposes no counters of its own worth reporting here.
func (n *mlNode) stats() any { return struct{}{} }

func (n *mlNode) close() { _ = n.ml.Shutdown() }
