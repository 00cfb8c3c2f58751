package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/homing-dev/homing/gossip"
	"github.com/homing-dev/homing/gossip/wire"
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

	tentMu    sync.Mutex                // protects tentative
	tentative map[session.Key]time.Time // unconfirmed claims and their deadlines; nil: off

	dom *domains // peers of other domains, the gateway's MAC (domains.go)
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
	if p.Domain != t.d.Config.Host.Domain {
		// Another L2 domain: through the gateway's MAC to the peer's routed address.
		return t.d.ctl.dom.publish(p.ID, dst, p.TunnelPort)
	}
	t.d.ctl.dom.forget(p.ID)
	if len(p.MAC) != 6 {
		return fmt.Errorf("peer %d: no MAC", p.ID)
	}
	t.d.Log.Info("peer up", "peer", p.ID, "address", dst, "mac", p.MAC.String())
	return t.d.DP.SetTemplate(lcore.Template{ID: p.ID, SrcMAC: t.d.MAC, DstMAC: p.MAC, Src: self, Dst: dst, TunnelPort: p.TunnelPort})
}

func (t templates) Withdraw(id uint16) error {
	t.d.Log.Info("peer down", "peer", id)
	t.d.ctl.dom.forget(id)
	t.d.DP.ClearTemplate(id)
	return nil
}

func (c *control) fail(err error) {
	c.errMu.Lock()
	c.errs = append(c.errs, err)
	c.errMu.Unlock()
}

// readKeyFile reads and parses a gossip key file (as wire.LoadKeyFile, whose errors
// these are) and returns its contents too: the start reads the file once, for gossip's
// keys and for the reload's comparison (startOps).
func readKeyFile(path string) ([]byte, *wire.KeyRing, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("gossip key file: %w", err)
	}
	ring, err := wire.ParseKeys(b, path)
	if err != nil {
		return nil, nil, err
	}
	return b, ring, nil
}

// startControl starts gossip and the probe as configured.
func (d *Daemon) startControl() (err error) {
	cfg := d.Config
	ctx, cancel := context.WithCancel(context.Background())
	c := &control{cancel: cancel}
	d.ctl = c
	d.startDomains(ctx, c)
	var repairL net.Listener
	// A failed start undoes here what the teardown would not: the repair listener (the
	// node that closes it never ran) and the multicast socket of a node not made.
	defer func() {
		if err == nil {
			return
		}
		if repairL != nil {
			repairL.Close()
		}
		if c.node == nil && c.conn != nil {
			c.conn.Close()
			c.conn = nil
		}
	}()
	if cfg.Gossip.Enabled {
		var keys *wire.KeyRing
		if !cfg.Gossip.Insecure {
			if d.keyFile, keys, err = readKeyFile(cfg.Gossip.KeyFile); err != nil {
				return fmt.Errorf("%s: gossip.key_file: %w", cfg.Source, err)
			}
		}
		if c.conn, err = gossip.ListenMulticast(gossip.MulticastConfig{
			Group: netip.AddrPortFrom(cfg.Gossip.Group, cfg.Gossip.Port), Interface: cfg.Gossip.Interface, TTL: cfg.Gossip.TTL,
		}); err != nil {
			return err
		}
		if cfg.Gossip.Repair {
			if repairL, err = gossip.ListenRepair(netip.AddrPortFrom(cfg.Host.Address, cfg.Gossip.RepairPort)); err != nil {
				return fmt.Errorf("%s: gossip.repair_port: %w", cfg.Source, err)
			}
		}
		// A relay of gossip.relays tees the node's traffic to the other domains (domains.go).
		relayed, err := d.relayConn(ctx, c, keys)
		if err != nil {
			return err
		}
		c.node, err = gossip.New(gossip.Config{
			HostID: cfg.Host.ID, Addr: cfg.Host.Address, MAC: d.MAC, TunnelPort: cfg.Tunnel.Port, Domain: cfg.Host.Domain,
			Group: cfg.Gossip.Group, Port: cfg.Gossip.Port, Interface: cfg.Gossip.Interface, TTL: cfg.Gossip.TTL,
			Keys: keys, Insecure: cfg.Gossip.Insecure, MaxDatagram: cfg.Gossip.MaxDatagram, FlushDelay: cfg.Gossip.FlushDelay, FixedFlush: cfg.Gossip.Flush == "fixed", SizeHint: min(cfg.Table.Capacity4+cfg.Table.Capacity6, maxSizeHint),
			MaxRate: cfg.Gossip.MaxRate, HeartbeatInterval: cfg.Gossip.HeartbeatInterval, DownAfter: cfg.Gossip.DownAfter,
			Grace: cfg.Gossip.Grace, Linger: cfg.Gossip.Linger, DiscoveryFile: cfg.Gossip.DiscoveryFile, Logger: d.Log.With("part", "gossip"),
			OnConverge: d.onConverge,
			Repair:     cfg.Gossip.Repair, RepairListener: repairL, RepairPort: cfg.Gossip.RepairPort,
			RepairInterval: cfg.Gossip.RepairInterval, RepairTimeout: cfg.Gossip.RepairTimeout,
			RepairMaxRecords: cfg.Gossip.RepairMaxRecords, NoDigest: !cfg.Gossip.Digest,
			MaxQueue: cfg.Gossip.MaxQueue, NackRing: nackRing(cfg.Gossip.NackRing),
		}, relayed, d.Table, templates{d})
		if err != nil {
			return fmt.Errorf("%s: gossip: %w", cfg.Source, err)
		}
		if keys != nil {
			d.rotateKeysWith(c.node, c.dom.relay)
		}
	}
	if cfg.Probe.Enabled && cfg.Probe.Tentative {
		c.tentative = make(map[session.Key]time.Time)
		c.wg.Add(1)
		go func() { // tentative expiry
			defer c.wg.Done()
			t := time.NewTicker(cfg.Probe.TentativeLifetime / 4)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case now := <-t.C:
					d.expireTentative(now)
				}
			}
		}()
	}
	if cfg.Probe.Enabled {
		if c.probe, err = probe.Open(probe.Config{CgroupPath: cfg.Probe.Cgroup, VIPs: cfg.Host.VIPs,
			RingBytes: cfg.Probe.RingBytes, Logger: d.Log.With("part", "probe")}); err != nil {
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
		// The sessions that outlived a previous homingd must be in the ownership map
		// before the node heartbeats or answers a repair: a peer that repairs from the
		// new incarnation removes the entries of the old one that the answer lacks, and
		// its kernel would reset their packets until the adds arrive.
		select {
		case <-c.probe.Synced():
		case <-time.After(probeSyncWait):
			d.Log.Warn("probe start-up listing not done: gossip starts without it", "waited", probeSyncWait)
		}
	}
	if c.node != nil {
		c.wg.Add(1)
		go func() { // gossip node
			defer c.wg.Done()
			if err := c.node.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
				d.Log.Error("gossip stopped", "err", err)
				c.fail(err)
			}
		}()
		c.wg.Add(1)
		go func() { // warm-up
			defer c.wg.Done()
			d.warmUp(ctx, c.node)
		}()
	} else {
		d.warmed()
	}
	return nil
}

// warmUpMax bounds the warm-up: after it the data plane hands unknown sessions' packets
// to the kernel again even if a peer could not be repaired from.
const warmUpMax = 5 * time.Second

// warmUp ends the data plane's warm-up (lcore.DataPlane.SetWarming; it starts warming
// when the park and gossip are on) once this host has learnt its peers' sessions: three
// heartbeat intervals after gossip started (every live peer heard), and a completed
// repair per peer up (a new incarnation repairs from every peer) — or after warmUpMax.
// Until then the packets of sessions it does not know yet are held or dropped instead of
// being reset by its kernel: after a restart while still in the ECMP group, a peer's
// sessions arrive before the repair that teaches them (6 of 300 connections were reset
// in lab.TestKeyRotationLive's restart without it).
func (d *Daemon) warmUp(ctx context.Context, n *gossip.Node) {
	cfg := d.Config
	if d.DP == nil {
		return
	}
	defer d.warmed()
	start := time.Now()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		el := time.Since(start)
		st := n.Stats()
		if el >= 3*cfg.Gossip.HeartbeatInterval && (!cfg.Gossip.Repair || st.RepairsCompleted >= st.PeersUp) {
			d.Log.Info("warm: peers' sessions learnt", "took", el.Round(time.Millisecond), "peers", st.PeersUp,
				"repairs", st.RepairsCompleted)
			return
		}
		if el >= warmUpMax {
			d.Log.Warn("warm-up ended without a repair from every peer", "took", el.Round(time.Millisecond),
				"peers", st.PeersUp, "repairs", st.RepairsCompleted)
			return
		}
	}
}

// probeSyncWait bounds the wait for the probe's start-up listing before gossip starts.
const probeSyncWait = 5 * time.Second

// localEvent applies one probe event: through gossip when it runs, else straight to the
// table (a single host, or static peers only).
//
// A Tentative event (SYN taken on a VIP) claims the session at once, so that a final
// ACK that ECMP hands to another host is forwarded here; the Add of the completed
// handshake confirms it; a claim not confirmed within probe.tentative_lifetime is
// withdrawn without linger (expireTentative).
func (d *Daemon) localEvent(ev probe.Event) {
	c := d.ctl
	var err error
	switch ev.Kind {
	case probe.Tentative:
		if c.tentative == nil {
			return
		}
		c.tentMu.Lock()
		_, pending := c.tentative[ev.Key]
		c.tentative[ev.Key] = timeNow().Add(d.Config.Probe.TentativeLifetime)
		c.tentMu.Unlock()
		if !pending {
			err = d.claim(ev.Key)
		}
	case probe.Add:
		confirmed := false
		if c.tentative != nil {
			c.tentMu.Lock()
			_, confirmed = c.tentative[ev.Key]
			delete(c.tentative, ev.Key)
			c.tentMu.Unlock()
		}
		if confirmed && c.node != nil {
			if o, ok := c.node.Owner(ev.Key); ok && o.Host == d.Config.Host.ID {
				return // the tentative claim stands: nothing new to announce
			}
		}
		err = d.claim(ev.Key)
	case probe.Delete:
		if c.node != nil {
			err = c.node.LocalDelete(ev.Key)
		} else {
			_, err = d.Table.ApplyBatch([]session.Update{{Key: ev.Key, Owner: session.Owner{Host: d.Config.Host.ID}, Delete: true}})
		}
	}
	if err != nil {
		d.Log.Warn("local session", "event", ev.String(), "err", err)
	}
}

// claim makes this host the owner of k.
func (d *Daemon) claim(k session.Key) error {
	if n := d.ctl.node; n != nil {
		return n.LocalAdd(k)
	}
	_, err := d.Table.ApplyBatch([]session.Update{{Key: k, Owner: session.Owner{Host: d.Config.Host.ID, Epoch: wire.EpochAt(timeNow())}}})
	return err
}

// expireTentative withdraws the tentative claims whose handshake did not complete.
func (d *Daemon) expireTentative(now time.Time) {
	c := d.ctl
	var expired []session.Key
	c.tentMu.Lock()
	for k, at := range c.tentative {
		if !now.Before(at) {
			expired = append(expired, k)
			delete(c.tentative, k)
		}
	}
	c.tentMu.Unlock()
	for _, k := range expired {
		var err error
		if c.node != nil {
			err = c.node.LocalAbort(k)
		} else {
			_, err = d.Table.ApplyBatch([]session.Update{{Key: k, Owner: session.Owner{Host: d.Config.Host.ID}, Delete: true}})
		}
		if err != nil {
			d.Log.Warn("tentative claim expiry", "session", k.String(), "err", err)
		}
	}
	if len(expired) > 0 {
		d.Log.Debug("tentative claims expired", "count", len(expired))
	}
}

// stopControl stops the probe and gossip, waits for their goroutines, and returns what
// made either of them stop early.
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
	// Failures that ended gossip or the probe while the daemon ran (logged then) make
	// the stop report them too.
	c.errMu.Lock()
	defer c.errMu.Unlock()
	return errors.Join(c.errs...)
}

// Node is the gossip node (nil when gossip is off).
func (d *Daemon) Node() *gossip.Node {
	if d.ctl == nil {
		return nil
	}
	return d.ctl.node
}

// nackRing maps gossip.nack_ring (0: off) to gossip.Config.NackRing (negative: off).
func nackRing(n int) int {
	if n == 0 {
		return -1
	}
	return n
}

// maxSizeHint caps the sessions the gossip ownership map is allocated for at start
// (~135 B each: 570 MB at the cap); a larger table's map grows beyond it as needed.
const maxSizeHint = 1 << 22
