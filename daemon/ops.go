package daemon

// Operations: the Prometheus endpoint, the control socket homingctl talks to, live
// reload (SIGHUP), gossip key rotation and rate-limited logging.
//
//	Prometheus ─GET /metrics─▶ [metrics http] ─Snapshot─▶ lcore, port, table, gossip counters
//	homingctl ─unix socket──▶ [ctl accept] ─▶ [ctl conn] ─handle─▶ table, node, templates
//	SIGHUP (cmd/homingd) ─config.Load─▶ Reload ─▶ templates, static sessions, keys, log level
//	SIGHUP with a new gossip.key_file ─▶ gossip Node.SetKeys, Relay.SetKeys
//
// Goroutines: "metrics http" (net/http's server), "ctl accept" and one "ctl conn" per
// connection (package ctl). All end in stopOps, the first step of teardown.
//
// The per-daemon state lives in opsOf, keyed by *Daemon: daemon.go only calls startOps
// and stopOps. ops.mu protects the live configuration and the reload outcome; countMu
// the per-owner count cache; reloadMu serialises reloads.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/homing-dev/homing/config"
	"github.com/homing-dev/homing/ctl"
	"github.com/homing-dev/homing/gossip"
	"github.com/homing-dev/homing/lcore"
	"github.com/homing-dev/homing/metrics"
	"github.com/homing-dev/homing/session"
)

// Version is reported by homingctl status and the homing_info metric; set it with
// -ldflags "-X github.com/homing-dev/homing/daemon.Version=...".
var Version = "dev"

// OwnerCountDuty bounds the cost of counting table entries per owner: a count that took
// t is not repeated within OwnerCountDuty × t.
const OwnerCountDuty = 100

// ErrRestartNeeded is returned by Reload for changes that only a restart applies.
var ErrRestartNeeded = errors.New("needs a restart")

type ops struct {
	d         *Daemon
	started   time.Time
	metrics   *metrics.Metrics
	http      *http.Server
	ctl       *ctl.Server
	setKeys   func(*gossip.KeyRing) error // nil: gossip off or insecure
	level     *slog.LevelVar              // nil: the caller's logger has a fixed level
	reloadMu  sync.Mutex                  // serialises Reload
	mu        sync.Mutex                  // protects the fields below
	live      *config.Config              // the configuration in force (d.Config is the one started with)
	keyFile   []byte                      // contents of gossip.key_file in force
	reloaded  time.Time                   // last reload attempt
	reloadErr string                      // its refusal, "" if it applied

	countMu    sync.Mutex     // protects the per-owner count cache below
	owners     map[uint16]int // entries per owner, counted at ownersAt
	ownersAt   time.Time
	ownersCost time.Duration // how long that count took
	ownersGen  uint64        // table inserts+updates+deletes at that count
}

var (
	opsMu sync.Mutex
	opsOf = map[*Daemon]*ops{}
)

// opsState returns d's operations state, creating it if create is set.
func (d *Daemon) opsState(create bool) *ops {
	opsMu.Lock()
	defer opsMu.Unlock()
	o := opsOf[d]
	if o == nil && create {
		o = &ops{d: d, live: d.Config}
		cfg := d.Config
		o.metrics = metrics.New(o, metrics.Info{HostID: cfg.Host.ID, Name: cfg.Host.Name, Address: cfg.Host.Address.String(), Version: Version})
		opsOf[d] = o
	}
	return o
}

// startOps starts the metrics endpoint and the control socket.
func (d *Daemon) startOps() error {
	o := d.opsState(true)
	cfg := d.Config
	o.started = time.Now()
	if cfg.Gossip.Enabled && !cfg.Gossip.Insecure {
		b, err := os.ReadFile(cfg.Gossip.KeyFile)
		if err != nil {
			return fmt.Errorf("%s: gossip.key_file: %w", cfg.Source, err)
		}
		o.keyFile = b
	}
	if cfg.Metrics.Listen != "" {
		ln, err := net.Listen("tcp", cfg.Metrics.Listen)
		if err != nil {
			return fmt.Errorf("%s: metrics.listen: %w", cfg.Source, err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", o.metrics.Handler())
		mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/" {
				http.NotFound(w, r)
				return
			}
			fmt.Fprintf(w, "homingd %s, host %d\n/metrics\n", Version, cfg.Host.ID)
		})
		o.http = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second,
			ErrorLog: slog.NewLogLogger(d.Log.Handler(), slog.LevelWarn)}
		go func() { // metrics http
			if err := o.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				d.Log.Error("metrics server stopped", "err", err)
			}
		}()
	}
	s, err := ctl.Listen(cfg.Control.Socket, ctl.HandlerFunc(o.handle))
	if err != nil {
		return fmt.Errorf("%s: control.socket: %w", cfg.Source, err)
	}
	o.ctl = s
	d.Log.Info("operations", "metrics", cfg.Metrics.Listen, "control", cfg.Control.Socket)
	return nil
}

// stopOps stops the metrics endpoint and removes the control socket.
func (d *Daemon) stopOps() {
	o := d.opsState(false)
	if o == nil {
		return
	}
	if o.ctl != nil {
		if err := o.ctl.Close(); err != nil {
			d.Log.Warn("control socket", "err", err)
		}
	}
	if o.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = o.http.Shutdown(ctx)
		cancel()
	}
	opsMu.Lock()
	delete(opsOf, d)
	opsMu.Unlock()
}

// SetLogLevel gives the daemon the level of its logger, so that a reload can change it.
func (d *Daemon) SetLogLevel(lv *slog.LevelVar) {
	if o := d.opsState(true); o != nil {
		o.mu.Lock()
		o.level = lv
		o.mu.Unlock()
	}
}

// Metrics returns the daemon's metrics (nil after Stop).
func (d *Daemon) Metrics() *metrics.Metrics {
	if o := d.opsState(false); o != nil {
		return o.metrics
	}
	return nil
}

// onConverge feeds the convergence histogram (gossip.Config.OnConverge).
func (d *Daemon) onConverge(s gossip.ConvergeSample) {
	if o := d.opsState(false); o != nil {
		o.metrics.ObserveConvergence(s.Sent, s.Applied)
	}
}

// ---- metrics source ----

// Snapshot reads every counter (metrics.Source).
func (o *ops) Snapshot() metrics.Snapshot {
	d := o.d
	var s metrics.Snapshot
	if d.DP != nil {
		for _, l := range d.DP.Stats() {
			s.Lcores = append(s.Lcores, lcoreMetrics(l))
		}
	}
	if ps, err := d.NICStats(); err == nil {
		s.Ports = append(s.Ports, portMetrics("nic", ps.RxPackets, ps.TxPackets, ps.RxBytes, ps.TxBytes, ps.RxMissed, ps.RxErrors, ps.TxErrors, ps.RxNoMbuf))
	}
	if ps, err := d.KernelStats(); err == nil {
		s.Ports = append(s.Ports, portMetrics("kernel", ps.RxPackets, ps.TxPackets, ps.RxBytes, ps.TxBytes, ps.RxMissed, ps.RxErrors, ps.TxErrors, ps.RxNoMbuf))
	}
	if d.Table != nil {
		t := &metrics.Table{}
		t.Entries4, t.Entries6 = d.Table.Len()
		t.Capacity4, t.Capacity6 = d.Table.Capacity()
		ts := d.Table.Stats()
		t.Inserts, t.Updates, t.Deletes, t.DeleteMisses = ts.Inserts, ts.Updates, ts.Deletes, ts.DeleteMiss
		t.Full, t.Errors, t.Invalid = ts.Full, ts.Errors, ts.Invalid
		t.ReclaimWaits, t.ReclaimTimeouts = ts.ReclaimWaits, ts.ReclaimTimeouts
		t.ByOwner = o.ownerCounts()
		s.Table = t
	}
	if n := d.Node(); n != nil {
		s.Gossip = gossipMetrics(n)
	}
	if d.ctl != nil && d.ctl.dom != nil && d.ctl.dom.relay != nil {
		rs := d.ctl.dom.relay.Stats()
		s.Relay = &metrics.Relay{Forwarded: rs.Forwarded, SendErrors: rs.SendErrors, Received: rs.Received,
			Relayed: rs.Relayed, Duplicates: rs.Duplicates, Loops: rs.Loops, AuthFailures: rs.AuthFailures,
			Malformed: rs.Malformed, Replays: rs.Replays}
	}
	if d.ctl != nil && d.ctl.probe != nil {
		ps := d.ctl.probe.Stats()
		s.Probe = &metrics.Probe{Lost: ps.Lost, Resyncs: ps.Resyncs, ResyncAdds: ps.ResyncAdds, ResyncDeletes: ps.ResyncDeletes, Sessions: ps.Sessions}
	}
	return s
}

func lcoreMetrics(l lcore.Stats) metrics.Lcore {
	m := metrics.Lcore{ID: l.Lcore, RxNIC: l.RxNIC, RxKernel: l.FromKernel, TxNIC: l.TxNIC, TxKernel: l.TxTAP,
		Loops: l.Loops, IdleLoops: l.IdleLoops, Sleeps: l.Sleeps, BusyCycles: l.BusyCycles, Cycles: l.Cycles,
		TemplateRetries: l.TemplateRetries, ParkIn: l.ParkIn, ParkRedirect: l.ParkRedirect, ParkLocal: l.ParkLocal,
		ParkExpired: l.ParkExpired, ParkFull: l.ParkFull, ParkWarmDrop: l.ParkWarmDrop,
		ICMPTooBig: l.ICMPTooBig, MSSClamped: l.MSSClamped, FragTunnelled: l.FragTunnelled}
	m.Classes = [metrics.NumClasses]uint64{
		metrics.ClassRedirect: l.Redirect, metrics.ClassLocal: l.Local, metrics.ClassMiss: l.Miss,
		metrics.ClassDeadOwner: l.DeadOwner, metrics.ClassSYN: l.SYN, metrics.ClassDecap: l.Decap,
		metrics.ClassGUEBad: l.GUEBad, metrics.ClassOther: l.Other, metrics.ClassFrag: l.Frag,
		metrics.ClassIPOptions: l.IPOpt, metrics.ClassMalformed: l.Malformed, metrics.ClassNoRedirect: l.NoRedirect,
		metrics.ClassTooBig: l.TooBig,
	}
	m.Drops = [metrics.NumDrops]uint64{metrics.DropNICTxFull: l.DropNICTx, metrics.DropKernelTxFull: l.DropTAPTx,
		metrics.DropNoHeadroom: l.DropHeadroom, metrics.DropTooBig: l.DropTooBig}
	return m
}

func portMetrics(name string, v ...uint64) metrics.Port {
	return metrics.Port{Name: name, RxPackets: v[0], TxPackets: v[1], RxBytes: v[2], TxBytes: v[3],
		RxMissed: v[4], RxErrors: v[5], TxErrors: v[6], RxNoMbuf: v[7]}
}

func gossipMetrics(n *gossip.Node) *metrics.Gossip {
	st := n.Stats()
	return &metrics.Gossip{
		DatagramsSent: st.DatagramsSent, BytesSent: st.BytesSent, HeartbeatsSent: st.HeartbeatsSent,
		RecordsSent: st.RecordsSent, SendErrors: st.SendErrors,
		DatagramsReceived: st.DatagramsReceived, BytesReceived: st.BytesReceived,
		HeartbeatsReceived: st.HeartbeatsReceived, RecordsReceived: st.RecordsReceived, ReceiveErrors: st.RecvErrors,
		Rejected: map[string]uint64{
			"bad_magic": st.BadMagic, "bad_version": st.BadVersion, "unknown_type": st.UnknownType,
			"truncated": st.Truncated, "oversize": st.Oversize, "auth": st.AuthFailures, "malformed": st.Malformed,
			"own": st.OwnDatagrams, "unknown_host": st.UnknownHost, "mismatch": st.Mismatch, "replay": st.Replays,
		},
		AuthFailures: st.AuthFailures, SeqGaps: st.SeqGaps, RecordsApplied: st.RecordsApplied,
		StaleRecords: st.StaleRecords, ForeignRecords: st.ForeignRecords, LocalUpdates: st.LocalUpdates,
		GraceDrops: st.GraceDrops, TableErrors: st.TableErrors, TemplateErrors: st.TemplateErrors,
		QueueOverflow: st.QueueOverflow, DiscoveryErrors: st.DiscoveryErrors,
		QueueLen: st.QueueLen, PeersUp: st.PeersUp, Sessions: st.Sessions, Incarnation: n.Incarnation(),
		RepairsStarted: st.RepairsStarted, RepairsCompleted: st.RepairsCompleted, RepairsFailed: st.RepairsFailed,
		RepairAuthFailures: st.RepairAuthFailures, RepairRecords: st.RepairRecords, RepairRemoved: st.RepairRemoved,
		RepairsServed: st.RepairsServed, RepairServeRejects: st.RepairServeRejects, RepairRefused: st.RepairServeRefused,
		DigestMismatches: st.DigestMismatches,
		NacksSent:        st.NacksSent, NackRecovered: st.NackRecovered, NackFallbacks: st.NackFallbacks, NackResent: st.NackResent,
	}
}

// ownerCounts counts table entries per owner. It iterates the table (about 150 ms per
// million entries on the development VM) only when the table changed since the last
// count, and then at most at 1/OwnerCountDuty of one core: a small table is counted
// afresh at every call, a large one at most every 100 × its counting time.
func (o *ops) ownerCounts() map[uint16]int {
	o.countMu.Lock()
	defer o.countMu.Unlock()
	ts := o.d.Table.Stats()
	gen := ts.Inserts + ts.Updates + ts.Deletes
	if o.owners != nil && (gen == o.ownersGen || time.Since(o.ownersAt) < OwnerCountDuty*o.ownersCost) {
		return o.owners
	}
	start := time.Now()
	m := map[uint16]int{}
	o.d.Table.Entries(func(_ session.Key, ow session.Owner) bool {
		m[ow.Host]++
		return true
	})
	o.owners, o.ownersAt, o.ownersCost, o.ownersGen = m, time.Now(), time.Since(start), gen
	return m
}

// ---- control socket ----

func (o *ops) handle(_ context.Context, r ctl.Request) (any, error) {
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
	}
	return nil, fmt.Errorf("%w %q (status, peers, lookup, sessions, stats)", ctl.ErrUnknownCommand, r.Cmd)
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

// ---- reload ----

// liveKeys are the configuration keys Reload applies; every other change needs a
// restart. gossip.key_file is re-read at every reload, changed or not.
var liveKeys = []string{"peers", "sessions", "log.level", "gossip.key_file"}

// Reload applies a new configuration to the running daemon: static peers (their header
// templates), static sessions, the gossip keys (re-reading gossip.key_file: a second key
// is accepted, for rotation) and the log level. Nothing is applied if cfg changes a key
// that needs a restart (the error wraps ErrRestartNeeded and names them) or if the key
// file is invalid. It returns what changed.
func (d *Daemon) Reload(cfg *config.Config) (changes []string, err error) {
	o := d.opsState(false)
	if o == nil {
		return nil, errors.New("daemon is not running")
	}
	o.reloadMu.Lock()
	defer o.reloadMu.Unlock()
	defer func() {
		o.mu.Lock()
		o.reloaded, o.reloadErr = time.Now(), ""
		if err != nil {
			o.reloadErr = err.Error()
		}
		o.mu.Unlock()
	}()
	o.mu.Lock()
	old := o.live
	o.mu.Unlock()
	if keys := RestartKeys(old, cfg); len(keys) > 0 {
		return nil, fmt.Errorf("%s: %w: %s", cfg.Source, ErrRestartNeeded, strings.Join(keys, ", "))
	}

	// Check everything before applying anything.
	var ring *gossip.KeyRing
	var keyData []byte
	if cfg.Gossip.Enabled && !cfg.Gossip.Insecure {
		if keyData, err = os.ReadFile(cfg.Gossip.KeyFile); err != nil {
			return nil, fmt.Errorf("%s: gossip.key_file: %w", cfg.Source, err)
		}
		if ring, err = gossip.ParseKeys(keyData, cfg.Gossip.KeyFile); err != nil {
			return nil, fmt.Errorf("%s: gossip.key_file: %w", cfg.Source, err)
		}
	}

	// Static peers: publish new and changed templates, withdraw removed ones (unless
	// gossip has the peer up: then its template is gossip's).
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
		if err := d.DP.SetTemplate(lcore.Template{ID: p.ID, SrcMAC: d.MAC, DstMAC: p.MAC,
			Src: cfg.Host.Address, Dst: p.Address, TunnelPort: p.TunnelPort}); err != nil {
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

	// Static sessions: add new ones and those whose owner changed, delete removed ones.
	was := map[session.Key]uint16{}
	for _, s := range old.Sessions {
		was[s.Key] = s.Owner
	}
	var ups []session.Update
	for _, s := range cfg.Sessions {
		if owner, ok := was[s.Key]; ok && owner == s.Owner {
			delete(was, s.Key)
			continue
		}
		delete(was, s.Key)
		ups = append(ups, session.Update{Key: s.Key, Owner: session.Owner{Host: s.Owner, Epoch: 1}})
	}
	nAdd := len(ups)
	for k, owner := range was {
		ups = append(ups, session.Update{Key: k, Owner: session.Owner{Host: owner}, Delete: true})
	}
	if len(ups) > 0 {
		if err := d.Table.Apply(ups); err != nil {
			return changes, fmt.Errorf("%s: sessions: %w", cfg.Source, err)
		}
		changes = append(changes, fmt.Sprintf("static sessions: %d added or changed, %d removed", nAdd, len(ups)-nAdd))
	}

	if ring != nil && o.setKeys != nil && !bytes.Equal(keyData, o.keyFile) {
		if err := o.setKeys(ring); err != nil {
			return changes, fmt.Errorf("%s: gossip.key_file: %w", cfg.Source, err)
		}
		changes = append(changes, "gossip keys")
	}

	o.mu.Lock()
	if cfg.Log.Level != old.Log.Level {
		changes = append(changes, "log.level "+cfg.Log.Level)
		if o.level != nil {
			var lv slog.Level
			_ = lv.UnmarshalText([]byte(cfg.Log.Level))
			o.level.Set(lv)
		}
	}
	o.live = cfg
	if keyData != nil {
		o.keyFile = keyData
	}
	o.mu.Unlock()
	return changes, nil
}

// RestartKeys names the configuration keys that differ between old and new and that
// only a restart applies (everything but liveKeys).
func RestartKeys(old, new *config.Config) []string {
	var keys []string
	diffKeys(reflect.ValueOf(*old), reflect.ValueOf(*new), "", &keys)
	return keys
}

func diffKeys(a, b reflect.Value, prefix string, out *[]string) {
	t := a.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Name == "Source" && prefix == "" {
			continue
		}
		key := prefix + KeyName(f.Name)
		if slices.Contains(liveKeys, key) {
			continue
		}
		fa, fb := a.Field(i), b.Field(i)
		if f.Type.Kind() == reflect.Struct && prefix == "" {
			diffKeys(fa, fb, key+".", out)
			continue
		}
		if !reflect.DeepEqual(fa.Interface(), fb.Interface()) {
			*out = append(*out, key)
		}
	}
}

// keyNames are Go field names of config.Config whose TOML key is not their snake case.
var keyNames = map[string]string{"IdleSleepMax": "idle_sleep_max_us", "CPUs": "cpus", "VIPs": "vips"}

// KeyName is the TOML key of a config.Config field: snake case of its Go name.
func KeyName(field string) string {
	if k, ok := keyNames[field]; ok {
		return k
	}
	r := []rune(field)
	var b strings.Builder
	for i, c := range r {
		if unicode.IsUpper(c) && i > 0 && (unicode.IsLower(r[i-1]) || unicode.IsDigit(r[i-1]) ||
			(i+1 < len(r) && unicode.IsLower(r[i+1]))) {
			b.WriteByte('_')
		}
		b.WriteRune(unicode.ToLower(c))
	}
	return b.String()
}

// ---- gossip key rotation ----

// rotateKeysWith makes a reload's new gossip keys reach node and, on a relay host,
// relay: both switch every channel at once (multicast, repair, NACK, relay envelopes;
// exchanges already in flight finish with their keys).
func (d *Daemon) rotateKeysWith(node *gossip.Node, relay *gossip.Relay) {
	if node == nil {
		return
	}
	d.opsState(true).setKeys = func(r *gossip.KeyRing) error {
		// The relay first: it checks the datagrams the node seals, and after the
		// switch the node may seal with a key the relay's old ring does not accept.
		var err error
		if relay != nil {
			err = relay.SetKeys(r)
		}
		return errors.Join(err, node.SetKeys(r))
	}
}

// countKeys counts the keys of a key file (see gossip.LoadKeyFile): its lines that are
// neither blank nor comments.
func countKeys(b []byte) int {
	n := 0
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			n++
		}
	}
	return n
}

// ---- logging ----

// RateLimit wraps h so that each message (keyed by level and message text) is logged
// at most burst times in a row, then at most once per every; the next record logged
// after some were suppressed carries suppressed=N. Info records pass untouched: they
// are reserved for events that are rare by nature (start, stop, peers up and down);
// Debug, Warn and Error can repeat per packet or per datagram.
func RateLimit(h slog.Handler, burst int, every time.Duration) slog.Handler {
	return &limitHandler{h: h, st: &limitState{burst: float64(burst), every: every, m: map[string]*bucket{}, now: time.Now}}
}

type limitHandler struct {
	h  slog.Handler
	st *limitState
}

type limitState struct {
	burst float64
	every time.Duration
	now   func() time.Time
	mu    sync.Mutex // protects m
	m     map[string]*bucket
}

type bucket struct {
	tokens     float64
	last       time.Time
	suppressed int
}

// maxKeys bounds the limiter's memory; beyond it idle keys are forgotten.
const maxKeys = 4096

func (l *limitHandler) Enabled(ctx context.Context, lv slog.Level) bool { return l.h.Enabled(ctx, lv) }

func (l *limitHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level == slog.LevelInfo {
		return l.h.Handle(ctx, r)
	}
	n, ok := l.st.take(r.Level.String() + " " + r.Message)
	if !ok {
		return nil
	}
	if n > 0 {
		r = r.Clone()
		r.AddAttrs(slog.Int("suppressed", n))
	}
	return l.h.Handle(ctx, r)
}

// take reports whether a record of key may be logged, and how many were suppressed
// before it.
func (s *limitState) take(key string) (int, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	b := s.m[key]
	if b == nil {
		if len(s.m) >= maxKeys {
			for k, v := range s.m {
				if now.Sub(v.last) > s.every*time.Duration(s.burst) {
					delete(s.m, k)
				}
			}
			if len(s.m) >= maxKeys {
				clear(s.m)
			}
		}
		b = &bucket{tokens: s.burst, last: now}
		s.m[key] = b
	}
	if s.every > 0 {
		b.tokens = min(s.burst, b.tokens+float64(now.Sub(b.last))/float64(s.every))
	}
	b.last = now
	if b.tokens < 1 {
		b.suppressed++
		return 0, false
	}
	b.tokens--
	n := b.suppressed
	b.suppressed = 0
	return n, true
}

func (l *limitHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &limitHandler{h: l.h.WithAttrs(as), st: l.st}
}

func (l *limitHandler) WithGroup(name string) slog.Handler {
	return &limitHandler{h: l.h.WithGroup(name), st: l.st}
}

// NewLogger builds homingd's logger: text or JSON on w at the level of lv, rate-limited
// (RateLimit with a burst of 10 and one per second after it).
func NewLogger(w io.Writer, format string, lv *slog.LevelVar) *slog.Logger {
	opts := &slog.HandlerOptions{Level: lv}
	var h slog.Handler = slog.NewTextHandler(w, opts)
	if format == "json" {
		h = slog.NewJSONHandler(w, opts)
	}
	return slog.New(RateLimit(h, 10, time.Second))
}
