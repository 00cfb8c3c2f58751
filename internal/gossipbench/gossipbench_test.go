package gossipbench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/homing-dev/homing/gossip"
	"github.com/homing-dev/homing/gossip/wire"
	"github.com/homing-dev/homing/internal/testenv"
)

// TestMain makes the test binary a child node when run as "<test> gossip-node ...".
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == ChildCommand {
		if err := Child(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "gossip-node:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestParseCommand(t *testing.T) {
	for _, tc := range []struct {
		line string
		want string // "" = error
	}{
		{"run 1000 2000 0", "run 1000 2000 0"},
		{"await 5 10 30000000000", "await 5 10 30000000000"},
		{"wait 4 10000000000", "wait 4 10000000000"},
		{"times", "times"},
		{"stats", "stats"},
		{"quit", "quit"},
		{"run 1000 2000", ""},
		{"run 1000 2000 0 1", ""},
		{"run 1000  2000 0", ""},
		{"run -1 2000 0", ""},
		{"run +1 2000 0", ""},
		{"run 01 2000 0", ""},
		{"run 1x 2000 0", ""},
		{"run 1125899906842625 1 1", ""}, // 2^50 + 1
		{"times ", ""},
		{"", ""},
		{"jump 1", ""},
	} {
		c, err := parseCommand(tc.line)
		if tc.want == "" {
			if err == nil || !errors.Is(err, errProtocol) {
				t.Errorf("%q: got %v, %v; want a protocol error", tc.line, c, err)
			}
			continue
		}
		if err != nil || c.String() != tc.want {
			t.Errorf("%q: got %q, %v; want %q", tc.line, c, err, tc.want)
		}
	}
}

func TestParseSample(t *testing.T) {
	s, err := parseSample("16777215 123456789012")
	if err != nil || s != (Sample{Index: 16777215, At: 123456789012}) {
		t.Fatalf("got %+v, %v", s, err)
	}
	if got := string(appendSample(nil, s)); got != "16777215 123456789012" {
		t.Errorf("appendSample: %q", got)
	}
	for _, bad := range []string{"", "1", "1 ", " 1", "16777216 1", "1 -2", "a 1", "1 2 3"} {
		if _, err := parseSample(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestReply(t *testing.T) {
	if w, rest, err := reply("ran 10 0 1234"); w != "ran" || rest != "10 0 1234" || err != nil {
		t.Errorf("got %q %q %v", w, rest, err)
	}
	if _, _, err := reply("error 3 of 4 peers"); err == nil || err.Error() != "3 of 4 peers" {
		t.Errorf("error line: %v", err)
	}
	if v, err := replyInts("10 0 1234", 3); err != nil || v[2] != 1234 {
		t.Errorf("replyInts: %v %v", v, err)
	}
	if _, err := replyInts("10 0", 3); err == nil {
		t.Error("replyInts accepted 2 of 3 numbers")
	}
}

func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{"run 1000 2000 0", "await 0 1 2", "times", "wait 4 10", "run 01 1 1", "quit 1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		c, err := parseCommand(line)
		if err != nil {
			return
		}
		// A command that parses is canonical: it formats back to the same line.
		if c.String() != line {
			t.Fatalf("%q parsed as %q", line, c)
		}
		for _, a := range c.args {
			if a < 0 || a > maxArg {
				t.Fatalf("%q: argument %d", line, a)
			}
		}
	})
}

func FuzzParseSample(f *testing.F) {
	for _, s := range []string{"0 1", "16777215 123456789012", "1 -2", "1  2", "00 1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		s, err := parseSample(line)
		if err != nil {
			return
		}
		if got := string(appendSample(nil, s)); got != line {
			t.Fatalf("%q parsed as %+v, formats as %q", line, s, got)
		}
	})
}

func TestKeyIndex(t *testing.T) {
	seen := map[string]bool{}
	for _, i := range []int{0, 1, 255, 256, 65535, 65536, 1<<20 + 7, maxIndex} {
		k := Key(i)
		if !k.Valid() || !k.Is4() {
			t.Fatalf("Key(%d) = %v", i, k)
		}
		if Index(k) != i {
			t.Errorf("Index(Key(%d)) = %d", i, Index(k))
		}
		if seen[k.String()] {
			t.Errorf("Key(%d) repeats", i)
		}
		seen[k.String()] = true
	}
}

func TestDelays(t *testing.T) {
	const base = 100
	ann := []Sample{{100, 1000}, {101, 2000}, {102, 3000}, {103, 0 /* failed */}, {99, 5}, {105, 7}}
	peers := [][]Sample{
		{{100, 1100}, {101, 2500}, {102, 3100}, {103, 4000}, {100, 1900 /* repeat: first counts */}},
		{{100, 1300}, {101, 2100}, {102, 2900 /* before its announcement */}, {103, 4000}},
		{{101, 2200}, {100, 1200}, {103, 4000}},
	}
	got := Delays(base, 4, ann, peers)
	want := []time.Duration{300, 500, Inf /* peer 3 lacks it */, Inf /* not announced */}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	peers[2] = append(peers[2], Sample{102, 2950})
	if d := Delays(base, 4, ann, peers)[2]; d != 100 {
		t.Errorf("session 102: %v, want 100ns (the latest peer)", d)
	}
	peers[0][2].At, peers[2][len(peers[2])-1].At = 2800, 2800
	if d := Delays(base, 4, ann, peers)[2]; d != 0 {
		t.Errorf("applied before announced: %v, want 0", d)
	}
}

func TestSummarize(t *testing.T) {
	var d []time.Duration
	for i := 100; i >= 1; i-- {
		d = append(d, time.Duration(i)*time.Microsecond)
	}
	s := Summarize(d)
	if s.Sessions != 100 || s.Converged != 100 || s.P50 != 50*time.Microsecond || s.P90 != 90*time.Microsecond ||
		s.P99 != 99*time.Microsecond || s.Max != 100*time.Microsecond {
		t.Errorf("1..100 µs: %+v", s)
	}
	d[99], d[98] = Inf, Inf // two of 100 never converged (d is sorted now)
	s = Summarize(d)
	if s.Converged != 98 || s.P99 != Inf || s.Max != Inf || s.P90 != 90*time.Microsecond {
		t.Errorf("with 2 unconverged: %+v", s)
	}
	if s := Summarize(nil); s.P50 != Inf || s.Sessions != 0 {
		t.Errorf("empty: %+v", s)
	}
	if q := Quantile([]time.Duration{7}, 0.99); q != 7 {
		t.Errorf("one value: %v", q)
	}
	if Micros(Inf) != "∞" || Micros(1500*time.Microsecond) != "1500" {
		t.Error("Micros")
	}
	if Ratio(Inf, time.Millisecond) != "∞" || Ratio(3*time.Millisecond, time.Millisecond) != "3.0" || Ratio(1, 0) != "-" {
		t.Error("Ratio")
	}
}

func TestWireBetween(t *testing.T) {
	hb := wire.Heartbeat{Addr: Key(0).Dst, MAC: make([]byte, 6)}
	hbBytes := uint64(wire.Overhead + hb.Len())
	s0 := gossip.Stats{DatagramsSent: 10, HeartbeatsSent: 5, RecordsSent: 100, BytesSent: 5000}
	s1 := s0
	s1.HeartbeatsSent += 2
	s1.DatagramsSent += 2 + 50
	s1.RecordsSent += 1000
	s1.BytesSent += 2*hbBytes + 30000
	w := wireBetween(s0, s1)
	if w != (Wire{Datagrams: 50, Records: 1000, Bytes: 30000}) {
		t.Fatalf("got %+v", w)
	}
	if w.BytesPerRecord() != 30 || w.WireBytesPerRecord() != 30+28*50/1000. || w.RecordsPerDatagram() != 20 {
		t.Errorf("%v %v %v", w.BytesPerRecord(), w.WireBytesPerRecord(), w.RecordsPerDatagram())
	}
	if (Wire{}).BytesPerRecord() != 0 {
		t.Error("no records")
	}
}

func TestMono(t *testing.T) {
	a := clockMono()
	m := mono()
	b := clockMono()
	// mono is CLOCK_MONOTONIC: between two direct readings, give or take the
	// calibration's error (the duration of a system call).
	if m < a-int64(time.Millisecond) || m > b+int64(time.Millisecond) {
		t.Errorf("mono %d outside [%d, %d]", m, a, b)
	}
	due := mono() + int64(2*time.Millisecond)
	sleepUntil(due)
	if now := mono(); now < due {
		t.Errorf("sleepUntil returned %v early", time.Duration(due-now))
	}
}

// fakeNode is a node whose announcements are applied at once by a fake peer Recorder.
type fakeNode struct {
	up    int
	apply func(i int)
}

func (f *fakeNode) Peers() int { return f.up }
func (f *fakeNode) Announce(i int) error {
	if i%10 == 9 {
		return errors.New("queue full")
	}
	if f.apply != nil {
		f.apply(i)
	}
	return nil
}
func (f *fakeNode) Stats() any { return gossip.Stats{RecordsSent: 7} }
func (f *fakeNode) Close()     {}

// TestServe drives the command loop of a child over pipes, with a fake node: the
// announcer side (run, times), the peer side (await, times), errors.
func TestServe(t *testing.T) {
	peerRec := &Recorder{done: make(chan struct{})}
	fn := &fakeNode{up: 4, apply: func(i int) { peerRec.Applied(i, mono()) }}
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	errc := make(chan error, 1)
	go func() { errc <- serve(fn, &Recorder{done: make(chan struct{})}, inR, outW); outW.Close() }()
	lines := bufio.NewScanner(outR)
	read := func() string {
		t.Helper()
		if !lines.Scan() {
			t.Fatalf("no line: %v", lines.Err())
		}
		return lines.Text()
	}
	send := func(s string) {
		t.Helper()
		if _, err := io.WriteString(inW, s+"\n"); err != nil {
			t.Fatal(err)
		}
	}
	if l := read(); l != "ready" {
		t.Fatalf("first line %q", l)
	}
	send("wait 4 1000000000")
	if l := read(); l != "ok" {
		t.Fatalf("wait: %q", l)
	}
	send("wait 5 1000000")
	if l := read(); !strings.HasPrefix(l, "error 4 of 5 peers") {
		t.Fatalf("wait for 5: %q", l)
	}
	send("bogus")
	if l := read(); !strings.HasPrefix(l, "error unknown command") {
		t.Fatalf("bogus: %q", l)
	}
	// The fake peer arms for 20 sessions from 50; the announcer runs them at 20k/s.
	done := peerRec.arm(50, 20)
	send("run 20000 20 50")
	v, err := replyInts(strings.TrimPrefix(read(), "ran "), 3)
	if err != nil || v[0] != 20 || v[1] != 2 {
		t.Fatalf("ran: %v %v", v, err)
	}
	select {
	case <-done:
		t.Fatal("all 20 counted, but 2 announcements failed")
	default:
	}
	if peerRec.counted() != 18 {
		t.Errorf("peer counted %d, want 18", peerRec.counted())
	}
	send("times")
	if l := read(); l != "times 20" {
		t.Fatalf("times: %q", l)
	}
	var prev int64
	for i := range 20 {
		s, err := parseSample(read())
		if err != nil || s.Index != 50+i {
			t.Fatalf("sample %d: %+v %v", i, s, err)
		}
		if i%10 == 9 {
			if s.At != 0 {
				t.Errorf("failed announcement %d has a time", s.Index)
			}
			continue
		}
		if s.At < prev {
			t.Errorf("sample %d at %d, before the previous one", i, s.At)
		}
		prev = s.At
	}
	if l := read(); l != "end" {
		t.Fatalf("after the samples: %q", l)
	}
	send("stats")
	if l := read(); !strings.HasPrefix(l, "stats {") || !strings.Contains(l, `"RecordsSent":7`) {
		t.Fatalf("stats: %q", l)
	}
	send("quit")
	if l := read(); l != "bye" {
		t.Fatalf("quit: %q", l)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// TestServeAwait: a peer answers armed at once, done when the sessions arrive or the
// timeout passes, and lists what it applied.
func TestServeAwait(t *testing.T) {
	rec := &Recorder{done: make(chan struct{})}
	rec.Applied(7, 100) // before arming: counts
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	go func() { _ = serve(&fakeNode{}, rec, inR, outW); outW.Close() }()
	lines := bufio.NewScanner(outR)
	read := func() string {
		t.Helper()
		if !lines.Scan() {
			t.Fatalf("no line: %v", lines.Err())
		}
		return lines.Text()
	}
	read() // ready
	_, _ = io.WriteString(inW, "await 5 3 10000000000\n")
	if l := read(); l != "armed" {
		t.Fatalf("await: %q", l)
	}
	rec.Applied(5, 200)
	rec.Applied(5, 300) // repeat: ignored
	rec.Applied(4, 300) // outside the range
	rec.Applied(6, 400)
	if l := read(); l != "done 3" {
		t.Fatalf("%q, want done 3", l)
	}
	_, _ = io.WriteString(inW, "await 100 1 1000000\n") // 1 ms: times out
	if l := read(); l != "armed" {
		t.Fatalf("await: %q", l)
	}
	if l := read(); l != "done 0" {
		t.Fatalf("%q, want done 0", l)
	}
	_, _ = io.WriteString(inW, "times\n")
	var got []string
	for l := read(); l != "end"; l = read() {
		got = append(got, l)
	}
	if want := "times 4|4 300|5 200|6 400|7 100"; strings.Join(got, "|") != want {
		t.Errorf("got %q, want %q", strings.Join(got, "|"), want)
	}
	inW.Close()
}

// memberlistCommand builds the memberlist node, a module of its own (memberlist/), for
// TestRun.
func memberlistCommand(t *testing.T) []string {
	t.Helper()
	testenv.RequireCommand(t, "go")
	bin := filepath.Join(t.TempDir(), "homing-bench-memberlist")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = "memberlist"
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the memberlist node: %v\n%s", err, out)
	}
	return []string{bin, ChildCommand}
}

// TestRun runs the whole benchmark tiny: 5 processes in namespaces, homing, memberlist
// and the floor, 300 sessions each at 1000/s. Every homing session converges, and
// some of the floor's (bare datagrams may be lost); memberlist runs (its convergence
// is not asserted: it may take longer than the short wait).
func TestRun(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "ip")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// A namespace left by a run whose process is gone (no pid is that large) goes.
	const stale = "hmg-gb-999999999-1-br"
	if err := ip("netns", "add", stale); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ip("netns", "del", stale) })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var log strings.Builder
	rows, err := Run(ctx, Options{Rates: []int{1000}, Duration: 300 * time.Millisecond, Systems: []string{Homing, Memberlist, Multicast},
		HomingWait: 5 * time.Second, MemberlistWait: 2 * time.Second, Command: []string{exe, ChildCommand},
		MemberlistCommand: memberlistCommand(t), Log: &log})
	t.Log(log.String())
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 3 || rows[0].System != Homing || rows[1].System != Memberlist || rows[2].System != Multicast {
		t.Fatalf("rows %+v", rows)
	}
	h := rows[0]
	if h.Sessions != 300 || h.Converged != 300 || h.P99 == Inf || h.AnnounceErrors != 0 || h.Gaps+h.AuthFailures != 0 {
		t.Errorf("homing %+v", h)
	}
	if h.Wire.Records < 300 || h.Wire.Datagrams == 0 || h.Wire.BytesPerRecord() <= 0 {
		t.Errorf("homing wire %+v", h.Wire)
	}
	if m := rows[1]; m.Sessions != 300 || m.Wire != (Wire{}) {
		t.Errorf("memberlist %+v", m)
	}
	if f := rows[2]; f.Sessions != 300 || f.Converged == 0 {
		t.Errorf("floor %+v", f)
	}
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	if prefix := fmt.Sprintf("hmg-gb-%d-", os.Getpid()); strings.Contains(string(out), prefix) {
		t.Errorf("namespaces left behind:\n%s", out)
	}
	if strings.Contains(string(out), stale) {
		t.Errorf("stale namespace %s not removed", stale)
	}
}
