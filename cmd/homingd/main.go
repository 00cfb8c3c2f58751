// Command homingd is homing's daemon: one per POP host. It forwards every packet whose
// TCP/UDP session another host owns to that host in a GUE tunnel, and hands everything
// else to the local kernel through a TAP interface.
//
//	homingd -config /etc/homing/homingd.toml
//	homingd -config /etc/homing/homingd.toml -check   # validate and exit
//	homingd -version
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

	"github.com/prometheus/common/version"

	"github.com/homing-dev/homing/config"
	"github.com/homing-dev/homing/daemon"
	"github.com/homing-dev/homing/dpdk"
	"github.com/homing-dev/homing/internal/ratelog"
)

func main() {
	path := flag.String("config", "/etc/homing/homingd.toml", "configuration file (TOML)")
	check := flag.Bool("check", false, "validate the configuration and exit")
	showVersion := flag.Bool("version", false, "print the version and exit")
	flag.Parse()
	// The Makefile stamps github.com/prometheus/common/version with -ldflags (git
	// describe); a plain go build is "dev", with the revision Go records itself.
	if version.Version == "" {
		version.Version = "dev"
	}
	daemon.Version = version.Version
	if *showVersion {
		fmt.Println(version.Print("homingd"))
		return
	}

	cfg, err := config.Load(*path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "homingd:", err)
		os.Exit(2)
	}
	warnings, err := checkFiles(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "homingd:", err)
		os.Exit(2)
	}
	if *check {
		for _, w := range warnings {
			fmt.Fprintln(os.Stderr, "homingd: warning:", w)
		}
		m := cfg.MemoryNeeded()
		fmt.Printf("%s: ok, DPDK memory %d of %d MiB (%s)\n", *path, m.TotalMiB(), cfg.DPDK.MemoryMB, m)
		return
	}
	level := new(slog.LevelVar)
	_ = level.UnmarshalText([]byte(cfg.Log.Level))
	log := ratelog.NewLogger(os.Stderr, cfg.Log.Format, level)
	slog.SetDefault(log)
	for _, w := range warnings {
		log.Warn(w)
	}
	// DPDK's own messages (EAL, PMDs) go to the same log, from the EAL's start on.
	stopDPDKLog := func() {}
	if stop, err := dpdk.ForwardLogs(log); err != nil {
		log.Warn("DPDK messages stay on stderr", "err", err)
	} else {
		stopDPDKLog = stop
	}
	d, err := daemon.Start(cfg, log)
	if err != nil {
		log.Error("start failed", "err", err)
		stopDPDKLog()
		os.Exit(1)
	}
	d.SetLogLevel(level)
	stopNotify := notify(d, log)
	logStart(log, d, *path)
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
	err = d.Stop()
	stopDPDKLog()
	if err != nil {
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
