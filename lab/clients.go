package lab

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/vishvananda/netns"
)

// A client connection's life: every Interval (random in [MinGap, MaxGap]) it sends a
// numbered chunk of ChunkLen bytes and reads the echo back, comparing every byte with
// what it sent. It ends on the first error: a reset (RST, EPIPE, EOF) or anything else.
const (
	ChunkLen = 32
	// UploadLen is the block an upload connection writes (and reads back) each time: 64
	// KiB, so that TCP sends full-size segments (those that do not fit through the tunnel
	// without MSS clamping or path MTU discovery).
	UploadLen = 64 << 10
	MinGap    = 100 * time.Millisecond
	MaxGap    = 300 * time.Millisecond
	// AliveWindow: a connection is alive at t if an exchange completed after t-AliveWindow.
	AliveWindow = 1500 * time.Millisecond
)

// Conn states.
const (
	StateOpen int32 = iota
	StateReset
	StateFailed
)

// Conn is one client connection of a Fleet.
type Conn struct {
	ID        int
	Local     string // the client's address:port
	size      int    // bytes per exchange: ChunkLen (also 0) or UploadLen
	c         *net.TCPConn
	state     atomic.Int32
	endedAt   atomic.Int64 // unix ns
	lastOK    atomic.Int64 // unix ns of the last completed exchange
	exchanges atomic.Uint64
	corrupted atomic.Uint64
	errMu     sync.Mutex // protects err
	err       error
}

// Err is the error that ended the connection, or nil.
func (c *Conn) Err() error {
	c.errMu.Lock()
	defer c.errMu.Unlock()
	return c.err
}

// Fleet is a set of long-lived client connections to one service.
type Fleet struct {
	Conns  []*Conn
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Dial opens n connections to addr from network namespace ns, par at a time. Sockets are
// created by goroutines whose OS thread has entered ns; they stay in ns. An empty ns is
// the caller's own namespace (a client in a container: docker/homing-popclient). Each
// exchanges chunks of ChunkLen bytes.
func Dial(ctx context.Context, ns string, addr string, n, par int) (*Fleet, error) {
	return DialSize(ctx, ns, addr, n, par, ChunkLen)
}

// DialSize is Dial with connections that exchange blocks of size bytes (UploadLen: the
// uploads).
func DialSize(ctx context.Context, ns string, addr string, n, par, size int) (*Fleet, error) {
	target := netns.None()
	if ns != "" {
		var err error
		if target, err = netns.GetFromName(ns); err != nil {
			return nil, fmt.Errorf("lab: netns %s: %w", ns, err)
		}
		defer target.Close()
	}
	f := &Fleet{Conns: make([]*Conn, n)}
	next := atomic.Int64{}
	errs := make(chan error, par)
	for range par {
		go func() { // dialer, locked in ns
			errs <- dialIn(ctx, target, func(d *net.Dialer) error {
				for {
					i := int(next.Add(1) - 1)
					if i >= n {
						return nil
					}
					c, err := d.DialContext(ctx, "tcp", addr)
					if err != nil {
						return fmt.Errorf("connection %d: %w", i, err)
					}
					tc := c.(*net.TCPConn)
					_ = tc.SetNoDelay(true)
					f.Conns[i] = &Conn{ID: i, Local: c.LocalAddr().String(), c: tc, size: size}
				}
			})
		}()
	}
	var all []error
	for range par {
		if err := <-errs; err != nil {
			all = append(all, err)
		}
	}
	if err := errors.Join(all...); err != nil {
		for _, c := range f.Conns {
			if c != nil {
				c.c.Close()
			}
		}
		return nil, err
	}
	return f, nil
}

// dialIn runs fn on an OS thread that is in namespace target (netns.None(): the caller's
// own, where it runs fn as it is), and puts the thread back
// in its own namespace afterwards. A thread that cannot go back is not reused: the
// goroutine ends locked and the runtime ends the thread.
func dialIn(ctx context.Context, target netns.NsHandle, fn func(*net.Dialer) error) error {
	if target == netns.None() { // here: no setns (a container's client has no CAP_SYS_ADMIN)
		return fn(&net.Dialer{Timeout: 10 * time.Second})
	}
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer orig.Close()
	if err := netns.Set(target); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("lab: enter netns: %w", err)
	}
	err = fn(&net.Dialer{Timeout: 10 * time.Second})
	if netns.Set(orig) == nil {
		runtime.UnlockOSThread()
	}
	return err
}

// Start runs every connection's exchange loop until Stop.
func (f *Fleet) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	now := time.Now().UnixNano()
	for _, c := range f.Conns {
		c.lastOK.Store(now)
		f.wg.Add(1)
		go func() { // connection loop
			defer f.wg.Done()
			c.loop(ctx)
		}()
	}
}

// Stop ends the loops and closes every connection.
func (f *Fleet) Stop() {
	if f.cancel != nil {
		f.cancel()
	}
	for _, c := range f.Conns {
		// Unblock reads and writes; the loops see the context.
		_ = c.c.SetDeadline(time.Now())
	}
	f.wg.Wait()
	for _, c := range f.Conns {
		c.c.Close()
	}
}

// chunk fills b with chunk seq of connection id: its numbers and a pattern from them.
func chunk(b []byte, id int, seq uint32) {
	binary.BigEndian.PutUint32(b[0:], uint32(id))
	binary.BigEndian.PutUint32(b[4:], seq)
	x := uint64(id)<<32 | uint64(seq) | 1
	for i := 8; i < len(b); i += 8 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		binary.LittleEndian.PutUint64(b[i:], x)
	}
}

func (c *Conn) loop(ctx context.Context) {
	size := c.size
	if size == 0 {
		size = ChunkLen // a Conn made elsewhere (the churn and fault openers)
	}
	want, got := make([]byte, size), make([]byte, size)
	rng := rand.New(rand.NewPCG(uint64(c.ID), uint64(time.Now().UnixNano())))
	for seq := uint32(0); ; seq++ {
		gap := MinGap + time.Duration(rng.Int64N(int64(MaxGap-MinGap)))
		select {
		case <-ctx.Done():
			return
		case <-time.After(gap):
		}
		chunk(want, c.ID, seq)
		if _, err := c.c.Write(want); err != nil {
			c.end(ctx, err)
			return
		}
		for n := 0; n < len(got); {
			_ = c.c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			m, err := c.c.Read(got[n:])
			n += m
			if err != nil {
				if errors.Is(err, os.ErrDeadlineExceeded) && ctx.Err() == nil {
					continue // slow (a lost packet): keep waiting
				}
				c.end(ctx, err)
				return
			}
		}
		if bad := diffBytes(want, got); bad > 0 {
			c.corrupted.Add(uint64(bad))
		}
		c.exchanges.Add(1)
		c.lastOK.Store(time.Now().UnixNano())
	}
}

// IsReset tells whether err is a connection reset by the peer: RST (ECONNRESET), a write
// after it (EPIPE), or an end of stream the client did not ask for.
func IsReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, io.EOF)
}

func (c *Conn) end(ctx context.Context, err error) {
	if ctx.Err() != nil {
		return // stopping: not the connection's fault
	}
	c.errMu.Lock()
	c.err = err
	c.errMu.Unlock()
	c.endedAt.Store(time.Now().UnixNano())
	if IsReset(err) {
		c.state.Store(StateReset)
	} else {
		c.state.Store(StateFailed)
	}
}

// Counts are the fleet's state at one moment.
type Counts struct {
	Alive     int    // open, with an exchange in the last AliveWindow
	Stalled   int    // open, but no exchange in the last AliveWindow
	Reset     int    // ended by a reset (RST, EPIPE, EOF), since the start
	Failed    int    // ended by another error, since the start
	Corrupted uint64 // echoed bytes that differed from those sent, since the start
	Exchanges uint64 // completed exchanges, since the start
}

// Counts counts the connections now.
func (f *Fleet) Counts() Counts {
	var n Counts
	since := time.Now().Add(-AliveWindow).UnixNano()
	for _, c := range f.Conns {
		switch c.state.Load() {
		case StateReset:
			n.Reset++
		case StateFailed:
			n.Failed++
		default:
			if c.lastOK.Load() >= since {
				n.Alive++
			} else {
				n.Stalled++
			}
		}
		n.Corrupted += c.corrupted.Load()
		n.Exchanges += c.exchanges.Load()
	}
	return n
}

// Ended are the connections that ended, with their errors (for reports).
func (f *Fleet) Ended() []*Conn {
	var out []*Conn
	for _, c := range f.Conns {
		if c.state.Load() != StateOpen {
			out = append(out, c)
		}
	}
	return out
}

// echoChunk writes chunk seq of connection id to c and reads its echo into got, both
// within timeout, and returns how many echoed bytes differ from those sent. A short read
// (the peer closed mid-chunk) is io.EOF.
func echoChunk(c net.Conn, want, got []byte, id int, seq uint32, timeout time.Duration) (bad int, err error) {
	chunk(want, id, seq)
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write(want); err != nil {
		return 0, err
	}
	if _, err := io.ReadFull(c, got); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			err = io.EOF
		}
		return 0, err
	}
	return diffBytes(want, got), nil
}

// diffBytes counts the positions where want and got differ.
func diffBytes(want, got []byte) (n int) {
	for i := range want {
		if want[i] != got[i] {
			n++
		}
	}
	return n
}
