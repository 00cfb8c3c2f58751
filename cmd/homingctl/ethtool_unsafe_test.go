package main

import (
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// txChecksumOff turns transmit checksum offload off on ifname in namespace ns (ethtool
// -K ifname tx off). A veth otherwise sends TCP and UDP whose checksum the receiving
// kernel was to complete: net_af_packet reads them as they are, and the host kernel
// behind net_tap drops them as corrupt.
func txChecksumOff(ns, ifname string) error {
	return inNetns(ns, func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		v := struct{ cmd, data uint32 }{cmd: 0x17} // ETHTOOL_STXCSUM, off
		var req struct {
			name [unix.IFNAMSIZ]byte
			data unsafe.Pointer
			_    [16]byte
		}
		copy(req.name[:unix.IFNAMSIZ-1], ifname)
		req.data = unsafe.Pointer(&v)
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&req)))
		runtime.KeepAlive(&v)
		if errno != 0 {
			return errno
		}
		return nil
	})
}
