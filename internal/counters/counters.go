// Package counters declares the counters of the cgo packages (lcore, table, dpdk)
// once, with the tags from which metrics exports them to Prometheus and homingctl
// stats (see metrics.Group). It is pure Go, so that metrics reads these structs
// without cgo; lcore.Stats, table.Stats and dpdk.Stats are aliases of them.
//
// Adding a counter: its field in the C struct, and the field here with its c (the C
// field's name), metric, help (and ctl) tags. The cgo packages copy from C with
// FromC, which refuses (at start) a C counter without a field here; metrics'
// TestGroupsExportEveryField and daemon's TestStatsViewHasEveryField check that each
// field reaches /metrics and homingctl stats.
package counters

import (
	"reflect"
	"strings"
)

// Lcore are one lcore's counters (struct homing_lcore_stats, lcore/pipeline.h). Every
// NIC packet is in exactly one class (classified_packets_total{class}).
type Lcore struct {
	Lcore uint `label:"lcore"`

	RxNIC      uint64 `c:"rx_nic" metric:"received_packets_total{port=nic}" ctl:"rx_nic" help:"Packets an lcore received, by port (nic: from the POP LAN; kernel: from the local kernel through the TAP)."`
	FromKernel uint64 `c:"from_kernel" metric:"received_packets_total{port=kernel}" ctl:"rx_kernel"`
	TxNIC      uint64 `c:"tx_nic" metric:"sent_packets_total{port=nic}" ctl:"tx_nic" help:"Packets an lcore sent, by port (nic: redirected and the kernel's own; kernel: handed to the local kernel)."`
	TxTAP      uint64 `c:"tx_tap" metric:"sent_packets_total{port=kernel}" ctl:"tx_kernel"`

	// Classes of NIC packets.
	Redirect  uint64 `c:"cls_redirect" metric:"redirected_packets_total classified_packets_total{class=redirect}" ctl:"redirected classes/redirect" help:"NIC packets of sessions owned by another live host, tunnelled to it (class redirect)."`
	Local     uint64 `c:"cls_local" metric:"classified_packets_total{class=local}" ctl:"classes/local" help:"NIC packets by classification; every NIC packet is in exactly one class."`
	Miss      uint64 `c:"cls_miss" metric:"classified_packets_total{class=miss}" ctl:"classes/miss"`
	DeadOwner uint64 `c:"cls_dead_owner" metric:"classified_packets_total{class=dead_owner}" ctl:"classes/dead_owner"`
	SYN       uint64 `c:"cls_syn" metric:"classified_packets_total{class=syn}" ctl:"classes/syn"`
	Decap     uint64 `c:"cls_decap" metric:"decapsulated_packets_total classified_packets_total{class=decap}" ctl:"decapsulated classes/decap" help:"GUE packets for this host whose outer headers were stripped (class decap)."`
	GUEBad    uint64 `c:"cls_gue_bad" metric:"classified_packets_total{class=gue_bad}" ctl:"classes/gue_bad"`
	// GUE refused (dropped, each also in GUEBad), by reason: the outer source is not a
	// live peer's tunnel address; the GUE header or UDP length is invalid; the inner
	// packet is truncated or inconsistent, of another protocol than TCP, UDP or an ICMP
	// error, or not to a VIP.
	GUEUnknownSource  uint64 `c:"gue_unknown_source" metric:"gue_refused_total{reason=unknown_source}" ctl:"gue_refused/unknown_source" help:"GUE to this host's tunnel port refused and dropped, by reason: unknown_source (not from a live peer's tunnel address), malformed (GUE header), inner_malformed, inner_proto (neither TCP/UDP nor an ICMP error), inner_not_vip."`
	GUEMalformed      uint64 `c:"gue_malformed" metric:"gue_refused_total{reason=malformed}" ctl:"gue_refused/malformed"`
	GUEInnerMalformed uint64 `c:"gue_inner_malformed" metric:"gue_refused_total{reason=inner_malformed}" ctl:"gue_refused/inner_malformed"`
	GUEInnerProto     uint64 `c:"gue_inner_proto" metric:"gue_refused_total{reason=inner_proto}" ctl:"gue_refused/inner_proto"`
	GUEInnerNotVIP    uint64 `c:"gue_inner_not_vip" metric:"gue_refused_total{reason=inner_not_vip}" ctl:"gue_refused/inner_not_vip"`
	Other             uint64 `c:"cls_other" metric:"classified_packets_total{class=other}" ctl:"classes/other"`
	Frag              uint64 `c:"cls_frag" metric:"classified_packets_total{class=fragment}" ctl:"classes/fragment"`
	IPOpt             uint64 `c:"cls_ipopt" metric:"classified_packets_total{class=ip_options}" ctl:"classes/ip_options"`
	Malformed         uint64 `c:"cls_malformed" metric:"classified_packets_total{class=malformed}" ctl:"classes/malformed"`
	NoRedirect        uint64 `c:"cls_no_redirect" metric:"classified_packets_total{class=no_redirect}" ctl:"classes/no_redirect"`
	// UDPPlain: UDP to a VIP port that is not a session port, not in the table (to the
	// kernel at once); QUICInitial: QUIC Initial packets on a QUIC port (to the kernel).
	UDPPlain    uint64 `c:"cls_udp_plain" metric:"classified_packets_total{class=udp_plain}" ctl:"classes/udp_plain"`
	QUICInitial uint64 `c:"cls_quic_initial" metric:"classified_packets_total{class=quic_initial}" ctl:"classes/quic_initial"`

	DropNICTx    uint64 `c:"drop_nic_tx" metric:"dropped_packets_total{reason=nic_tx_full}" ctl:"drops/nic_tx_full" help:"Packets dropped by the data plane, by reason."`
	DropTAPTx    uint64 `c:"drop_tap_tx" metric:"dropped_packets_total{reason=kernel_tx_full}" ctl:"drops/kernel_tx_full"`
	DropHeadroom uint64 `c:"drop_headroom" metric:"dropped_packets_total{reason=no_headroom}" ctl:"drops/no_headroom"`

	Loops      uint64 `c:"loops" metric:"loops_total" help:"Poll loop iterations."`
	IdleLoops  uint64 `c:"idle_loops" metric:"idle_loops_total" help:"Poll loop iterations that received nothing."`
	Sleeps     uint64 `c:"sleeps" metric:"sleeps_total" help:"Idle backoff sleeps."`
	BusyCycles uint64 `c:"busy_cycles" metric:"busy_cycles_total" help:"TSC cycles spent in loops that moved packets; rate() over homing_lcore_cycles_total is the busy ratio over a window."`
	Cycles     uint64 `c:"total_cycles" metric:"cycles_total" help:"TSC cycles since the lcore started."`

	TemplateRetries uint64 `c:"tmpl_retries" metric:"template_retries_total" help:"Header template copies retried because the control plane was writing it."`

	// The park: packets of unknown VIP sessions held for a second lookup. ParkIn and
	// ParkFull include their UDP share (ParkUDPIn, ParkUDPFull).
	ParkIn       uint64 `c:"park_in" metric:"parked_packets_total{proto=tcp}" ctl:"park/held_tcp" help:"Packets of unknown VIP sessions held for a second lookup (the park), by protocol (udp: UDP session ports)."`
	ParkRedirect uint64 `c:"park_redirect" metric:"unparked_packets_total{outcome=redirect}" ctl:"park/released_redirect" help:"Parked packets released, by outcome: redirect (the owner became known), local (owned here), expired (hold time over, to the kernel)."`
	ParkLocal    uint64 `c:"park_local" metric:"unparked_packets_total{outcome=local}" ctl:"park/released_local"`
	ParkExpired  uint64 `c:"park_expired" metric:"unparked_packets_total{outcome=expired}" ctl:"park/expired"`
	ParkFull     uint64 `c:"park_full" metric:"park_full_total{proto=tcp}" ctl:"park/full_tcp" help:"Packets not parked because the park, or their protocol's share of it (tunnel.park_udp), was full (sent to the kernel), by protocol."`
	// ParkWarmDrop: misses dropped (park full) while the daemon warmed up, instead of
	// going to the kernel; counted in Miss too.
	ParkWarmDrop uint64 `c:"park_warm_drop" metric:"warmup_dropped_total" ctl:"park/warmup_dropped" help:"Packets of unknown sessions dropped (park full) while the daemon warmed up after its start, instead of going to the kernel."`
	ParkUDPIn    uint64 `c:"park_udp_in" metric:"parked_packets_total{proto=udp} -parked_packets_total{proto=tcp}" ctl:"park/held_udp -park/held_tcp"`
	ParkUDPFull  uint64 `c:"park_udp_full" metric:"park_full_total{proto=udp} -park_full_total{proto=tcp}" ctl:"park/full_udp -park/full_tcp"`

	// TooBig: packets of a live peer's session too big for the tunnel (a class); each
	// is answered (ICMPTooBig) or dropped (DropTooBig).
	TooBig     uint64 `c:"cls_too_big" metric:"classified_packets_total{class=too_big}" ctl:"classes/too_big"`
	DropTooBig uint64 `c:"drop_too_big" metric:"dropped_packets_total{reason=too_big}" ctl:"drops/too_big"`
	ICMPTooBig uint64 `c:"icmp_too_big" metric:"icmp_too_big_sent_total" ctl:"icmp_too_big" help:"ICMP fragmentation-needed / ICMPv6 packet-too-big replies sent to clients whose packets were too big for the tunnel (class too_big)."`
	// FragTunnelled: fragments of too-big IPv4 packets without DF, tunnelled.
	FragTunnelled uint64 `c:"frag_tunnelled" metric:"fragments_tunnelled_total" ctl:"fragments_tunnelled" help:"Fragments of IPv4 packets without DF too big for the tunnel (class too_big), tunnelled to the owner, whose kernel reassembles them."`
	// MSSClamped: SYN-ACKs from a VIP whose MSS option was lowered (kernel side).
	MSSClamped uint64 `c:"mss_clamped" metric:"mss_clamped_total" ctl:"mss_clamped" help:"SYN-ACKs from a VIP whose MSS option was lowered to fit the tunnel (tunnel.clamp_mss)."`
}

// ToKernel is the number of NIC packets handed to the kernel (every class but refused GUE,
// redirected and too big).
func (s Lcore) ToKernel() uint64 {
	return s.Local + s.Miss - s.ParkWarmDrop + s.DeadOwner + s.SYN + s.Decap + s.Other + s.Frag + s.IPOpt + s.Malformed + s.NoRedirect + s.UDPPlain + s.QUICInitial
}

// Add sums two counter sets (Lcore is kept from s).
func (s Lcore) Add(o Lcore) Lcore { return add(s, o) }

// add sums every uint64 field of two structs of one type.
func add[T any](s, o T) T {
	sv, ov := reflect.ValueOf(&s).Elem(), reflect.ValueOf(o)
	for i := range sv.NumField() {
		if f := sv.Field(i); f.Kind() == reflect.Uint64 {
			f.SetUint(f.Uint() + ov.Field(i).Uint())
		}
	}
	return s
}

// Port are a DPDK port's basic counters (rte_eth_stats); the port's name labels them.
type Port struct {
	RxPackets uint64 `c:"ipackets" metric:"received_packets_total" help:"Packets the DPDK port received."`
	TxPackets uint64 `c:"opackets" metric:"sent_packets_total" help:"Packets the DPDK port sent."`
	RxBytes   uint64 `c:"ibytes" metric:"received_bytes_total" help:"Bytes the DPDK port received."`
	TxBytes   uint64 `c:"obytes" metric:"sent_bytes_total" help:"Bytes the DPDK port sent."`
	RxMissed  uint64 `c:"imissed" metric:"missed_packets_total" help:"Packets the port dropped because the rx queue was full (the lcore was too slow)."`
	RxErrors  uint64 `c:"ierrors" metric:"receive_errors_total" help:"Erroneous packets received."`
	TxErrors  uint64 `c:"oerrors" metric:"transmit_errors_total" help:"Packets the port failed to send."`
	RxNoMbuf  uint64 `c:"rx_nombuf" metric:"receive_no_mbuf_total" ctl:"rx_nombuf" help:"Receive failures for lack of mbufs (the mempool is too small)."`
}

// Table are the ownership table's lifetime counters (struct homing_table_stats).
type Table struct {
	Inserts    uint64 `c:"inserts" metric:"inserts_total" help:"Sessions added to the table."`
	Updates    uint64 `c:"updates" metric:"updates_total" help:"Existing sessions overwritten (owner or epoch changed)."`
	Deletes    uint64 `c:"deletes" metric:"deletes_total" help:"Sessions removed from the table."`
	DeleteMiss uint64 `c:"delete_miss" metric:"delete_misses_total" ctl:"delete_misses" help:"Deletes of sessions that were not in the table."`
	Full       uint64 `c:"full" metric:"full_total" help:"Adds refused because the table was full."`
	Errors     uint64 `c:"errors" metric:"errors_total" help:"Table writes that failed for another reason."`
	Invalid    uint64 `c:"invalid" metric:"invalid_total" help:"Table writes refused as invalid (bad key or epoch)."`
	// ReclaimWaits counts adds that found no free slot while deleted slots still waited
	// for the readers, and waited for a grace period; ReclaimTimeouts those that gave up.
	ReclaimWaits    uint64 `c:"reclaim_waits" metric:"reclaim_waits_total" help:"Adds that waited for a grace period to reuse deleted slots."`
	ReclaimTimeouts uint64 `c:"reclaim_timeouts" metric:"reclaim_timeouts_total" help:"Adds that gave up waiting for deleted slots."`
	// CuckooMoves: entries moved to their other bucket to make room for an add;
	// Stashed: keys no cuckoo path could place, put in the small stash.
	CuckooMoves uint64 `c:"cuckoo_moves" metric:"cuckoo_moves_total" help:"Entries moved to their other bucket to make room for an add (cuckoo paths)."`
	Stashed     uint64 `c:"stashed" metric:"stashed_total" help:"Keys placed in the overflow stash because no cuckoo path could place them (the buckets are sized so that this stays rare)."`
}

// UDP are the lcores' UDP learning and QUIC CID routing counters, summed over lcores
// (struct homing_udp_stats, lcore/udplearn.h).
type UDP struct {
	Reported    uint64 `c:"reported" metric:"reported_flows_total" help:"UDP flows of [[udp_sessions]] ports the lcores saw this host's kernel answer and reported (new flows, and live ones once per refresh tick)."`
	RingFull    uint64 `c:"ring_full" metric:"ring_full_total" help:"Reports of UDP flows lost to a full learning ring (the flow's next packet reports it again)."`
	CIDRedirect uint64 `c:"cid_redirect" metric:"quic_cid_routed_total{to=redirect}" help:"Packets of unknown flows on quic_cid ports, by where their DCID's host id sent them: redirect (a live peer), local (this host), not_live (the host named had no template: parked or to the kernel)."`
	CIDLocal    uint64 `c:"cid_local" metric:"quic_cid_routed_total{to=local}"`
	CIDNotLive  uint64 `c:"cid_not_live" metric:"quic_cid_routed_total{to=not_live}"`
	CIDLearn    uint64 `c:"cid_learn" metric:"quic_cid_reported_total" help:"Reports of UDP flows on cid_len ports that carried the server's connection ID (from its long-header packets)."`
	CIDHitRedir uint64 `c:"cid_hit_redirect" metric:"quic_learnt_cid_routed_total{to=redirect}" help:"Packets of unknown flows on cid_len ports, by what the lookup of their DCID as a learnt server CID found: redirect (a peer's), local (this host's), miss (no host learnt it: parked or to the kernel)."`
	CIDHitLocal uint64 `c:"cid_hit_local" metric:"quic_learnt_cid_routed_total{to=local}"`
	CIDMiss     uint64 `c:"cid_miss" metric:"quic_learnt_cid_routed_total{to=miss}"`
	CIDClient   uint64 `c:"cid_client" metric:"quic_client_cid_reported_total" help:"Reports of the DCIDs of clients' QUIC packets given to this host's kernel on cid_len ports (table hits owned here, decapsulated, routed here by a CID)."`
}

// Add sums two counter sets.
func (s UDP) Add(o UDP) UDP { return add(s, o) }

// UDPLearn are the daemon's UDP learner's counters (daemon/udplearn.go).
type UDPLearn struct {
	Learned   uint64 `metric:"learned_flows_total" help:"UDP flows claimed by this host and gossiped."`
	Refreshed uint64 `metric:"refreshed_flows_total" help:"Reports of UDP flows already claimed by this host (alive: nothing gossiped)."`
	Expired   uint64 `metric:"expired_flows_total" help:"UDP flows deleted after their port's idle_timeout without an answer from this host."`
	Errors    uint64 `metric:"errors_total" help:"UDP flow claims or deletes that failed (gossip queue full, table errors)."`
	Flows     uint64 `metric:"flows" help:"UDP flows claimed by this host now."`
	// QUIC server connection IDs learnt on cid_len ports (tied to their flows).
	CIDLearned uint64 `metric:"quic_cids_learned_total" help:"QUIC server connection IDs (cid_len ports) claimed by this host and gossiped."`
	CIDExpired uint64 `metric:"quic_cids_expired_total" help:"QUIC server connection IDs deleted because the flow they came with expired."`
	CIDs       uint64 `metric:"quic_cids" help:"QUIC server connection IDs claimed by this host now."`
}

// GUERefused is the GUE refusals by reason (the reason label of
// homing_lcore_gue_refused_total), read from the fields' ctl tags.
func (s Lcore) GUERefused() map[string]uint64 {
	out := map[string]uint64{}
	v := reflect.ValueOf(s)
	for i := range v.NumField() {
		for _, k := range strings.Fields(v.Type().Field(i).Tag.Get("ctl")) {
			if r, ok := strings.CutPrefix(k, "gue_refused/"); ok {
				out[r] = v.Field(i).Uint()
			}
		}
	}
	return out
}

// QueueRx are one rx queue's counters of a port (ethdev's generic per-queue xstats
// rx_qN_*); the port's name and the queue label them. Only queues the PMD reports.
type QueueRx struct {
	Queue   uint   `label:"queue"`
	Packets uint64 `metric:"queue_received_packets_total" ctl:"rx_packets" help:"Packets received on one rx queue of the port (ethdev xstats rx_qN_packets)."`
	Bytes   uint64 `metric:"queue_received_bytes_total" ctl:"rx_bytes" help:"Bytes received on one rx queue of the port (rx_qN_bytes)."`
	Errors  uint64 `metric:"queue_receive_errors_total" ctl:"rx_errors" help:"Erroneous packets on one rx queue of the port (rx_qN_errors)."`
}

// QueueTx are one tx queue's counters of a port (tx_qN_*).
type QueueTx struct {
	Queue   uint   `label:"queue"`
	Packets uint64 `metric:"queue_sent_packets_total" ctl:"tx_packets" help:"Packets sent on one tx queue of the port (tx_qN_packets)."`
	Bytes   uint64 `metric:"queue_sent_bytes_total" ctl:"tx_bytes" help:"Bytes sent on one tx queue of the port (tx_qN_bytes)."`
}
