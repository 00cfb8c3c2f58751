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

	udp *udpLearner // UDP session learning (udplearn.go); nil: no [[udp_sessions]]
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
			Keys: keys, Insecure: cfg.Gossip.Insecure, MaxDatagram: cfg.Gossip.MaxDatagram, FlushDelay: cfg.Gossip.FlushDelay, FixedFlush: cfg.Gossip.Flush == "fixed", SizeHint: min(cfg.Table.Capacity4, maxSizeHint), SizeHint6: min(cfg.Table.Capacity6, maxSizeHint),
			MaxRate: cfg.Gossip.MaxRate, HeartbeatInterval: cfg.Gossip.HeartbeatInterval, DownAfter: cfg.Gossip.DownAfter,
			Grace: cfg.Gossip.Grace, Linger: cfg.Gossip.Linger, DiscoveryFile: cfg.Gossip.DiscoveryFile, Logger: d.Log.With("part", "gossip"),
			OnConverge: d.onConverge, Clock: d.clock,
			Repair: cfg.Gossip.Repair, RepairListener: repairL, RepairPort: cfg.Gossip.RepairPort,
			RepairInterval: cfg.Gossip.RepairInterval, RepairTimeout: cfg.Gossip.RepairTimeout,
			RepairMaxRecords: cfg.Gossip.RepairMaxRecords, NoDigest: !cfg.Gossip.Digest,
			RepairAuthTimeout: cfg.Gossip.RepairAuthTimeout, RepairPerSource: cfg.Gossip.RepairPerSource,
			MaxClockSkew: cfg.Gossip.MaxClockSkew, ReplayWindow: cfg.Gossip.ReplayWindow,
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
			d.tentativeExpiry(ctx)
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
	d.startUDPLearner(ctx, c)
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

// probeSyncWait bounds the wait for the probe's start-up listing before gossip starts.
const probeSyncWait = 5 * time.Second

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

// maxSizeHint caps the sessions of each family the gossip ownership map is allocated
// for at start (~33 B per IPv4 session, 58 per IPv6: 560 MB and 970 MB at the cap); a
// larger table's map grows beyond it as needed, doubling at once (a stall of the
// receiver while it rehashes).
const maxSizeHint = 1 << 24
