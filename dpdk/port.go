package dpdk

/*
#include <stdlib.h>
#include <rte_ethdev.h>
#include <rte_bus_vdev.h>
#include "dpdk_helpers.h"
*/
import "C"

import (
	"fmt"
	"net"
	"reflect"
	"strings"
	"unsafe"

	"github.com/homing-dev/homing/internal/counters"
)

// Port is an ethdev port.
type Port struct {
	ID   uint16
	Name string
}

// PortByName finds a probed device: a vdev by its name (the part of the devargs before
// the first comma, e.g. "net_tap0") or a PCI device by its address ("0000:00:08.0").
func PortByName(name string) (Port, error) {
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	var id C.uint16_t
	if ret := C.rte_eth_dev_get_port_by_name(cname, &id); ret != 0 {
		return Port{}, errorf(ret, "port %q", name)
	}
	return Port{ID: uint16(id), Name: name}, nil
}

// DevName returns the device name of a vdev devargs string ("net_tap0,iface=x" →
// "net_tap0").
func DevName(devargs string) string {
	name, _, _ := strings.Cut(devargs, ",")
	return strings.TrimSpace(name)
}

// ProbeVdev hot-plugs a virtual device after EAL init and returns its port.
func ProbeVdev(devargs string) (Port, error) {
	name := DevName(devargs)
	args := ""
	if i := strings.IndexByte(devargs, ','); i >= 0 {
		args = devargs[i+1:]
	}
	cname, cargs := C.CString(name), C.CString(args)
	defer C.free(unsafe.Pointer(cname))
	defer C.free(unsafe.Pointer(cargs))
	if ret := C.rte_vdev_init(cname, cargs); ret != 0 {
		return Port{}, errorf(ret, "vdev %q", devargs)
	}
	return PortByName(name)
}

// PortConfig describes the queues and link settings of a port.
type PortConfig struct {
	RxQueues, TxQueues int
	RxDesc, TxDesc     int
	MTU                int // 0: driver default
	Promiscuous        bool
	RSS                bool // spread rx over RxQueues by RSS
}

// Start configures the port's queues (rx queues draw from pool), sets MTU and
// promiscuous mode, and starts it.
func (p Port) Start(c PortConfig, pool *Mempool) error {
	if c.RxQueues < 1 || c.TxQueues < 1 {
		return fmt.Errorf("port %s: need at least one rx and one tx queue", p.Name)
	}
	if c.RxDesc == 0 {
		c.RxDesc = 1024
	}
	if c.TxDesc == 0 {
		c.TxDesc = 1024
	}
	conf := C.struct_hdpdk_port_conf{
		nb_rxq: C.uint16_t(c.RxQueues), nb_txq: C.uint16_t(c.TxQueues),
		nb_rxd: C.uint16_t(c.RxDesc), nb_txd: C.uint16_t(c.TxDesc),
		mtu: C.uint16_t(c.MTU),
	}
	if c.Promiscuous {
		conf.promisc = 1
	}
	if c.RSS {
		conf.rss = 1
	}
	var msg [256]C.char
	if ret := C.hdpdk_port_setup(C.uint16_t(p.ID), &conf, pool.p, &msg[0], C.size_t(len(msg))); ret != 0 {
		return &Error{Op: fmt.Sprintf("port %s: %s", p.Name, C.GoString(&msg[0])), Errno: -int(ret)}
	}
	return nil
}

// MAC returns the port's MAC address.
func (p Port) MAC() (net.HardwareAddr, error) {
	var a C.struct_rte_ether_addr
	if ret := C.rte_eth_macaddr_get(C.uint16_t(p.ID), &a); ret != 0 {
		return nil, errorf(ret, "port %s: mac", p.Name)
	}
	return C.GoBytes(unsafe.Pointer(&a.addr_bytes[0]), 6), nil
}

// SetMAC sets the port's primary MAC address.
func (p Port) SetMAC(mac net.HardwareAddr) error {
	if len(mac) != 6 {
		return fmt.Errorf("port %s: MAC %v is not 6 bytes", p.Name, mac)
	}
	var a C.struct_rte_ether_addr
	for i := 0; i < 6; i++ {
		a.addr_bytes[i] = C.uint8_t(mac[i])
	}
	if ret := C.rte_eth_dev_default_mac_addr_set(C.uint16_t(p.ID), &a); ret != 0 {
		return errorf(ret, "port %s: set mac %s", p.Name, mac)
	}
	return nil
}

// Stats are a port's basic counters, declared with their metric tags in
// internal/counters.
type Stats = counters.Port

// portFromC copies struct hdpdk_port_stats by the fields' c tags; it panics at start if
// a C counter has no field in Stats.
var portFromC = counters.NewFromC(reflect.TypeFor[C.struct_hdpdk_port_stats](), reflect.TypeFor[Stats]())

// Stats reads the port's counters.
func (p Port) Stats() (Stats, error) {
	var s C.struct_hdpdk_port_stats
	if ret := C.hdpdk_port_stats(C.uint16_t(p.ID), &s); ret != 0 {
		return Stats{}, errorf(ret, "port %s: stats", p.Name)
	}
	var st Stats
	portFromC.Copy(&st, s)
	return st, nil
}

// Stop stops the port (net_pcap flushes its output file here).
func (p Port) Stop() error {
	if ret := C.rte_eth_dev_stop(C.uint16_t(p.ID)); ret != 0 {
		return errorf(ret, "port %s: stop", p.Name)
	}
	return nil
}

// Close releases the port; a vdev (a TAP interface, say) disappears with it.
func (p Port) Close() error {
	if ret := C.rte_eth_dev_close(C.uint16_t(p.ID)); ret != 0 {
		return errorf(ret, "port %s: close", p.Name)
	}
	return nil
}
