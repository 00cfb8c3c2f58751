package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/homing-dev/homing/ctl"
	"github.com/homing-dev/homing/metrics"
	"github.com/homing-dev/homing/session"
)

// The control socket's handlers: what homingctl's commands (status, peers, lookup,
// sessions, stats) read from the daemon.

func (o *ops) handle(_ context.Context, r ctl.Request) (any, error) {
	if s := o.d.serving.Load(); s != nil {
		if v, ok, err := s.handle(r); ok {
			return v, err
		}
	}
	switch r.Cmd {
	case ctl.CmdStatus:
		return o.status(), nil
	case ctl.CmdPeers:
		return o.peers(), nil
	case ctl.CmdLookup:
		var a ctl.LookupArgs
		if err := r.Decode(&a); err != nil {
			return nil, err
		}
		return o.lookup(a)
	case ctl.CmdSessions:
		var a ctl.SessionsArgs
		if err := r.Decode(&a); err != nil {
			return nil, err
		}
		return o.sessions(a)
	case ctl.CmdStats:
		return o.stats(), nil
	case ctl.CmdRebind:
		var a ctl.RebindArgs
		if err := r.Decode(&a); err != nil {
			return nil, err
		}
		return o.rebind(a)
	case ctl.CmdCapture:
		var a ctl.CaptureArgs
		if err := r.Decode(&a); err != nil {
			return nil, err
		}
		return o.capture(a)
	}
	return nil, fmt.Errorf("%w %q (status, peers, lookup, sessions, stats, rebind, capture)", ctl.ErrUnknownCommand, r.Cmd)
}

// rebind makes gossip forget a host id's binding to an address and MAC (the host
// moved, or its NIC changed): its next heartbeat binds it again.
func (o *ops) rebind(a ctl.RebindArgs) (ctl.Rebind, error) {
	n := o.d.Node()
	if n == nil {
		return ctl.Rebind{}, errors.New("gossip is off")
	}
	if a.Host == 0 || a.Host == n.HostID() {
		return ctl.Rebind{}, fmt.Errorf("host id %d: not a peer", a.Host)
	}
	bound, err := n.Rebind(a.Host)
	if err != nil {
		return ctl.Rebind{}, fmt.Errorf("host id %d: %w", a.Host, err)
	}
	o.d.Log.Warn("gossip binding forgotten by the operator (homingctl rebind)", "host", a.Host, "was_bound", bound)
	return ctl.Rebind{Host: a.Host, Bound: bound}, nil
}

func (o *ops) status() ctl.Status {
	d := o.d
	o.mu.Lock()
	live, reloaded, reloadErr := o.live, o.reloaded, o.reloadErr
	o.mu.Unlock()
	cfg := d.Config
	st := ctl.Status{
		HostID: cfg.Host.ID, Name: cfg.Host.Name, Address: cfg.Host.Address.String(), MAC: d.MAC.String(),
		Domain: cfg.Host.Domain, Version: Version, PID: os.Getpid(), Started: o.started,
		Uptime: time.Since(o.started).Truncate(time.Second).String(), ConfigFile: cfg.Source,
		Workers: cfg.DPDK.Workers, NIC: cfg.NICPortName(), Kernel: cfg.Kernel.Name, Redirect: cfg.Tunnel.Redirect,
		Gossip: cfg.Gossip.Enabled, StaticPeers: len(live.Peers), Metrics: cfg.Metrics.Listen, LogLevel: live.Log.Level,
		LastReload: reloaded, LastReloadErr: reloadErr,
	}
	for _, v := range cfg.Host.VIPs {
		st.VIPs = append(st.VIPs, v.String())
	}
	st.Sessions4, st.Sessions6 = d.Table.Len()
	st.Capacity4, st.Capacity6 = d.Table.Capacity()
	if n := d.Node(); n != nil {
		st.Incarnation = n.Incarnation()
		st.PeersUp = len(n.Peers())
	}
	o.mu.Lock()
	st.KeyRotation = countKeys(o.keyFile) > 1
	st.Warming = d.warming.Load()
	o.mu.Unlock()
	if s := d.serving.Load(); s != nil {
		s.status(&st)
	}
	return st
}

func (o *ops) peers() []ctl.Peer {
	d := o.d
	o.mu.Lock()
	live := o.live
	o.mu.Unlock()
	byID := map[uint16]*ctl.Peer{}
	for _, p := range live.Peers {
		cp := &ctl.Peer{ID: p.ID, Address: p.Address.String(), TunnelPort: p.TunnelPort, Domain: p.Domain, Source: "static"}
		if p.MAC != nil {
			cp.MAC = p.MAC.String()
		}
		byID[p.ID] = cp
	}
	if n := d.Node(); n != nil {
		for _, p := range n.Peers() {
			cp := byID[p.ID]
			if cp == nil {
				cp = &ctl.Peer{ID: p.ID, Source: "gossip"}
				byID[p.ID] = cp
			} else {
				cp.Source = "static+gossip"
			}
			cp.Address, cp.TunnelPort, cp.Domain, cp.Incarnation = p.Addr.String(), p.TunnelPort, p.Domain, p.Incarnation
			if p.MAC != nil {
				cp.MAC = p.MAC.String()
			}
		}
	}
	counts := o.ownerCounts()
	out := make([]ctl.Peer, 0, len(byID))
	for id, p := range byID {
		p.Up = d.DP.TemplateValid(id)
		p.Sessions = counts[id]
		out = append(out, *p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// ParseSession parses a session as homingctl names it: proto, client ip:port, VIP ip:port.
func ParseSession(proto, client, vip string) (session.Key, error) {
	var k session.Key
	switch strings.ToLower(proto) {
	case "tcp":
		k.Proto = session.TCP
	case "udp":
		k.Proto = session.UDP
	default:
		return k, fmt.Errorf("protocol %q: want tcp or udp", proto)
	}
	c, err := netip.ParseAddrPort(client)
	if err != nil {
		return k, fmt.Errorf("client %q: want address:port ([v6]:port for IPv6)", client)
	}
	v, err := netip.ParseAddrPort(vip)
	if err != nil {
		return k, fmt.Errorf("vip %q: want address:port ([v6]:port for IPv6)", vip)
	}
	k.Src, k.SrcPort, k.Dst, k.DstPort = c.Addr().Unmap(), c.Port(), v.Addr().Unmap(), v.Port()
	if !k.Valid() {
		return k, fmt.Errorf("%s and %s are not of the same family", k.Src, k.Dst)
	}
	return k, nil
}

func (o *ops) lookup(a ctl.LookupArgs) (ctl.Lookup, error) {
	d := o.d
	k, err := ParseSession(a.Proto, a.Client, a.VIP)
	if err != nil {
		return ctl.Lookup{}, err
	}
	r := ctl.Lookup{Session: k.String()}
	ow, ok := d.Table.Lookup(k)
	r.Found, r.Owner, r.Epoch = ok, ow.Host, ow.Epoch
	switch {
	case !d.Config.Host.IsVIP(k.Dst):
		r.Verdict = "local: not a VIP"
	case !d.Config.Tunnel.Redirect:
		r.Verdict = "local: tunnel.redirect is off"
	case !ok:
		r.Verdict = "local: unknown session (the local kernel decides)"
	case ow.Host == d.Config.Host.ID:
		r.Verdict = "local: owned by this host"
	case d.DP.TemplateValid(ow.Host):
		r.Verdict = fmt.Sprintf("redirect to host %d", ow.Host)
	default:
		r.Verdict = fmt.Sprintf("local: owner %d has no header template (down or MAC unknown)", ow.Host)
	}
	return r, nil
}

func (o *ops) sessions(a ctl.SessionsArgs) (ctl.Sessions, error) {
	var vipAddr netip.Addr
	var vipPort uint16
	if a.VIP != "" {
		if ap, err := netip.ParseAddrPort(a.VIP); err == nil {
			vipAddr, vipPort = ap.Addr().Unmap(), ap.Port()
		} else if ad, err := netip.ParseAddr(a.VIP); err == nil {
			vipAddr = ad.Unmap()
		} else {
			return ctl.Sessions{}, fmt.Errorf("vip %q: want an address or address:port", a.VIP)
		}
	}
	limit := a.Limit
	if limit == 0 {
		limit = ctl.DefaultLimit
	}
	res := ctl.Sessions{Sessions: []ctl.Session{}}
	o.d.Table.Entries(func(k session.Key, ow session.Owner) bool {
		if a.Owner != nil && ow.Host != *a.Owner {
			return true
		}
		if vipAddr.IsValid() && (k.Dst != vipAddr || (vipPort != 0 && k.DstPort != vipPort)) {
			return true
		}
		res.Matched++
		if limit < 0 || len(res.Sessions) < limit {
			proto := "tcp"
			if k.Proto == session.UDP {
				proto = "udp"
			}
			res.Sessions = append(res.Sessions, ctl.Session{Proto: proto, Client: netip.AddrPortFrom(k.Src, k.SrcPort).String(),
				VIP: netip.AddrPortFrom(k.Dst, k.DstPort).String(), Owner: ow.Host, Epoch: ow.Epoch})
		}
		return true
	})
	res.Truncated = res.Matched > len(res.Sessions)
	slices.SortFunc(res.Sessions, func(x, y ctl.Session) int {
		if c := strings.Compare(x.VIP, y.VIP); c != 0 {
			return c
		}
		return strings.Compare(x.Client, y.Client)
	})
	return res, nil
}

func (o *ops) stats() ctl.Stats {
	s := o.Snapshot()
	var out ctl.Stats
	for _, l := range s.Lcores {
		ls := ctl.LcoreStats{Lcore: l.ID, RxNIC: l.RxNIC, RxKernel: l.RxKernel, TxNIC: l.TxNIC, TxKernel: l.TxKernel,
			Redirected: l.Classes[metrics.ClassRedirect], Decapsulated: l.Classes[metrics.ClassDecap],
			Classes: map[string]uint64{}, Drops: map[string]uint64{}, ICMPTooBig: l.ICMPTooBig, MSSClamped: l.MSSClamped,
			FragTunnelled: l.FragTunnelled}
		for c, v := range l.Classes {
			ls.Classes[metrics.Class(c).String()] = v
		}
		for dr, v := range l.Drops {
			ls.Drops[metrics.Drop(dr).String()] = v
		}
		ls.Park = map[string]uint64{"held_tcp": l.ParkIn - l.ParkUDPIn, "held_udp": l.ParkUDPIn,
			"released_redirect": l.ParkRedirect, "released_local": l.ParkLocal, "expired": l.ParkExpired,
			"full_tcp": l.ParkFull - l.ParkUDPFull, "full_udp": l.ParkUDPFull, "warmup_dropped": l.ParkWarmDrop}
		if l.Cycles > 0 {
			ls.BusyRatio = float64(l.BusyCycles) / float64(l.Cycles)
		}
		out.Lcores = append(out.Lcores, ls)
	}
	for _, p := range s.Ports {
		out.Ports = append(out.Ports, ctl.PortStats{Name: p.Name, RxPackets: p.RxPackets, TxPackets: p.TxPackets,
			RxBytes: p.RxBytes, TxBytes: p.TxBytes, RxMissed: p.RxMissed, RxErrors: p.RxErrors, TxErrors: p.TxErrors, RxNoMbuf: p.RxNoMbuf})
	}
	if t := s.Table; t != nil {
		out.Table = map[string]uint64{"entries_ipv4": uint64(t.Entries4), "entries_ipv6": uint64(t.Entries6),
			"capacity_ipv4": uint64(t.Capacity4), "capacity_ipv6": uint64(t.Capacity6),
			"inserts": t.Inserts, "updates": t.Updates, "deletes": t.Deletes, "delete_misses": t.DeleteMisses,
			"full": t.Full, "errors": t.Errors, "invalid": t.Invalid}
		out.Owners = map[string]int{}
		for id, n := range o.ownerCounts() {
			out.Owners[strconv.Itoa(int(id))] = n
		}
	}
	if g := s.Gossip; g != nil {
		out.Gossip = map[string]uint64{"datagrams_sent": g.DatagramsSent, "bytes_sent": g.BytesSent,
			"heartbeats_sent": g.HeartbeatsSent, "records_sent": g.RecordsSent, "send_errors": g.SendErrors,
			"datagrams_received": g.DatagramsReceived, "bytes_received": g.BytesReceived,
			"heartbeats_received": g.HeartbeatsReceived, "records_received": g.RecordsReceived,
			"receive_errors": g.ReceiveErrors, "auth_failures": g.AuthFailures, "sequence_gaps": g.SeqGaps,
			"records_applied": g.RecordsApplied, "stale_records": g.StaleRecords, "local_updates": g.LocalUpdates,
			"grace_drops": g.GraceDrops, "queue_overflow": g.QueueOverflow, "queue_len": g.QueueLen,
			"peers_up": g.PeersUp, "sessions": g.Sessions, "repairs_started": g.RepairsStarted,
			"repairs_completed": g.RepairsCompleted, "repairs_failed": g.RepairsFailed, "repairs_served": g.RepairsServed,
			"digest_mismatches": g.DigestMismatches, "table_errors": g.TableErrors, "repair_removed": g.RepairRemoved,
			"repair_records": g.RepairRecords, "repair_auth_failures": g.RepairAuthFailures, "template_errors": g.TemplateErrors,
			"nacks_sent": g.NacksSent, "nack_recovered": g.NackRecovered, "nack_fallbacks": g.NackFallbacks, "nack_resent": g.NackResent}
		out.Gossip["sequence_conflicts"] = g.SeqConflicts
		for reason, v := range g.RepairServeRefused {
			out.Gossip["repair_refused_"+reason] = v
		}
		out.Reject = g.Rejected
	}
	if p := s.Probe; p != nil {
		out.Probe = map[string]uint64{"events_lost": p.Lost, "resyncs": p.Resyncs, "resync_adds": p.ResyncAdds,
			"resync_deletes": p.ResyncDeletes, "sessions": p.Sessions}
	}
	if r := s.Relay; r != nil {
		out.Relay = map[string]uint64{"forwarded": r.Forwarded, "send_errors": r.SendErrors, "received": r.Received,
			"relayed": r.Relayed, "duplicates": r.Duplicates, "loops": r.Loops, "auth_failures": r.AuthFailures,
			"malformed": r.Malformed, "replays": r.Replays}
	}
	return out
}
