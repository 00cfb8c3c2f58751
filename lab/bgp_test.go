package lab

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/homing-dev/homing/internal/testenv"
)

// requireBGPLab needs what the fault lab needs and FRR's bgpd and zebra.
func requireBGPLab(t *testing.T) {
	t.Helper()
	requireFaultLab(t)
	for _, d := range []string{"zebra", "bgpd"} {
		if _, err := os.Stat(FRRDir + "/" + d); err != nil {
			testenv.Missing(t, "FRR (Debian package frr): "+err.Error())
		}
	}
}

// TestBGP is the proof of issue 16 on a real router: FRR's bgpd in the router namespace
// learns the VIP from every host's homingd and installs the multipath route; the hosts
// announce only when ready. Through it, with 300 long-lived connections: a drain by
// `homingctl drain` (0 resets; the host's owned sessions fall to 0 once its connections
// end), an undrain, a new host that announces only after its warm-up (0 resets), a host
// that dies (the router withdraws it after the hold time; only its own connections are
// lost), and a homingd restart (warm-up, then announce; 0 resets).
func TestBGP(t *testing.T) {
	requireBGPLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	homingctl := filepath.Join(t.TempDir(), "homingctl")
	if b, err := exec.Command("go", "build", "-o", homingctl, "github.com/homing-dev/homing/cmd/homingctl").CombinedOutput(); err != nil {
		t.Fatalf("build homingctl: %v\n%s", err, b)
	}
	opts := Options{Homingd: buildHomingd(t), Serve: []string{exe}, Redirect: true, Log: &lineLog{t: t}, BGP: true,
		EditConfig: func(_ int, toml string) string {
			// Deletes of ended sessions are gossiped after 1 s (not the default that
			// covers TIME_WAIT), so that a drained host empties within the test.
			return setKey(t, toml, "gossip", "linger", `"1s"`)
		}}
	l, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("host logs:\n%s\nbgpd:\n%s", l.logTails(20), Tail(l.Dir+"/bgpd.log", 30))
		}
		if err := l.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		if rest := Remains(l.ID, l.PIDs()); len(rest) > 0 {
			t.Errorf("lab %s left behind: %s", l.ID, strings.Join(rest, ", "))
		}
	})
	if err := l.AddHosts(ctx, 1, 2, 3); err != nil {
		t.Fatal(err)
	}
	// No SetRoute: the hosts announce by themselves once warm.
	t0 := time.Now()
	if err := l.WaitRoute(ctx, []int{1, 2, 3}, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	t.Logf("router's route to the VIP by BGP over h1 h2 h3 after %v", time.Since(t0).Round(time.Millisecond))
	const conns = 300
	fleet := openFleet(t, ctx, l, conns, true)
	step := func(name string, prev Counts, settle time.Duration) Counts {
		t.Helper()
		if err := sleep(ctx, settle); err != nil {
			t.Fatal(err)
		}
		c := fleet.Counts()
		t.Logf("%-22s alive %d, reset %d, failed %d, corrupted %d", name, c.Alive+c.Stalled, c.Reset-prev.Reset,
			c.Failed-prev.Failed, c.Corrupted-prev.Corrupted)
		if c.Reset != prev.Reset || c.Failed != prev.Failed || c.Corrupted != prev.Corrupted {
			t.Errorf("%s: %d reset, %d failed, %d corrupted bytes; want none", name, c.Reset-prev.Reset, c.Failed-prev.Failed,
				c.Corrupted-prev.Corrupted)
		}
		return c
	}
	prev := fleet.Counts()

	// Drain h1 the operator's way.
	ts, err := l.Drain(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if ts.State != "draining" || ts.Announced || ts.Owned == 0 {
		t.Errorf("h1 after drain: state %q, announced %v, owned %d; want draining, withdrawn, owning sessions", ts.State, ts.Announced, ts.Owned)
	}
	t0 = time.Now()
	if err := l.WaitRoute(ctx, []int{2, 3}, 15*time.Second); err != nil {
		t.Fatal(err)
	}
	t.Logf("drain h1: withdrawn from the router after %v; h1 owns %d sessions", time.Since(t0).Round(time.Millisecond), ts.Owned)
	prev = step("drain h1", prev, 3*time.Second)
	if st, err := l.Status(ctx, 1); err != nil || st.Owned == 0 || st.State != "draining" {
		t.Errorf("h1 drained with its connections open: %+v %v", st.State, err)
	}
	if _, err := l.Undrain(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if err := l.WaitRoute(ctx, []int{1, 2, 3}, 15*time.Second); err != nil {
		t.Fatal(err)
	}
	prev = step("undrain h1", prev, 3*time.Second)

	// A new host announces only once warm.
	if err := l.AddHosts(ctx, 4); err != nil {
		t.Fatal(err)
	}
	if err := l.WaitRoute(ctx, []int{1, 2, 3, 4}, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	st4, err := l.Status(ctx, 4)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("h4: warm at %s, announced at %s (%v later)", st4.WarmAt.Format(time.TimeOnly+".000"),
		st4.AnnouncedAt.Format(time.TimeOnly+".000"), st4.AnnouncedAt.Sub(st4.WarmAt).Round(time.Microsecond))
	if st4.WarmAt.IsZero() || st4.AnnouncedAt.Before(st4.WarmAt) || st4.State != "ready" {
		t.Errorf("h4 announced at %v, warm at %v, state %q: announced before its warm-up ended", st4.AnnouncedAt, st4.WarmAt, st4.State)
	}
	prev = step("add h4", prev, 3*time.Second)

	// A homingd restart (kill -9, start again): warm-up, then announce.
	if err := l.Kill(3); err != nil {
		t.Fatal(err)
	}
	if err := l.Restart(ctx, 3); err != nil {
		t.Fatal(err)
	}
	if err := l.WaitRoute(ctx, []int{1, 2, 3, 4}, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	st3, err := l.Status(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	if st3.AnnouncedAt.Before(st3.WarmAt) {
		t.Errorf("restarted h3 announced at %v, before its warm-up ended at %v", st3.AnnouncedAt, st3.WarmAt)
	}
	step("restart h3", prev, 3*time.Second)

	// A host dies (its namespace goes with it): the router withdraws it after the hold
	// time; only its own connections are lost.
	gone, err := l.Established(2)
	if err != nil {
		t.Fatal(err)
	}
	t0 = time.Now()
	if err := l.Destroy(2); err != nil {
		t.Fatal(err)
	}
	if err := l.WaitRoute(ctx, []int{1, 3, 4}, 15*time.Second); err != nil {
		t.Fatal(err)
	}
	t.Logf("h2 (owner of %d connections) died: the router withdrew it after %v (hold time %v)", len(gone),
		time.Since(t0).Round(time.Millisecond), HostHoldTime)
	if err := sleep(ctx, 3*time.Second); err != nil {
		t.Fatal(err)
	}
	lost := map[string]bool{}
	for _, c := range gone {
		lost[c] = true
	}
	others := 0
	for _, cn := range fleet.Ended() {
		if !lost[cn.Local] {
			others++
			t.Errorf("connection %d from %s (not h2's) ended: %v", cn.ID, cn.Local, cn.Err())
		}
	}
	t.Logf("h2 died: %d of its %d connections ended so far, %d of the others", len(fleet.Ended())-others, len(gone), others)

	// The drained host empties as its connections end.
	if _, err := l.Drain(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if err := l.WaitRoute(ctx, []int{3, 4}, 15*time.Second); err != nil {
		t.Fatal(err)
	}
	fleet.Stop()
	t0 = time.Now()
	out, err := exec.CommandContext(ctx, homingctl, "--socket", l.socket(1), "drain", "--wait", "60s").CombinedOutput()
	t.Logf("homingctl drain --wait 60s on h1 after every connection closed (%v):\n%s", time.Since(t0).Round(time.Millisecond), out)
	if err != nil || !strings.Contains(string(out), "drained, 0 sessions owned here") {
		t.Errorf("h1 did not empty: %v", err)
	}
}
