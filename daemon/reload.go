package daemon

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/homing-dev/homing/config"
	"github.com/homing-dev/homing/gossip"
	"github.com/homing-dev/homing/gossip/wire"
	"github.com/homing-dev/homing/session"
)

// Live reload (SIGHUP): what a new configuration may change without a restart, the keys
// that need one (config.Diff), and the gossip key rotation a new key file starts.

// liveKeys are the configuration keys Reload applies; every other change needs a
// restart. gossip.key_file is re-read at every reload, changed or not.
var liveKeys = []string{"peers", "sessions", "log.level", "gossip.key_file", "bgp.neighbors"}

// Reload applies a new configuration to the running daemon: static peers (their header
// templates), static sessions, the gossip keys (re-reading gossip.key_file: a second key
// is accepted, for rotation) and the log level. Nothing is applied if cfg changes a key
// that needs a restart (the error wraps ErrRestartNeeded and names them) or if the key
// file is invalid. It returns what changed.
func (d *Daemon) Reload(cfg *config.Config) (changes []string, err error) {
	o := d.ops.Load()
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
	if old.BGP.Enabled() != cfg.BGP.Enabled() {
		return nil, fmt.Errorf("%s: %w: bgp.neighbors (BGP turned on or off)", cfg.Source, ErrRestartNeeded)
	}

	// Check everything before applying anything.
	var ring *wire.KeyRing
	var keyData []byte
	if cfg.Gossip.Enabled && !cfg.Gossip.Insecure {
		if keyData, err = os.ReadFile(cfg.Gossip.KeyFile); err != nil {
			return nil, fmt.Errorf("%s: gossip.key_file: %w", cfg.Source, err)
		}
		if ring, err = wire.ParseKeys(keyData, cfg.Gossip.KeyFile); err != nil {
			return nil, fmt.Errorf("%s: gossip.key_file: %w", cfg.Source, err)
		}
	}

	// BGP neighbours: changed sessions are re-created, the announced set kept.
	if !reflect.DeepEqual(old.BGP.Neighbors, cfg.BGP.Neighbors) {
		if err := d.setBGPNeighbors(cfg.BGP.Neighbors); err != nil {
			return changes, fmt.Errorf("%s: bgp.neighbors: %w", cfg.Source, err)
		}
		var ns []string
		for _, n := range cfg.BGP.Neighbors {
			ns = append(ns, fmt.Sprintf("%s AS %d", n.Address, n.AS))
		}
		changes = append(changes, "bgp neighbours: "+strings.Join(ns, ", "))
	}

	// Static peers (templates.go).
	if changes, err = d.reloadStaticPeers(old, cfg, changes); err != nil {
		return changes, err
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
// only a restart applies (everything but liveKeys). config.Diff owns the key names.
func RestartKeys(old, new *config.Config) []string {
	var keys []string
	for _, k := range config.Diff(old, new) {
		if !slices.Contains(liveKeys, k) {
			keys = append(keys, k)
		}
	}
	return keys
}

// rotateKeysWith makes a reload's new gossip keys reach node and, on a relay host,
// relay: both switch every channel at once (multicast, repair, NACK, relay envelopes;
// exchanges already in flight finish with their keys).
func (d *Daemon) rotateKeysWith(node *gossip.Node, relay *gossip.Relay) {
	o := d.ops.Load()
	if node == nil || o == nil {
		return
	}
	o.setKeys = func(r *wire.KeyRing) error {
		// The relay first: it checks the datagrams the node seals, and after the
		// switch the node may seal with a key the relay's old ring does not accept.
		var err error
		if relay != nil {
			err = relay.SetKeys(r)
		}
		return errors.Join(err, node.SetKeys(r))
	}
}

// countKeys counts the keys of a key file (see wire.LoadKeyFile): its lines that are
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
