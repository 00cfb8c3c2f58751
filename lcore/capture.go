package lcore

/*
#include <stdlib.h>
#include <string.h>
#include "pipeline.h"
#include "capture.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"
)

// Capture points: where on an lcore a packet is copied (see capture.h).
const (
	NICRx = C.HOMING_CAP_NIC_RX
	NICTx = C.HOMING_CAP_NIC_TX
	TAPRx = C.HOMING_CAP_TAP_RX
	TAPTx = C.HOMING_CAP_TAP_TX
)

// PointName names a capture point: nic-rx, nic-tx, tap-rx, tap-tx.
func PointName(p uint8) string {
	switch p {
	case NICRx:
		return "nic-rx"
	case NICTx:
		return "nic-tx"
	case TAPRx:
		return "tap-rx"
	case TAPTx:
		return "tap-tx"
	}
	return "point-" + strconv.Itoa(int(p))
}

// Points returns the capture points of a port ("nic", "tap" or "all") and a direction
// ("rx", "tx" or "both").
func Points(port, dir string) (uint8, error) {
	var rx, tx uint8
	switch port {
	case "nic":
		rx, tx = NICRx, NICTx
	case "tap":
		rx, tx = TAPRx, TAPTx
	case "all", "":
		rx, tx = NICRx|TAPRx, NICTx|TAPTx
	default:
		return 0, fmt.Errorf("capture port %q: want nic, tap or all", port)
	}
	switch dir {
	case "rx":
		return rx, nil
	case "tx":
		return tx, nil
	case "both", "":
		return rx | tx, nil
	}
	return 0, fmt.Errorf("capture direction %q: want rx, tx or both", dir)
}

// Fates: what the pipeline did with a packet.
var fateNames = [...]string{C.HOMING_FATE_KERNEL: "kernel", C.HOMING_FATE_NIC: "nic", C.HOMING_FATE_PARKED: "parked",
	C.HOMING_FATE_DROP: "drop", C.HOMING_FATE_TOOBIG: "too_big"}

// FateName names a record's fate.
func FateName(f uint8) string {
	if int(f) < len(fateNames) {
		return fateNames[f]
	}
	return "fate-" + strconv.Itoa(int(f))
}

var statsZero C.struct_homing_lcore_stats

func word(off uintptr) uint8 { return uint8(off / 8) }

// classWords maps the class names of the filter and the records to the stats word
// the pipeline counts the class in.
var classWords = map[string]uint8{
	"redirected":   word(unsafe.Offsetof(statsZero.cls_redirect)),
	"local":        word(unsafe.Offsetof(statsZero.cls_local)),
	"miss":         word(unsafe.Offsetof(statsZero.cls_miss)),
	"dead_owner":   word(unsafe.Offsetof(statsZero.cls_dead_owner)),
	"syn":          word(unsafe.Offsetof(statsZero.cls_syn)),
	"decap":        word(unsafe.Offsetof(statsZero.cls_decap)),
	"gue_bad":      word(unsafe.Offsetof(statsZero.cls_gue_bad)),
	"other":        word(unsafe.Offsetof(statsZero.cls_other)),
	"frag":         word(unsafe.Offsetof(statsZero.cls_frag)),
	"ipopt":        word(unsafe.Offsetof(statsZero.cls_ipopt)),
	"malformed":    word(unsafe.Offsetof(statsZero.cls_malformed)),
	"no_redirect":  word(unsafe.Offsetof(statsZero.cls_no_redirect)),
	"udp_plain":    word(unsafe.Offsetof(statsZero.cls_udp_plain)),
	"quic_initial": word(unsafe.Offsetof(statsZero.cls_quic_initial)),
	"too_big":      word(unsafe.Offsetof(statsZero.cls_too_big)),
	"kernel":       word(unsafe.Offsetof(statsZero.from_kernel)),
}

// ClassNames lists the classes a filter may name, sorted.
func ClassNames() []string {
	var n []string
	for k := range classWords {
		n = append(n, k)
	}
	slices.Sort(n)
	return n
}

// ClassName names the class of stats word w.
func ClassName(w uint8) string {
	for k, v := range classWords {
		if v == w {
			return k
		}
	}
	return "class-" + strconv.Itoa(int(w))
}

// Direction of an address or port condition.
const (
	Either = C.HOMING_CAP_EITHER
	Src    = C.HOMING_CAP_SRC
	Dst    = C.HOMING_CAP_DST
)

// AddrCond is one address condition of a filter.
type AddrCond struct {
	Addr netip.Addr
	Dir  uint8
}

// PortCond is one port condition of a filter.
type PortCond struct {
	Port uint16
	Dir  uint8
}

// Filter selects the packets a capture takes: every condition must hold. A GUE packet
// to this host's tunnel port matches if its outer or its inner headers match.
type Filter struct {
	Proto   uint8 // 0: any
	Addrs   []AddrCond
	Ports   []PortCond
	Classes []string // empty: every class
	// Bidir: addresses and ports also match with source and destination swapped (a
	// flow's replies).
	Bidir bool
}

// Limits of a filter.
const (
	MaxFilterAddrs = C.HOMING_CAP_MAX_ADDR
	MaxFilterPorts = C.HOMING_CAP_MAX_PORT
)

// ParseFilter parses the capture filter syntax: terms joined by "and" (there is no "or"
// or "not"), each one of
//
//	host ADDR | src ADDR | dst ADDR | src host ADDR | dst host ADDR
//	port N | src port N | dst port N
//	tcp | udp | icmp | icmp6 | proto N
//	class NAME[,NAME...]              (see ClassNames)
//	flow PROTO SRC:PORT DST:PORT      (the 5-tuple, both directions)
//
// An empty filter takes every packet.
func ParseFilter(s string) (Filter, error) {
	var f Filter
	toks := strings.Fields(s)
	if len(toks) == 0 {
		return f, nil
	}
	// terms between "and"s
	var terms [][]string
	cur := []string{}
	for _, t := range toks {
		switch strings.ToLower(t) {
		case "or", "not", "||", "!":
			return f, fmt.Errorf("filter %q: %q: terms can only be joined by \"and\" (no or, no not)", s, t)
		}
		if strings.EqualFold(t, "and") || t == "&&" {
			if len(cur) == 0 {
				return f, fmt.Errorf("filter %q: \"and\" without a term before it", s)
			}
			terms = append(terms, cur)
			cur = []string{}
			continue
		}
		cur = append(cur, t)
	}
	if len(cur) == 0 {
		return f, fmt.Errorf("filter %q: ends with \"and\"", s)
	}
	terms = append(terms, cur)
	for _, t := range terms {
		if err := f.term(t); err != nil {
			return Filter{}, fmt.Errorf("filter %q: %w", s, err)
		}
	}
	if len(f.Addrs) > MaxFilterAddrs || len(f.Ports) > MaxFilterPorts {
		return Filter{}, fmt.Errorf("filter %q: at most %d addresses and %d ports", s, MaxFilterAddrs, MaxFilterPorts)
	}
	return f, nil
}

func (f *Filter) setProto(p uint8) error {
	if f.Proto != 0 && f.Proto != p {
		return fmt.Errorf("two protocols (%d and %d) never match together", f.Proto, p)
	}
	f.Proto = p
	return nil
}

func protoNum(s string) (uint8, bool) {
	switch strings.ToLower(s) {
	case "tcp":
		return 6, true
	case "udp":
		return 17, true
	case "icmp":
		return 1, true
	case "icmp6":
		return 58, true
	}
	return 0, false
}

func (f *Filter) term(t []string) error {
	dir := uint8(Either)
	w := strings.ToLower(t[0])
	if (w == "src" || w == "dst") && len(t) >= 2 {
		dir = Src
		if w == "dst" {
			dir = Dst
		}
		t = t[1:]
		if w2 := strings.ToLower(t[0]); w2 != "host" && w2 != "port" {
			t = append([]string{"host"}, t...)
		}
		w = strings.ToLower(t[0])
	}
	arg := func() (string, error) {
		if len(t) != 2 {
			return "", fmt.Errorf("%q: want %s and one value", strings.Join(t, " "), t[0])
		}
		return t[1], nil
	}
	switch w {
	case "host":
		a, err := arg()
		if err != nil {
			return err
		}
		ad, err := netip.ParseAddr(a)
		if err != nil {
			return fmt.Errorf("host %q: not an IP address", a)
		}
		f.Addrs = append(f.Addrs, AddrCond{Addr: ad.Unmap(), Dir: dir})
	case "port":
		a, err := arg()
		if err != nil {
			return err
		}
		p, err := strconv.ParseUint(a, 10, 16)
		if err != nil {
			return fmt.Errorf("port %q: not a port number", a)
		}
		f.Ports = append(f.Ports, PortCond{Port: uint16(p), Dir: dir})
	case "tcp", "udp", "icmp", "icmp6":
		if len(t) != 1 {
			return fmt.Errorf("%q: %s takes no value", strings.Join(t, " "), w)
		}
		p, _ := protoNum(w)
		return f.setProto(p)
	case "proto":
		a, err := arg()
		if err != nil {
			return err
		}
		p, ok := protoNum(a)
		if !ok {
			n, err := strconv.ParseUint(a, 10, 8)
			if err != nil || n == 0 {
				return fmt.Errorf("proto %q: want tcp, udp, icmp, icmp6 or 1..255", a)
			}
			p = uint8(n)
		}
		return f.setProto(p)
	case "class":
		a, err := arg()
		if err != nil {
			return err
		}
		for _, c := range strings.Split(a, ",") {
			if _, ok := classWords[c]; !ok {
				return fmt.Errorf("class %q: want one of %s", c, strings.Join(ClassNames(), ", "))
			}
			f.Classes = append(f.Classes, c)
		}
	case "flow":
		if len(t) != 4 {
			return fmt.Errorf("%q: want flow PROTO SRC:PORT DST:PORT", strings.Join(t, " "))
		}
		p, ok := protoNum(t[1])
		if !ok || (p != 6 && p != 17) {
			return fmt.Errorf("flow protocol %q: want tcp or udp", t[1])
		}
		src, err := netip.ParseAddrPort(t[2])
		if err != nil {
			return fmt.Errorf("flow source %q: want ADDR:PORT", t[2])
		}
		dst, err := netip.ParseAddrPort(t[3])
		if err != nil {
			return fmt.Errorf("flow destination %q: want ADDR:PORT", t[3])
		}
		if src.Addr().Unmap().Is4() != dst.Addr().Unmap().Is4() {
			return fmt.Errorf("flow %s -> %s: addresses of two families", src, dst)
		}
		if err := f.setProto(p); err != nil {
			return err
		}
		f.Addrs = append(f.Addrs, AddrCond{src.Addr().Unmap(), Src}, AddrCond{dst.Addr().Unmap(), Dst})
		f.Ports = append(f.Ports, PortCond{src.Port(), Src}, PortCond{dst.Port(), Dst})
		f.Bidir = true
	default:
		return fmt.Errorf("unknown term %q (host, src, dst, port, tcp, udp, icmp, icmp6, proto, class, flow)", t[0])
	}
	return nil
}

// cfilter is the C form of f (points are set by the caller).
func (f Filter) cfilter() (C.struct_homing_cap_filter, error) {
	var cf C.struct_homing_cap_filter
	if len(f.Addrs) > MaxFilterAddrs || len(f.Ports) > MaxFilterPorts {
		return cf, fmt.Errorf("lcore: filter: at most %d addresses and %d ports", MaxFilterAddrs, MaxFilterPorts)
	}
	cf.proto = C.uint8_t(f.Proto)
	for i, a := range f.Addrs {
		ad := a.Addr.Unmap()
		ca := &cf.addr[i]
		ca.dir = C.uint8_t(a.Dir)
		if ad.Is4() {
			ca.af = 4
			b := ad.As4()
			for j := range b {
				ca.a[j] = C.uint8_t(b[j])
			}
		} else {
			ca.af = 6
			b := ad.As16()
			for j := range b {
				ca.a[j] = C.uint8_t(b[j])
			}
		}
	}
	cf.n_addr = C.uint8_t(len(f.Addrs))
	for i, p := range f.Ports {
		cf.port[i].port = C.uint16_t(p.Port>>8 | p.Port<<8)
		cf.port[i].dir = C.uint8_t(p.Dir)
	}
	cf.n_port = C.uint8_t(len(f.Ports))
	for _, c := range f.Classes {
		w, ok := classWords[c]
		if !ok {
			return cf, fmt.Errorf("lcore: filter: unknown class %q", c)
		}
		cf.classes |= 1 << w
	}
	if f.Bidir {
		cf.bidir = 1
	}
	return cf, nil
}

// MatchFrame tells whether the filter's addresses, ports and protocol match a frame, as
// the lcores decide it (for tests).
func (d *DataPlane) MatchFrame(f Filter, frame []byte) (bool, error) {
	cf, err := f.cfilter()
	if err != nil {
		return false, err
	}
	p := C.CBytes(frame)
	defer C.free(p)
	return C.homing_cap_match(d.dp, &cf, (*C.uint8_t)(p), C.uint32_t(len(frame))) != 0, nil
}

// CaptureConfig arms a capture.
type CaptureConfig struct {
	Filter Filter
	Points uint8 // NICRx | NICTx | TAPRx | TAPTx bits
	// Snaplen is the bytes copied per packet (at most MaxSnaplen); 0 copies none (a trace).
	Snaplen int
	// Count is the packets to take over all lcores (1..MaxCaptureCount).
	Count int
	// Trace looks each taken TCP/UDP packet of a VIP flow up in the table.
	Trace bool
	// Ring is each lcore's ring size in records (a power of two; 0: 1024).
	Ring int
}

// Capture limits.
const (
	MaxSnaplen      = 16384
	MaxCaptureCount = 1 << 30
)

// Record is one packet taken by a capture.
type Record struct {
	Time    time.Time
	Point   uint8
	Class   string
	Fate    string // NIC rx, TAP tx, NIC tx of NIC packets: what the pipeline did
	Lcore   uint16
	PortID  uint16
	Queue   uint16
	WireLen int
	Data    []byte // the first Snaplen bytes
	// Trace: the session's lookup ("hit", "miss" or "" when not looked up) and, on a hit,
	// its owner and epoch.
	Lookup string
	Owner  uint16
	Epoch  uint64
}

// ErrCaptureBusy: a capture is already armed on the data plane.
var ErrCaptureBusy = errors.New("lcore: a capture is already running")

// Capture is an armed capture. Drain takes its records; Stop disarms it.
type Capture struct {
	d      *DataPlane
	c      *C.struct_homing_cap
	lcores []*C.struct_homing_lcore
	rings  []*C.struct_homing_cap_ring
	count  int
	taken  int
	sync   bool // lcores run: disarming waits for a grace period
	done   bool
}

// StartCapture arms a capture on every running lcore.
func (d *DataPlane) StartCapture(cfg CaptureConfig) (*Capture, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.running.Load() {
		return nil, ErrNotRunning
	}
	return d.arm(cfg, d.lcores, true)
}

func (d *DataPlane) arm(cfg CaptureConfig, lcores []*C.struct_homing_lcore, sync bool) (*Capture, error) {
	if d.capture != nil {
		return nil, ErrCaptureBusy
	}
	if cfg.Snaplen < 0 || cfg.Snaplen > MaxSnaplen {
		return nil, fmt.Errorf("lcore: snap length %d out of 0..%d", cfg.Snaplen, MaxSnaplen)
	}
	if cfg.Count < 1 || cfg.Count > MaxCaptureCount {
		return nil, fmt.Errorf("lcore: capture count %d out of 1..%d", cfg.Count, MaxCaptureCount)
	}
	if cfg.Points == 0 || cfg.Points&^(NICRx|NICTx|TAPRx|TAPTx) != 0 {
		return nil, fmt.Errorf("lcore: capture points %#x", cfg.Points)
	}
	ring := cfg.Ring
	if ring == 0 {
		ring = 1024
	}
	if ring < 1 || ring > 1<<16 || ring&(ring-1) != 0 {
		return nil, fmt.Errorf("lcore: capture ring %d: a power of two up to 65536", ring)
	}
	cf, err := cfg.Filter.cfilter()
	if err != nil {
		return nil, err
	}
	cf.points = C.uint8_t(cfg.Points)
	c := (*C.struct_homing_cap)(C.aligned_alloc(64, C.sizeof_struct_homing_cap))
	if c == nil {
		return nil, errors.New("lcore: out of memory for the capture")
	}
	*c = C.struct_homing_cap{}
	c.f = cf
	c.snaplen = C.uint32_t(cfg.Snaplen)
	if cfg.Trace {
		c.trace = 1
	}
	c.remaining = C.int64_t(cfg.Count)
	cp := &Capture{d: d, c: c, count: cfg.Count, sync: sync}
	slot := (C.sizeof_struct_homing_cap_rec + cfg.Snaplen + 63) &^ 63
	for range lcores {
		r := (*C.struct_homing_cap_ring)(C.aligned_alloc(64, C.sizeof_struct_homing_cap_ring))
		if r == nil {
			cp.free()
			return nil, errors.New("lcore: out of memory for the capture")
		}
		*r = C.struct_homing_cap_ring{}
		cp.rings = append(cp.rings, r)
		r.size = C.uint32_t(ring)
		r.slot = C.uint32_t(slot)
		r.mem = (*C.uint8_t)(C.calloc(C.size_t(ring), C.size_t(slot)))
		r.stage = (*C.uint8_t)(C.calloc(C.HOMING_BURST, C.size_t(slot)))
		if r.mem == nil || r.stage == nil {
			cp.free()
			return nil, errors.New("lcore: out of memory for the capture rings")
		}
	}
	for i, lc := range lcores {
		lc.cap_ring = cp.rings[i]
		atomic.StorePointer((*unsafe.Pointer)(unsafe.Pointer(&lc.cap)), unsafe.Pointer(c))
	}
	cp.lcores = lcores
	d.capture = cp
	return cp, nil
}

// Full reports whether the capture took Count packets.
func (cp *Capture) Full() bool {
	return cp.taken >= cp.count || atomic.LoadInt64((*int64)(unsafe.Pointer(&cp.c.remaining))) <= 0 && cp.pending() == 0
}

func (cp *Capture) pending() int {
	n := 0
	for _, r := range cp.rings {
		n += int(atomic.LoadUint32((*uint32)(unsafe.Pointer(&r.head))) - atomic.LoadUint32((*uint32)(unsafe.Pointer(&r.tail))))
	}
	return n
}

// Lost is the number of matching packets not taken because an lcore's ring was full.
func (cp *Capture) Lost() uint64 {
	var n uint64
	for _, r := range cp.rings {
		n += uint64(atomic.LoadUint32((*uint32)(unsafe.Pointer(&r.lost))))
	}
	return n
}

// Drain calls fn for each record the lcores wrote since the last call, lcore by lcore,
// and returns how many there were.
func (cp *Capture) Drain(fn func(Record)) int {
	n := 0
	for _, r := range cp.rings {
		head := atomic.LoadUint32((*uint32)(unsafe.Pointer(&r.head)))
		tail := uint32(r.tail)
		for ; tail != head; tail++ {
			p := unsafe.Add(unsafe.Pointer(r.mem), uintptr(tail&uint32(r.size-1))*uintptr(r.slot))
			rec := (*C.struct_homing_cap_rec)(p)
			out := Record{Time: time.Unix(0, int64(rec.ts_ns)), Point: uint8(rec.point), Class: ClassName(uint8(rec.cls)),
				Lcore: uint16(rec.lcore), PortID: uint16(rec.port_id), Queue: uint16(rec.queue), WireLen: int(rec.wire_len),
				Fate: FateName(uint8(rec.fate))}
			switch rec.lookup {
			case C.HOMING_CAP_LOOKUP_HIT:
				out.Lookup = "hit"
				out.Owner = uint16(rec.val & 0xffff)
				out.Epoch = uint64(rec.val) >> 16
			case C.HOMING_CAP_LOOKUP_MISS:
				out.Lookup = "miss"
			}
			if rec.cap_len != 0 {
				out.Data = C.GoBytes(unsafe.Add(p, C.sizeof_struct_homing_cap_rec), C.int(rec.cap_len))
			}
			if cp.taken < cp.count {
				cp.taken++
				fn(out)
				n++
			}
		}
		atomic.StoreUint32((*uint32)(unsafe.Pointer(&r.tail)), tail)
	}
	return n
}

// Stop disarms the capture: once it returns no lcore writes to the rings, and a last
// Drain takes what they hold. Stop is idempotent; Close frees the capture.
func (cp *Capture) Stop() {
	cp.d.mu.Lock()
	defer cp.d.mu.Unlock()
	cp.d.disarm(cp)
}

// disarm clears every lcore's capture pointer and waits for the lcores (d.mu held).
func (d *DataPlane) disarm(cp *Capture) {
	if cp.done {
		return
	}
	for _, lc := range cp.lcores {
		atomic.StorePointer((*unsafe.Pointer)(unsafe.Pointer(&lc.cap)), nil)
	}
	if cp.sync && d.running.Load() {
		C.homing_cap_sync(d.dp)
	}
	for _, lc := range cp.lcores {
		lc.cap_ring = nil
	}
	cp.done = true
	if d.capture == cp {
		d.capture = nil
	}
}

// Close stops the capture and frees its rings (records not drained are lost).
func (cp *Capture) Close() {
	cp.Stop()
	cp.free()
}

func (cp *Capture) free() {
	for _, r := range cp.rings {
		C.free(unsafe.Pointer(r.mem))
		C.free(unsafe.Pointer(r.stage))
		C.free(unsafe.Pointer(r))
	}
	cp.rings = nil
	C.free(unsafe.Pointer(cp.c))
	cp.c = nil
}
