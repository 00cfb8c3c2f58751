package gossip_test

import (
	"fmt"
	"io"
	"log"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/homing-dev/homing/gossip"
	"github.com/homing-dev/homing/session"
)

// nsTransport is memberlist's NetTransport with its sockets opened in a network
// namespace, and its outgoing streams dialled from there.
type nsTransport struct {
	*memberlist.NetTransport
	ns string
}

func (t *nsTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := inNetns(t.ns, func() error {
		var err error
		c, err = net.DialTimeout("tcp", addr, timeout)
		return err
	})
	return c, err
}

// mlBroadcast is one record in memberlist's broadcast queue.
type mlBroadcast []byte

func (m mlBroadcast) Invalidates(memberlist.Broadcast) bool { return false }
func (m mlBroadcast) Message() []byte                       { return m }
func (m mlBroadcast) Finished()                             {}

// mlNode is a memberlist member whose user messages are gossip records: it applies
// the records it has not seen and queues them again (epidemic spread).
type mlNode struct {
	ml      *memberlist.Memberlist
	queue   *memberlist.TransmitLimitedQueue
	mu      sync.Mutex
	seen    map[session.Key]bool
	applied func(session.Key)
}

func (n *mlNode) NodeMeta(int) []byte           { return nil }
func (n *mlNode) LocalState(bool) []byte        { return nil }
func (n *mlNode) MergeRemoteState([]byte, bool) {}
func (n *mlNode) GetBroadcasts(overhead, limit int) [][]byte {
	return n.queue.GetBroadcasts(overhead, limit)
}

func (n *mlNode) NotifyMsg(b []byte) {
	rs, err := gossip.ParseRecords(nil, b, 0, 0)
	if err != nil || len(rs) != 1 {
		return
	}
	k := rs[0].Key
	n.mu.Lock()
	fresh := !n.seen[k]
	n.seen[k] = true
	n.mu.Unlock()
	if fresh {
		if n.applied != nil {
			n.applied(k)
		}
		n.queue.QueueBroadcast(mlBroadcast(append([]byte(nil), b...)))
	}
}

// announce queues a record for k.
func (n *mlNode) announce(k session.Key) {
	n.mu.Lock()
	n.seen[k] = true
	n.mu.Unlock()
	r := gossip.Record{Op: gossip.OpAdd, Key: k, Owner: session.Owner{Host: 1, Epoch: 1}}
	n.queue.QueueBroadcast(mlBroadcast(gossip.AppendRecord(nil, r)))
}

// startMemberlist starts a memberlist member with LAN defaults in namespace ns at
// 198.18.50.id:7946.
func startMemberlist(b *testing.B, ns string, id int) *mlNode {
	n := &mlNode{seen: make(map[session.Key]bool)}
	conf := memberlist.DefaultLANConfig()
	conf.Name = fmt.Sprintf("h%d", id)
	conf.BindAddr = fmt.Sprintf("198.18.50.%d", id)
	conf.AdvertiseAddr = conf.BindAddr
	conf.BindPort, conf.AdvertisePort = 7946, 7946
	conf.Delegate = n
	conf.Logger = log.New(io.Discard, "", 0)
	if err := inNetns(ns, func() error {
		nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{
			BindAddrs: []string{conf.BindAddr}, BindPort: conf.BindPort, Logger: conf.Logger,
		})
		if err != nil {
			return err
		}
		conf.Transport = &nsTransport{NetTransport: nt, ns: ns}
		n.ml, err = memberlist.Create(conf)
		return err
	}); err != nil {
		b.Fatalf("memberlist %d: %v", id, err)
	}
	n.queue = &memberlist.TransmitLimitedQueue{NumNodes: n.ml.NumMembers, RetransmitMult: conf.RetransmitMult}
	b.Cleanup(func() { _ = n.ml.Shutdown() })
	return n
}

// BenchmarkConvergenceMemberlist spreads the same records as BenchmarkConvergenceNetns
// with hashicorp/memberlist (LAN defaults; each record a user message in its
// TransmitLimitedQueue, re-queued by every member that first hears it) among the same
// 5 namespaces, at 1k sessions per second for 2 s, and reports p50/p99 of the delay
// from the announcement to the record at all 4 peers.
//
//	go test -run '^$' -bench ConvergenceMemberlist -benchtime=1x ./gossip
func BenchmarkConvergenceMemberlist(b *testing.B) {
	const peers = 4
	names := bridgeLab(b, peers+1)
	var meter atomic.Pointer[convergeMeter]
	ann := startMemberlist(b, names[0], 1)
	for p := range peers {
		n := startMemberlist(b, names[p+1], p+2)
		n.applied = func(k session.Key) {
			if mt := meter.Load(); mt != nil {
				mt.applied(benchIndex(k), time.Now().UnixNano())
			}
		}
		if err := inNetns(names[p+1], func() error { _, err := n.ml.Join([]string{"198.18.50.1:7946"}); return err }); err != nil {
			b.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for ann.ml.NumMembers() != peers+1 {
		if time.Now().After(deadline) {
			b.Fatal("members not up")
		}
		time.Sleep(time.Millisecond)
	}
	next := 0
	for _, rate := range []int{1000} {
		b.Run(fmt.Sprintf("rate=%d", rate), func(b *testing.B) {
			for range b.N {
				n := 2 * rate
				mt := newConvergeMeter(peers, next, n)
				next += n
				meter.Store(mt)
				mt.runWait(b, rate, 30*time.Second, true, func(i int) error { ann.announce(benchKey(i)); return nil })
			}
		})
	}
}
