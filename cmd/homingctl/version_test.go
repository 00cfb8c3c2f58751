package main

import (
	"encoding/json"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/prometheus/common/version"
)

// TestVersion: homingctl version prints its own version and the daemon's; without a
// daemon, its own and exit 1; extra arguments are a usage error.
func TestVersion(t *testing.T) {
	version.Version = "v1.2.3-test"
	t.Cleanup(func() { version.Version = "" })
	sock := fakeDaemon(t)
	out, errOut, code := ctlRun("--socket", sock, "version")
	if code != 0 || !regexp.MustCompile(`(?m)^homingctl\s+v1\.2\.3-test \(revision \S+, go\S+\)\nhomingd\s+v9\.9\.9-fake \(pid 42\)\n$`).MatchString(out) {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	out, _, code = ctlRun("--socket", sock, "--json", "version")
	var v versionInfo
	if err := json.Unmarshal([]byte(out), &v); code != 0 || err != nil || v.Homingctl != "v1.2.3-test" || v.Homingd != "v9.9.9-fake" || v.PID != 42 {
		t.Errorf("--json: exit %d, %+v (%v): %s", code, v, err, out)
	}
	none := filepath.Join(t.TempDir(), "none.sock")
	out, errOut, code = ctlRun("--socket", none, "version")
	if code != 1 || !regexp.MustCompile(`^homingctl\s+v1\.2\.3-test `).MatchString(out) || errOut != "homingctl: homingd is not running (no socket at "+none+")\n" {
		t.Errorf("no daemon: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if _, _, code := ctlRun("version", "x"); code != 2 {
		t.Errorf("version x: exit %d, want 2", code)
	}
}
