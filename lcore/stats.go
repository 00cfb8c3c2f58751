package lcore

/*
#include "pipeline.h"
*/
import "C"

import (
	"unsafe"

	"github.com/homing-dev/homing/internal/counters"
)

// Stats are one lcore's counters, declared with their metric tags in
// internal/counters (pure Go, for the metrics package); statsOf copies them from
// struct homing_lcore_stats (pipeline.h).
type Stats = counters.Lcore

func statsOf(lcore uint, p *C.struct_homing_lcore_stats) Stats {
	// Copy first: each field is an aligned 64-bit word written by one lcore.
	c := *(*C.struct_homing_lcore_stats)(unsafe.Pointer(p))
	return Stats{
		Lcore: lcore,
		RxNIC: uint64(c.rx_nic), FromKernel: uint64(c.from_kernel), TxNIC: uint64(c.tx_nic), TxTAP: uint64(c.tx_tap),
		Redirect: uint64(c.cls_redirect), Local: uint64(c.cls_local), Miss: uint64(c.cls_miss),
		DeadOwner: uint64(c.cls_dead_owner), SYN: uint64(c.cls_syn), Decap: uint64(c.cls_decap),
		GUEBad: uint64(c.cls_gue_bad), Other: uint64(c.cls_other), Frag: uint64(c.cls_frag),
		IPOpt: uint64(c.cls_ipopt), Malformed: uint64(c.cls_malformed), NoRedirect: uint64(c.cls_no_redirect),
		UDPPlain: uint64(c.cls_udp_plain), QUICInitial: uint64(c.cls_quic_initial),
		DropNICTx: uint64(c.drop_nic_tx), DropTAPTx: uint64(c.drop_tap_tx), DropHeadroom: uint64(c.drop_headroom),
		Loops: uint64(c.loops), IdleLoops: uint64(c.idle_loops), Sleeps: uint64(c.sleeps),
		BusyCycles: uint64(c.busy_cycles), Cycles: uint64(c.total_cycles), TemplateRetries: uint64(c.tmpl_retries),
		ParkIn: uint64(c.park_in), ParkRedirect: uint64(c.park_redirect), ParkLocal: uint64(c.park_local),
		ParkExpired: uint64(c.park_expired), ParkFull: uint64(c.park_full), ParkWarmDrop: uint64(c.park_warm_drop),
		ParkUDPIn: uint64(c.park_udp_in), ParkUDPFull: uint64(c.park_udp_full),
		TooBig: uint64(c.cls_too_big), DropTooBig: uint64(c.drop_too_big), ICMPTooBig: uint64(c.icmp_too_big),
		FragTunnelled: uint64(c.frag_tunnelled), MSSClamped: uint64(c.mss_clamped),
	}
}

// Stats returns the counters of every lcore of the last Start (still readable after Stop).
func (d *DataPlane) Stats() []Stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]Stats, 0, len(d.lcores))
	for i, lc := range d.lcores {
		out = append(out, statsOf(d.workers[i].Lcore, &lc.stats))
	}
	return out
}
