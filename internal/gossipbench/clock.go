package gossipbench

import (
	"errors"
	"math"
	"time"

	"golang.org/x/sys/unix"
)

// The processes of a run compare their timestamps, so each one reads CLOCK_MONOTONIC,
// which is system-wide. Go's monotonic time is CLOCK_MONOTONIC too (read through the
// vDSO), so mono adds the time elapsed since a calibration point to that point's
// CLOCK_MONOTONIC reading, instead of a system call per timestamp.
var monoBase, monoStart = calibrate()

// calibrate pairs a CLOCK_MONOTONIC reading with a time.Time: the midpoint of the
// tightest of a few bracketing pairs of clock_gettime calls.
func calibrate() (int64, time.Time) {
	best := int64(math.MaxInt64)
	var base int64
	var start time.Time
	for range 8 {
		a := clockMono()
		t := time.Now()
		b := clockMono()
		if b-a < best {
			best, base, start = b-a, a+(b-a)/2, t
		}
	}
	return base, start
}

// clockMono reads CLOCK_MONOTONIC with a system call.
func clockMono() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic("clock_gettime(CLOCK_MONOTONIC): " + err.Error())
	}
	return ts.Nano()
}

// mono returns CLOCK_MONOTONIC in nanoseconds.
// Mono is the benchmark's clock (CLOCK_MONOTONIC in ns, comparable across processes):
// what Recorder.Applied takes.
func Mono() int64 { return mono() }

func mono() int64 { return monoBase + int64(time.Since(monoStart)) }

// sleepUntil blocks the calling thread until CLOCK_MONOTONIC reaches t (absolute
// clock_nanosleep: a high-resolution timer, unlike a Go timer, which fires about a
// millisecond late for short sleeps where the kernel tick is coarse). The thread's
// timer slack (PR_SET_TIMERSLACK) bounds how late it wakes.
func sleepUntil(t int64) {
	ts := unix.NsecToTimespec(t)
	for mono() < t {
		if err := unix.ClockNanosleep(unix.CLOCK_MONOTONIC, unix.TIMER_ABSTIME, &ts, nil); err != nil && !errors.Is(err, unix.EINTR) {
			return
		}
	}
}
