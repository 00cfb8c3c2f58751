package daemon

import (
	"fmt"
	"reflect"

	"github.com/homing-dev/homing/config"
	"github.com/homing-dev/homing/gossip"
	"github.com/homing-dev/homing/lcore"
)

// Header-template slots. The data plane keeps one GUE header template per peer host id
// (lcore.DataPlane.SetTemplate, ClearTemplate); this file holds every rule of who writes
// a slot:
//
//   - a static peer (peers[] with a MAC) is written at start (startStaticPeers) and by a
//     reload that adds or changes it (reloadStaticPeers); one without a MAC is not
//     written until gossip announces it;
//   - gossip writes a peer it sees up (templates.Publish): in this host's domain toward
//     the MAC it announces; in another domain through the gateway's MAC (domains.go,
//     which also rewrites those slots when the gateway's MAC changes);
//   - gossip clears a peer it takes down (templates.Withdraw);
//   - a reload that removes a static peer, or its MAC, clears the slot unless gossip has
//     the peer up (the slot is gossip's then).
//
// A static peer that gossip also announces ends with gossip's template (it is written
// last, and again on every change of the announcement).
//
// A slot also admits the peer's GUE: the lcores decapsulate GUE only from the tunnel
// addresses of the peers with a template (its Dst, and Alt: the peer's address of the
// other family, from which it sends if its family is not this host's), so a peer's GUE
// is refused from the moment its slot is cleared.

// staticTemplate is the template of a static peer (p.MAC set).
func (d *Daemon) staticTemplate(cfg *config.Config, p config.Peer) lcore.Template {
	return lcore.Template{ID: p.ID, SrcMAC: d.MAC, DstMAC: p.MAC, Src: cfg.Host.Address, Dst: p.Address, TunnelPort: p.TunnelPort}
}

// startStaticPeers writes the static peers' templates at start.
func (d *Daemon) startStaticPeers() error {
	cfg := d.Config
	for _, p := range cfg.Peers {
		if p.MAC == nil {
			d.Log.Warn("static peer without a MAC: not forwarding to it until its MAC is known", "peer", p.ID)
			continue
		}
		if err := d.DP.SetTemplate(d.staticTemplate(cfg, p)); err != nil {
			return fmt.Errorf("%s: peers: %w", cfg.Source, err)
		}
	}
	return nil
}

// reloadStaticPeers applies a reload's static peers (old: the configuration in force):
// publish new and changed templates, clear removed ones (unless gossip has the peer up:
// then its template is gossip's). It appends what changed to changes.
func (d *Daemon) reloadStaticPeers(old, cfg *config.Config, changes []string) ([]string, error) {
	gossipUp := map[uint16]bool{}
	if n := d.Node(); n != nil {
		for _, p := range n.Peers() {
			gossipUp[p.ID] = true
		}
	}
	for _, p := range cfg.Peers {
		q, had := old.Peer(p.ID)
		if had && reflect.DeepEqual(p, q) {
			continue
		}
		if p.MAC == nil {
			if had && q.MAC != nil && !gossipUp[p.ID] {
				d.DP.ClearTemplate(p.ID)
			}
			changes = append(changes, fmt.Sprintf("peer %d: %s, MAC unknown", p.ID, p.Address))
			continue
		}
		if err := d.DP.SetTemplate(d.staticTemplate(cfg, p)); err != nil {
			return changes, fmt.Errorf("%s: peers: %w", cfg.Source, err)
		}
		changes = append(changes, fmt.Sprintf("peer %d: %s %s", p.ID, p.Address, p.MAC))
	}
	for _, q := range old.Peers {
		if _, ok := cfg.Peer(q.ID); !ok {
			if !gossipUp[q.ID] {
				d.DP.ClearTemplate(q.ID)
			}
			changes = append(changes, fmt.Sprintf("peer %d removed", q.ID))
		}
	}
	return changes, nil
}

// templates adapts the data plane's template store to gossip's membership callbacks.
type templates struct{ d *Daemon }

func (t templates) Publish(p gossip.Peer) error {
	self := t.d.Config.Host.Address
	dst := p.Addr
	alt := p.AltAddr
	if dst.Is4() != self.Is4() && p.AltAddr.IsValid() {
		dst, alt = p.AltAddr, p.Addr
	}
	if dst.Is4() != self.Is4() {
		return fmt.Errorf("peer %d: no address of this host's family (%v)", p.ID, p.Addr)
	}
	if p.Domain != t.d.Config.Host.Domain {
		// Another L2 domain: through the gateway's MAC to the peer's routed address.
		return t.d.ctl.dom.publish(p.ID, dst, alt, p.TunnelPort)
	}
	t.d.ctl.dom.forget(p.ID)
	if len(p.MAC) != 6 {
		return fmt.Errorf("peer %d: no MAC", p.ID)
	}
	t.d.Log.Info("peer up", "peer", p.ID, "address", dst, "mac", p.MAC.String())
	return t.d.DP.SetTemplate(lcore.Template{ID: p.ID, SrcMAC: t.d.MAC, DstMAC: p.MAC, Src: self, Dst: dst, Alt: alt, TunnelPort: p.TunnelPort})
}

func (t templates) Withdraw(id uint16) error {
	t.d.Log.Info("peer down", "peer", id)
	t.d.ctl.dom.forget(id)
	t.d.DP.ClearTemplate(id)
	return nil
}
