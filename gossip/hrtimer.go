package gossip

import (
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// hrTimer is a one-shot sleep on a timerfd read through the runtime's netpoller. The
// goroutine parks (it holds no thread) and wakes within microseconds of the deadline,
// where a Go timer shorter than a millisecond fires up to a millisecond late: the
// netpoller waits in epoll with a timeout in whole milliseconds (a 200 µs time.Sleep
// takes 1.1 ms on the development VM). The sender uses it for its sub-millisecond
// flush waits.
type hrTimer struct {
	f  *os.File
	fd int
}

func newHRTimer() (*hrTimer, error) {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("timerfd: %w", err)
	}
	return &hrTimer{f: os.NewFile(uintptr(fd), "gossip-timerfd"), fd: fd}, nil
}

// sleep parks the calling goroutine for d (at least 1 µs).
func (t *hrTimer) sleep(d time.Duration) error {
	its := unix.ItimerSpec{Value: unix.NsecToTimespec(max(d, time.Microsecond).Nanoseconds())}
	if err := unix.TimerfdSettime(t.fd, 0, &its, nil); err != nil {
		return fmt.Errorf("timerfd settime: %w", err)
	}
	var buf [8]byte
	if _, err := t.f.Read(buf[:]); err != nil {
		return fmt.Errorf("timerfd read: %w", err)
	}
	return nil
}

func (t *hrTimer) close() { _ = t.f.Close() }
