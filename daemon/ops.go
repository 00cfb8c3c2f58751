package daemon

// Operations: the Prometheus endpoint, the control socket homingctl talks to, live
// reload (SIGHUP) and gossip key rotation. This file starts and stops them and holds
// their state; snapshot.go reads the counters, ctlserver.go answers homingctl,
// reload.go applies reloads and key rotations. (The logger is internal/ratelog.)
//
//	Prometheus ─GET /metrics─▶ [metrics http] ─Snapshot─▶ lcore, port, table, gossip counters
//	homingctl ─unix socket──▶ [ctl accept] ─▶ [ctl conn] ─handle─▶ table, node, templates
//	SIGHUP (cmd/homingd) ─config.Load─▶ Reload ─▶ templates, static sessions, keys, log level
//	SIGHUP with a new gossip.key_file ─▶ gossip Node.SetKeys, Relay.SetKeys
//
// Goroutines: "metrics http" (net/http's server), "ctl accept" and one "ctl conn" per
// connection (package ctl). All end in stopOps, the first step of teardown.
//
// The state is an ops in Daemon.ops: Start creates it before the control plane (whose
// key rotation it holds), startOps starts it, stopOps takes it away. ops.mu protects
// the live configuration and the reload outcome; countMu the per-owner count cache;
// reloadMu serialises reloads.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/homing-dev/homing/config"
	"github.com/homing-dev/homing/ctl"
	"github.com/homing-dev/homing/gossip"
	"github.com/homing-dev/homing/gossip/wire"
	"github.com/homing-dev/homing/metrics"
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
	setKeys   func(*wire.KeyRing) error // nil: gossip off or insecure
	level     *slog.LevelVar            // nil: the caller's logger has a fixed level
	reloadMu  sync.Mutex                // serialises Reload
	mu        sync.Mutex                // protects the fields below
	live      *config.Config            // the configuration in force (d.Config is the one started with)
	keyFile   []byte                    // contents of gossip.key_file in force
	reloaded  time.Time                 // last reload attempt
	reloadErr string                    // its refusal, "" if it applied

	countMu    sync.Mutex     // protects the per-owner count cache below
	owners     map[uint16]int // entries per owner, counted at ownersAt
	ownersAt   time.Time
	ownersCost time.Duration // how long that count took
	ownersGen  uint64        // table inserts+updates+deletes at that count
}

// newOps returns d's operations state, not started (startOps starts it).
func newOps(d *Daemon) *ops {
	o := &ops{d: d, live: d.Config}
	cfg := d.Config
	o.metrics = metrics.New(o, metrics.Info{HostID: cfg.Host.ID, Name: cfg.Host.Name, Address: cfg.Host.Address.String(), Version: Version})
	return o
}

// startOps starts the metrics endpoint and the control socket.
func (d *Daemon) startOps() error {
	o := d.ops.Load()
	cfg := d.Config
	o.started = time.Now()
	o.keyFile = d.keyFile // read by startControl
	if cfg.Metrics.Listen != "" {
		ln, err := net.Listen("tcp", cfg.Metrics.Listen)
		if err != nil {
			return fmt.Errorf("%s: metrics.listen: %w", cfg.Source, err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", o.metrics.Handler())
		d.routes(mux)
		mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/" {
				http.NotFound(w, r)
				return
			}
			fmt.Fprintf(w, "homingd %s, host %d\n/metrics\n", Version, cfg.Host.ID)
		})
		o.http = metrics.NewServer(mux, slog.NewLogLogger(d.Log.Handler(), slog.LevelWarn))
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
	o := d.ops.Swap(nil)
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
}

// SetLogLevel gives the daemon the level of its logger, so that a reload can change it.
func (d *Daemon) SetLogLevel(lv *slog.LevelVar) {
	if o := d.ops.Load(); o != nil {
		o.mu.Lock()
		o.level = lv
		o.mu.Unlock()
	}
}

// Metrics returns the daemon's metrics (nil after Stop).
func (d *Daemon) Metrics() *metrics.Metrics {
	if o := d.ops.Load(); o != nil {
		return o.metrics
	}
	return nil
}

// onConverge feeds the convergence histogram (gossip.Config.OnConverge).
func (d *Daemon) onConverge(s gossip.ConvergeSample) {
	if o := d.ops.Load(); o != nil {
		o.metrics.ObserveConvergence(s.Sent, s.Applied)
	}
}
