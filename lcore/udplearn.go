package lcore

/*
#include <stdlib.h>
#include "pipeline.h"
#include "udplearn.h"
*/
import "C"

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"sync/atomic"
	"unsafe"

	"github.com/homing-dev/homing/internal/counters"
	"github.com/homing-dev/homing/session"
)

// UDP session learning (udplearn.h): each lcore reports the UDP flows its kernel serves
// on a VIP session port on a ring; Go drains the rings (DrainLearned), advances the
// refresh tick (LearnTick) so that live flows are reported again, and reads the
// learning and QUIC CID routing counters (UDPStats).

// MaxLearnRing is the largest Options.LearnRing.
const MaxLearnRing = C.HOMING_LEARN_RING_MAX

// learnFilter is the size of an lcore's recently-reported filter for a ring of n records:
// sixteen slots per record (8 bytes each), at least 4096, at most HOMING_LEARN_FILTER_MAX
// (65,536: 512 KiB for the daemon's ring of 4,096). The filter is direct-mapped: two live
// flows on one slot both report once per packet instead of once per tick, which is rare
// while the flows of an lcore are well below the slots.
func learnFilter(n int) int {
	return min(max(16*n, 4096), C.HOMING_LEARN_FILTER_MAX)
}

// newUDPLcore allocates an lcore's learning state (ring 0: CID counters only).
func newUDPLcore(ring int) (*C.struct_homing_udp_lcore, error) {
	if ring < 0 || ring > MaxLearnRing || ring&(ring-1) != 0 {
		return nil, fmt.Errorf("lcore: learn ring %d: not a power of two up to %d", ring, MaxLearnRing)
	}
	u := C.homing_udp_lcore_create(C.uint32_t(ring), C.uint32_t(learnFilter(ring)))
	if u == nil {
		return nil, errors.New("lcore: out of memory for UDP learning")
	}
	return u, nil
}

// UDPStats are the counters of UDP session learning and QUIC CID routing, summed over
// lcores (struct homing_udp_stats), declared in internal/counters.
type UDPStats = counters.UDP

var udpFromC = counters.NewFromC(reflect.TypeFor[C.struct_homing_udp_stats](), reflect.TypeFor[UDPStats]())

func udpStatsOf(u *C.struct_homing_udp_lcore) UDPStats {
	var s UDPStats
	if u != nil {
		udpFromC.Copy(&s, u.stats)
	}
	return s
}

// UDPStats sums the lcores' learning and CID counters of the last Start.
func (d *DataPlane) UDPStats() UDPStats {
	d.mu.Lock()
	defer d.mu.Unlock()
	var s UDPStats
	for _, lc := range d.lcores {
		s = s.Add(udpStatsOf(lc.udp))
	}
	return s
}

// drain appends the records on u's ring to dst as keys.
func drain(u *C.struct_homing_udp_lcore, buf *C.struct_homing_learn_rec, max int, dst []session.Key) []session.Key {
	if u == nil || u.ring == nil {
		return dst
	}
	for {
		n := int(C.homing_udp_learn_drain(u, buf, C.uint32_t(max)))
		recs := unsafe.Slice(buf, n)
		for i := range recs {
			dst = append(dst, recKey(&recs[i]))
			if recs[i].cid_len != 0 {
				// The server CID, right after its flow (udpLearner ties them).
				cid := unsafe.Slice((*byte)(unsafe.Pointer(&recs[i].cid[0])), int(recs[i].cid_len))
				if k, ok := session.CIDKey(cid, dst[len(dst)-1].DstPort); ok {
					dst = append(dst, k)
				}
			}
		}
		if n < max {
			return dst
		}
	}
}

// recKey decodes a learned record (network-order C key) into a session key.
func recKey(r *C.struct_homing_learn_rec) session.Key {
	b := unsafe.Slice((*byte)(unsafe.Pointer(&r.anon0[0])), 40)
	if r.af == 4 {
		return session.Key{Src: netip.AddrFrom4([4]byte(b[0:4])), Dst: netip.AddrFrom4([4]byte(b[4:8])),
			SrcPort: binary.BigEndian.Uint16(b[8:]), DstPort: binary.BigEndian.Uint16(b[10:]), Proto: b[12]}
	}
	return session.Key{Src: netip.AddrFrom16([16]byte(b[0:16])), Dst: netip.AddrFrom16([16]byte(b[16:32])),
		SrcPort: binary.BigEndian.Uint16(b[32:]), DstPort: binary.BigEndian.Uint16(b[34:]), Proto: b[36]}
}

const drainBatch = 256

// DrainLearned appends the flows the lcores reported since the last call to dst (one
// caller at a time: each ring has one consumer). A report with a server connection ID
// (UDPPort.CIDLen) appends the flow, then the CID's key (session.CIDKey).
func (d *DataPlane) DrainLearned(dst []session.Key) []session.Key {
	buf := (*C.struct_homing_learn_rec)(C.calloc(drainBatch, C.sizeof_struct_homing_learn_rec))
	defer C.free(unsafe.Pointer(buf))
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, lc := range d.lcores {
		dst = drain(lc.udp, buf, drainBatch, dst)
	}
	return dst
}

// LearnTick starts a new refresh period: every flow still alive is reported once more.
func (d *DataPlane) LearnTick() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, lc := range d.lcores {
		tick(lc.udp)
	}
}

func tick(u *C.struct_homing_udp_lcore) {
	if u == nil {
		return
	}
	p := (*uint32)(unsafe.Pointer(&u.tick))
	t := atomic.LoadUint32(p) + 1
	if t == 0 {
		t = 1 // 0 marks an empty filter slot
	}
	atomic.StoreUint32(p, t)
}

// QUICDCIDHost is the data plane's reading of a QUIC packet (a UDP payload): the host
// id in its destination connection ID if the packet is routable by it, else 0 (see
// homing_quic_dcid_host). For tests and the fuzzer.
func QUICDCIDHost(p []byte) uint16 {
	if len(p) == 0 {
		return uint16(C.homing_quic_dcid_host(nil, 0))
	}
	c := C.CBytes(p)
	defer C.free(c)
	return uint16(C.homing_quic_dcid_host((*C.uint8_t)(c), C.uint32_t(len(p))))
}

// QUICShortMin is the shortest short-header packet the data plane routes by its DCID.
const QUICShortMin = C.HOMING_QUIC_SHORT_MIN

// QUICSCID is the data plane's reading of a server's QUIC packet (a UDP payload) on a
// port whose CIDs are want bytes long: the SCID it learns, or nil (see homing_quic_scid).
// For tests and the fuzzer.
func QUICSCID(p []byte, want int) []byte {
	return quicCID(p, want, true)
}

// QUICDCID is the data plane's reading of a client's QUIC packet on such a port: the
// DCID it looks up as a learnt CID, or nil (see homing_quic_dcid).
func QUICDCID(p []byte, want int) []byte {
	return quicCID(p, want, false)
}

func quicCID(p []byte, want int, server bool) []byte {
	if want < 0 || want > C.HOMING_QUIC_CID_MAX {
		return nil
	}
	c := C.CBytes(append([]byte{0}, p...)) // never empty
	defer C.free(c)
	b := (*C.uint8_t)(unsafe.Add(c, 1))
	var r *C.uint8_t
	if server {
		r = C.homing_quic_scid(b, C.uint32_t(len(p)), C.uint32_t(want))
	} else {
		r = C.homing_quic_dcid(b, C.uint32_t(len(p)), C.uint32_t(want))
	}
	if r == nil {
		return nil
	}
	off := uintptr(unsafe.Pointer(r)) - uintptr(unsafe.Pointer(b))
	if off+uintptr(want) > uintptr(len(p)) {
		panic(fmt.Sprintf("lcore: CID at %d+%d past a packet of %d bytes", off, want, len(p)))
	}
	return bytes.Clone(p[off : off+uintptr(want)])
}
