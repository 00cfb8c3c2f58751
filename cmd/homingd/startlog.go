package main

import (
	"log/slog"
	"strings"

	"github.com/prometheus/common/version"

	"github.com/homing-dev/homing/daemon"
	"github.com/homing-dev/homing/dpdk"
)

// logStart writes the one line that says what started: the build, the configuration
// file, the EAL arguments, the ports and their links.
func logStart(log *slog.Logger, d *daemon.Daemon, path string) {
	attrs := []any{"version", version.Version, "revision", version.GetRevision(), "config", path,
		"eal", strings.Join(dpdk.Args(), " "), "nic", d.Config.NICPortName(), "kernel", d.Config.KernelPortName()}
	if nic, kernel, err := d.Links(); err != nil {
		attrs = append(attrs, "link_err", err)
	} else {
		attrs = append(attrs, "nic_link", nic.String(), "kernel_link", kernel.String())
	}
	log.Info("homingd started", attrs...)
}
