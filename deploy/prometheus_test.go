package deploy

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/homing-dev/homing/internal/testenv"
)

// TestPrometheusRules checks deploy/prometheus/homing.rules.yml with promtool (Debian
// package prometheus, installed by make deps) and runs its unit tests,
// homing.rules.test.yml: every alert fires on the series that should raise it, with
// its labels and annotations, and stays quiet on the others. (That the rules name
// metrics the collector exports is metrics.TestRulesNames.)
func TestPrometheusRules(t *testing.T) {
	testenv.RequireCommand(t, "promtool")
	for _, args := range [][]string{
		{"check", "rules", "homing.rules.yml"},
		{"test", "rules", "homing.rules.test.yml"},
	} {
		cmd := exec.Command("promtool", args...)
		cmd.Dir = "prometheus"
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "SUCCESS") {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}
