// Command homingd is homing's daemon: one per POP host. It forwards every packet whose
// TCP/UDP session another host owns to that host in a GUE tunnel, and hands everything
// else to the local kernel through a TAP interface.
//
//	homingd -config /etc/homing/homingd.toml
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/homing-dev/homing/config"
	"github.com/homing-dev/homing/daemon"
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
	log := newLogger(cfg)
	d, err := daemon.Start(cfg, log)
	if err != nil {
		log.Error("start failed", "err", err)
		os.Exit(1)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	s := <-sig
	log.Info("stopping", "signal", s.String())
	if err := d.Stop(); err != nil {
		log.Error("stop", "err", err)
		os.Exit(1)
	}
	log.Info("stopped")
}

func newLogger(cfg *config.Config) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Log.Level))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}
