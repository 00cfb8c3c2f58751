package metrics

import (
	"testing"

	"github.com/prometheus/common/version"
)

// TestBuildInfo: homing_build_info carries the version github.com/prometheus/common/version
// holds (stamped by the Makefile), with the revision and the Go version.
func TestBuildInfo(t *testing.T) {
	version.Version, version.Revision = "v1.2.3-test", "abc123"
	t.Cleanup(func() { version.Version, version.Revision = "", "" })
	fams, err := New(SourceFunc(fakeSnapshot), Info{HostID: 1}).Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != "homing_build_info" {
			continue
		}
		m := f.GetMetric()[0]
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		if m.GetGauge().GetValue() != 1 || labels["version"] != "v1.2.3-test" || labels["revision"] != "abc123" || labels["goversion"] != version.GoVersion {
			t.Errorf("homing_build_info %v = %v", labels, m.GetGauge().GetValue())
		}
		return
	}
	t.Error("no homing_build_info")
}
