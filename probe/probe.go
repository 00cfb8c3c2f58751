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
// state changes of sockets it saw established), so Run polls sock_diag every
// Config.ResyncInterval for them until the last one has gone, and reports their
// Delete then. emit runs on the Run goroutine; a slow emit fills the ring, and the
// kernel counts what it could not deliver (Lost). Close may be called from any
// goroutine and ends Run.
package probe

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
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
	// ResyncInterval is how often Run polls sock_diag for the connections that
	// were established before Open. 0 means DefaultResyncInterval.
	ResyncInterval time.Duration
}

// Probe is an attached sock_ops program and its ring buffer.
type Probe struct {
	cfg  Config
	vips []netip.Prefix

	objs   sockopsObjects
	link   link.Link
	ring   *ringbuf.Reader
	cookie uint64 // netns filter; 0 = all
	bad    atomic.Uint64

	diagMu sync.Mutex // protects diag, nil once closed
	diag   *netlink.Handle

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

	p := &Probe{cfg: cfg, vips: vips, synced: make(chan struct{})}
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
	p.diagMu.Unlock()
	return errors.Join(errs...)
}

// Run announces the VIP connections established before Open, then reports every
// change until ctx is done (returns ctx.Err()) or the probe is closed (ErrClosed).
// emit is called on Run's goroutine, one event at a time; each Add is followed by
// at most one Delete (exactly one unless events were lost). Run may be called once.
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

	// Start: everything the kernel reported so far, then the older connections.
	listed, err := p.dump()
	if err != nil {
		return p.stopped(ctx, err)
	}
	fromRing := make(map[uint64]bool)
	var rec ringbuf.Record
	p.ring.SetDeadline(time.Now())
	for {
		err := p.ring.ReadInto(&rec)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			break
		}
		if err != nil {
			return p.stopped(ctx, err)
		}
		if e, ok := p.decode(rec.RawSample); ok {
			if e.Kind == Add {
				fromRing[e.Cookie] = true
			}
			emit(e)
		}
	}
	old := make(map[uint64]session.Key) // connections the kernel will not report closing
	for _, s := range established(listed, p.vips) {
		if !fromRing[s.cookie] {
			old[s.cookie] = s.key
			emit(Event{Kind: Add, Key: s.key, Cookie: s.cookie})
		}
	}
	fromRing = nil
	close(p.synced)

	nextPoll := time.Now().Add(p.cfg.ResyncInterval)
	for {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if len(old) > 0 {
			if !time.Now().Before(nextPoll) {
				p.pollOld(old, emit)
				nextPoll = time.Now().Add(p.cfg.ResyncInterval)
			}
			p.ring.SetDeadline(nextPoll)
		} else {
			p.ring.SetDeadline(time.Time{})
		}
		err := p.ring.ReadInto(&rec)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			continue
		}
		if err != nil {
			return p.stopped(ctx, err)
		}
		if e, ok := p.decode(rec.RawSample); ok {
			emit(e)
		}
	}
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

// pollOld reports Delete for the connections of old that no longer have a live
// socket. A dump that fails or is interrupted deletes nothing.
func (p *Probe) pollOld(old map[uint64]session.Key, emit func(Event)) {
	socks, err := p.dump()
	if err != nil {
		return
	}
	live := make(map[uint64]bool, len(old))
	for _, s := range socks {
		if _, ok := old[s.cookie]; ok && alive(s.state) {
			live[s.cookie] = true
		}
	}
	for c, k := range old {
		if !live[c] {
			delete(old, c)
			emit(Event{Kind: Delete, Key: k, Cookie: c})
		}
	}
}
