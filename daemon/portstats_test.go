package daemon

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/homing-dev/homing/metrics"
)

// checkPortMetrics scrapes a running daemon's collector: the link of both ports and the
// NIC's per-queue xstats (queue 0 received every NIC frame).
func checkPortMetrics(t *testing.T, d *Daemon, nic uint64) {
	t.Helper()
	o := d.ops.Load()
	reg := metrics.New(metrics.SourceFunc(o.Snapshot), metrics.Info{HostID: 1}).Registry()
	want := `
# HELP homing_port_link_up 1 when the port's link is up, 0 when down.
# TYPE homing_port_link_up gauge
homing_port_link_up{port="kernel"} 1
homing_port_link_up{port="nic"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "homing_port_link_up"); err != nil {
		t.Error(err)
	}
	n, err := testutil.GatherAndCount(reg, "homing_port_link_speed_bytes", "homing_port_queue_sent_packets_total")
	if err != nil || n != 4 {
		t.Errorf("link speed and queue tx series: %d (%v), want 2 + 2", n, err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := -1.0
	for _, mf := range mfs {
		if mf.GetName() != "homing_port_queue_received_packets_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			ls := map[string]string{}
			for _, l := range m.GetLabel() {
				ls[l.GetName()] = l.GetValue()
			}
			if ls["port"] == "nic" && ls["queue"] == "0" {
				got = m.GetCounter().GetValue()
			}
		}
	}
	if got != float64(nic) {
		t.Errorf("homing_port_queue_received_packets_total{port=nic,queue=0} = %v, want %d (every golden NIC frame)", got, nic)
	}
}
