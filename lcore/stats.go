package lcore

/*
#include "pipeline.h"
*/
import "C"

import "unsafe"

// Stats are one lcore's counters (see struct homing_lcore_stats in pipeline.h).
type Stats struct {
	Lcore                                        uint
	RxNIC, FromKernel, TxNIC, TxTAP              uint64
	Redirect, Local, Miss, DeadOwner, SYN, Decap uint64
	GUEBad, Other, Frag, IPOpt, Malformed        uint64
	// GUE refused (dropped, each also in GUEBad), by reason: the outer source is not a
	// live peer's tunnel address; the GUE header or UDP length is invalid; the inner
	// packet is truncated or inconsistent, of another protocol than TCP, UDP or an ICMP
	// error, or not to a VIP.
	GUEUnknownSource, GUEMalformed, GUEInnerMalformed, GUEInnerProto, GUEInnerNotVIP uint64
	NoRedirect                                                                       uint64
	// UDPPlain: UDP to a VIP port that is not a session port, not in the table (to the
	// kernel at once); QUICInitial: QUIC Initial packets on a QUIC port (to the kernel).
	UDPPlain, QUICInitial                        uint64
	DropNICTx, DropTAPTx, DropHeadroom           uint64
	Loops, IdleLoops, Sleeps, BusyCycles, Cycles uint64
	TemplateRetries                              uint64
	ParkIn, ParkRedirect, ParkLocal, ParkExpired uint64
	ParkFull                                     uint64
	// ParkWarmDrop: misses dropped (park full) while the daemon warmed up, instead of
	// going to the kernel; counted in Miss too.
	ParkWarmDrop uint64
	// ParkUDPIn and ParkUDPFull: the UDP session packets of ParkIn and ParkFull.
	ParkUDPIn, ParkUDPFull uint64
	// TooBig: packets of a live peer's session too big for the tunnel (a class); each
	// is answered (ICMPTooBig) or dropped (DropTooBig).
	TooBig, DropTooBig, ICMPTooBig uint64
	// FragTunnelled: fragments of too-big IPv4 packets without DF, tunnelled.
	FragTunnelled uint64
	// MSSClamped: SYN-ACKs from a VIP whose MSS option was lowered (kernel side).
	MSSClamped uint64
}

// ToKernel is the number of NIC packets handed to the kernel (every class but
// redirected, too big and refused GUE).
func (s Stats) ToKernel() uint64 {
	return s.Local + s.Miss - s.ParkWarmDrop + s.DeadOwner + s.SYN + s.Decap + s.Other + s.Frag + s.IPOpt + s.Malformed + s.NoRedirect + s.UDPPlain + s.QUICInitial
}

// GUERefused is the GUE refusals by reason, as exported (the reason label of
// homing_lcore_gue_refused_total, "gue_<reason>" in homingctl stats).
func (s Stats) GUERefused() map[string]uint64 {
	return map[string]uint64{"unknown_source": s.GUEUnknownSource, "malformed": s.GUEMalformed,
		"inner_malformed": s.GUEInnerMalformed, "inner_proto": s.GUEInnerProto, "inner_not_vip": s.GUEInnerNotVIP}
}

// Add sums two counter sets (Lcore is kept from s).
func (s Stats) Add(o Stats) Stats {
	return Stats{s.Lcore,
		s.RxNIC + o.RxNIC, s.FromKernel + o.FromKernel, s.TxNIC + o.TxNIC, s.TxTAP + o.TxTAP,
		s.Redirect + o.Redirect, s.Local + o.Local, s.Miss + o.Miss, s.DeadOwner + o.DeadOwner, s.SYN + o.SYN, s.Decap + o.Decap,
		s.GUEBad + o.GUEBad, s.Other + o.Other, s.Frag + o.Frag, s.IPOpt + o.IPOpt, s.Malformed + o.Malformed,
		s.GUEUnknownSource + o.GUEUnknownSource, s.GUEMalformed + o.GUEMalformed, s.GUEInnerMalformed + o.GUEInnerMalformed,
		s.GUEInnerProto + o.GUEInnerProto, s.GUEInnerNotVIP + o.GUEInnerNotVIP,
		s.NoRedirect + o.NoRedirect, s.UDPPlain + o.UDPPlain, s.QUICInitial + o.QUICInitial,
		s.DropNICTx + o.DropNICTx, s.DropTAPTx + o.DropTAPTx, s.DropHeadroom + o.DropHeadroom,
		s.Loops + o.Loops, s.IdleLoops + o.IdleLoops, s.Sleeps + o.Sleeps, s.BusyCycles + o.BusyCycles, s.Cycles + o.Cycles,
		s.TemplateRetries + o.TemplateRetries,
		s.ParkIn + o.ParkIn, s.ParkRedirect + o.ParkRedirect, s.ParkLocal + o.ParkLocal, s.ParkExpired + o.ParkExpired,
		s.ParkFull + o.ParkFull, s.ParkWarmDrop + o.ParkWarmDrop, s.ParkUDPIn + o.ParkUDPIn, s.ParkUDPFull + o.ParkUDPFull,
		s.TooBig + o.TooBig, s.DropTooBig + o.DropTooBig, s.ICMPTooBig + o.ICMPTooBig, s.FragTunnelled + o.FragTunnelled,
		s.MSSClamped + o.MSSClamped}
}

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
		GUEUnknownSource: uint64(c.gue_unknown_source), GUEMalformed: uint64(c.gue_malformed),
		GUEInnerMalformed: uint64(c.gue_inner_malformed), GUEInnerProto: uint64(c.gue_inner_proto),
		GUEInnerNotVIP: uint64(c.gue_inner_not_vip),
		UDPPlain:       uint64(c.cls_udp_plain), QUICInitial: uint64(c.cls_quic_initial),
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
