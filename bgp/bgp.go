// Package bgp announces a host's VIPs to the POP's routers over BGP, with GoBGP as a
// library: the router spreads each VIP with ECMP over the hosts that announce it, so a
// host enters the group by announcing and leaves it by withdrawing (a drain).
//
// A Speaker holds one BGP session per configured neighbour (the POP's routers) and a set
// of announced prefixes that the daemon sets as a whole (Announce): what is not in the
// set is withdrawn. It never listens (it dials its neighbours) and installs nothing:
// routes a router sends stay in GoBGP's table and are used for nothing.
package bgp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
	"github.com/osrg/gobgp/v3/pkg/server"
	"google.golang.org/protobuf/types/known/anypb"
)

// Neighbor is one BGP peer of the host: a POP router.
type Neighbor struct {
	Address netip.Addr
	AS      uint32
	// Password is the session's TCP MD5 password (RFC 2385); empty: none. It needs a
	// kernel with TCP_MD5SIG: without it the session never comes up (it never falls
	// back to no password).
	Password string
	Port     uint16 // 0: 179
}

// Config is a Speaker's configuration.
type Config struct {
	LocalAS  uint32
	RouterID netip.Addr // an IPv4 address (BGP identifier)
	// NextHop4 and NextHop6 are the next hops of IPv4 and IPv6 prefixes: the host's
	// address on the POP LAN. An invalid one means that family is not announced.
	NextHop4, NextHop6 netip.Addr
	// LocalAddress is the source address of the sessions (invalid: the kernel's choice).
	LocalAddress netip.Addr
	HoldTime     time.Duration // 0: 90 s; keepalives every third of it
	ConnectRetry time.Duration // 0: 5 s
	// Communities are attached to every announced prefix ("65000:100").
	Communities []string
	Neighbors   []Neighbor
	Log         *slog.Logger // nil: slog.Default()
}

// Errors.
var (
	ErrConfig  = errors.New("bgp: invalid configuration")
	ErrStopped = errors.New("bgp: speaker stopped")
)

// Speaker is a running BGP speaker.
type Speaker struct {
	s   *server.BgpServer
	log *slog.Logger

	mu        sync.Mutex // protects the fields below and serialises changes
	cfg       Config
	comms     []uint32
	announced map[netip.Prefix]bool
	stopped   bool
}

// ParseCommunity parses "AS:value" (each 0..65535) into a standard community.
func ParseCommunity(s string) (uint32, error) {
	a, b, ok := strings.Cut(s, ":")
	hi, err1 := strconv.ParseUint(a, 10, 16)
	lo, err2 := strconv.ParseUint(b, 10, 16)
	if !ok || err1 != nil || err2 != nil {
		return 0, fmt.Errorf("%w: community %q is not AS:value (each 0..65535)", ErrConfig, s)
	}
	return uint32(hi)<<16 | uint32(lo), nil
}

func (c *Config) check() ([]uint32, error) {
	if c.LocalAS == 0 {
		return nil, fmt.Errorf("%w: no local AS", ErrConfig)
	}
	if !c.RouterID.Is4() {
		return nil, fmt.Errorf("%w: router id %v is not an IPv4 address", ErrConfig, c.RouterID)
	}
	if c.NextHop4.IsValid() && !c.NextHop4.Is4() || c.NextHop6.IsValid() && !c.NextHop6.Is6() {
		return nil, fmt.Errorf("%w: next hops %v, %v of the wrong family", ErrConfig, c.NextHop4, c.NextHop6)
	}
	var comms []uint32
	for _, s := range c.Communities {
		v, err := ParseCommunity(s)
		if err != nil {
			return nil, err
		}
		comms = append(comms, v)
	}
	seen := map[netip.Addr]bool{}
	for _, n := range c.Neighbors {
		if !n.Address.IsValid() || n.AS == 0 {
			return nil, fmt.Errorf("%w: neighbour %v AS %d", ErrConfig, n.Address, n.AS)
		}
		if seen[n.Address] {
			return nil, fmt.Errorf("%w: neighbour %v twice", ErrConfig, n.Address)
		}
		seen[n.Address] = true
	}
	return comms, nil
}

// Start starts the speaker and dials its neighbours. Nothing is announced until
// Announce.
func Start(ctx context.Context, c Config) (*Speaker, error) {
	comms, err := c.check()
	if err != nil {
		return nil, err
	}
	log := c.Log
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "bgp")
	s := server.NewBgpServer(server.LoggerOption(&logAdapter{log}))
	go s.Serve()
	sp := &Speaker{s: s, log: log, cfg: c, comms: comms, announced: map[netip.Prefix]bool{}}
	if err := s.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{
		Asn: c.LocalAS, RouterId: c.RouterID.String(), ListenPort: -1,
	}}); err != nil {
		s.Stop()
		return nil, fmt.Errorf("bgp: start: %w", err)
	}
	for _, n := range c.Neighbors {
		if err := sp.addPeer(ctx, n); err != nil {
			s.Stop()
			return nil, err
		}
	}
	return sp, nil
}

func (sp *Speaker) peer(n Neighbor) *api.Peer {
	hold := uint64(sp.cfg.HoldTime / time.Second)
	if hold == 0 {
		hold = 90
	}
	retry := uint64(sp.cfg.ConnectRetry / time.Second)
	if retry == 0 {
		retry = 5
	}
	p := &api.Peer{
		Conf: &api.PeerConf{NeighborAddress: n.Address.String(), PeerAsn: n.AS, AuthPassword: n.Password},
		Timers: &api.Timers{Config: &api.TimersConfig{HoldTime: hold, KeepaliveInterval: max(hold/3, 1),
			ConnectRetry: retry, IdleHoldTimeAfterReset: retry}},
		Transport: &api.Transport{RemotePort: uint32(n.Port)},
		AfiSafis: []*api.AfiSafi{
			{Config: &api.AfiSafiConfig{Family: family4, Enabled: true}},
			{Config: &api.AfiSafiConfig{Family: family6, Enabled: true}},
		},
	}
	if n.Port == 0 {
		p.Transport.RemotePort = 179
	}
	if sp.cfg.LocalAddress.IsValid() {
		p.Transport.LocalAddress = sp.cfg.LocalAddress.String()
	}
	return p
}

func (sp *Speaker) addPeer(ctx context.Context, n Neighbor) error {
	if err := sp.s.AddPeer(ctx, &api.AddPeerRequest{Peer: sp.peer(n)}); err != nil {
		return fmt.Errorf("bgp: neighbour %v: %w", n.Address, err)
	}
	return nil
}

var (
	family4 = &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}
	family6 = &api.Family{Afi: api.Family_AFI_IP6, Safi: api.Family_SAFI_UNICAST}
)

// path is the BGP path of prefix p.
func (sp *Speaker) path(p netip.Prefix) (*api.Path, error) {
	nlri, err := anypb.New(&api.IPAddressPrefix{Prefix: p.Addr().String(), PrefixLen: uint32(p.Bits())})
	if err != nil {
		return nil, err
	}
	origin, err := anypb.New(&api.OriginAttribute{Origin: 0})
	if err != nil {
		return nil, err
	}
	attrs := []*anypb.Any{origin}
	fam := family4
	if p.Addr().Is4() {
		nh, err := anypb.New(&api.NextHopAttribute{NextHop: sp.cfg.NextHop4.String()})
		if err != nil {
			return nil, err
		}
		attrs = append(attrs, nh)
	} else {
		fam = family6
		mp, err := anypb.New(&api.MpReachNLRIAttribute{Family: family6, NextHops: []string{sp.cfg.NextHop6.String()},
			Nlris: []*anypb.Any{nlri}})
		if err != nil {
			return nil, err
		}
		attrs = append(attrs, mp)
	}
	if len(sp.comms) > 0 {
		c, err := anypb.New(&api.CommunitiesAttribute{Communities: sp.comms})
		if err != nil {
			return nil, err
		}
		attrs = append(attrs, c)
	}
	return &api.Path{Family: fam, Nlri: nlri, Pattrs: attrs}, nil
}

// Announce makes prefixes the set the speaker announces: new ones are announced, the
// ones no longer in the set withdrawn. A prefix whose family has no next hop is an error.
func (sp *Speaker) Announce(ctx context.Context, prefixes []netip.Prefix) error {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sp.stopped {
		return ErrStopped
	}
	want := map[netip.Prefix]bool{}
	for _, p := range prefixes {
		p = p.Masked()
		if p.Addr().Is4() && !sp.cfg.NextHop4.IsValid() || p.Addr().Is6() && !sp.cfg.NextHop6.IsValid() {
			return fmt.Errorf("%w: no next hop for %v", ErrConfig, p)
		}
		want[p] = true
	}
	var errs []error
	for p := range sp.announced {
		if want[p] {
			continue
		}
		path, err := sp.path(p)
		if err == nil {
			err = sp.s.DeletePath(ctx, &api.DeletePathRequest{TableType: api.TableType_GLOBAL, Family: path.Family, Path: path})
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("bgp: withdraw %v: %w", p, err))
			continue
		}
		delete(sp.announced, p)
		sp.log.Info("withdrawn", "prefix", p)
	}
	for p := range want {
		if sp.announced[p] {
			continue
		}
		path, err := sp.path(p)
		if err == nil {
			_, err = sp.s.AddPath(ctx, &api.AddPathRequest{TableType: api.TableType_GLOBAL, Path: path})
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("bgp: announce %v: %w", p, err))
			continue
		}
		sp.announced[p] = true
		sp.log.Info("announced", "prefix", p)
	}
	return errors.Join(errs...)
}

// Announced is the set of prefixes announced, sorted.
func (sp *Speaker) Announced() []netip.Prefix {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	out := make([]netip.Prefix, 0, len(sp.announced))
	for p := range sp.announced {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	return out
}

// SetNeighbors replaces the neighbours (a reload): removed ones are closed, new ones
// dialled, changed ones (AS, password, port) re-created.
func (sp *Speaker) SetNeighbors(ctx context.Context, ns []Neighbor) error {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sp.stopped {
		return ErrStopped
	}
	c := sp.cfg
	c.Neighbors = ns
	if _, err := c.check(); err != nil {
		return err
	}
	old := map[netip.Addr]Neighbor{}
	for _, n := range sp.cfg.Neighbors {
		old[n.Address] = n
	}
	var errs []error
	for _, n := range sp.cfg.Neighbors {
		if i := slices.IndexFunc(ns, func(m Neighbor) bool { return m.Address == n.Address }); i >= 0 && ns[i] == n {
			continue
		}
		if err := sp.s.DeletePeer(ctx, &api.DeletePeerRequest{Address: n.Address.String()}); err != nil {
			errs = append(errs, fmt.Errorf("bgp: remove neighbour %v: %w", n.Address, err))
		}
	}
	for _, n := range ns {
		if o, ok := old[n.Address]; ok && o == n {
			continue
		}
		if err := sp.addPeer(ctx, n); err != nil {
			errs = append(errs, err)
		}
	}
	sp.cfg.Neighbors = ns
	return errors.Join(errs...)
}

// PeerState is a neighbour's session as the speaker sees it.
type PeerState struct {
	Address    netip.Addr
	AS         uint32
	State      string // idle, connect, active, opensent, openconfirm, established
	Since      time.Time
	Advertised uint64 // prefixes sent
}

// Established reports whether the session is up.
func (p PeerState) Established() bool { return p.State == "established" }

// Peers are the neighbours' sessions, in configuration order.
func (sp *Speaker) Peers(ctx context.Context) ([]PeerState, error) {
	sp.mu.Lock()
	ns := slices.Clone(sp.cfg.Neighbors)
	sp.mu.Unlock()
	byAddr := map[string]*api.Peer{}
	err := sp.s.ListPeer(ctx, &api.ListPeerRequest{EnableAdvertised: true}, func(p *api.Peer) {
		byAddr[p.GetConf().GetNeighborAddress()] = p
	})
	if err != nil {
		return nil, fmt.Errorf("bgp: list peers: %w", err)
	}
	out := make([]PeerState, 0, len(ns))
	for _, n := range ns {
		ps := PeerState{Address: n.Address, AS: n.AS, State: "idle"}
		if p := byAddr[n.Address.String()]; p != nil {
			st := p.GetState().GetSessionState()
			ps.State = strings.ToLower(strings.TrimPrefix(st.String(), "PeerState_"))
			if t := p.GetTimers().GetState().GetUptime(); t != nil && ps.Established() {
				ps.Since = t.AsTime()
			}
			for _, a := range p.GetAfiSafis() {
				ps.Advertised += a.GetState().GetAdvertised()
			}
		}
		out = append(out, ps)
	}
	return out, nil
}

// Stop withdraws everything (the neighbours get a notification as the sessions close)
// and stops the speaker.
func (sp *Speaker) Stop() {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sp.stopped {
		return
	}
	sp.stopped = true
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := sp.s.StopBgp(ctx, &api.StopBgpRequest{}); err != nil {
		sp.log.Warn("stop", "err", err)
	}
	sp.s.Stop()
}

// logAdapter sends GoBGP's log lines to slog.
type logAdapter struct{ l *slog.Logger }

func (a *logAdapter) args(f gobgplog.Fields) []any {
	out := make([]any, 0, 2*len(f))
	for k, v := range f {
		out = append(out, k, v)
	}
	return out
}

func (a *logAdapter) Panic(msg string, f gobgplog.Fields) { a.l.Error(msg, a.args(f)...); panic(msg) }
func (a *logAdapter) Fatal(msg string, f gobgplog.Fields) { a.l.Error(msg, a.args(f)...) }
func (a *logAdapter) Error(msg string, f gobgplog.Fields) { a.l.Error(msg, a.args(f)...) }
func (a *logAdapter) Warn(msg string, f gobgplog.Fields)  { a.l.Warn(msg, a.args(f)...) }
func (a *logAdapter) Info(msg string, f gobgplog.Fields)  { a.l.Debug(msg, a.args(f)...) }
func (a *logAdapter) Debug(msg string, f gobgplog.Fields) { a.l.Debug(msg, a.args(f)...) }
func (a *logAdapter) SetLevel(gobgplog.LogLevel)          {}
func (a *logAdapter) GetLevel() gobgplog.LogLevel         { return gobgplog.DebugLevel }
