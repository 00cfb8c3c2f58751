package daemon

import (
	"time"

	"github.com/homing-dev/homing/gossip"
)

// heartbeatAges is the gossip node's time since each peer's last heartbeat, in seconds,
// for homing_gossip_peer_heartbeat_age_seconds.
func heartbeatAges(n *gossip.Node) map[uint16]float64 {
	ages := n.HeartbeatAges(time.Now())
	out := make(map[uint16]float64, len(ages))
	for id, a := range ages {
		out[id] = a.Seconds()
	}
	return out
}
