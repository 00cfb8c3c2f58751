//go:build linux

package probe

import (
	"testing"
	"time"
)

// TestNextCheckWaitsForResync: after a resync whose dump failed (resyncAfter a
// second ahead, nextPoll not moved) while polled sessions exist and their poll is
// due, the next check is not in the past: otherwise Run would call check, which
// does nothing while the resync waits, in a loop until resyncAfter, and would not
// read the ring meanwhile.
func TestNextCheckWaitsForResync(t *testing.T) {
	now := time.Now()
	tr := newTracker(trackVIPs, false)
	tr.reconcile(dumpOf(est(1)), tr.mark(), true, func(Event) {})
	if tr.polled != 1 {
		t.Fatalf("polled %d, want 1", tr.polled)
	}
	r := &runner{
		p: &Probe{cfg: Config{ResyncInterval: 10 * time.Second}}, t: tr,
		pending: true, lastCheck: now,
		resyncAfter: now.Add(time.Second), nextPoll: now.Add(-time.Millisecond),
	}
	if at := r.nextCheck(); !at.After(now) {
		t.Errorf("next check in %v while the resync waits %v: Run would spin in check",
			at.Sub(now), r.resyncAfter.Sub(now))
	}
	r.pending = false // no loss: the due poll is next
	if at := r.nextCheck(); at.After(now) {
		t.Errorf("next check in %v, want the due poll now", at.Sub(now))
	}
}
