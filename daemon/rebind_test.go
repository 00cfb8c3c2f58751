package daemon

import (
	"io"
	"log/slog"
	"net"
	"net/netip"
	"testing"

	"github.com/homing-dev/homing/config"
	"github.com/homing-dev/homing/ctl"
	"github.com/homing-dev/homing/gossip"
	"github.com/homing-dev/homing/gossip/gossiptest"
)

// TestRebind: homingctl rebind ID reaches the gossip node; ids that are not peers and a
// daemon without gossip are refused.
func TestRebind(t *testing.T) {
	d := &Daemon{Config: config.Default(), Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	o := &ops{d: d}
	if _, err := o.rebind(ctl.RebindArgs{Host: 2}); err == nil {
		t.Error("rebind without gossip accepted")
	}
	node, err := gossip.New(gossip.Config{HostID: 1, Addr: netip.MustParseAddr("198.18.50.1"),
		MAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, Insecure: true}, gossiptest.NewHub().Conn(), gossiptest.NewTable(), gossiptest.NewTemplates())
	if err != nil {
		t.Fatal(err)
	}
	d.ctl = &control{node: node}
	for _, id := range []uint16{0, 1} {
		if _, err := o.rebind(ctl.RebindArgs{Host: id}); err == nil {
			t.Errorf("rebind %d accepted", id)
		}
	}
	if r, err := o.rebind(ctl.RebindArgs{Host: 2}); err != nil || r.Bound || r.Host != 2 {
		t.Errorf("rebind 2: %+v %v", r, err)
	}
}
