package daemon

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"reflect"
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

// sessionView is one row of homingctl sessions. A learnt QUIC connection ID
// (session.CIDKey) shows as proto quic-cid, the CID in hex as the client and the VIP port.
func sessionView(k session.Key, ow session.Owner) ctl.Session {
	s := ctl.Session{Proto: "tcp", Client: netip.AddrPortFrom(k.Src, k.SrcPort).String(),
		VIP: netip.AddrPortFrom(k.Dst, k.DstPort).String(), Owner: ow.Host, Epoch: ow.Epoch}
	if k.Proto == session.UDP {
		s.Proto = "udp"
	}
	if cid, ok := k.CID(); ok {
		s.Proto, s.Client, s.VIP = "quic-cid", hex.EncodeToString(cid), fmt.Sprintf(":%d", k.DstPort)
	}
	return s
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
			res.Sessions = append(res.Sessions, sessionView(k, ow))
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

func (o *ops) stats() ctl.Stats { return statsView(o.Snapshot()) }

// statsView is homingctl stats: each counter struct of the snapshot through its
// group's view (the ctl tags of its fields, metrics/counters.go), placed in ctl.Stats.
// A counter added to a struct shows up here with no change to this function.
func statsView(s metrics.Snapshot) ctl.Stats {
	var out ctl.Stats
	for i := range s.Lcores {
		l := &s.Lcores[i]
		v := metrics.LcoreCounters.View(l)
		ls := ctl.LcoreStats{Lcore: l.Lcore}
		ls.Counters = setFields(&ls, v)
		if l.Cycles > 0 {
			ls.BusyRatio = float64(l.BusyCycles) / float64(l.Cycles)
		}
		out.Lcores = append(out.Lcores, ls)
	}
	for i := range s.Ports {
		ps := ctl.PortStats{Name: s.Ports[i].Name}
		p := &s.Ports[i]
		ps.Counters = setFields(&ps, metrics.PortCounters.View(&p.Port))
		queue := func(q uint, v map[string]uint64) { // q<N>_rx_packets, ...
			if ps.Counters == nil {
				ps.Counters = map[string]uint64{}
			}
			for k, n := range v {
				ps.Counters[fmt.Sprintf("q%d_%s", q, k)] = n
			}
		}
		for j := range p.RxQueues {
			queue(p.RxQueues[j].Queue, metrics.QueueRxCounters.View(&p.RxQueues[j]))
		}
		for j := range p.TxQueues {
			queue(p.TxQueues[j].Queue, metrics.QueueTxCounters.View(&p.TxQueues[j]))
		}
		out.Ports = append(out.Ports, ps)
	}
	if t := s.Table; t != nil {
		out.Table = metrics.TableCounters.View(&t.Table)
		out.Table["entries_ipv4"], out.Table["entries_ipv6"] = uint64(t.Entries4), uint64(t.Entries6)
		out.Table["capacity_ipv4"], out.Table["capacity_ipv6"] = uint64(t.Capacity4), uint64(t.Capacity6)
		out.Owners = map[string]int{}
		for id, n := range t.ByOwner {
			out.Owners[strconv.Itoa(int(id))] = n
		}
	}
	if g := s.Gossip; g != nil {
		out.Gossip = metrics.GossipCounters.View(&g.Stats)
		out.Reject = cut(out.Gossip, "rejected/")
	}
	if p := s.Probe; p != nil {
		out.Probe = metrics.ProbeCounters.View(p)
	}
	if r := s.Relay; r != nil {
		out.Relay = metrics.RelayCounters.View(r)
	}
	if u := s.UDP; u != nil {
		out.UDP = metrics.UDPCounters.View(u)
	}
	if u := s.UDPLearn; u != nil {
		if out.UDP == nil {
			out.UDP = map[string]uint64{}
		}
		for k, v := range metrics.UDPLearnCounters.View(u) {
			out.UDP[k] = v
		}
	}
	return out
}

// cut moves the keys of m that start with prefix into a map of their own, without
// the prefix.
func cut(m map[string]uint64, prefix string) map[string]uint64 {
	out := map[string]uint64{}
	for k, v := range m {
		if name, ok := strings.CutPrefix(k, prefix); ok {
			out[name] = v
			delete(m, k)
		}
	}
	return out
}

// setFields places m in the struct dst points to: a key in the uint64 field of that
// JSON name, a key "name/x" as x in the map[string]uint64 field of JSON name "name"
// (lcore's classes/, drops/, park/); it returns the other keys (nil if none).
func setFields(dst any, m map[string]uint64) map[string]uint64 {
	v := reflect.ValueOf(dst).Elem()
	for i := range v.NumField() {
		f := v.Type().Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch {
		case f.Type.Kind() == reflect.Uint64:
			if x, ok := m[name]; ok {
				v.Field(i).SetUint(x)
				delete(m, name)
			}
		case f.Type == reflect.TypeFor[map[string]uint64]():
			if sub := cut(m, name+"/"); len(sub) > 0 {
				v.Field(i).Set(reflect.ValueOf(sub))
			}
		}
	}
	if len(m) == 0 {
		return nil
	}
	return m
}
