package gossipbench

import (
	"net/netip"
	"time"

	"github.com/homing-dev/homing/gossip"
)

// floorPort is the UDP port of the floor system's group.
const floorPort = 6082

// mcNode is the floor: every announcement is one datagram of one record multicast at
// once over the same transport as homing's (gossip.ListenMulticast), and a peer records
// it as soon as its receiving goroutine reads it. No batching, authentication,
// membership or table: what is left is the network stack and the scheduling of the
// processes, the part of the delay no gossip protocol on this machine can avoid.
type mcNode struct {
	conn *gossip.MulticastConn
	done chan struct{}
}

func startMulticast(iface string, rec *Recorder) (*mcNode, error) {
	conn, err := gossip.ListenMulticast(gossip.MulticastConfig{Group: netip.AddrPortFrom(Group, floorPort), Interface: iface})
	if err != nil {
		return nil, err
	}
	n := &mcNode{conn: conn, done: make(chan struct{})}
	go func() {
		defer close(n.done)
		buf := make([]byte, 2048)
		for {
			m, _, err := conn.Recv(buf)
			if err != nil {
				return
			}
			if k, err := DecodeRecord(buf[:m]); err == nil {
				rec.Applied(Index(k), mono())
			}
		}
	}()
	return n, nil
}

// peers: the floor has no membership; a socket that is open receives.
func (n *mcNode) Peers() int           { return 254 } // every host of any lab
func (n *mcNode) Announce(i int) error { return n.conn.Send(EncodeRecord(i)) }
func (n *mcNode) Stats() any           { return struct{}{} }

func (n *mcNode) Close() {
	_ = n.conn.Close()
	select {
	case <-n.done:
	case <-time.After(time.Second):
	}
}
