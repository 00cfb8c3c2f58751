package daemon

// Serving: whether this host takes new traffic from the POP's router.
//
//	start ──▶ warming ──(warm-up over)──▶ ready ◀──undrain── draining ──(0 owned)──▶ drained
//	                                        └────────drain────────▶┘
//	any ──stop──▶ stopping (withdrawn; serves bgp.stop_linger, then exits)
//
// The host announces its VIPs (BGP, when configured) exactly while it is ready: its data
// plane runs, gossip has heard its peers and repaired from them (the warm-up), and no
// operator drained it. Withdrawn, it keeps serving: ECMP moves new flows to the other
// hosts, and the peers tunnel the sessions this host owns back to it until they end.
// /readyz answers 200 only while ready; /healthz while the daemon runs.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/homing-dev/homing/bgp"
	"github.com/homing-dev/homing/config"
	"github.com/homing-dev/homing/ctl"
	"github.com/homing-dev/homing/metrics"
)

// State is what the host does for the POP (ctl.Status.State, homing_state).
type State string

// States.
const (
	StateWarming  State = "warming"  // learning its peers' sessions after the start
	StateReady    State = "ready"    // announcing: takes new traffic
	StateDraining State = "draining" // withdrawn by the operator, still owns sessions
	StateDrained  State = "drained"  // withdrawn, owns no session
	StateStopping State = "stopping" // withdrawn for the stop, serving its linger
)

// States lists every state, for the metric.
var States = []State{StateWarming, StateReady, StateDraining, StateDrained, StateStopping}

// serving is the announcement state. Its methods are safe for concurrent use.
type serving struct {
	d       *Daemon
	speaker *bgp.Speaker // nil: BGP off

	mu          sync.Mutex // protects the fields below and serialises announcements
	drained     bool       // the operator's drain
	stopping    bool
	announced   bool      // the VIPs are announced (or would be, without BGP)
	announcedAt time.Time // last change of announced
	lastErr     string    // last announcement error
}

// startServing starts the BGP speaker (when configured) and announces if ready.
func (d *Daemon) startServing() error {
	s := &serving{d: d}
	cfg := d.Config
	if cfg.BGP.Enabled() {
		bc := bgp.Config{LocalAS: cfg.BGP.LocalAS, RouterID: cfg.BGP.RouterID, HoldTime: cfg.BGP.HoldTime,
			Communities: cfg.BGP.Communities, LocalAddress: cfg.Host.Address, Log: d.Log}
		if cfg.Host.Address.Is4() {
			bc.NextHop4 = cfg.Host.Address
		} else {
			bc.NextHop6 = cfg.Host.Address
		}
		bc.Neighbors = bgpNeighbors(cfg.BGP.Neighbors)
		sp, err := bgp.Start(context.Background(), bc)
		if err != nil {
			return fmt.Errorf("%s: bgp: %w", cfg.Source, err)
		}
		s.speaker = sp
	}
	d.serving.Store(s)
	s.update()
	return nil
}

// warmed ends the warm-up: the data plane stops holding unknown sessions' packets past
// the park's hold, and the host may announce.
func (d *Daemon) warmed() {
	if d.DP != nil {
		d.DP.SetWarming(false)
	}
	d.warming.Store(false)
	d.warmAt.Store(time.Now().UnixNano())
	d.warmDone.Store(true)
	if s := d.serving.Load(); s != nil {
		s.update()
	}
}

// update announces or withdraws as the state asks.
func (s *serving) update() {
	s.mu.Lock()
	defer s.mu.Unlock()
	want := s.d.warmDone.Load() && !s.drained && !s.stopping
	if s.speaker != nil {
		var ps []netip.Prefix
		if want {
			ps = s.d.Config.Host.VIPs
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := s.speaker.Announce(ctx, ps)
		cancel()
		s.lastErr = ""
		if err != nil {
			s.lastErr = err.Error()
			s.d.Log.Error("bgp", "err", err)
		}
	}
	if want != s.announced {
		s.announced, s.announcedAt = want, time.Now()
		verb := "withdrawn"
		if want {
			verb = "announced"
		}
		s.d.Log.Info("VIPs "+verb, "vips", s.d.Config.Host.VIPs, "bgp", s.speaker != nil, "state", s.stateLocked())
	}
}

// setBGPNeighbors replaces the BGP neighbours (a reload).
func (d *Daemon) setBGPNeighbors(ns []config.BGPNeighbor) error {
	s := d.serving.Load()
	if s == nil || s.speaker == nil {
		return errors.New("BGP is not running")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return s.speaker.SetNeighbors(ctx, bgpNeighbors(ns))
}

func bgpNeighbors(ns []config.BGPNeighbor) []bgp.Neighbor {
	out := make([]bgp.Neighbor, 0, len(ns))
	for _, n := range ns {
		out = append(out, bgp.Neighbor{Address: n.Address, AS: n.AS, Password: n.Password, Port: n.Port})
	}
	return out
}

// owned is the number of sessions this host owns.
func (s *serving) owned() int {
	if n := s.d.Node(); n != nil {
		return n.Owned(s.d.Config.Host.ID)
	}
	if o := s.d.ops.Load(); o != nil {
		return o.ownerCounts()[s.d.Config.Host.ID]
	}
	return 0
}

func (s *serving) stateLocked() State {
	switch {
	case s.stopping:
		return StateStopping
	case s.drained && s.owned() > 0:
		return StateDraining
	case s.drained:
		return StateDrained
	case !s.d.warmDone.Load():
		return StateWarming
	}
	return StateReady
}

// State is the host's state.
func (s *serving) State() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stateLocked()
}

// setDrained drains (or undrains) the host.
func (s *serving) setDrained(on bool) {
	s.mu.Lock()
	changed := s.drained != on
	s.drained = on
	s.mu.Unlock()
	if changed {
		s.d.Log.Info("drain", "on", on)
	}
	s.update()
}

// stop withdraws and, if the VIPs were announced by BGP, keeps serving for the linger
// while the router moves the flows away; then it stops the speaker.
func (s *serving) stop() {
	s.mu.Lock()
	wasAnnounced := s.announced && s.speaker != nil
	s.stopping = true
	s.mu.Unlock()
	s.update()
	if s.speaker == nil {
		return
	}
	if wasAnnounced && s.d.Config.BGP.StopLinger > 0 {
		s.d.Log.Info("withdrawn for the stop: serving until the linger ends", "linger", s.d.Config.BGP.StopLinger,
			"owned", s.owned())
		time.Sleep(s.d.Config.BGP.StopLinger)
	}
	s.speaker.Stop()
}

// status fills st's serving fields.
func (s *serving) status(st *ctl.Status) {
	s.mu.Lock()
	st.State = string(s.stateLocked())
	st.Announced = s.announced
	st.AnnouncedAt, st.AnnounceError = s.announcedAt, s.lastErr
	s.mu.Unlock()
	if t := s.d.warmAt.Load(); t != 0 {
		st.WarmAt = time.Unix(0, t)
	}
	st.Owned = s.owned()
	if s.speaker == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	peers, err := s.speaker.Peers(ctx)
	if err != nil {
		return
	}
	for _, p := range peers {
		st.BGP = append(st.BGP, ctl.BGPPeer{Address: p.Address.String(), AS: p.AS, State: p.State, Since: p.Since,
			Advertised: p.Advertised})
	}
}

// metrics is the state for the collector.
func (s *serving) metrics() *metrics.Serving {
	var st ctl.Status
	s.status(&st)
	m := &metrics.Serving{State: st.State, Announced: st.Announced, Owned: st.Owned}
	for _, x := range States {
		m.States = append(m.States, string(x))
	}
	for _, p := range st.BGP {
		m.BGP = append(m.BGP, metrics.BGPPeer{Address: p.Address, Up: p.State == "established", Advertised: p.Advertised})
	}
	return m
}

// handle answers drain and undrain.
func (s *serving) handle(r ctl.Request) (any, bool, error) {
	switch r.Cmd {
	case ctl.CmdDrain:
		s.setDrained(true)
	case ctl.CmdUndrain:
		s.setDrained(false)
	default:
		return nil, false, nil
	}
	var st ctl.Status
	s.status(&st)
	return st, true, nil
}

// Healthy reports whether the data plane runs (/healthz, the systemd watchdog).
func (d *Daemon) Healthy() bool { return d.DP != nil && d.DP.Running() }

// routes adds /healthz and /readyz to the metrics server's mux.
func (d *Daemon) routes(mux *http.ServeMux) {
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if !d.Healthy() {
			http.Error(w, "data plane not running", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		s := d.serving.Load()
		if s == nil {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		if st := s.State(); st != StateReady {
			http.Error(w, string(st), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, StateReady)
	})
}
