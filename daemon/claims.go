package daemon

import (
	"context"
	"time"

	"github.com/homing-dev/homing/gossip"
	"github.com/homing-dev/homing/gossip/wire"
	"github.com/homing-dev/homing/probe"
	"github.com/homing-dev/homing/session"
)

// Claims: the sessions this host takes, from the probe's events (localEvent), the
// tentative claims of handshakes in progress and their expiry, and the data plane's
// warm-up after a start. Their time is the Daemon's clock (Daemon.clock, the real one
// unless a test sets another), which the gossip node shares; expireTentative takes the
// time it expires at, so that tests step it.

// clk is the daemon's clock.
func (d *Daemon) clk() gossip.Clock {
	if d.clock == nil {
		return gossip.RealClock()
	}
	return d.clock
}

// tentativeExpiry withdraws unconfirmed tentative claims, a quarter of their lifetime
// after they are due at most, until ctx ends.
func (d *Daemon) tentativeExpiry(ctx context.Context) {
	t := d.clk().NewTicker(d.Config.Probe.TentativeLifetime / 4)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C():
			d.expireTentative(now)
		}
	}
}

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
		c.tentative[ev.Key] = d.clk().Now().Add(d.Config.Probe.TentativeLifetime)
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
	_, err := d.Table.ApplyBatch([]session.Update{{Key: k, Owner: session.Owner{Host: d.Config.Host.ID, Epoch: wire.EpochAt(d.clk().Now())}}})
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
	clk := d.clk()
	start := clk.Now()
	tick := clk.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C():
		}
		el := clk.Now().Sub(start)
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
