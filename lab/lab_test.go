package lab

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/homing-dev/homing/config"
	"github.com/homing-dev/homing/internal/testenv"
)

func TestMain(m *testing.M) {
	ServeFromEnv() // the echo service, when the lab runs this binary in a host
	os.Exit(m.Run())
}

// lineLog turns the scenario's progress lines into t.Log lines.
type lineLog struct {
	t   *testing.T
	mu  sync.Mutex
	buf bytes.Buffer
}

func (w *lineLog) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	for {
		line, err := w.buf.ReadString('\n')
		if err != nil {
			w.buf.WriteString(line)
			return len(p), nil
		}
		w.t.Log(strings.TrimRight(line, "\n"))
	}
}

// buildHomingd builds cmd/homingd into a temporary directory.
func buildHomingd(t *testing.T) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "homingd")
	cmd := exec.Command("go", "build", "-o", out, "github.com/homing-dev/homing/cmd/homingd")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build homingd: %v\n%s", err, b)
	}
	return out
}

// TestPOP is the end-to-end proof: 1000 long-lived connections and 20 uploads (64 KiB
// blocks: full-size segments over 1500-byte links) through a drain, a return, a new host
// and a router rehash keep every connection and every byte with homing, while plain ECMP
// (tunnel.redirect = false) in the same run loses connections; with the MSS clamp off,
// the uploads survive through ICMP too big (the client's kernel lowers its path MTU);
// and nothing of any lab is left afterwards.
func TestPOP(t *testing.T) {
	exe := requireLab(t)
	sc := Scenario{Conns: 1000, Homingd: buildHomingd(t), Serve: []string{exe}, Log: &lineLog{t: t}}
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	t0 := time.Now()
	var runs []*Result
	noClamp := sc
	noClamp.Conns, noClamp.NoClamp = 300, true
	for i, s := range []Scenario{sc, sc, noClamp} {
		redirect := i != 1
		r, err := s.Run(ctx, redirect)
		runs = append(runs, r)
		if err != nil {
			t.Fatalf("redirect=%v, clamp=%v: %v\n%s", redirect, !s.NoClamp, err, r.Logs)
		}
		if rest := Remains(r.LabID, r.PIDs); len(rest) > 0 {
			t.Errorf("lab %s left behind: %s", r.LabID, strings.Join(rest, ", "))
		}
	}
	var table bytes.Buffer
	Table(&table, runs...)
	t.Logf("three runs in %.0fs:\n%s", time.Since(t0).Seconds(), table.String())

	homing, plain, icmp := runs[0], runs[1], runs[2]
	if len(homing.Steps) != 5 || len(plain.Steps) != 5 || len(icmp.Steps) != 5 {
		t.Fatalf("steps: homing %d, plain %d, homing without clamp %d, want 5 each", len(homing.Steps), len(plain.Steps), len(icmp.Steps))
	}
	for _, r := range []*Result{homing, icmp} {
		name := runName(r)
		for _, st := range r.Steps {
			if st.Reset != 0 || st.Failed != 0 || st.Corrupted != 0 || st.Alive != r.Conns {
				t.Errorf("%s, step %q: %d alive of %d, %d stalled, %d reset, %d failed, %d corrupted bytes; want every connection alive and intact",
					name, st.Name, st.Alive, r.Conns, st.Stalled, st.Reset, st.Failed, st.Corrupted)
			}
			if st.UpReset != 0 || st.UpFailed != 0 || st.UpCorrupted != 0 || st.UpAlive != r.Uploads || st.UpStalled != 0 || st.UpBlocks == 0 {
				t.Errorf("%s, step %q: uploads %d alive of %d, %d stalled, %d reset, %d failed, %d corrupted bytes, %d blocks; want every upload alive, moving and intact",
					name, st.Name, st.UpAlive, r.Uploads, st.UpStalled, st.UpReset, st.UpFailed, st.UpCorrupted, st.UpBlocks)
			}
		}
		if r.Stalled != 0 || r.UpStalled != 0 {
			t.Errorf("%s: %d connections and %d uploads open but exchanging nothing at the end", name, r.Stalled, r.UpStalled)
		}
	}
	// With the clamp no segment is too big for the tunnel, and the client learns no
	// smaller path MTU; without it the drain sends full-size segments into the tunnel,
	// the hosts answer them with ICMP, and the client's kernel lowers its path MTU to
	// what fits (1500 - 32).
	for _, st := range homing.Steps {
		if st.TooBig != 0 {
			t.Errorf("homing, step %q: %d packets too big for the tunnel with the MSS clamp on", st.Name, st.TooBig)
		}
	}
	if homing.ClientPMTU != 0 {
		t.Errorf("homing: the client learned a path MTU of %d with the MSS clamp on", homing.ClientPMTU)
	}
	if st := icmp.Steps[1]; st.TooBig == 0 || st.ICMPTooBig == 0 {
		t.Errorf("homing without clamp, step %q: %d too big, %d ICMP replies; want both > 0", st.Name, st.TooBig, st.ICMPTooBig)
	}
	if icmp.ClientPMTU != 1500-32 {
		t.Errorf("homing without clamp: the client's path MTU to the VIP is %d, want %d", icmp.ClientPMTU, 1500-32)
	}
	// The drain moves about half of the connections: their packets must have gone through
	// the tunnel; with redirection off nothing may.
	if st := homing.Steps[1]; st.Tunnelled == 0 {
		t.Errorf("homing, step %q: no packet tunnelled", st.Name)
	}
	for _, st := range plain.Steps {
		if st.Tunnelled != 0 {
			t.Errorf("plain ECMP, step %q: %d packets tunnelled with tunnel.redirect = false", st.Name, st.Tunnelled)
		}
	}
	if t.Failed() {
		for _, r := range []*Result{homing, icmp} {
			for _, e := range r.Ended {
				t.Log(e)
			}
			t.Logf("host logs (%s):\n%s", runName(r), r.Logs)
		}
	}
	// The baseline must lose connections where ECMP moves them, or the proof proves
	// nothing: a drain of 1 of 3 hosts moves about half of them with hash-threshold.
	if plain.TotalReset() == 0 {
		t.Errorf("plain ECMP lost no connection: the scenario does not move any")
	}
	if st := plain.Steps[1]; st.Reset < sc.Conns/5 {
		t.Errorf("plain ECMP, step %q: %d reset, want at least %d", st.Name, st.Reset, sc.Conns/5)
	}
	for _, r := range runs {
		for _, st := range r.Steps {
			if st.Corrupted != 0 {
				t.Errorf("redirect=%v, step %q: %d corrupted bytes", r.Redirect, st.Name, st.Corrupted)
			}
		}
		if r.Exchanges == 0 {
			t.Errorf("redirect=%v: no exchange completed", r.Redirect)
		}
	}
}

// TestCleanup leaves a lab as a crashed run would (its owner pid dead: a child process
// that has exited) and checks that Cleanup removes it, and that it leaves the labs of
// live processes alone.
func TestCleanup(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "ip")
	root, err := CgroupRoot()
	if err != nil {
		testenv.Missing(t, err.Error())
	}
	child := exec.Command("true")
	if err := child.Run(); err != nil {
		t.Fatal(err)
	}
	dead := child.Process.Pid
	deadID := Prefix + strconv.Itoa(dead) + "x1"
	liveID := Prefix + strconv.Itoa(os.Getpid()) + "x99"
	made := func(id string) []string {
		ns := id + "-rtr"
		if err := run("ip", "netns", "add", ns); err != nil {
			t.Fatal(err)
		}
		cg := filepath.Join(root, id)
		if err := os.MkdirAll(filepath.Join(cg, "h1"), 0o755); err != nil {
			t.Fatal(err)
		}
		runDir := filepath.Join(dpdkRunDir, id+"-h1")
		if err := os.MkdirAll(runDir, 0o755); err != nil {
			t.Fatal(err)
		}
		tmp, err := os.MkdirTemp("", id+"-")
		if err != nil {
			t.Fatal(err)
		}
		return []string{netnsPath(ns), cg, runDir, tmp}
	}
	deadPaths := made(deadID)
	livePaths := made(liveID)
	t.Cleanup(func() { _ = removeLab(liveID, filepath.Join(root, liveID)); _ = os.RemoveAll(livePaths[3]) })
	t.Cleanup(func() { _ = removeLab(deadID, filepath.Join(root, deadID)); _ = os.RemoveAll(deadPaths[3]) })
	// A process in the dead lab's namespace, as homingd would be after a crash.
	sleeper := exec.Command("nsenter", "--net="+netnsPath(deadID+"-rtr"), "sleep", "60")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = sleeper.Wait(); close(exited) }()
	t.Cleanup(func() { _ = sleeper.Process.Kill(); <-exited })
	// nsenter joins the namespace after Start returns: wait until it is in it.
	for deadline := time.Now().Add(5 * time.Second); ; {
		out, _ := exec.Command("ip", "netns", "pids", deadID+"-rtr").Output()
		if slices.Contains(strings.Fields(string(out)), strconv.Itoa(sleeper.Process.Pid)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the process never joined %s-rtr", deadID)
		}
		time.Sleep(10 * time.Millisecond)
	}

	if got := Remains(deadID, nil); len(got) != 4 {
		t.Fatalf("before cleanup: %v, want 4 paths", got)
	}
	var log bytes.Buffer
	if err := Cleanup(&log); err != nil {
		t.Fatalf("cleanup: %v\n%s", err, log.String())
	}
	if !strings.Contains(log.String(), deadID) {
		t.Errorf("cleanup log does not name %s:\n%s", deadID, log.String())
	}
	if got := Remains(deadID, nil); len(got) != 0 {
		t.Errorf("after cleanup, left of %s: %v", deadID, got)
	}
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		t.Errorf("the process in %s-rtr still runs", deadID)
	}
	for _, p := range livePaths {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("cleanup removed %s of a live lab: %v", p, err)
		}
	}
}

func TestOwnerPID(t *testing.T) {
	for name, want := range map[string]int{
		"hlab123x1-rtr":      123,
		"hlab123x12":         123,
		"hlab4x2-1234567":    4,
		"hlab-rtr":           0,
		"hlabx1":             0,
		"hlab12-rtr":         0,
		"hmg-probe-1":        0,
		"xhlab123x1-rtr":     0,
		"hlab99999999999x1":  99999999999,
		"hlab123x1-h1.toml":  123,
		"hlab123x10-h1":      123,
		"hlab123abc":         0,
		"hlab123x":           0,
		"hlab123x1hlab456x2": 123,
	} {
		if got := ownerPID(name); got != want {
			t.Errorf("ownerPID(%q) = %d, want %d", name, got, want)
		}
	}
	if got := labID("hlab123x10-h1"); got != "hlab123x10" {
		t.Errorf("labID = %q", got)
	}
}

// TestHostConfig checks that the configuration the lab writes for a host is a valid
// homingd configuration with the lab's choices (no root needed).
func TestHostConfig(t *testing.T) {
	for _, redirect := range []bool{true, false} {
		l := &Lab{ID: "hlab1x1", Dir: "/tmp/hlab1x1-1", keyFile: "/tmp/hlab1x1-1/gossip.key", opts: Options{Redirect: redirect}}
		cfg, err := config.Parse([]byte(l.hostConfig(2, "/sys/fs/cgroup/unified/hlab1x1/h2")), "h2.toml")
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Host.ID != 2 || cfg.Host.Address != HostAddr(2) || !cfg.Host.IsVIP(VIP) {
			t.Errorf("host: id %d, address %v, VIPs %v", cfg.Host.ID, cfg.Host.Address, cfg.Host.VIPs)
		}
		if cfg.Tunnel.Redirect != redirect {
			t.Errorf("tunnel.redirect = %v, want %v", cfg.Tunnel.Redirect, redirect)
		}
		if cfg.DPDK.FilePrefix != "hlab1x1-h2" || ownerPID(cfg.DPDK.FilePrefix) != 1 {
			t.Errorf("dpdk.file_prefix = %q: must carry the lab id", cfg.DPDK.FilePrefix)
		}
		if cfg.Gossip.Insecure || cfg.Gossip.KeyFile != l.keyFile || cfg.Probe.Cgroup != "/sys/fs/cgroup/unified/hlab1x1/h2" {
			t.Errorf("gossip key %q (insecure %v), probe cgroup %q", cfg.Gossip.KeyFile, cfg.Gossip.Insecure, cfg.Probe.Cgroup)
		}
		if cfg.Metrics.Listen != "" || cfg.Control.Socket != l.socket(2) {
			t.Errorf("metrics %q, control socket %q", cfg.Metrics.Listen, cfg.Control.Socket)
		}
		if !cfg.Kernel.IsTAP() || len(cfg.Kernel.Routes) != 1 || cfg.Kernel.Routes[0].Via != RouterLAN {
			t.Errorf("kernel: %+v", cfg.Kernel)
		}
	}
}

// TestChunk checks that the client's chunks are distinct per connection and sequence
// number, so that a byte echoed on the wrong connection or out of order counts as bad.
func TestChunk(t *testing.T) {
	seen := map[string]bool{}
	b := make([]byte, ChunkLen)
	for id := range 50 {
		for seq := range uint32(50) {
			chunk(b, id, seq)
			if seen[string(b)] {
				t.Fatalf("chunk %d/%d repeats an earlier one", id, seq)
			}
			seen[string(b)] = true
		}
	}
}

func TestTable(t *testing.T) {
	r := &Result{Redirect: true, Conns: 10, Steps: []StepResult{{Name: "drain h1", Alive: 10, Tunnelled: 7}}}
	p := &Result{Redirect: false, Conns: 10, Steps: []StepResult{{Name: "drain h1", Alive: 4, Reset: 5, Failed: 1}}}
	var b bytes.Buffer
	Table(&b, r, p)
	lines := strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
	if len(lines) != 4 {
		t.Fatalf("%d lines:\n%s", len(lines), b.String())
	}
	if f := strings.Fields(lines[3]); strings.Join(f, " ") != "drain h1 | 10 0 0 7 | 4 6 0 0" {
		t.Errorf("row %q", lines[3])
	}
	if p.TotalReset() != 6 {
		t.Errorf("TotalReset = %d, want 6", p.TotalReset())
	}
}

// TestRouterPMTU: a router on the client's path with a smaller MTU answers the VIP's
// full-size segments with ICMP fragmentation needed, routed like any packet to the VIP:
// never to the drained h1, which still owns a third of the uploads. The hosts hand each
// error to the session's owner (tunnelled whole), whose kernel lowers its path MTU:
// every upload goes on, h1's too.
func TestRouterPMTU(t *testing.T) {
	exe := requireLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const uploads, mtu = 30, 1400
	r, err := RunRouterMTU(ctx, Options{Homingd: buildHomingd(t), Serve: []string{exe}, Redirect: true, Log: &lineLog{t: t}},
		3, uploads, mtu, 5*time.Second)
	if err != nil {
		t.Fatalf("%v\n%s", err, r.Logs)
	}
	if rest := Remains(r.LabID, r.PIDs); len(rest) > 0 {
		t.Errorf("lab %s left behind: %s", r.LabID, strings.Join(rest, ", "))
	}
	u := r.Uploads
	if u.Alive != uploads || u.Stalled != 0 || u.Reset != 0 || u.Failed != 0 || u.Corrupted != 0 || r.Blocks == 0 {
		t.Errorf("uploads: %d alive of %d, %d stalled, %d reset, %d failed, %d corrupted bytes, %d blocks; want every upload alive and moving",
			u.Alive, uploads, u.Stalled, u.Reset, u.Failed, u.Corrupted, r.Blocks)
	}
	for n, m := range r.HostPMTU {
		if r.Owners[n] > 0 && m != mtu {
			t.Errorf("h%d owns %d uploads but its path MTU to the client is %d, want %d", n, r.Owners[n], m, mtu)
		}
	}
	if r.Owners[1] == 0 {
		t.Errorf("h1 owns no upload: the drain proves nothing (owners %v)", r.Owners)
	}
}
