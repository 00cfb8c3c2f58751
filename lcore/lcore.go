// Package lcore runs homing's per-packet pipeline (C, pipeline.c) on DPDK worker lcores.
// Go creates the shared data plane, publishes header templates, starts and stops the
// lcores and reads their counters; it never touches a packet. See pipeline.h for the
// pipeline's flow and its concurrency rules.
package lcore

/*
#cgo pkg-config: libdpdk
#cgo CFLAGS: -O3 -DALLOW_EXPERIMENTAL_API -Wall -Wno-address-of-packed-member -Wno-stringop-overflow
#include <stdlib.h>
#include <rte_cycles.h>
#include "pipeline.h"
#include "frames.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/homing-dev/homing/dpdk"
	"github.com/homing-dev/homing/session"
)

// MaxHosts bounds host ids: 1..MaxHosts-1.
const MaxHosts = C.HOMING_MAX_HOSTS

// MaxVIPs is the number of VIP prefixes per address family.
const MaxVIPs = C.HOMING_MAX_VIPS

// Burst is the number of packets per rx burst.
const Burst = C.HOMING_BURST

// Errors.
var (
	ErrRunning    = errors.New("lcore: data plane is running")
	ErrNotRunning = errors.New("lcore: data plane is not running")
)

// Config is the data plane's fixed configuration.
type Config struct {
	SelfID     uint16
	Self4      netip.Addr // this host's IPv4 address (tunnel endpoint), or invalid
	Self6      netip.Addr // this host's IPv6 address, or invalid
	TunnelPort uint16
	VIPs       []netip.Prefix
	// Table is the struct homing_table * of table.Table.Ptr().
	Table unsafe.Pointer
	// NoRedirect hands every VIP packet to the local kernel without a lookup, as plain
	// ECMP would (the lab's baseline). Decapsulation still works.
	NoRedirect bool
	// Warming starts the data plane warming up (see SetWarming).
	Warming bool
	// UDPPorts are the VIPs' UDP ports whose flows are sessions: only their packets of
	// unknown flows wait in the park (other UDP to a VIP goes to the kernel at once).
	UDPPorts []UDPPort
	// MTU is the NIC's MTU: an encapsulated packet longer than it is never sent (it is
	// answered with ICMP, see ICMPRate, or fragmented, see Options.Pool, or dropped).
	// 0 turns the check off.
	MTU int
	// ClampMSS lowers the MSS option of every SYN-ACK the kernel sends from a VIP to what
	// fits through the tunnel (MTU minus the IP, TCP and tunnel headers). Needs MTU.
	ClampMSS bool
	// ICMPRate is the number of ICMP "fragmentation needed" / ICMPv6 "packet too big"
	// replies per second each lcore may send to clients whose packets are too big for
	// the tunnel, with bursts of up to ICMPBurst; 0 sends none.
	ICMPRate, ICMPBurst int
}

// UDPPort declares a UDP port of the VIPs as a session port.
type UDPPort struct {
	Port uint16
	// QUIC: the port serves QUIC; a long-header Initial packet (a new connection) goes
	// to the local kernel without a lookup, like a TCP SYN.
	QUIC bool
	// CID: the port's QUIC servers encode their host id in the connection IDs they
	// issue (docs/PROTOCOL.md): a packet of an unknown flow goes to the live host its
	// destination CID names instead of waiting in the park. Needs QUIC.
	CID bool
	// CIDLen: the length of the CIDs the port's QUIC servers issue (session.MinCIDLen..
	// MaxCIDLen; 0: off). The SCIDs of their long-header packets are reported with the
	// flow (DrainLearned), and a packet of an unknown flow whose DCID is a learnt CID
	// goes to its owner. Needs QUIC; at most MaxCIDLenPorts ports.
	CIDLen int
}

// MaxCIDLenPorts is the most UDPPorts with a CIDLen.
const MaxCIDLenPorts = C.HOMING_QUIC_LEN_PORTS

// Tunnel overheads: outer IP, UDP and GUE headers.
const (
	Overhead4 = C.HOMING_TUN4_OVERHEAD
	Overhead6 = C.HOMING_TUN6_OVERHEAD
)

// ClampMSS returns the MSS a SYN-ACK of an IPv4 and of an IPv6 VIP is clamped to, for a
// NIC MTU and an outer (tunnel) family: MTU minus the IP and TCP headers and the tunnel.
func ClampMSS(mtu int, outer6 bool) (mss4, mss6 int) {
	ovh := Overhead4
	if outer6 {
		ovh = Overhead6
	}
	return mtu - 20 - 20 - ovh, mtu - 40 - 20 - ovh
}

// Template is what a peer's header template is built from.
type Template struct {
	ID         uint16
	SrcMAC     net.HardwareAddr // this host's NIC MAC
	DstMAC     net.HardwareAddr // the peer's MAC (same domain) or the gateway's
	Src, Dst   netip.Addr       // outer IP source (this host) and destination (the peer)
	TunnelPort uint16           // the peer's GUE port
	// Alt is the peer's address of the other family, if it has one. GUE is decapsulated
	// only from a live peer's Dst or Alt (the peer sends from its own primary address,
	// which is Alt when its family is not this host's).
	Alt netip.Addr
}

// Worker assigns one lcore to one queue pair of the NIC and TAP ports.
type Worker struct {
	Lcore uint
	NIC   dpdk.Port
	TAP   dpdk.Port
	Queue uint16
}

// DataPlane is the shared state of all lcores of one daemon.
type DataPlane struct {
	mu      sync.Mutex // serialises template writers and Start/Stop
	dp      *C.struct_homing_dp
	lcores  []*C.struct_homing_lcore
	workers []Worker
	running atomic.Bool
	// sources are the tunnel addresses of the peers with a template (Dst and Alt),
	// published to the lcores as the set GUE is accepted from.
	sources map[uint16][]netip.Addr
	capture *Capture // armed on the lcores, or nil (d.mu)
}

// New creates the data plane. The table must outlive it.
func New(c Config) (*DataPlane, error) {
	if c.SelfID == 0 || int(c.SelfID) >= MaxHosts {
		return nil, fmt.Errorf("lcore: self id %d out of 1..%d", c.SelfID, MaxHosts-1)
	}
	if c.Table == nil {
		return nil, errors.New("lcore: no table")
	}
	if !c.Self4.Is4() && !c.Self6.Is6() {
		return nil, errors.New("lcore: no host address")
	}
	dp := C.homing_dp_create((*C.struct_homing_table)(c.Table), C.uint16_t(c.SelfID))
	if dp == nil {
		return nil, errors.New("lcore: out of memory for the data plane")
	}
	if c.Warming {
		dp.warming = 1
	}
	d := &DataPlane{dp: dp, sources: map[uint16][]netip.Addr{}}
	if c.Self4.Is4() {
		a := c.Self4.As4()
		dp.self4 = *(*C.uint32_t)(unsafe.Pointer(&a[0]))
	}
	if c.Self6.Is6() && !c.Self6.Is4In6() {
		a := c.Self6.As16()
		for i := range a {
			dp.self6[i] = C.uint8_t(a[i])
		}
		dp.has_self6 = 1
	}
	dp.tunnel_port = C.uint16_t(c.TunnelPort>>8 | c.TunnelPort<<8)
	if c.NoRedirect {
		dp.no_redirect = 1
	}
	for _, u := range c.UDPPorts {
		q := 0
		if u.QUIC {
			q = 1
		}
		C.homing_dp_add_udp_port(dp, C.uint16_t(u.Port), C.int(q))
		if u.CID && u.QUIC {
			C.homing_dp_set_quic_cid(dp, C.uint16_t(u.Port))
		}
		if u.CIDLen != 0 && (!u.QUIC || C.homing_dp_set_quic_cid_len(dp, C.uint16_t(u.Port), C.uint8_t(u.CIDLen)) != 0) {
			d.Close()
			return nil, fmt.Errorf("lcore: UDP port %d: CID length %d: needs QUIC, %d..%d, at most %d ports",
				u.Port, u.CIDLen, session.MinCIDLen, session.MaxCIDLen, MaxCIDLenPorts)
		}
	}
	if err := setBudget(dp, c); err != nil {
		d.Close()
		return nil, err
	}
	for _, p := range c.VIPs {
		if err := d.addVIP(p); err != nil {
			d.Close()
			return nil, err
		}
	}
	return d, nil
}

// setBudget sets the MTU budget: the size check, the MSS clamp and the ICMP rate.
func setBudget(dp *C.struct_homing_dp, c Config) error {
	if c.MTU == 0 {
		if c.ClampMSS {
			return errors.New("lcore: the MSS clamp needs the MTU")
		}
		return nil
	}
	if c.MTU < 68 || c.MTU > 65535 {
		return fmt.Errorf("lcore: MTU %d out of 68..65535", c.MTU)
	}
	dp.mtu = C.uint32_t(c.MTU)
	dp.max_inner4 = C.uint32_t(max(c.MTU-Overhead4, 0))
	dp.max_inner6 = C.uint32_t(max(c.MTU-Overhead6, 0))
	if c.ClampMSS {
		m4, m6 := ClampMSS(c.MTU, !c.Self4.Is4())
		// An MTU too small for the tunnel still gets a clamp: the smallest MSS a
		// peer may send (RFC 9293 3.7.1: 536 minus what IPv4 options might take).
		dp.mss4, dp.mss6 = C.uint16_t(max(m4, 88)), C.uint16_t(max(m6, 88))
	}
	if c.ICMPRate < 0 || c.ICMPBurst < 0 {
		return fmt.Errorf("lcore: ICMP rate %d, burst %d: negative", c.ICMPRate, c.ICMPBurst)
	}
	if c.ICMPRate > 0 {
		per := uint64(C.rte_get_tsc_hz()) / uint64(c.ICMPRate)
		dp.icmp_tsc = C.uint64_t(max(per, 1))
		dp.icmp_burst_tsc = C.uint64_t(uint64(max(c.ICMPBurst, 1)-1) * uint64(dp.icmp_tsc))
	}
	return nil
}

func (d *DataPlane) addVIP(p netip.Prefix) error {
	p = p.Masked()
	mask := net.CIDRMask(p.Bits(), p.Addr().BitLen())
	var ret C.int
	if p.Addr().Is4() {
		a := p.Addr().As4()
		ret = C.homing_dp_add_vip4(d.dp, *(*C.uint32_t)(unsafe.Pointer(&a[0])), *(*C.uint32_t)(unsafe.Pointer(&mask[0])))
	} else {
		a := p.Addr().As16()
		ret = C.homing_dp_add_vip6(d.dp, (*C.uint8_t)(unsafe.Pointer(&a[0])), (*C.uint8_t)(unsafe.Pointer(&mask[0])))
	}
	if ret != 0 {
		return fmt.Errorf("lcore: VIP %s: more than %d VIP prefixes of its family", p, MaxVIPs)
	}
	return nil
}

// SetWarming switches the warm-up on or off. While the control plane warms up after a
// start (it has not learned its peers' sessions yet), parked packets of unknown
// sessions are held past the park's hold time and a full park drops new ones: handed to
// the kernel they would be reset, while TCP sends a dropped one again, by when the
// session is known. Without a park (ParkHold 0) it changes nothing.
func (d *DataPlane) SetWarming(on bool) {
	v := uint32(0)
	if on {
		v = 1
	}
	atomic.StoreUint32((*uint32)(unsafe.Pointer(&d.dp.warming)), v)
}

// SetTemplate publishes (or replaces) the header template of peer t.ID. From then on the
// lcores forward the peer's sessions to it.
func (d *DataPlane) SetTemplate(t Template) error {
	if t.ID == 0 || int(t.ID) >= MaxHosts {
		return fmt.Errorf("lcore: template for host id %d out of 1..%d", t.ID, MaxHosts-1)
	}
	if len(t.SrcMAC) != 6 || len(t.DstMAC) != 6 {
		return fmt.Errorf("lcore: template for host %d: MACs must be 6 bytes", t.ID)
	}
	if !t.Src.IsValid() || !t.Dst.IsValid() || t.Src.Is4() != t.Dst.Is4() {
		return fmt.Errorf("lcore: template for host %d: outer addresses %v -> %v not of one family", t.ID, t.Src, t.Dst)
	}
	af := 6
	src, dst := t.Src.AsSlice(), t.Dst.AsSlice()
	if t.Src.Is4() {
		af = 4
	}
	buf := C.malloc(C.size_t(12 + 32))
	defer C.free(buf)
	b := unsafe.Slice((*byte)(buf), 12+32)
	copy(b[0:6], t.DstMAC)
	copy(b[6:12], t.SrcMAC)
	copy(b[12:28], src)
	copy(b[28:44], dst)
	d.mu.Lock()
	defer d.mu.Unlock()
	ret := C.homing_tmpl_set(d.dp, C.uint16_t(t.ID), (*C.uint8_t)(buf), (*C.uint8_t)(unsafe.Add(buf, 6)),
		C.int(af), (*C.uint8_t)(unsafe.Add(buf, 12)), (*C.uint8_t)(unsafe.Add(buf, 28)), C.uint16_t(t.TunnelPort))
	if ret != 0 {
		return fmt.Errorf("lcore: template for host %d: errno %d", t.ID, -ret)
	}
	from := []netip.Addr{t.Dst.Unmap()}
	if t.Alt.IsValid() && t.Alt.Unmap() != from[0] {
		from = append(from, t.Alt.Unmap())
	}
	if old, ok := d.sources[t.ID]; ok && slices.Equal(old, from) {
		return nil
	}
	d.sources[t.ID] = from
	return d.publishSources()
}

// ClearTemplate withdraws peer id's template: its sessions go to the local kernel, and
// its GUE is no longer decapsulated.
func (d *DataPlane) ClearTemplate(id uint16) {
	d.mu.Lock()
	defer d.mu.Unlock()
	C.homing_tmpl_clear(d.dp, C.uint16_t(id))
	if _, ok := d.sources[id]; ok {
		delete(d.sources, id)
		// Out of memory for the new set: the old one (with id) stays published. Hugepage
		// memory for a few kilobytes is not expected to run out; the error is the
		// caller's only if it set a template.
		_ = d.publishSources()
	}
}

// publishSources publishes d.sources to the lcores (d.mu held).
func (d *DataPlane) publishSources() error {
	var v4 []byte
	var v6 []byte
	for _, as := range d.sources {
		for _, a := range as {
			if a.Is4() {
				b := a.As4()
				v4 = append(v4, b[:]...)
			} else {
				b := a.As16()
				v6 = append(v6, b[:]...)
			}
		}
	}
	buf := C.malloc(C.size_t(len(v4) + len(v6) + 1))
	defer C.free(buf)
	b := unsafe.Slice((*byte)(buf), len(v4)+len(v6)+1)
	copy(b, v4)
	copy(b[len(v4):], v6)
	if C.homing_peers_set(d.dp, (*C.uint32_t)(buf), C.uint32_t(len(v4)/4),
		(*C.uint8_t)(unsafe.Add(buf, len(v4))), C.uint32_t(len(v6)/16)) != 0 {
		return errors.New("lcore: out of memory for the live peers' addresses")
	}
	return nil
}

// PeerSetsLeaked is the number of old live-peer sets not freed because a running lcore
// did not report a quiescent state within a second of the swap.
func (d *DataPlane) PeerSetsLeaked() uint64 {
	return atomic.LoadUint64((*uint64)(unsafe.Pointer(&d.dp.peers_leaked)))
}

// PeerSources returns the tunnel addresses GUE is decapsulated from, in no order.
func (d *DataPlane) PeerSources() []netip.Addr {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []netip.Addr
	for _, as := range d.sources {
		out = append(out, as...)
	}
	return out
}

// TemplateValid reports whether peer id has a published template.
func (d *DataPlane) TemplateValid(id uint16) bool {
	if id == 0 || int(id) >= MaxHosts {
		return false
	}
	t := (*C.struct_homing_tmpl)(unsafe.Add(unsafe.Pointer(d.dp.tmpl), uintptr(id)*C.sizeof_struct_homing_tmpl))
	return atomic.LoadUint32((*uint32)(unsafe.Pointer(&t.lock)))&1 == 0 && t.valid != 0
}

// Options tune the poll loops.
type Options struct {
	// IdleSleepMax bounds the idle backoff; 0 is pure busy polling.
	IdleSleepMax time.Duration
	// ParkHold is how long a packet of an unknown VIP session is held, and looked up
	// again whenever the table changes, before it goes to the local kernel; 0 turns the
	// park off.
	ParkHold time.Duration
	// ParkSize bounds the packets held per lcore (1..MaxPark); when the park is full,
	// packets go to the kernel as before.
	ParkSize int
	// ParkUDP is the share of ParkSize that packets of UDP session ports may hold
	// (0..ParkSize-1); TCP holds the rest, so that neither fills the park for the other.
	ParkUDP int
	// LearnRing is the size (records, a power of two up to MaxLearnRing) of each lcore's
	// ring of learned UDP flows (DrainLearned); 0: no learning.
	LearnRing int
	// Pool is where the lcores take the mbufs of fragments from (IPv4 packets without DF
	// too big for the tunnel are fragmented and tunnelled); nil drops such packets.
	Pool *dpdk.Mempool
}

// MaxPark is the largest ParkSize.
const MaxPark = C.HOMING_PARK_MAX

// setPark configures lc's park.
func setPark(lc *C.struct_homing_lcore, hold time.Duration, size, udp int) error {
	if hold <= 0 {
		return nil
	}
	if size < 1 || size > MaxPark {
		return fmt.Errorf("lcore: park size %d out of 1..%d", size, MaxPark)
	}
	if udp < 0 || udp >= size {
		return fmt.Errorf("lcore: park UDP share %d out of 0..%d", udp, size-1)
	}
	lc.park = (*C.struct_homing_park_slot)(C.calloc(C.size_t(size), C.sizeof_struct_homing_park_slot))
	if lc.park == nil {
		return errors.New("lcore: out of memory for the park")
	}
	lc.park_max = C.uint32_t(size)
	lc.park_udp_max = C.uint32_t(udp)
	lc.park_tsc = C.uint64_t(float64(C.rte_get_tsc_hz()) * hold.Seconds())
	if lc.park_tsc == 0 {
		lc.park_tsc = 1
	}
	return nil
}

func freeLcore(lc *C.struct_homing_lcore) {
	C.homing_udp_lcore_free(lc.udp)
	C.free(unsafe.Pointer(lc.park))
	C.free(unsafe.Pointer(lc))
}

// Start launches the poll loop on every worker.
func (d *DataPlane) Start(workers []Worker, o Options) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.running.Load() {
		return ErrRunning
	}
	if len(workers) == 0 {
		return errors.New("lcore: no workers")
	}
	d.freeLcores()
	d.dp.stop = 0
	for _, w := range workers {
		lc := (*C.struct_homing_lcore)(C.aligned_alloc(64, C.sizeof_struct_homing_lcore))
		if lc == nil {
			d.freeLcores()
			return errors.New("lcore: out of memory")
		}
		*lc = C.struct_homing_lcore{}
		lc.dp = d.dp
		lc.nic_port = C.uint16_t(w.NIC.ID)
		lc.tap_port = C.uint16_t(w.TAP.ID)
		lc.queue = C.uint16_t(w.Queue)
		lc.idle_sleep_max_us = C.uint32_t(o.IdleSleepMax / time.Microsecond)
		lc.lcore_id = C.uint32_t(w.Lcore)
		if o.Pool != nil {
			lc.pool = (*C.struct_rte_mempool)(o.Pool.Ptr())
		}
		d.lcores = append(d.lcores, lc)
		if err := setPark(lc, o.ParkHold, o.ParkSize, o.ParkUDP); err != nil {
			d.freeLcores()
			return err
		}
		u, err := newUDPLcore(o.LearnRing)
		if err != nil {
			d.freeLcores()
			return err
		}
		lc.udp = u
	}
	for i, w := range workers {
		if err := dpdk.Launch(unsafe.Pointer(C.homing_lcore_main), unsafe.Pointer(d.lcores[i]), w.Lcore); err != nil {
			C.homing_dp_stop(d.dp)
			for _, v := range workers[:i] {
				dpdk.Wait(v.Lcore)
			}
			d.freeLcores()
			return err
		}
	}
	d.workers = workers
	d.running.Store(true)
	return nil
}

// Running reports whether the lcores run (between Start and Stop).
func (d *DataPlane) Running() bool { return d.running.Load() }

// Stop asks every lcore to return and waits for them. Counters stay readable.
func (d *DataPlane) Stop() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.running.Load() {
		return ErrNotRunning
	}
	C.homing_dp_stop(d.dp)
	var errs []error
	for _, w := range d.workers {
		if ret := dpdk.Wait(w.Lcore); ret != 0 {
			errs = append(errs, fmt.Errorf("lcore %d returned %d (QSBR registration failed?)", w.Lcore, ret))
		}
	}
	d.running.Store(false)
	return errors.Join(errs...)
}

func (d *DataPlane) freeLcores() {
	if d.capture != nil {
		d.disarm(d.capture) // its Close frees the rings
	}
	for _, lc := range d.lcores {
		freeLcore(lc)
	}
	d.lcores = nil
}

// Close stops the lcores if needed and frees the data plane.
func (d *DataPlane) Close() {
	if d.running.Load() {
		_ = d.Stop()
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.freeLcores()
	if d.dp != nil {
		C.homing_dp_free(d.dp)
		d.dp = nil
	}
}
