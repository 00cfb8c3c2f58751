package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"

	"github.com/homing-dev/homing/gossip"
	"github.com/homing-dev/homing/lcore"
	"github.com/homing-dev/homing/probe"
	"github.com/homing-dev/homing/session"
)

// The control plane: probe → own sessions → gossip node → table, and gossip membership →
// header templates. Long-lived goroutines: "gossip node" (Node.Run) and "probe reader"
// (Probe.Run); both end when ctl.cancel is called.
type control struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	node   *gossip.Node
	conn   *gossip.MulticastConn
	probe  *probe.Probe
	errMu  sync.Mutex // protects errs
	errs   []error
}

// templates adapts the data plane's template store to gossip's membership callbacks.
type templates struct{ d *Daemon }

func (t templates) Publish(p gossip.Peer) error {
	self := t.d.Config.Host.Address
	dst := p.Addr
	if dst.Is4() != self.Is4() && p.AltAddr.IsValid() {
		dst = p.AltAddr
	}
	if dst.Is4() != self.Is4() {
		return fmt.Errorf("peer %d: no address of this host's family (%v)", p.ID, p.Addr)
	}
	if len(p.MAC) != 6 {
		return fmt.Errorf("peer %d: no MAC", p.ID)
	}
	t.d.Log.Info("peer up", "peer", p.ID, "address", dst, "mac", p.MAC.String())
	return t.d.DP.SetTemplate(lcore.Template{ID: p.ID, SrcMAC: t.d.MAC, DstMAC: p.MAC, Src: self, Dst: dst, TunnelPort: p.TunnelPort})
}

func (t templates) Withdraw(id uint16) error {
	t.d.Log.Info("peer down", "peer", id)
	t.d.DP.ClearTemplate(id)
	return nil
}

func (c *control) fail(err error) {
	c.errMu.Lock()
	c.errs = append(c.errs, err)
	c.errMu.Unlock()
}

// startControl starts gossip and the probe as configured.
func (d *Daemon) startControl() (err error) {
	cfg := d.Config
	ctx, cancel := context.WithCancel(context.Background())
	c := &control{cancel: cancel}
	d.ctl = c
	if cfg.Gossip.Enabled {
		var keys *gossip.KeyRing
		if !cfg.Gossip.Insecure {
			if keys, err = gossip.LoadKeyFile(cfg.Gossip.KeyFile); err != nil {
				return fmt.Errorf("%s: gossip.key_file: %w", cfg.Source, err)
			}
		}
		if c.conn, err = gossip.ListenMulticast(gossip.MulticastConfig{
			Group: netip.AddrPortFrom(cfg.Gossip.Group, cfg.Gossip.Port), Interface: cfg.Gossip.Interface, TTL: cfg.Gossip.TTL,
		}); err != nil {
			return err
		}
		c.node, err = gossip.New(gossip.Config{
			HostID: cfg.Host.ID, Addr: cfg.Host.Address, MAC: d.MAC, TunnelPort: cfg.Tunnel.Port, Domain: cfg.Host.Domain,
			Group: cfg.Gossip.Group, Port: cfg.Gossip.Port, Interface: cfg.Gossip.Interface, TTL: cfg.Gossip.TTL,
			Keys: keys, Insecure: cfg.Gossip.Insecure, MaxDatagram: cfg.Gossip.MaxDatagram, FlushDelay: cfg.Gossip.FlushDelay,
			MaxRate: cfg.Gossip.MaxRate, HeartbeatInterval: cfg.Gossip.HeartbeatInterval, DownAfter: cfg.Gossip.DownAfter,
			Grace: cfg.Gossip.Grace, Linger: cfg.Gossip.Linger, DiscoveryFile: cfg.Gossip.DiscoveryFile, Logger: d.Log.With("part", "gossip"),
			OnConverge: d.onConverge,
		}, d.gossipConn(c.conn, keys), d.Table, templates{d})
		if err != nil {
			c.conn.Close()
			c.conn = nil
			return fmt.Errorf("%s: gossip: %w", cfg.Source, err)
		}
		c.wg.Add(1)
		go func() { // gossip node
			defer c.wg.Done()
			if err := c.node.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
				d.Log.Error("gossip stopped", "err", err)
				c.fail(err)
			}
		}()
	}
	if cfg.Probe.Enabled {
		if c.probe, err = probe.Open(probe.Config{CgroupPath: cfg.Probe.Cgroup, VIPs: cfg.Host.VIPs}); err != nil {
			return fmt.Errorf("%s: probe: %w", cfg.Source, err)
		}
		c.wg.Add(1)
		go func() { // probe reader
			defer c.wg.Done()
			err := c.probe.Run(ctx, func(ev probe.Event) { d.localEvent(ev) })
			if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, probe.ErrClosed) {
				d.Log.Error("probe stopped", "err", err)
				c.fail(err)
			}
		}()
	}
	return nil
}

// localEvent applies one probe event: through gossip when it runs, else straight to the
// table (a single host, or static peers only).
func (d *Daemon) localEvent(ev probe.Event) {
	n := d.ctl.node
	var err error
	switch ev.Kind {
	case probe.Add:
		if n != nil {
			err = n.LocalAdd(ev.Key)
		} else {
			err = d.Table.Apply([]session.Update{{Key: ev.Key, Owner: session.Owner{Host: d.Config.Host.ID, Epoch: gossip.EpochAt(timeNow())}}})
		}
	case probe.Delete:
		if n != nil {
			err = n.LocalDelete(ev.Key)
		} else {
			err = d.Table.Apply([]session.Update{{Key: ev.Key, Owner: session.Owner{Host: d.Config.Host.ID}, Delete: true}})
		}
	}
	if err != nil {
		d.Log.Warn("local session", "event", ev.String(), "err", err)
	}
}

// stopControl stops the probe and gossip and waits for their goroutines.
func (d *Daemon) stopControl() error {
	c := d.ctl
	if c == nil {
		return nil
	}
	c.cancel()
	if c.probe != nil {
		c.probe.Close()
	}
	if c.conn != nil {
		c.conn.Close()
	}
	c.wg.Wait()
	d.ctl = nil
	return nil
}

// Node is the gossip node (nil when gossip is off).
func (d *Daemon) Node() *gossip.Node {
	if d.ctl == nil {
		return nil
	}
	return d.ctl.node
}
