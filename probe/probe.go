//go:build linux

// Package probe learns the TCP sessions this host owns: connections accepted on a
// VIP, from an eBPF sock_ops program attached to a cgroup v2, and, at start, the
// connections that were already established (netlink sock_diag).
//
// Flow and concurrency:
//
//	kernel: sock_ops program (sockops.c) --ring buffer--> Run goroutine --> emit(Event)
//	                                      (lost counter)        |
//	                  sock_diag (netlink, the netns of Open) ---'  start and resync
//
// Open loads the program, fills the VIP maps and attaches to the cgroup; from then
// on every accepted VIP connection of the cgroup is in the ring. Run is the only
// reader of the ring and the only user of the sock_diag socket: at start it lists
// the established VIP connections, drains the ring, and announces as Add those
// listed connections the ring did not report (they predate the attachment). The
// kernel cannot tell when such an old connection closes (sock_ops only reports
// state changes of sockets it marked when it reported them established), so Run
// polls sock_diag every Config.ResyncInterval for them until the last one has gone,
// and reports their Delete then. emit runs on the Run goroutine; a slow emit fills
// the ring, and the kernel counts what it could not deliver (Lost).
//
// Run recovers from lost events by itself. It remembers every session it announced
// (cookie → key) and checks Lost 100 ms after the last check whenever records
// arrived since (a loss means a full ring, so records follow it, and the check comes
// within 100 ms of them), and every Config.ResyncInterval when idle. When Lost grew, it resyncs: it announces the established VIP connections it
// does not know (their Add was lost: unmarked, so polled like the old ones) and
// deletes the sessions whose socket is gone (their Delete was lost), each confirmed
// gone by an exact sock_diag lookup, since a dump may miss a live socket. Resyncs are
// spaced by four times the duration of the last one. The races between a dump and
// the records still in the ring are handled in track.go. Close may be called from
// any goroutine and ends Run.
package probe

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/homing-dev/homing/session"
)

// Defaults for Config.
const (
	DefaultRingBytes      = 1 << 20
	DefaultResyncInterval = 10 * time.Second
)

// Errors.
var (
	ErrNotCgroup2 = errors.New("not a cgroup v2 directory")
	ErrNoVIPs     = errors.New("no VIP prefixes")
	ErrBadVIP     = errors.New("bad VIP prefix")
	ErrRingSize   = errors.New("ring size must be a power of two and at least a page")
	ErrClosed     = errors.New("probe closed")
	ErrRunning    = errors.New("probe already running")
)

// Config says where to attach and what to report.
type Config struct {
	// CgroupPath is the cgroup v2 directory to attach to; the probe sees the
	// sockets created by its processes and those of its descendants. Empty means
	// the root of the unified hierarchy (CgroupRoot).
	CgroupPath string
	// VIPs are the prefixes of the local addresses to report, IPv4 and IPv6.
	VIPs []netip.Prefix
	// RingBytes is the ring buffer's size: a power of two, at least a page.
	// 0 means DefaultRingBytes.
	RingBytes int
	// AllNetNS reports sockets of every network namespace. By default only those
	// of the network namespace of the thread that calls Open are reported (the one
	// sock_diag lists too).
	AllNetNS bool
	// ResyncInterval is how often Run polls sock_diag for the connections the
	// kernel will not report closing (established before Open, or announced by a
	// resync because their Add was lost), and the longest time between two checks
	// of the lost counters when the ring is idle. 0 means DefaultResyncInterval.
	ResyncInterval time.Duration
	// Logger receives a warning for each resync after lost events. nil discards.
	Logger *slog.Logger
}

// Stats are the probe's counters, with their metric tags (metrics/counters.go).
type Stats struct {
	// Lost is Lost(): events the kernel could not put on the ring, and records
	// that did not decode.
	Lost uint64 `metric:"events_lost_total" ctl:"events_lost" help:"sock_ops probe events the kernel could not deliver on the ring buffer (or that did not decode)."`
	// Resyncs counts the resyncs Run did after Lost grew.
	Resyncs uint64 `metric:"resyncs_total" help:"Resyncs of the probe from sock_diag after lost events."`
	// ResyncAdds counts the Adds resyncs emitted: connections whose Add was lost.
	ResyncAdds uint64 `metric:"resync_adds_total" help:"Local sessions announced by resyncs (their Add event was lost)."`
	// ResyncDeletes counts the Deletes resyncs emitted: sessions whose Delete was
	// lost, or polled ones (announced from sock_diag) found closed by a resync.
	ResyncDeletes uint64 `metric:"resync_deletes_total" help:"Local sessions withdrawn by resyncs (their Delete event was lost, or found closed)."`
	// Sessions is the number of sessions Run announced and has not deleted (gauge).
	Sessions uint64 `metric:"sessions" help:"Local sessions the probe announced and has not withdrawn."`
}

// Probe is an attached sock_ops program and its ring buffer.
type Probe struct {
	cfg  Config
	vips []netip.Prefix

	objs   sockopsObjects
	link   link.Link
	ring   *ringbuf.Reader
	cookie uint64 // netns filter; 0 = all
	log    *slog.Logger

	bad           atomic.Uint64 // undecodable records
	resyncs       atomic.Uint64 // Stats, written by Run
	resyncAdds    atomic.Uint64
	resyncDeletes atomic.Uint64
	sessions      atomic.Uint64

	diagMu sync.Mutex // protects diag and look, nil once closed
	diag   *netlink.Handle
	look   *nl.SocketHandle // exact lookups (lookupTCP)

	mu      sync.Mutex // protects closed and running
	closed  bool
	running bool

	synced chan struct{} // closed by Run once the start-up events are emitted
}

// CgroupRoot returns the mount point of the cgroup v2 (unified) hierarchy, e.g.
// /sys/fs/cgroup/unified on a hybrid system or /sys/fs/cgroup on a pure v2 one.
func CgroupRoot() (string, error) {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return "", fmt.Errorf("find cgroup2 mount: %w", err)
	}
	if p, ok := cgroup2Mount(string(b)); ok {
		return p, nil
	}
	return "", fmt.Errorf("find cgroup2 mount: %w", ErrNotCgroup2)
}

func checkCgroup2(path string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return fmt.Errorf("cgroup %s: %w", path, err)
	}
	if st.Type != unix.CGROUP2_SUPER_MAGIC {
		return fmt.Errorf("cgroup %s: %w", path, ErrNotCgroup2)
	}
	return nil
}

// netnsCookie returns the cookie of the calling thread's network namespace.
func netnsCookie() (uint64, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("netns cookie: %w", err)
	}
	defer unix.Close(fd)
	c, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_NETNS_COOKIE)
	if err != nil {
		return 0, fmt.Errorf("netns cookie: %w", err)
	}
	return c, nil
}

// Open loads the sock_ops program, fills its VIP maps and attaches it to
// cfg.CgroupPath. The sock_diag socket and, unless cfg.AllNetNS, the netns filter
// are those of the calling thread's network namespace.
func Open(cfg Config) (*Probe, error) {
	if cfg.RingBytes == 0 {
		cfg.RingBytes = DefaultRingBytes
	}
	if cfg.RingBytes < os.Getpagesize() || cfg.RingBytes&(cfg.RingBytes-1) != 0 {
		return nil, fmt.Errorf("%w: %d", ErrRingSize, cfg.RingBytes)
	}
	if cfg.ResyncInterval <= 0 {
		cfg.ResyncInterval = DefaultResyncInterval
	}
	if len(cfg.VIPs) == 0 {
		return nil, ErrNoVIPs
	}
	vips, err := normalizeVIPs(cfg.VIPs)
	if err != nil {
		return nil, err
	}
	if cfg.CgroupPath == "" {
		if cfg.CgroupPath, err = CgroupRoot(); err != nil {
			return nil, err
		}
	}
	if err := checkCgroup2(cfg.CgroupPath); err != nil {
		return nil, err
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("remove memlock limit: %w", err)
	}

	p := &Probe{cfg: cfg, vips: vips, log: cfg.Logger, synced: make(chan struct{})}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	if !cfg.AllNetNS {
		if p.cookie, err = netnsCookie(); err != nil {
			return nil, err
		}
	}
	if p.diag, err = newDiagHandle(); err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			p.release()
		}
	}()
	if p.look, err = newLookupSocket(); err != nil {
		return nil, err
	}

	spec, err := loadSockops()
	if err != nil {
		return nil, err
	}
	spec.Maps[sockopsMapEvents].MaxEntries = uint32(cfg.RingBytes)
	if err := spec.Variables[sockopsVarNetnsCookie].Set(p.cookie); err != nil {
		return nil, fmt.Errorf("set netns filter: %w", err)
	}
	if err := spec.LoadAndAssign(&p.objs, nil); err != nil {
		return nil, fmt.Errorf("load sock_ops program: %w", err)
	}
	for _, v := range vips {
		if err := p.addVIP(v); err != nil {
			return nil, err
		}
	}
	if p.ring, err = ringbuf.NewReader(p.objs.Events); err != nil {
		return nil, fmt.Errorf("open ring buffer: %w", err)
	}
	p.link, err = link.AttachCgroup(link.CgroupOptions{
		Path:    cfg.CgroupPath,
		Attach:  ebpf.AttachCGroupSockOps,
		Program: p.objs.HomingSockops,
	})
	if err != nil {
		return nil, fmt.Errorf("attach sock_ops to %s: %w", cfg.CgroupPath, err)
	}
	ok = true
	return p, nil
}

func (p *Probe) addVIP(v netip.Prefix) error {
	var err error
	if v.Addr().Is4() {
		k := sockopsVip4Key{Prefixlen: uint32(v.Bits())}
		a := v.Addr().As4()
		k.Addr = binary.NativeEndian.Uint32(a[:])
		err = p.objs.Vip4.Update(&k, uint8(1), ebpf.UpdateAny)
	} else {
		k := sockopsVip6Key{Prefixlen: uint32(v.Bits())}
		a := v.Addr().As16()
		for i := range k.Addr {
			k.Addr[i] = binary.NativeEndian.Uint32(a[4*i:])
		}
		err = p.objs.Vip6.Update(&k, uint8(1), ebpf.UpdateAny)
	}
	if err != nil {
		return fmt.Errorf("add VIP %s: %w", v, err)
	}
	return nil
}

// Lost returns how many events could not be delivered since Open: those the
// kernel could not put on the full ring buffer, and records that did not decode.
func (p *Probe) Lost() uint64 {
	n := p.bad.Load()
	var perCPU []uint64
	if err := p.objs.Lost.Lookup(uint32(0), &perCPU); err != nil {
		return n
	}
	for _, v := range perCPU {
		n += v
	}
	return n
}

// Stats returns the probe's counters; safe from any goroutine.
func (p *Probe) Stats() Stats {
	return Stats{
		Lost:          p.Lost(),
		Resyncs:       p.resyncs.Load(),
		ResyncAdds:    p.resyncAdds.Load(),
		ResyncDeletes: p.resyncDeletes.Load(),
		Sessions:      p.sessions.Load(),
	}
}

// Synced is closed once Run has emitted the start-up events: every VIP connection
// established before Open, and those the ring reported meanwhile. A caller that must
// know its own sessions before it speaks for them (homingd before it gossips, after a
// restart) waits for it. It is never closed if Run fails before.
func (p *Probe) Synced() <-chan struct{} { return p.synced }

// Close detaches the program and frees everything; a running Run returns ErrClosed.
func (p *Probe) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	return p.release()
}

func (p *Probe) release() error {
	var errs []error
	if p.link != nil {
		if err := p.link.Close(); err != nil {
			errs = append(errs, fmt.Errorf("detach sock_ops from %s: %w", p.cfg.CgroupPath, err))
		}
	}
	if p.ring != nil {
		if err := p.ring.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close ring buffer: %w", err))
		}
	}
	if err := p.objs.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close sock_ops objects: %w", err))
	}
	p.diagMu.Lock()
	if p.diag != nil {
		p.diag.Close()
		p.diag = nil
	}
	if p.look != nil {
		p.look.Close()
		p.look = nil
	}
	p.diagMu.Unlock()
	return errors.Join(errs...)
}

// Run announces the VIP connections established before Open, then reports every
// change until ctx is done (returns ctx.Err()) or the probe is closed (ErrClosed).
// emit is called on Run's goroutine, one event at a time. Per socket cookie, Run
// emits at most one Add and then at most one Delete, never a Delete without its
// Add; per key, a Delete only for the newest socket announced with that key (a key
// reused by a new connection supersedes the older one's entry, see track.go); after
// events were lost, a resync brings the announced sessions back to the established
// VIP connections (see the package comment). Run may be called once.
func (p *Probe) Run(ctx context.Context, emit func(Event)) error {
	p.mu.Lock()
	switch {
	case p.closed:
		p.mu.Unlock()
		return ErrClosed
	case p.running:
		p.mu.Unlock()
		return ErrRunning
	}
	p.running = true
	p.mu.Unlock()

	stop := context.AfterFunc(ctx, func() { _ = p.ring.Flush() })
	defer stop()

	r := &runner{
		p:        p,
		t:        newTracker(p.vips, p.cfg.AllNetNS),
		emit:     emit,
		maxDrain: p.cfg.RingBytes/recordBytes + 1,
		lost:     p.Lost(), // the start-up sync repairs what was lost before it
	}
	r.t.confirm = p.stillAlive
	// Start: everything the kernel reported so far, then the older connections.
	if _, _, dumpErr, err := r.sync(true); err != nil {
		return p.stopped(ctx, err)
	} else if dumpErr != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(dumpErr, ErrClosed) {
			return ErrClosed
		}
		return dumpErr
	}
	close(p.synced)

	now := time.Now()
	r.lastCheck, r.lastRotate, r.nextPoll = now, now, now.Add(p.cfg.ResyncInterval)
	for {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		at := r.nextCheck()
		if !time.Now().Before(at) {
			if err := r.check(); err != nil {
				return p.stopped(ctx, err)
			}
			continue
		}
		p.ring.SetDeadline(at)
		err := p.ring.ReadInto(&r.rec)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			continue
		}
		if err != nil {
			return p.stopped(ctx, err)
		}
		r.record()
	}
}

// Timing of Run's checks and resyncs.
const (
	// lossCheckInterval: while records arrive, Run compares the lost counters
	// (Lost) at most this often, so a loss is seen within about this time after
	// Run reads the records behind it (a loss means a full ring, hence records to
	// read). Without records, Run checks every Config.ResyncInterval.
	lossCheckInterval = 100 * time.Millisecond
	// closedKeep: the tracker remembers a cookie whose ring Delete it handled for at
	// least this long (tracker, case 5).
	closedKeep = lossCheckInterval
	// resyncBackoff: a resync starts no sooner than this many times the duration of
	// the previous one after its end, so that back-to-back losses (a ring always
	// full) leave Run most of its time for the ring.
	resyncBackoff = 4
	// resyncRetry: a resync whose dump failed is tried again after this long.
	resyncRetry = time.Second
	// recordBytes is the room a record takes in the ring: 8-byte header, event.
	recordBytes = 8 + eventSize
)

// runner is Run's state; only Run's goroutine uses it.
//
// Run reads the ring; every check (at most lossCheckInterval apart while records
// arrive, Config.ResyncInterval otherwise) compares Lost with its value at the last
// resync. If it grew, Run resyncs at once (or when the backoff ends): a full sync,
// which announces the connections whose Add was lost and deletes the sessions whose
// Delete was lost. Otherwise, while some sessions are polled (unmarked sockets),
// every Config.ResyncInterval a partial sync deletes the polled ones that closed.
type runner struct {
	p        *Probe
	t        *tracker
	emit     func(Event)
	rec      ringbuf.Record
	maxDrain int // records a drain reads at most: more than the ring holds

	lost        uint64 // Lost() before the last successful resync (or the start-up sync)
	pending     bool   // Lost() > lost at the last check: a resync waits for the backoff
	dirty       bool   // records read since the last check
	lastCheck   time.Time
	lastRotate  time.Time // of the tracker's closed cookies
	nextPoll    time.Time // next partial sync, while polled sessions exist
	resyncAfter time.Time // end of the backoff
}

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// nextCheck is when Run must stop reading the ring and check.
func (r *runner) nextCheck() time.Time {
	at := r.lastCheck.Add(r.p.cfg.ResyncInterval)
	if r.dirty {
		at = earliest(at, r.lastCheck.Add(lossCheckInterval))
	}
	// While a resync waits for its backoff, it supersedes the poll (a full sync also
	// deletes the polled sessions that closed, and check does not poll meanwhile):
	// a nextPoll already passed must not make Run call check in a loop until
	// resyncAfter without reading the ring.
	switch {
	case r.pending:
		at = earliest(at, r.resyncAfter)
	case r.t.polled > 0:
		at = earliest(at, r.nextPoll)
	}
	return at
}

// record handles the record in r.rec.
func (r *runner) record() {
	r.dirty = true
	if e, ok := r.p.decode(r.rec.RawSample); ok {
		r.t.event(e, r.emit)
		r.p.sessions.Store(uint64(len(r.t.sess)))
	}
}

// drain reads the records in the ring until it is empty, or until it has read more
// than the ring held when drain began: every record written before drain began is
// then handled, which is what a sync needs.
func (r *runner) drain() error {
	r.p.ring.SetDeadline(time.Now())
	for range r.maxDrain {
		err := r.p.ring.ReadInto(&r.rec)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil
		}
		if err != nil {
			return err
		}
		r.record()
	}
	return nil
}

// sync drains the ring, dumps the sockets, drains again and reconciles (tracker
// explains the order). A failed dump changes nothing and is returned as dumpErr, so
// is a failed lookup (the entries it could not confirm closed are kept); ringErr
// ends Run.
func (r *runner) sync(full bool) (added, deleted int, dumpErr, ringErr error) {
	if ringErr = r.drain(); ringErr != nil {
		return 0, 0, nil, ringErr
	}
	mark := r.t.mark()
	socks, dumpErr := r.p.dump()
	if dumpErr != nil {
		return 0, 0, dumpErr, nil
	}
	if ringErr = r.drain(); ringErr != nil {
		return 0, 0, nil, ringErr
	}
	added, deleted, dumpErr = r.t.reconcile(socks, mark, full, r.emit)
	r.p.sessions.Store(uint64(len(r.t.sess)))
	return added, deleted, dumpErr, nil
}

// check resyncs if events were lost since the last resync, else polls if due.
func (r *runner) check() error {
	now := time.Now()
	r.lastCheck, r.dirty = now, false
	lost := r.p.Lost()
	r.pending = lost > r.lost
	switch {
	case r.pending && !now.Before(r.resyncAfter):
		if err := r.resync(lost); err != nil {
			return err
		}
	case r.pending: // nextCheck waits for resyncAfter
	case r.t.polled > 0 && !now.Before(r.nextPoll):
		_, _, dumpErr, err := r.sync(false)
		if err != nil {
			return err
		}
		if dumpErr != nil && !errors.Is(dumpErr, ErrClosed) {
			r.p.log.Warn("probe: poll of unmarked connections failed", "err", dumpErr)
		}
		r.nextPoll = time.Now().Add(r.p.cfg.ResyncInterval)
	}
	if now.Sub(r.lastRotate) >= closedKeep {
		r.t.rotate()
		r.lastRotate = now
	}
	return nil
}

// resync runs a full sync after a loss; lost is Lost() read before it began.
func (r *runner) resync(lost uint64) error {
	start := time.Now()
	added, deleted, dumpErr, err := r.sync(true)
	if err != nil {
		return err
	}
	end := time.Now()
	took := end.Sub(start)
	r.resyncAfter = end.Add(resyncBackoff * took)
	r.p.resyncAdds.Add(uint64(added))
	r.p.resyncDeletes.Add(uint64(deleted))
	if dumpErr != nil { // r.lost unchanged: a later check tries again
		r.resyncAfter = end.Add(max(resyncBackoff*took, resyncRetry))
		if !errors.Is(dumpErr, ErrClosed) {
			r.p.log.Warn("probe: resync after lost events failed", "lost", lost-r.lost, "err", dumpErr)
		}
		return nil
	}
	r.p.resyncs.Add(1)
	r.p.log.Warn("probe: events lost, resynced from sock_diag",
		"lost", lost-r.lost, "added", added, "deleted", deleted,
		"sessions", len(r.t.sess), "took", took)
	r.lost, r.pending = lost, false
	r.nextPoll = end.Add(r.p.cfg.ResyncInterval)
	return nil
}

// stopped turns the error that ended Run into its result.
func (p *Probe) stopped(ctx context.Context, err error) error {
	switch {
	case ctx.Err() != nil: // Flush was called, ReadInto returned ErrFlushed
		return ctx.Err()
	case errors.Is(err, ErrClosed), errors.Is(err, ringbuf.ErrClosed), errors.Is(err, os.ErrClosed):
		return ErrClosed
	}
	return fmt.Errorf("read ring buffer: %w", err)
}

// dump lists the TCP sockets of the probe's netns.
func (p *Probe) dump() ([]diagSocket, error) {
	p.diagMu.Lock()
	defer p.diagMu.Unlock()
	if p.diag == nil {
		return nil, ErrClosed
	}
	return dumpTCP(p.diag)
}

// stillAlive is the tracker's confirm: whether the socket of cookie, with key, is
// alive by an exact sock_diag lookup in the probe's netns.
func (p *Probe) stillAlive(key session.Key, cookie uint64) (bool, error) {
	p.diagMu.Lock()
	defer p.diagMu.Unlock()
	if p.look == nil {
		return false, ErrClosed
	}
	state, found, err := lookupTCP(p.look, key, cookie)
	return found && alive(state), err
}

// decode turns a ring record into an Event; records that do not decode are counted
// as lost, which they are for the caller.
func (p *Probe) decode(raw []byte) (Event, bool) {
	e, err := parseEvent(raw)
	if err != nil {
		p.bad.Add(1)
		return Event{}, false
	}
	return e, true
}
