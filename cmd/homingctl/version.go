package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/prometheus/common/version"

	"github.com/homing-dev/homing/ctl"
)

// versionInfo is `homingctl version --json`.
type versionInfo struct {
	Homingctl string `json:"homingctl"`
	Revision  string `json:"revision"`
	GoVersion string `json:"go_version"`
	Homingd   string `json:"homingd,omitempty"` // the running daemon's; empty when none answers
	PID       int    `json:"homingd_pid,omitempty"`
}

// runVersion prints homingctl's own version, then asks the daemon for its: both are
// printed when it runs; without a daemon the exit status is 1, as for every command.
func runVersion(ctx context.Context, socket string, asJSON bool, stdout, stderr io.Writer) int {
	v := versionInfo{Homingctl: version.Version, Revision: version.GetRevision(), GoVersion: version.GoVersion}
	var st ctl.Status
	err := ctl.Call(ctx, socket, ctl.CmdStatus, nil, &st)
	if err == nil {
		v.Homingd, v.PID = st.Version, st.PID
	}
	if asJSON {
		b, _ := json.MarshalIndent(v, "", "  ")
		fmt.Fprintln(stdout, string(b))
	} else {
		fmt.Fprintf(stdout, "homingctl  %s (revision %s, %s)\n", v.Homingctl, v.Revision, v.GoVersion)
		if err == nil {
			fmt.Fprintf(stdout, "homingd    %s (pid %d)\n", v.Homingd, v.PID)
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, "homingctl:", err)
		return 1
	}
	return 0
}
