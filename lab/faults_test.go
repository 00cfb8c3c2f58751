package lab

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/homing-dev/homing/ctl"
	"github.com/homing-dev/homing/gossip"
	"github.com/homing-dev/homing/gossip/wire"
	"github.com/homing-dev/homing/internal/testenv"
	"github.com/homing-dev/homing/session"
)

// The proofs of issue 6 (reliability and security) in the lab. Each builds its own lab
// with a configuration rewritten for the fault (Options.EditConfig) and reports its
// figures with t.Log.

// requireFaultLab fails (CI) or skips the test unless the lab can run here.
func requireFaultLab(t *testing.T) {
	t.Helper()
	requireLab(t)
	testenv.RequireCommand(t, "ss")
}

// requireLab needs what every lab needs (root, ip, nft, nsenter, go, cgroup v2) and
// returns this test binary, which the hosts run as their echo service (TestMain).
func requireLab(t *testing.T) string {
	t.Helper()
	testenv.RequireRoot(t)
	for _, c := range []string{"ip", "nft", "nsenter", "go"} {
		testenv.RequireCommand(t, c)
	}
	if _, err := CgroupRoot(); err != nil {
		testenv.Missing(t, err.Error())
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

// setKey replaces the line "key = ..." of section [section] in a generated host
// configuration, or adds it to the section.
func setKey(t *testing.T, toml, section, key, value string) string {
	t.Helper()
	lines := strings.Split(toml, "\n")
	in := false
	for i, ln := range lines {
		s := strings.TrimSpace(ln)
		if strings.HasPrefix(s, "[") {
			if in { // end of the section: add the key before the next one
				return strings.Join(append(lines[:i:i], append([]string{key + " = " + value}, lines[i:]...)...), "\n")
			}
			in = s == "["+section+"]"
			continue
		}
		if in && strings.HasPrefix(s, key+" ") || in && strings.HasPrefix(s, key+"=") {
			lines[i] = key + " = " + value
			return strings.Join(lines, "\n")
		}
	}
	if in {
		return toml + "\n" + key + " = " + value + "\n"
	}
	t.Fatalf("no section [%s] in the host configuration", section)
	return toml
}

// faultLab builds a lab of hosts 1..n, routed, with edit applied to every host's
// configuration; it is closed (and checked to leave nothing behind) at the test's end.
// openFleet opens n echo connections from the client namespace to the VIP and starts
// them (stopped when the test ends); with settle, it waits until every host's table
// holds them.
func openFleet(t *testing.T, ctx context.Context, l *Lab, n int, settle bool) *Fleet {
	t.Helper()
	fleet, err := Dial(ctx, l.NS("cli"), l.Service().String(), n, 16)
	if err != nil {
		t.Fatal(err)
	}
	fleet.Start()
	t.Cleanup(fleet.Stop)
	if settle {
		if _, err := l.WaitSessions(ctx, l.Hosts(), n, 15*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	return fleet
}

func faultLab(t *testing.T, ctx context.Context, n int, edit func(t *testing.T, host int, toml string) string) *Lab {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{Homingd: buildHomingd(t), Serve: []string{exe}, Redirect: true, Log: &lineLog{t: t}}
	if edit != nil {
		opts.EditConfig = func(host int, toml string) string { return edit(t, host, toml) }
	}
	l, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("host logs:\n%s", l.logTails(20))
		}
		if err := l.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		if rest := Remains(l.ID, l.PIDs()); len(rest) > 0 {
			t.Errorf("lab %s left behind: %s", l.ID, strings.Join(rest, ", "))
		}
	})
	hosts := make([]int, n)
	for i := range hosts {
		hosts[i] = i + 1
	}
	if err := l.AddHosts(ctx, hosts...); err != nil {
		t.Fatal(err)
	}
	if err := l.SetRoute(hosts); err != nil {
		t.Fatal(err)
	}
	return l
}

// waitTruth waits until every host's table equals the truth (Lab.Truth) or limit
// passes; it returns how long that took, and the differences of the last look.
func waitTruth(ctx context.Context, l *Lab, limit time.Duration) (time.Duration, map[int][]string, error) {
	t0 := time.Now()
	for {
		truth, err := l.Truth()
		if err != nil {
			return 0, nil, err
		}
		diffs := map[int][]string{}
		for _, n := range l.Hosts() {
			tab, err := l.Sessions(ctx, n)
			if err != nil {
				return 0, nil, err
			}
			if k, d := TableDiff(tab, truth, 5); k > 0 {
				diffs[n] = append([]string{fmt.Sprintf("%d differences of %d sessions:", k, len(truth))}, d...)
			}
		}
		if len(diffs) == 0 {
			return time.Since(t0), nil, nil
		}
		if time.Since(t0) > limit {
			return time.Since(t0), diffs, ErrTimeout
		}
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return 0, diffs, err
		}
	}
}

// gossipSum sums a gossip counter (ctl.Stats.Gossip) over hosts.
func gossipSum(t *testing.T, ctx context.Context, l *Lab, hosts []int, keys ...string) map[string]uint64 {
	t.Helper()
	sum := map[string]uint64{}
	for _, n := range hosts {
		st, err := l.Stats(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			if v, ok := st.Gossip[k]; ok {
				sum[k] += v
			} else {
				sum[k] += st.Reject[k]
			}
		}
	}
	return sum
}

// TestGossipLoss: 30 % of the gossip datagrams are dropped on the POP LAN (each host
// loses its own random 30 %) while clients open and close connections continuously and
// h1 is drained in the middle. No connection, opened before the loss or under it, sees
// a reset through the drain (NACKs recover lost adds within a round trip); after the
// churn stops, every host's table equals the truth (the established sockets of every
// host) with the loss still on.
func TestGossipLoss(t *testing.T) {
	requireFaultLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	l := faultLab(t, ctx, 3, func(t *testing.T, _ int, toml string) string {
		return setKey(t, toml, "gossip", "linger", `"1s"`) // closed sessions leave the tables soon
	})
	hosts := l.Hosts()
	const old = 300
	fleet := openFleet(t, ctx, l, old, true)
	before := gossipSum(t, ctx, l, hosts, "sequence_gaps", "repairs_started", "repairs_completed", "repairs_failed",
		"digest_mismatches", "datagrams_received", "records_received")

	if err := l.DropGossip(30); err != nil {
		t.Fatal(err)
	}
	op := &Opener{Rate: 100, Keep: 0.2, Hold: time.Second}
	if err := StartOpener(l.NS("cli"), l.Service().String(), op); err != nil {
		t.Fatal(err)
	}
	const churn = 10 * time.Second
	if err := sleep(ctx, churn/2); err != nil {
		t.Fatal(err)
	}
	if err := l.SetRoute(hosts[1:]); err != nil { // drain h1: its connections move to h2, h3
		t.Fatal(err)
	}
	drained := time.Now()
	if err := sleep(ctx, churn/2); err != nil {
		t.Fatal(err)
	}
	kept := op.Stop()
	defer kept.Stop()
	t.Logf("churn: %d connections opened in %v (%d stay open), %d closed cleanly, %d handshakes failed, %d reset, %d failed",
		op.Opened.Load(), churn, len(kept.Conns), op.Completed.Load(), op.Handshake.Load(), op.Reset.Load(), op.Failed.Load())

	took, diffs, waitErr := waitTruth(ctx, l, 20*time.Second)
	if waitErr != nil {
		t.Errorf("after %v the tables differ from the truth: %v", took.Round(time.Millisecond), waitErr)
		for n, d := range diffs {
			t.Logf("h%d: %s", n, strings.Join(d, "\n  "))
		}
	}
	fwd, dropped, err := l.GossipLoss()
	if err != nil {
		t.Fatal(err)
	}
	truth, err := l.Truth()
	if err != nil {
		t.Fatal(err)
	}
	after := gossipSum(t, ctx, l, hosts, "sequence_gaps", "repairs_started", "repairs_completed", "repairs_failed",
		"digest_mismatches", "datagrams_received", "records_received")
	d := func(k string) uint64 { return after[k] - before[k] }
	t.Logf("gossip under loss: the bridges forwarded %d datagrams to hosts and dropped %d (%.1f %%); the hosts counted "+
		"%d datagrams missed (sequence gaps), %d digest mismatches, started %d repairs (%d completed, %d failed)",
		fwd, dropped, 100*float64(dropped)/float64(max(fwd, 1)), d("sequence_gaps"), d("digest_mismatches"),
		d("repairs_started"), d("repairs_completed"), d("repairs_failed"))
	if waitErr == nil {
		t.Logf("every table equals the truth (%d sessions on %d hosts) %v after the churn stopped", len(truth), len(hosts),
			took.Round(time.Millisecond))
	}
	if dropped == 0 || float64(dropped) < 0.2*float64(fwd) || float64(dropped) > 0.4*float64(fwd) {
		t.Errorf("the loss rule dropped %d of %d datagrams, want about 30 %%", dropped, fwd)
	}
	if d("sequence_gaps") == 0 {
		t.Errorf("no datagram seen missing under loss")
	}
	// Every connection, opened before the loss or under it, must survive the ECMP
	// change: a lost add is recovered by NACK within a round trip (gossip/nack.go), no
	// longer a repair interval later.
	var broken []string
	for _, id := range op.Broken() {
		broken = append(broken, fmt.Sprintf("closing connection %d opened %v before the drain", id,
			drained.Sub(op.OpenedAt(id)).Round(time.Millisecond)))
	}
	for _, cn := range kept.Ended() {
		broken = append(broken, fmt.Sprintf("kept connection %d opened %v before the drain", cn.ID-KeptID,
			drained.Sub(op.OpenedAt(cn.ID-KeptID)).Round(time.Millisecond)))
	}
	c := fleet.Counts()
	kc := kept.Counts()
	t.Logf("long-lived connections opened before the loss, through the drain of h1: %d of %d alive, %d reset, %d failed",
		c.Alive+c.Stalled, old, c.Reset, c.Failed)
	t.Logf("connections opened under loss: %d of %d broke (%d kept ones reset, %d failed; %d closing ones reset, %d failed, "+
		"%d handshakes failed)", len(broken), op.Opened.Load(), kc.Reset, kc.Failed, op.Reset.Load(), op.Failed.Load(),
		op.Handshake.Load())
	if c.Reset+c.Failed != 0 || len(broken) != 0 {
		t.Errorf("connections broke under gossip loss and a drain: %d reset and %d failed of those opened before the loss; "+
			"%d of those opened under loss: %v", c.Reset, c.Failed, len(broken), broken[:min(10, len(broken))])
		for _, e := range op.Errors() {
			t.Log(e)
		}
		for _, cn := range fleet.Ended() {
			t.Logf("connection %d from %s: %v", cn.ID, cn.Local, cn.Err())
		}
	}
}

// TestRestart: h1 is drained, so that its connections reach h2 and h3 and are tunnelled
// to it; its homingd is killed (SIGKILL) and started again; h1 returns to the route as
// soon as its control socket answers, before it has heard its peers. Its packets are lost while it is down (the clients retransmit);
// after the restart it must re-learn its own sessions (sock_diag) and the peers'
// (repair), and no connection may be reset.
func TestRestart(t *testing.T) {
	requireFaultLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	l := faultLab(t, ctx, 3, nil)
	hosts := l.Hosts()
	const conns = 300
	fleet := openFleet(t, ctx, l, conns, true)
	own, err := l.Established(1)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.SetRoute(hosts[1:]); err != nil {
		t.Fatal(err)
	}
	if err := sleep(ctx, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	st0, err := l.Status(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	peers0 := classSum(t, ctx, l, hosts[1:])
	killed := time.Now()
	if err := l.Kill(1); err != nil {
		t.Fatal(err)
	}
	if err := l.Restart(ctx, 1); err != nil {
		t.Fatal(err)
	}
	up := time.Since(killed)
	// Back in the route at once: the peers' connections that ECMP now hands to h1 meet
	// a table that repair has not filled yet.
	if err := l.SetRoute(hosts); err != nil {
		t.Fatal(err)
	}
	if err := l.WaitPeers(ctx, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	st1, err := l.Status(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if st1.Incarnation <= st0.Incarnation {
		t.Errorf("incarnation %d after the restart, %d before: it must grow", st1.Incarnation, st0.Incarnation)
	}
	took, diffs, err := waitTruth(ctx, l, 15*time.Second)
	if err != nil {
		t.Errorf("after %v the tables differ from the truth: %v", took.Round(time.Millisecond), err)
		for n, d := range diffs {
			t.Logf("h%d: %s", n, strings.Join(d, "\n  "))
		}
	}
	if err := sleep(ctx, 3*time.Second); err != nil {
		t.Fatal(err)
	}
	c := fleet.Counts()
	g := gossipSum(t, ctx, l, []int{2, 3}, "repairs_completed")
	g1 := gossipSum(t, ctx, l, []int{1}, "repairs_completed")
	t.Logf("h1 (owner of %d of %d connections, drained) killed and back up in %v (new incarnation); every table equal to "+
		"the truth %v later; repairs completed: %d by h1, %d by h2 and h3", len(own), conns, up.Round(time.Millisecond),
		took.Round(time.Millisecond), g1["repairs_completed"], g["repairs_completed"])
	cls := classSum(t, ctx, l, hosts[:1])
	t.Logf("h1's data plane since the restart: %d packets decapsulated, %d tunnelled to a peer, %d VIP packets of unknown "+
		"sessions to its kernel", cls["decap"], cls["redirect"], cls["miss"])
	peers1 := classSum(t, ctx, l, hosts[1:])
	t.Logf("h2 and h3 from the kill on: %d packets tunnelled, %d VIP packets of unknown sessions to their kernels, %d of "+
		"sessions whose owner is down to their kernels", peers1["redirect"]-peers0["redirect"], peers1["miss"]-peers0["miss"],
		peers1["dead_owner"]-peers0["dead_owner"])
	t.Logf("connections: %d of %d alive, %d stalled, %d reset, %d failed", c.Alive+c.Stalled, conns, c.Stalled, c.Reset, c.Failed)
	if c.Reset+c.Failed != 0 {
		t.Errorf("%d connections reset and %d failed through a restart of homingd", c.Reset, c.Failed)
		for _, cn := range fleet.Ended()[:min(10, len(fleet.Ended()))] {
			t.Logf("connection %d from %s: %v", cn.ID, cn.Local, cn.Err())
		}
	}
}

// classSum sums the data planes' packet classes (ctl.LcoreStats.Classes) over hosts.
func classSum(t *testing.T, ctx context.Context, l *Lab, hosts []int) map[string]uint64 {
	t.Helper()
	sum := map[string]uint64{}
	for _, n := range hosts {
		st, err := l.Stats(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		for _, lc := range st.Lcores {
			for k, v := range lc.Classes {
				sum[k] += v
			}
		}
	}
	return sum
}

// TestHostGone: h3's namespace is destroyed (its homingd and echo service killed, its
// NIC gone) and the router stops routing to it. h1 and h2 mark it down after
// gossip.down_after heartbeats and drop its sessions gossip.grace later (2 s here), not
// before; their own connections are untouched.
func TestHostGone(t *testing.T) {
	requireFaultLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const grace = 2 * time.Second
	l := faultLab(t, ctx, 3, func(t *testing.T, _ int, toml string) string {
		return setKey(t, toml, "gossip", "grace", fmt.Sprintf("%q", grace.String()))
	})
	const conns = 150
	fleet := openFleet(t, ctx, l, conns, true)
	gone, err := l.Established(3)
	if err != nil {
		t.Fatal(err)
	}
	drops0 := gossipSum(t, ctx, l, []int{1, 2}, "grace_drops")
	t0 := time.Now()
	if err := l.Destroy(3); err != nil {
		t.Fatal(err)
	}
	if err := l.SetRoute([]int{1, 2}); err != nil {
		t.Fatal(err)
	}
	var downAt, droppedAt time.Duration
	for downAt == 0 || droppedAt == 0 {
		if time.Since(t0) > 20*time.Second {
			t.Fatalf("20 s after h3 died: down after %v, sessions dropped after %v (0: not yet)", downAt, droppedAt)
		}
		down, left := 0, 0
		for _, n := range []int{1, 2} {
			ps, err := l.Peers(ctx, n)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range ps {
				if p.ID == 3 && !p.Up {
					down++
				}
			}
			if !slices.ContainsFunc(ps, func(p ctl.Peer) bool { return p.ID == 3 }) {
				down++ // no longer listed at all
			}
			tab, err := l.Sessions(ctx, n)
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range tab {
				if o == 3 {
					left++
				}
			}
		}
		now := time.Since(t0)
		if downAt == 0 && down == 2 {
			downAt = now
		}
		if droppedAt == 0 && left == 0 {
			droppedAt = now
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	drops := gossipSum(t, ctx, l, []int{1, 2}, "grace_drops")["grace_drops"] - drops0["grace_drops"]
	t.Logf("h3 (owner of %d of %d connections) destroyed: h1 and h2 saw it down after %v, dropped its sessions after %v "+
		"(grace %v; %d grace drops counted on h1 and h2)", len(gone), conns, downAt.Round(time.Millisecond),
		droppedAt.Round(time.Millisecond), grace, drops)
	if droppedAt < downAt+grace-100*time.Millisecond {
		t.Errorf("h3's sessions dropped %v after its death, %v after it went down: before the grace of %v", droppedAt,
			droppedAt-downAt, grace)
	}
	if drops != uint64(2*len(gone)) {
		t.Errorf("%d grace drops on h1 and h2, want %d (h3's sessions on each)", drops, 2*len(gone))
	}
	// The tables now hold exactly the surviving hosts' sessions, and their connections live.
	took, diffs, err := waitTruth(ctx, l, 5*time.Second)
	if err != nil {
		t.Errorf("after %v the tables differ from the truth: %v", took, err)
		for n, d := range diffs {
			t.Logf("h%d: %s", n, strings.Join(d, "\n  "))
		}
	}
	lost := map[string]bool{}
	for _, c := range gone {
		lost[c] = true
	}
	broken := 0
	for _, cn := range fleet.Ended() {
		if !lost[cn.Local] {
			broken++
			t.Errorf("connection %d from %s (not h3's) ended: %v", cn.ID, cn.Local, cn.Err())
		}
	}
	t.Logf("connections of h1 and h2: %d broke", broken)
}

// TestHostileGossip: a stranger on the POP LAN (a namespace on the bridge) captures the
// hosts' gossip, then sends to the group: garbage, a truncated and an oversize datagram,
// records and a heartbeat under a wrong key (one claiming a live host's id and a future
// sequence number, one a new host), a captured datagram with its sender id changed, and
// every captured datagram again (replays). No host accepts any of them: each host's
// reject counters grow by exactly the number sent, and no table or membership changes.
func TestHostileGossip(t *testing.T) {
	requireFaultLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	l := faultLab(t, ctx, 3, nil)
	hosts := l.Hosts()
	spyNS, err := l.AddSpy(netip.MustParseAddr("198.18.0.250"))
	if err != nil {
		t.Fatal(err)
	}
	var conn *gossip.MulticastConn
	if err := InNS(spyNS, func() error {
		var err error
		conn, err = gossip.ListenMulticast(gossip.MulticastConfig{Group: netip.AddrPortFrom(l.group(), GossipPort), Interface: "eth0"})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Capture while connections open (records) and heartbeats flow.
	captured := make(chan []byte, 4096)
	go func() { // capture
		buf := make([]byte, wire.MaxDatagramLen)
		for {
			n, _, err := conn.Recv(buf)
			if err != nil {
				close(captured)
				return
			}
			select {
			case captured <- append([]byte(nil), buf[:n]...):
			default:
			}
		}
	}()
	const conns = 100
	fleet := openFleet(t, ctx, l, conns, true)
	if err := sleep(ctx, 500*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	var valid []wire.Datagram
	records := 0
	for len(captured) > 0 {
		d := wire.Datagram(<-captured)
		if d.Validate(0) == nil {
			valid = append(valid, d)
			if d.Type() == wire.TypeRecords {
				records++
			}
		}
	}
	if records == 0 || len(valid) < 10 {
		t.Fatalf("captured %d valid datagrams, %d of records: too few to replay", len(valid), records)
	}
	// The state before the attack.
	tables0 := map[int]map[string]uint16{}
	rejects0 := map[int]uint64{}
	st2, err := l.Status(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range hosts {
		if tables0[n], err = l.Sessions(ctx, n); err != nil {
			t.Fatal(err)
		}
		st, err := l.Stats(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range st.Reject {
			rejects0[n] += v
		}
	}

	wrongKey := make([]byte, 32)
	for i := range wrongKey {
		wrongKey[i] = byte(i*7 + 1)
	}
	ring, err := wire.NewKeyRing(wrongKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	forger := wire.NewSealer(ring)
	fake := func(sender uint16, inc, seq uint64) wire.Datagram {
		body := wire.AppendRecord(nil, wire.Record{Op: wire.OpAdd, Key: session.Key{Src: netip.MustParseAddr("198.18.100.2"),
			Dst: l.VIPAddr(), SrcPort: 7, DstPort: ServicePort, Proto: session.TCP}, Owner: session.Owner{Host: sender, Epoch: 1 << 40}})
		d := make(wire.Datagram, wire.HeaderLen+len(body)+wire.TagLen)
		copy(d[wire.HeaderLen:], body)
		forger.Seal(d, wire.Header{Type: wire.TypeRecords, Sender: sender, Incarnation: inc, Seq: seq, Timestamp: time.Now().UnixNano()})
		return d
	}
	garbage := make([]byte, 64)
	for i := range garbage {
		garbage[i] = byte(i)
	}
	oversize := make([]byte, 1450)
	copy(oversize, valid[0])
	impostor := append(wire.Datagram(nil), valid[len(valid)-1]...)
	impostor[4], impostor[5] = 0, byte(impostor.Sender()%3+1) // another live host's id, the tag left as it was
	hb := fake(7, 1, 1)
	hb[3] = byte(wire.TypeHeartbeat) // a heartbeat header over a record body, under the wrong key
	hostile := []struct {
		what string
		d    []byte
	}{
		{"garbage", garbage},
		{"truncated", valid[0][:20]},
		{"oversize", oversize},
		{"records under a wrong key claiming h2, a future sequence number", fake(2, st2.Incarnation, 1<<40)},
		{"records under a wrong key claiming h2, a new incarnation", fake(2, st2.Incarnation+1, 1)},
		{"heartbeat of a new host 7 under a wrong key", hb},
		{"captured datagram with its sender id changed", impostor},
	}
	for _, d := range valid {
		hostile = append(hostile, struct {
			what string
			d    []byte
		}{fmt.Sprintf("replay of h%d's %v seq %d", d.Sender(), d.Type(), d.Seq()), d})
	}
	for _, h := range hostile {
		if err := conn.Send(h.d); err != nil {
			t.Fatalf("send %s: %v", h.what, err)
		}
		time.Sleep(2 * time.Millisecond)
	}
	if err := sleep(ctx, time.Second); err != nil {
		t.Fatal(err)
	}
	for _, n := range hosts {
		st, err := l.Stats(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		var sum uint64
		var parts []string
		for _, k := range sortedKeysU(st.Reject) {
			sum += st.Reject[k]
			if st.Reject[k] > 0 {
				parts = append(parts, fmt.Sprintf("%s %d", k, st.Reject[k]))
			}
		}
		t.Logf("h%d rejected %d of the %d hostile datagrams (%d replays of captured ones): %s", n, sum-rejects0[n],
			len(hostile), len(valid), strings.Join(parts, ", "))
		if sum-rejects0[n] != uint64(len(hostile)) {
			t.Errorf("h%d rejected %d datagrams, want all %d hostile ones", n, sum-rejects0[n], len(hostile))
		}
		tab, err := l.Sessions(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		if k, d := TableDiff(tab, tables0[n], 5); k > 0 {
			t.Errorf("h%d's table changed: %v", n, d)
		}
		ps, err := l.Peers(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		if len(ps) != len(hosts)-1 {
			t.Errorf("h%d has %d peers after the attack, want %d: %+v", n, len(ps), len(hosts)-1, ps)
		}
	}
	if c := fleet.Counts(); c.Reset+c.Failed != 0 {
		t.Errorf("%d connections reset, %d failed during the attack", c.Reset, c.Failed)
	}
}

func sortedKeysU(m map[string]uint64) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// TestTableFull: every host's table holds 64 IPv4 sessions (table.capacity4 = 64) and
// 300 connections open. The adds beyond the capacity are refused and counted; no entry
// names a wrong owner; and with no ECMP change every connection is served by its own
// host (a miss is "deliver locally"), without a reset.
func TestTableFull(t *testing.T) {
	requireFaultLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const capacity = 64
	l := faultLab(t, ctx, 3, func(t *testing.T, _ int, toml string) string {
		return setKey(t, toml, "table", "capacity4", fmt.Sprint(capacity))
	})
	const conns = 300
	fleet := openFleet(t, ctx, l, conns, false)
	if err := sleep(ctx, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	truth, err := l.Truth()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range l.Hosts() {
		tab, err := l.Sessions(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		wrong := 0
		for c, o := range tab {
			if truth[c] != o {
				wrong++
			}
		}
		st, err := l.Stats(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		lines := 0
		if b, err := os.ReadFile(l.Host(n).LogFile); err == nil {
			lines = strings.Count(string(b), "table apply")
		}
		t.Logf("h%d: %d entries (capacity %d), %d adds refused (table full counter), %d gossip table errors, %d log lines "+
			"about it; %d entries with a wrong owner", n, len(tab), capacity, st.Table["full"], st.Gossip["table_errors"], lines, wrong)
		if st.Table["full"] == 0 || len(tab) > capacity*2 {
			t.Errorf("h%d: %d entries, %d refused: the table did not fill", n, len(tab), st.Table["full"])
		}
		if wrong != 0 {
			t.Errorf("h%d: %d entries name a wrong owner", n, wrong)
		}
		if lines > 20 {
			t.Errorf("h%d logged %d lines about the full table in 5 s: not rate-limited", n, lines)
		}
	}
	c := fleet.Counts()
	t.Logf("connections: %d of %d alive, %d reset, %d failed", c.Alive+c.Stalled, conns, c.Reset, c.Failed)
	if c.Reset+c.Failed != 0 {
		t.Errorf("%d connections reset and %d failed with full tables and no ECMP change", c.Reset, c.Failed)
	}
}
