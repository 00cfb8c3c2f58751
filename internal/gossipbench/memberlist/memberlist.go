// Command homing-bench-memberlist runs a hashicorp/memberlist node of the gossip
// benchmark (internal/gossipbench), as "homing-bench-memberlist gossip-node -system
// memberlist ...": gossipbench.Run starts it through Options.MemberlistCommand.
//
// It is a module of its own so that memberlist and its dependencies stay out of
// homing's go.mod: the benchmark compares homing's gossip with memberlist, homing does
// not use it. make bench and make bench-smoke build it into bin/.
package main

import (
	"fmt"
	"io"
	"log"
	"net/netip"
	"os"
	"sync"

	"github.com/hashicorp/memberlist"

	"github.com/homing-dev/homing/internal/gossipbench"
	"github.com/homing-dev/homing/session"
)

func main() {
	if len(os.Args) < 2 || os.Args[1] != gossipbench.ChildCommand {
		fmt.Fprintf(os.Stderr, "usage: %s %s -system memberlist -id N [-join ADDR:PORT]\n", os.Args[0], gossipbench.ChildCommand)
		os.Exit(2)
	}
	if err := gossipbench.ChildWith(os.Args[2:], startMemberlist); err != nil {
		fmt.Fprintln(os.Stderr, gossipbench.ChildCommand+":", err)
		os.Exit(1)
	}
}

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
	rec   *gossipbench.Recorder

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
	k, err := gossipbench.DecodeRecord(b)
	if err != nil {
		return
	}
	n.mu.Lock()
	fresh := !n.seen[k]
	n.seen[k] = true
	n.mu.Unlock()
	if fresh {
		n.rec.Applied(gossipbench.Index(k), gossipbench.Mono())
		n.queue.QueueBroadcast(mlBroadcast(append([]byte(nil), b...)))
	}
}

// startMemberlist starts a member at addr:7946 and, with join, joins that member.
func startMemberlist(id int, addr netip.Addr, join string, rec *gossipbench.Recorder) (gossipbench.Node, error) {
	n := &mlNode{rec: rec, seen: make(map[session.Key]bool)}
	conf := memberlist.DefaultLANConfig()
	conf.Name = fmt.Sprintf("h%d", id)
	conf.BindAddr = addr.String()
	conf.AdvertiseAddr = conf.BindAddr
	conf.BindPort, conf.AdvertisePort = gossipbench.MemberlistPort, gossipbench.MemberlistPort
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

func (n *mlNode) Peers() int { return n.ml.NumMembers() - 1 }

func (n *mlNode) Announce(i int) error {
	k := gossipbench.Key(i)
	n.mu.Lock()
	n.seen[k] = true
	n.mu.Unlock()
	n.queue.QueueBroadcast(mlBroadcast(gossipbench.EncodeRecord(i)))
	return nil
}

// stats: memberlist exposes no counters of its own worth reporting here.
func (n *mlNode) Stats() any { return struct{}{} }

func (n *mlNode) Close() { _ = n.ml.Shutdown() }
