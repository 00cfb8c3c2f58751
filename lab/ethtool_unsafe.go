package lab

import (
	"fmt"
	"runtime"
	"unsafe"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// ethtoolSetTxCsum is ETHTOOL_STXCSUM (linux/ethtool.h).
const ethtoolSetTxCsum = 0x17

// ethtoolValue is struct ethtool_value.
type ethtoolValue struct {
	cmd  uint32
	data uint32
}

// ifreqData is struct ifreq with its union used as ifr_data.
type ifreqData struct {
	name [unix.IFNAMSIZ]byte
	data unsafe.Pointer // a Go pointer: the stack copier and the GC see it
	_    [16]byte
}

// txChecksumOff turns transmit checksum offload off on interface ifname of namespace ns
// (ethtool -K ifname tx off). A veth otherwise sends TCP segments whose checksum the
// receiving kernel was to complete: DPDK's net_af_packet would read them as they are and
// the host kernel, behind net_tap, would drop them as corrupt.
func txChecksumOff(ns, ifname string) error {
	h, err := netns.GetFromName(ns)
	if err != nil {
		return fmt.Errorf("lab: netns %s: %w", ns, err)
	}
	defer h.Close()
	errc := make(chan error, 1)
	go func() { // locked in ns; see dialIn
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		if err := netns.Set(h); err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
		if err != nil {
			errc <- err
			return
		}
		defer unix.Close(fd)
		v := ethtoolValue{cmd: ethtoolSetTxCsum, data: 0}
		var req ifreqData
		copy(req.name[:unix.IFNAMSIZ-1], ifname)
		req.data = unsafe.Pointer(&v)
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&req)))
		runtime.KeepAlive(&v)
		if errno != 0 {
			errc <- errno
			return
		}
		errc <- nil
	}()
	if err := <-errc; err != nil {
		return fmt.Errorf("lab: %s in %s: tx checksum offload off: %w", ifname, ns, err)
	}
	return nil
}
