// Command homingd is homing's daemon: one per POP host. It forwards every packet whose
// TCP/UDP session another host owns to that host in a GUE tunnel, and hands everything
// else to the local kernel through a TAP interface.
//
//	homingd -config /etc/homing/homingd.toml
//
// Signals: SIGINT and SIGTERM stop it cleanly; SIGHUP re-reads the configuration file
// and applies what can change live (static peers and sessions, gossip keys, log level;
// see docs/OPERATIONS.md).
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/homing-dev/homing/config"
	"github.com/homing-dev/homing/daemon"
	"github.com/homing-dev/homing/internal/ratelog"
)

func main() {
	path := flag.String("config", "/etc/homing/homingd.toml", "configuration file (TOML)")
	check := flag.Bool("check", false, "validate the configuration and exit")
	flag.Parse()

	cfg, err := config.Load(*path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "homingd:", err)
		os.Exit(2)
	}
	if *check {
		fmt.Printf("%s: ok\n", *path)
		return
	}
	level := new(slog.LevelVar)
	_ = level.UnmarshalText([]byte(cfg.Log.Level))
	log := ratelog.NewLogger(os.Stderr, cfg.Log.Format, level)
	slog.SetDefault(log)
	d, err := daemon.Start(cfg, log)
	if err != nil {
		log.Error("start failed", "err", err)
		os.Exit(1)
	}
	d.SetLogLevel(level)
	stopNotify := notify(d, log)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	for s := range sig {
		if s == syscall.SIGHUP {
			reload(d, *path, log)
			continue
		}
		log.Info("stopping", "signal", s.String())
		break
	}
	stopNotify()
	if err := d.Stop(); err != nil {
		log.Error("stop", "err", err)
		os.Exit(1)
	}
	log.Info("stopped")
}

// reload re-reads the configuration file and applies what can change live; a file
// that does not parse, or that changes keys only a restart applies, is refused and the
// configuration in force stays.
func reload(d *daemon.Daemon, path string, log *slog.Logger) {
	cfg, err := config.Load(path)
	if err != nil {
		log.Error("reload refused: invalid configuration, keeping the one in force", "file", path, "err", err)
		return
	}
	changes, err := d.Reload(cfg)
	if err != nil {
		log.Error("reload refused, keeping the configuration in force", "file", path, "err", err, "applied", changes)
		return
	}
	if len(changes) == 0 {
		log.Info("reload: nothing changed", "file", path)
		return
	}
	log.Info("reload applied", "file", path, "changes", strings.Join(changes, "; "))
}
