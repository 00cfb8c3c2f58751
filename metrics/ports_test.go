package metrics

import (
	"testing"

	"github.com/homing-dev/homing/internal/counters"
)

// TestPortLinkQueues: a port's link and per-queue counters as metrics; a port without
// them (nil Link, no queues) exports none.
func TestPortLinkQueues(t *testing.T) {
	snap := func() Snapshot {
		return Snapshot{Ports: []Port{
			{Name: "nic", Link: &Link{Up: true, SpeedMbps: 10000, FullDuplex: true},
				RxQueues: []counters.QueueRx{{Queue: 0, Packets: 5, Bytes: 320}, {Queue: 1, Packets: 9, Errors: 1}},
				TxQueues: []counters.QueueTx{{Queue: 0, Packets: 7, Bytes: 448}}},
			{Name: "kernel", Link: &Link{Up: false, SpeedMbps: 10000, FullDuplex: true}},
			{Name: "other"},
		}}
	}
	reg := New(SourceFunc(snap), Info{HostID: 1}).Registry()
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"homing_port_link_up", map[string]string{"port": "nic"}, 1},
		{"homing_port_link_speed_bytes", map[string]string{"port": "nic"}, 1.25e9},
		{"homing_port_link_full_duplex", map[string]string{"port": "nic"}, 1},
		{"homing_port_link_up", map[string]string{"port": "kernel"}, 0},
		{"homing_port_link_speed_bytes", map[string]string{"port": "kernel"}, 0}, // down
		{"homing_port_link_up", map[string]string{"port": "other"}, -1},
		{"homing_port_queue_received_packets_total", map[string]string{"port": "nic", "queue": "0"}, 5},
		{"homing_port_queue_received_bytes_total", map[string]string{"port": "nic", "queue": "0"}, 320},
		{"homing_port_queue_sent_packets_total", map[string]string{"port": "nic", "queue": "0"}, 7},
		{"homing_port_queue_sent_bytes_total", map[string]string{"port": "nic", "queue": "0"}, 448},
		{"homing_port_queue_received_packets_total", map[string]string{"port": "nic", "queue": "1"}, 9},
		{"homing_port_queue_receive_errors_total", map[string]string{"port": "nic", "queue": "1"}, 1},
		{"homing_port_queue_sent_packets_total", map[string]string{"port": "nic", "queue": "1"}, -1}, // no tx counters
	} {
		if got := value(t, reg, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
}
