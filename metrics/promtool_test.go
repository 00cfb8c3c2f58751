package metrics

import (
	"bytes"
	"net/http/httptest"
	"os/exec"
	"testing"
	"time"

	"github.com/homing-dev/homing/internal/testenv"
)

// scrape returns the text exposition of a collector fed with every kind of metric.
func scrape(t *testing.T) []byte {
	t.Helper()
	full := func() Snapshot {
		s := fakeSnapshot()
		s.Gossip.HeartbeatAge = map[uint16]float64{2: 0.1}
		s.Gossip.Incarnation = 1795649042780952014
		return s
	}
	m := New(SourceFunc(full), Info{HostID: 1, Name: "h1", Address: "198.18.0.11", Version: "test"})
	now := time.Now()
	m.ObserveConvergence(now.Add(-time.Millisecond), now)
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	return rec.Body.Bytes()
}

// TestPromtoolCheckMetrics: promtool (Debian package prometheus, make deps) finds no
// problem in a scrape: names, suffixes, HELP and TYPE.
func TestPromtoolCheckMetrics(t *testing.T) {
	testenv.RequireCommand(t, "promtool")
	cmd := exec.Command("promtool", "check", "metrics")
	cmd.Stdin = bytes.NewReader(scrape(t))
	if out, err := cmd.CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) != 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}
