package gossip_test

import (
	"testing"
	"time"

	"github.com/homing-dev/homing/gossip/gossiptest"
)

// TestHeartbeatAges: a peer that heartbeats has an age under a few intervals; one that
// stopped keeps its entry and its age grows past the down time.
func TestHeartbeatAges(t *testing.T) {
	_, ms := cluster(t, 3, nil)
	for _, m := range ms {
		gossiptest.WaitFor(t, wait, "peers up", func() bool { return m.node.Stats().PeersUp == 2 })
	}
	ages := ms[0].node.HeartbeatAges(time.Now())
	if len(ages) != 2 || ages[2] > time.Second || ages[3] > time.Second || ages[1] != 0 {
		t.Fatalf("ages %v", ages)
	}
	ms[2].stop()
	gossiptest.WaitFor(t, wait, "peer 3 down", func() bool { return ms[0].node.Stats().PeersUp == 1 })
	ages = ms[0].node.HeartbeatAges(time.Now())
	// Down after 5 missed intervals of 20 ms.
	if a, ok := ages[3]; !ok || a < 100*time.Millisecond || ages[2] > time.Second {
		t.Errorf("after peer 3 stopped: ages %v", ages)
	}
}
