package main

import (
	"log/slog"
	"time"

	"github.com/homing-dev/homing/daemon"
	"github.com/homing-dev/homing/internal/sdnotify"
)

// notify tells systemd (a unit of Type=notify) that homingd is up, and keeps its
// watchdog (WatchdogSec) fed at half its interval while the data plane runs: a homingd
// whose lcores stopped is restarted. The returned stop says STOPPING=1.
func notify(d *daemon.Daemon, log *slog.Logger) (stop func()) {
	say := func(state string) {
		if _, err := sdnotify.Notify(state); err != nil {
			log.Warn("sd_notify", "state", state, "err", err)
		}
	}
	say("READY=1\nSTATUS=data plane running")
	iv := sdnotify.WatchdogInterval()
	done := make(chan struct{})
	if iv > 0 {
		go func() { // watchdog
			t := time.NewTicker(iv / 2)
			defer t.Stop()
			for {
				select {
				case <-done:
					return
				case <-t.C:
					if d.Healthy() {
						say("WATCHDOG=1")
					}
				}
			}
		}()
	}
	return func() {
		close(done)
		say("STOPPING=1")
	}
}
