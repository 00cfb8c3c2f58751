package gossipbench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"runtime/trace"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/homing-dev/homing/gossip"
	"github.com/homing-dev/homing/gossip/gossiptest"
	"github.com/homing-dev/homing/gossip/wire"
	"github.com/homing-dev/homing/session"
)

// ChildCommand is the subcommand under which a program that calls Child runs a node:
// Run starts "<Options.Command> <flags>" in each host namespace, by default the running
// executable followed by ChildCommand.
const ChildCommand = "gossip-node"

// Child runs one node of a benchmark in the current network namespace, driven over
// stdin and stdout (see proto.go), until stdin ends or the parent says quit. args are
// the flags after ChildCommand. It runs homing and multicast nodes; memberlist nodes
// run in a program of their own module (see StartMemberlist), which calls ChildWith.
func Child(args []string) error { return ChildWith(args, nil) }

// StartMemberlist starts a memberlist member as host id at addr (joining join, if
// set) that reports the sessions it learns to rec. It is implemented in the separate
// module internal/gossipbench/memberlist, so that hashicorp/memberlist stays out of
// homing's module graph (Options.MemberlistCommand).
type StartMemberlist func(id int, addr netip.Addr, join string, rec *Recorder) (Node, error)

// ChildWith is Child, with memberlist nodes started by memberlist (nil: none).
func ChildWith(args []string, memberlist StartMemberlist) error {
	fs := flag.NewFlagSet(ChildCommand, flag.ContinueOnError)
	system := fs.String("system", Homing, "homing, memberlist or multicast")
	id := fs.Int("id", 0, "host id: the node's address is 198.18.50.<id>")
	flush := fs.Duration("flush", 0, "homing: FlushDelay (0: the library's default)")
	join := fs.String("join", "", "memberlist: address:port of a member to join")
	iface := fs.String("interface", "eth0", "homing, multicast: multicast interface")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *id < 1 || *id > 254 {
		return fmt.Errorf("-id %d: want 1..254", *id)
	}
	if dir := os.Getenv("HMG_GB_TRACE"); dir != "" {
		// A runtime execution trace of the node's whole life, for diagnosis
		// (go tool trace): HMG_GB_TRACE=<dir> in Options.Env.
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("%s-%d.trace", *system, *id)))
		if err != nil {
			return err
		}
		defer f.Close()
		if err := trace.Start(f); err != nil {
			return err
		}
		defer trace.Stop()
	}
	addr := netip.AddrFrom4([4]byte{198, 18, 50, byte(*id)})
	rec := &Recorder{done: make(chan struct{})}
	var n Node
	var err error
	switch *system {
	case Homing:
		n, err = startHoming(uint16(*id), addr, *iface, *flush, rec)
	case Memberlist:
		if memberlist == nil {
			return fmt.Errorf("-system %s: not in this program (internal/gossipbench/memberlist runs it)", Memberlist)
		}
		n, err = memberlist(*id, addr, *join, rec)
	case Multicast:
		n, err = startMulticast(*iface, rec)
	default:
		err = fmt.Errorf("-system %q: want %s, %s or %s", *system, Homing, Memberlist, Multicast)
	}
	if err != nil {
		return err
	}
	defer n.Close()
	return serve(n, rec, os.Stdin, os.Stdout)
}

// Node is a running gossip node of a system under test.
type Node interface {
	// Peers is the number of peers the node sees up.
	Peers() int
	// Announce announces session i (Key(i)) as the node's own.
	Announce(i int) error
	// Stats are the node's counters, JSON-encoded for the parent (any value).
	Stats() any
	Close()
}

// Recorder keeps the first apply time of every session a peer learns, and counts those
// in the range it awaits. The armed range is a preallocated slice, so that recording
// adds no garbage (and no collections) to the node being measured.
type Recorder struct {
	mu          sync.Mutex    // protects the fields below
	at          []int64       // apply times of sessions base.., 0: not yet
	other       map[int]int64 // apply times of sessions outside the armed range
	base, count int
	got         int
	done        chan struct{} // closed when got reaches count
}

// applied notes that session i is in the table at now.
func (r *Recorder) Applied(i int, now int64) {
	r.mu.Lock()
	if j := i - r.base; j >= 0 && j < len(r.at) {
		if r.at[j] == 0 {
			r.at[j] = now
			r.got++
			if r.got == r.count {
				close(r.done)
			}
		}
	} else if _, ok := r.other[i]; !ok {
		if r.other == nil {
			r.other = make(map[int]int64)
		}
		r.other[i] = now
	}
	r.mu.Unlock()
}

// arm starts counting the sessions base..base+count-1 (those already applied count).
func (r *Recorder) arm(base, count int) <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.flattenLocked()
	r.base, r.count, r.got, r.done = base, count, 0, make(chan struct{})
	r.at = make([]int64, count)
	for i, t := range r.other {
		if j := i - base; j >= 0 && j < count {
			r.at[j] = t
			r.got++
			delete(r.other, i)
		}
	}
	if r.got == r.count {
		close(r.done)
	}
	return r.done
}

// flattenLocked moves the armed range's times to other.
func (r *Recorder) flattenLocked() {
	for j, t := range r.at {
		if t != 0 {
			if r.other == nil {
				r.other = make(map[int]int64)
			}
			r.other[r.base+j] = t
		}
	}
	r.at = nil
}

func (r *Recorder) counted() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.got
}

// samples returns the recorded applies in index order.
func (r *Recorder) samples() []Sample {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Sample, 0, r.got+len(r.other))
	for i, t := range r.other {
		out = append(out, Sample{Index: i, At: t})
	}
	for j, t := range r.at {
		if t != 0 {
			out = append(out, Sample{Index: r.base + j, At: t})
		}
	}
	slices.SortFunc(out, func(a, b Sample) int { return a.Index - b.Index })
	return out
}

// serve runs the command loop.
func serve(n Node, rec *Recorder, in io.Reader, out io.Writer) error {
	w := bufio.NewWriterSize(out, 1<<16)
	say := func(format string, a ...any) error {
		fmt.Fprintf(w, format+"\n", a...)
		return w.Flush()
	}
	if err := say("ready"); err != nil {
		return err
	}
	var announced []Sample
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		c, err := parseCommand(sc.Text())
		if err != nil {
			if err := say("error %v", err); err != nil {
				return err
			}
			continue
		}
		switch c.op {
		case "wait":
			err = waitPeers(n, int(c.args[0]), time.Duration(c.args[1]))
			if err == nil {
				err = say("ok")
			}
		case "await":
			done := rec.arm(int(c.args[0]), int(c.args[1]))
			if err = say("armed"); err != nil {
				return err
			}
			select {
			case <-done:
			case <-time.After(time.Duration(c.args[2])):
			}
			err = say("done %d", rec.counted())
		case "run":
			var errs int
			var late int64
			announced, errs, late = pace(n, int(c.args[0]), int(c.args[1]), int(c.args[2]))
			err = say("ran %d %d %d", len(announced), errs, late)
		case "times":
			s := announced
			if s == nil {
				s = rec.samples()
			}
			err = writeSamples(w, s)
		case "stats":
			var b []byte
			if b, err = json.Marshal(n.Stats()); err == nil {
				err = say("stats %s", b)
			}
		case "quit":
			return say("bye")
		}
		if err != nil {
			if err := say("error %v", err); err != nil {
				return err
			}
		}
	}
	return sc.Err()
}

func writeSamples(w *bufio.Writer, s []Sample) error {
	fmt.Fprintf(w, "times %d\n", len(s))
	var b []byte
	for _, x := range s {
		b = append(appendSample(b[:0], x), '\n')
		if _, err := w.Write(b); err != nil {
			return err
		}
	}
	fmt.Fprintln(w, "end")
	return w.Flush()
}

func waitPeers(n Node, want int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for n.Peers() < want {
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d peers after %v", n.Peers(), want, timeout)
		}
		time.Sleep(time.Millisecond)
	}
	return nil
}

// paceQuantum is the least time between two wake-ups of the announcer: sessions that
// fall due meanwhile go out together when it wakes. On the development VM every wake-up
// from a high-resolution sleep costs about 35 µs of CPU, so waking for each session at
// 50k/s took 0.9 of its 2 CPUs away from the nodes being measured; with this quantum
// the announcer wakes at most 4000 times a second (bursts of up to 12 sessions at
// 50k/s, 3 at 10k/s, single sessions at 1k/s).
const paceQuantum = 250 * time.Microsecond

// pace announces sessions base..base+count-1, session i due at t0 + i/rate. It sleeps
// in clock_nanosleep on a thread of its own with a timer slack of 1 ns (a Go timer
// shorter than a millisecond fires about a millisecond late here), at most every
// paceQuantum, and announces what is due when it wakes. It returns each session's
// announcement time (taken just before the announcement; 0 for an announcement that
// failed), the failures, and the 99th percentile of how late announcements were
// against their schedule.
func pace(n Node, rate, count, base int) (out []Sample, errs int, lateP99 int64) {
	if rate <= 0 || count <= 0 {
		return nil, 0, 0
	}
	type result struct {
		s    []Sample
		errs int
		late int64
	}
	ch := make(chan result)
	go func() {
		// The thread stays locked (and exits with the goroutine): its timer slack
		// must not leak to other goroutines.
		runtime.LockOSThread()
		_ = unix.Prctl(unix.PR_SET_TIMERSLACK, 1, 0, 0, 0)
		s := make([]Sample, count)
		late := make([]int64, count)
		var errs int
		t0 := mono() + int64(time.Millisecond)
		due := func(i int) int64 { return t0 + int64(i)*int64(time.Second)/int64(rate) }
		var woke int64
		for i := 0; i < count; {
			sleepUntil(max(due(i), woke+int64(paceQuantum)))
			woke = mono()
			for ; i < count && due(i) <= woke; i++ {
				now := mono()
				late[i] = now - due(i)
				s[i] = Sample{Index: base + i, At: now}
				if err := n.Announce(base + i); err != nil {
					s[i].At = 0
					errs++
				}
			}
		}
		slices.Sort(late)
		ch <- result{s, errs, late[(len(late)*99+99)/100-1]}
	}()
	r := <-ch
	return r.s, r.errs, r.late
}

// homingNode is a gossip.Node over real multicast with a fake table and templates.
type homingNode struct {
	n      *gossip.Node
	cancel context.CancelFunc
	done   chan error
}

// benchKeyRing is the key every node of a benchmark signs with.
func benchKeyRing() (*wire.KeyRing, error) {
	k := make([]byte, wire.MinKeyLen)
	copy(k, "homing gossipbench key, 32 bytes")
	return wire.NewKeyRing(k, nil)
}

// Group is the multicast group of the homing nodes.
var Group = netip.MustParseAddr("239.77.0.9")

// tableSize is what a node's tables are allocated for, as homingd allocates them for
// table.capacity*: more than a full run announces (2 s at 1k, 10k and 50k per second).
const tableSize = 1 << 18

func startHoming(id uint16, addr netip.Addr, iface string, flush time.Duration, rec *Recorder) (*homingNode, error) {
	ring, err := benchKeyRing()
	if err != nil {
		return nil, err
	}
	cfg := gossip.Config{
		HostID: id, Addr: addr, MAC: net.HardwareAddr{2, 0, 0, 0, 0, byte(id)}, Keys: ring,
		Group: Group, Port: gossip.DefaultGossipPort, Interface: iface, SizeHint: tableSize,
	}
	if flush > 0 {
		cfg.FlushDelay = flush
	}
	conn, err := gossip.ListenMulticast(cfg.MulticastConfig())
	if err != nil {
		return nil, err
	}
	tbl := gossiptest.NewTableSize(tableSize)
	tbl.OnApply(func(ups []session.Update) {
		now := mono()
		for _, u := range ups {
			if !u.Delete && u.Owner.Host != id {
				rec.Applied(Index(u.Key), now)
			}
		}
	})
	n, err := gossip.New(cfg, conn, tbl, gossiptest.NewTemplates())
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &homingNode{n: n, cancel: cancel, done: make(chan error, 1)}
	go func() { h.done <- n.Run(ctx) }()
	return h, nil
}

func (h *homingNode) Peers() int           { return int(h.n.Stats().PeersUp) }
func (h *homingNode) Announce(i int) error { return h.n.LocalAdd(Key(i)) }
func (h *homingNode) Stats() any           { return h.n.Stats() }

func (h *homingNode) Close() {
	h.cancel()
	select {
	case <-h.done:
	case <-time.After(2 * time.Second):
	}
}

// errNoRecord is a memberlist message that is not one record.
var errNoRecord = errors.New("not one gossip record")

// DecodeRecord decodes a memberlist user message: one gossip record.
func DecodeRecord(b []byte) (session.Key, error) {
	r, n, err := wire.ParseRecord(b)
	if err != nil {
		return session.Key{}, err
	}
	if n != len(b) {
		return session.Key{}, fmt.Errorf("%d bytes after the record: %w", len(b)-n, errNoRecord)
	}
	return r.Key, nil
}

// EncodeRecord is the user message announcing session i from host 1.
func EncodeRecord(i int) []byte {
	return wire.AppendRecord(nil, wire.Record{Op: wire.OpAdd, Key: Key(i), Owner: session.Owner{Host: 1, Epoch: 1}})
}
