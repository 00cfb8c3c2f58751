// Package dpdk is homing's own small cgo binding to DPDK 22.11 (Debian's libdpdk-dev):
// the EAL, packet mempools, ethdev ports and their statistics, and launching C functions
// on worker lcores. It holds no per-packet code: the poll loops are C in lcore/.
//
// Concurrency: Init and Cleanup are process-wide and must not race with anything else in
// this package. Port and Mempool methods are safe to call from any goroutine, but not
// concurrently on the same object.
package dpdk

/*
#cgo pkg-config: libdpdk
#cgo LDFLAGS: -lrte_bus_vdev
#include <stdlib.h>
#include <rte_eal.h>
#include <rte_lcore.h>
#include "dpdk_helpers.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Errors.
var (
	ErrAlreadyInit = errors.New("dpdk: EAL already initialised in this process")
	ErrNotInit     = errors.New("dpdk: EAL not initialised")
)

// Error is a DPDK failure: the operation and DPDK's errno.
type Error struct {
	Op    string
	Errno int
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s: %s (errno %d)", e.Op, C.GoString(C.hdpdk_strerror(C.int(e.Errno))), e.Errno)
}

// Unwrap maps the errno onto syscall.Errno so that errors.Is(err, unix.ENOSPC) works.
func (e *Error) Unwrap() error {
	if e.Errno > 0 && e.Errno < 1000 {
		return unix.Errno(e.Errno)
	}
	return nil
}

// errorf turns a negative return value (or rte_errno when ret is -1 and rte_errno is set)
// into an *Error.
func errorf(ret C.int, format string, args ...any) error {
	n := -int(ret)
	if ret == -1 {
		if e := int(C.hdpdk_errno()); e != 0 {
			n = e
		}
	}
	return &Error{Op: fmt.Sprintf(format, args...), Errno: n}
}

// rteErrno wraps rte_errno after a call that returned NULL.
func rteErrno(format string, args ...any) error {
	return &Error{Op: fmt.Sprintf(format, args...), Errno: int(C.hdpdk_errno())}
}

// EALConfig is what the EAL is started with.
type EALConfig struct {
	// FilePrefix separates this instance's runtime files from other DPDK processes on the
	// machine; every homingd must have its own.
	FilePrefix string
	// Hugepages selects 2 MB hugepages (with --in-memory: no hugetlbfs mount needed);
	// false runs with --no-huge --no-shconf (tests, laptops).
	Hugepages bool
	// MemoryMB is the memory EAL reserves (-m).
	MemoryMB int
	// CPUs is the CPU list the lcores may run on, e.g. "0-1"; empty means every CPU this
	// process may use. With room for every worker on a CPU of its own, each worker is
	// pinned to one; otherwise all lcores float over the set, so that several daemons
	// can share a small machine (placement.go).
	CPUs string
	// Workers is the number of worker lcores (lcore ids 1..Workers); lcore 0 is the main
	// lcore, the Go process.
	Workers int
	// VDevs are virtual devices (--vdev), e.g. "net_tap0,iface=homing0".
	VDevs []string
	// PCI lists the PCI devices to use (-a); none means --no-pci.
	PCI []string
	// LogLevel is DPDK's log level (e.g. "notice", "debug"); empty leaves the default.
	LogLevel string
	// Extra arguments are appended last.
	Extra []string
}

// Args returns the EAL argument vector (without argv[0]) for c.
func (c EALConfig) Args() ([]string, error) {
	if c.FilePrefix == "" {
		return nil, errors.New("dpdk: EAL file prefix is empty")
	}
	if strings.ContainsAny(c.FilePrefix, "/ \t") {
		return nil, fmt.Errorf("dpdk: EAL file prefix %q contains '/' or spaces", c.FilePrefix)
	}
	if c.Workers < 0 || c.Workers > 63 {
		return nil, fmt.Errorf("dpdk: %d workers: must be 0..63", c.Workers)
	}
	cpus := c.CPUs
	if cpus == "" {
		var err error
		if cpus, err = allowedCPUs(); err != nil {
			return nil, err
		}
	}
	set, err := ParseCPUList(cpus)
	if err != nil {
		return nil, err
	}
	mem := c.MemoryMB
	if mem <= 0 {
		mem = 256
	}
	args := []string{
		"--lcores=" + Place(set, c.Workers).Arg(c.Workers),
		"--main-lcore=0",
		"--file-prefix=" + c.FilePrefix,
		"-m", strconv.Itoa(mem),
		"--no-telemetry",
	}
	if c.Hugepages {
		args = append(args, "--in-memory")
	} else {
		args = append(args, "--no-huge", "--no-shconf")
	}
	if len(c.PCI) == 0 {
		args = append(args, "--no-pci")
	}
	for _, p := range c.PCI {
		args = append(args, "-a", p)
	}
	for _, v := range c.VDevs {
		args = append(args, "--vdev="+v)
	}
	if c.LogLevel != "" {
		args = append(args, "--log-level="+c.LogLevel)
	}
	return append(args, c.Extra...), nil
}

// allowedCPUs returns the CPUs this process may run on as a DPDK list "0,1,3".
func allowedCPUs() (string, error) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return "", fmt.Errorf("dpdk: sched_getaffinity: %w", err)
	}
	var ids []string
	for i := 0; i < 1024; i++ {
		if set.IsSet(i) {
			ids = append(ids, strconv.Itoa(i))
		}
	}
	if len(ids) == 0 {
		return "", errors.New("dpdk: no usable CPU")
	}
	return strings.Join(ids, ","), nil
}

var eal struct {
	sync.Mutex
	up     bool
	prefix string
	args   []string // of Init, for the start log (Args)
}

// Init starts the EAL with c. It may be called once per process.
//
// rte_eal_init pins its calling thread to the main lcore's CPU set; Init calls it on a
// locked OS thread and restores that thread's affinity afterwards, so that the Go
// scheduler keeps every CPU.
func Init(c EALConfig) error {
	eal.Lock()
	defer eal.Unlock()
	if eal.up {
		return ErrAlreadyInit
	}
	args, err := c.Args()
	if err != nil {
		return err
	}
	argv := append([]string{"homingd"}, args...)
	cargv := make([]*C.char, len(argv))
	for i, a := range argv {
		cargv[i] = C.CString(a) // kept: EAL may hold on to argv strings
	}

	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		var before unix.CPUSet
		_ = unix.SchedGetaffinity(0, &before)
		ret := C.rte_eal_init(C.int(len(cargv)), (**C.char)(unsafe.Pointer(&cargv[0])))
		_ = unix.SchedSetaffinity(0, &before)
		if ret < 0 {
			done <- errorf(-1, "rte_eal_init %s", strings.Join(args, " "))
			return
		}
		done <- nil
	}()
	if err := <-done; err != nil {
		return err
	}
	eal.up = true
	eal.prefix = c.FilePrefix
	eal.args = args
	return nil
}

// Initialized reports whether Init succeeded and Cleanup has not run.
func Initialized() bool {
	eal.Lock()
	defer eal.Unlock()
	return eal.up
}

// Cleanup releases the EAL's resources and removes this instance's runtime directory.
// Ports and mempools must have been closed and every worker lcore must have returned.
func Cleanup() error {
	eal.Lock()
	defer eal.Unlock()
	if !eal.up {
		return ErrNotInit
	}
	ret := C.rte_eal_cleanup()
	eal.up = false
	removeRuntimeDir(eal.prefix)
	if ret != 0 {
		return errorf(ret, "rte_eal_cleanup")
	}
	return nil
}

// removeRuntimeDir removes /var/run/dpdk/<prefix> (or its XDG equivalent for non-root)
// if EAL left it behind; with --in-memory or --no-shconf it holds nothing of value.
func removeRuntimeDir(prefix string) {
	base := "/var/run/dpdk"
	if os.Geteuid() != 0 {
		if x := os.Getenv("XDG_RUNTIME_DIR"); x != "" {
			base = filepath.Join(x, "dpdk")
		} else {
			base = "/tmp/dpdk"
		}
	}
	_ = os.RemoveAll(filepath.Join(base, prefix))
}

// LcoreCount is the number of lcores EAL runs (main included).
func LcoreCount() int { return int(C.rte_lcore_count()) }

// SocketID is the NUMA socket of an lcore.
func SocketID(lcore uint) int { return int(C.rte_lcore_to_socket_id(C.uint(lcore))) }

// Workers returns the worker lcore ids (every enabled lcore but the main one).
func Workers() []uint {
	var ids []uint
	main := C.rte_get_main_lcore()
	for i := C.uint(0); i < C.RTE_MAX_LCORE; i++ {
		if i != main && C.rte_lcore_is_enabled(i) != 0 {
			ids = append(ids, uint(i))
		}
	}
	return ids
}

// Launch starts the C function fn (an `int (*)(void *)`) with arg on worker lcore id.
// arg must point to C memory that stays valid until Wait returns.
func Launch(fn, arg unsafe.Pointer, lcore uint) error {
	if ret := C.hdpdk_remote_launch(fn, arg, C.uint(lcore)); ret != 0 {
		return errorf(ret, "launch on lcore %d", lcore)
	}
	return nil
}

// Wait blocks until the function running on lcore returns, and returns its return value.
func Wait(lcore uint) int {
	return int(C.rte_eal_wait_lcore(C.uint(lcore)))
}
