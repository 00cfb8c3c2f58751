// Package deploy holds the systemd unit of homingd (homingd.service) and its tests.
package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/homing-dev/homing/internal/testenv"
)

// maxExposure is the highest `systemd-analyze security` exposure the unit may have.
const maxExposure = 4.5

// capabilities are what homingd needs, each measured (docs/OPERATIONS.md, "The systemd
// unit"): the unit's bounding set must be exactly these.
var capabilities = []string{"CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_BPF", "CAP_IPC_LOCK"}

func systemdAnalyze(t *testing.T) {
	t.Helper()
	testenv.RequireCommand(t, "systemd-analyze")
	out, err := exec.Command("systemd-analyze", "--version").Output()
	if err != nil {
		t.Fatalf("systemd-analyze --version: %v", err)
	}
	v := 0
	if m := regexp.MustCompile(`^systemd (\d+)`).FindSubmatch(out); m != nil {
		v, _ = strconv.Atoi(string(m[1]))
	}
	if v < 252 {
		testenv.Missing(t, "systemd 252 or later (security --offline): "+strings.SplitN(string(out), "\n", 2)[0])
	}
}

// TestUnitSecurity rates the unit with `systemd-analyze security --offline=true`.
func TestUnitSecurity(t *testing.T) {
	systemdAnalyze(t)
	out, err := exec.Command("systemd-analyze", "security", "--offline=true", "--no-pager", "homingd.service").CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`Overall exposure level for homingd\.service: (\d+\.\d)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no exposure level in:\n%s", out)
	}
	score, _ := strconv.ParseFloat(string(m[1]), 64)
	t.Logf("exposure %.1f", score)
	if score > maxExposure {
		t.Errorf("exposure %.1f, more than %.1f:\n%s", score, maxExposure, out)
	}
}

// TestUnitVerify: `systemd-analyze verify` knows every key of the unit (it ignores an
// unknown one, a typo that silently drops a protection, with a warning only).
func TestUnitVerify(t *testing.T) {
	systemdAnalyze(t)
	b, err := os.ReadFile("homingd.service")
	if err != nil {
		t.Fatal(err)
	}
	// verify wants the binaries to exist: point the commands at one that does.
	unit := filepath.Join(t.TempDir(), "homingd.service")
	if err := os.WriteFile(unit, []byte(strings.ReplaceAll(string(b), "/usr/local/sbin/homingd", "/bin/true")), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("systemd-analyze", "verify", unit).CombinedOutput()
	if err != nil || len(out) != 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestUnitCapabilities: the bounding set is exactly the documented capabilities, no
// ambient ones, and docs/OPERATIONS.md explains each.
func TestUnitCapabilities(t *testing.T) {
	b, err := os.ReadFile("homingd.service")
	if err != nil {
		t.Fatal(err)
	}
	var bounding []string
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapabilityBoundingSet="); ok {
			bounding = append(bounding, strings.Fields(v)...)
		}
		if v, ok := strings.CutPrefix(line, "AmbientCapabilities="); ok && strings.TrimSpace(v) != "" {
			t.Errorf("ambient capabilities %q", v)
		}
	}
	slices.Sort(bounding)
	want := slices.Clone(capabilities)
	slices.Sort(want)
	if !slices.Equal(bounding, want) {
		t.Errorf("CapabilityBoundingSet %v, want %v", bounding, want)
	}
	doc, err := os.ReadFile("../docs/OPERATIONS.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range capabilities {
		if !strings.Contains(string(b), "#   "+c+" ") {
			t.Errorf("the unit does not comment %s", c)
		}
		if !strings.Contains(string(doc), "`"+c+"`") {
			t.Errorf("docs/OPERATIONS.md does not explain %s", c)
		}
	}
}
