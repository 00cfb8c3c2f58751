// Package metrics exports homingd's counters to Prometheus.
//
// Nothing is counted here: the data plane's lcores, the ports, the table and the gossip
// node keep their own counters, and the Collector reads them through a Source when
// Prometheus scrapes (never per packet). The only metric this package owns is the
// histogram of gossip convergence delays, fed once per applied records datagram.
//
// Pure Go (no cgo): the daemon adapts its DPDK-facing types to the plain structs below,
// so that the collector is tested with a fake Source.
package metrics

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Namespace prefixes every metric name.
const Namespace = "homing"

// Class is a data-plane classification of a packet received from the NIC. Every packet
// from the NIC is counted in exactly one class.
type Class int

// Classes, in the order of struct homing_lcore_stats (lcore/pipeline.h).
const (
	ClassRedirect    Class = iota // VIP session owned by a live peer: encapsulated to it
	ClassLocal                    // VIP session owned here
	ClassMiss                     // VIP session unknown
	ClassDeadOwner                // VIP session owned by a peer without a template
	ClassSYN                      // TCP SYN without ACK: always local
	ClassDecap                    // GUE for this host: decapsulated
	ClassGUEBad                   // UDP to the tunnel port with an invalid GUE or inner header
	ClassOther                    // not for the pipeline: ARP, ICMP, non-VIP, gossip, ...
	ClassFrag                     // IPv4 fragment
	ClassIPOptions                // IPv4 options or IPv6 extension headers
	ClassMalformed                // truncated or inconsistent headers
	ClassNoRedirect               // VIP session not looked up: tunnel.redirect is off
	ClassUDPPlain                 // UDP to a VIP port that is not a session port, unknown: kernel at once
	ClassQUICInitial              // QUIC Initial on a QUIC session port: a new connection, kernel
	ClassTooBig                   // VIP session of a live peer, too big for the tunnel (nic.mtu)
	NumClasses
)

var classNames = [NumClasses]string{"redirect", "local", "miss", "dead_owner", "syn", "decap",
	"gue_bad", "other", "fragment", "ip_options", "malformed", "no_redirect", "udp_plain", "quic_initial", "too_big"}

func (c Class) String() string { return classNames[c] }

// Drop is a reason the data plane drops a packet.
type Drop int

// Drop reasons.
const (
	DropNICTxFull    Drop = iota // the NIC tx queue was full
	DropKernelTxFull             // the kernel (TAP) tx queue was full
	DropNoHeadroom               // no mbuf headroom to prepend a tunnel header
	DropTooBig                   // too big for the tunnel and not answered (ICMP rate limit, no DF)
	NumDrops
)

var dropNames = [NumDrops]string{"nic_tx_full", "kernel_tx_full", "no_headroom", "too_big"}

func (d Drop) String() string { return dropNames[d] }

// Lcore is one worker lcore's counters.
type Lcore struct {
	ID                               uint
	RxNIC, RxKernel, TxNIC, TxKernel uint64
	Classes                          [NumClasses]uint64
	Drops                            [NumDrops]uint64
	Loops, IdleLoops, Sleeps         uint64
	BusyCycles, Cycles               uint64 // TSC cycles of loops that moved packets; since start
	TemplateRetries                  uint64
	// The park: packets of unknown VIP sessions held for a second lookup.
	ParkIn, ParkRedirect, ParkLocal, ParkExpired, ParkFull uint64
	ParkWarmDrop                                           uint64 // dropped (park full) while warming up
	ParkUDPIn, ParkUDPFull                                 uint64 // of ParkIn and ParkFull: UDP session packets
	// The MTU budget: ICMP too-big replies sent, SYN-ACK MSS options lowered.
	ICMPTooBig, MSSClamped uint64
	FragTunnelled          uint64 // fragments of too-big IPv4 packets without DF, tunnelled
}

// Port is a DPDK port's counters; Name is "nic" or "kernel".
type Port struct {
	Name                                   string
	RxPackets, TxPackets, RxBytes, TxBytes uint64
	RxMissed, RxErrors, TxErrors, RxNoMbuf uint64
	Link                                   *Link   // nil: not read (ports.go)
	Queues                                 []Queue // per-queue xstats (ports.go)
}

// Table is the ownership table's state.
type Table struct {
	Entries4, Entries6, Capacity4, Capacity6 int
	Inserts, Updates, Deletes, DeleteMisses  uint64
	Full, Errors, Invalid                    uint64
	ReclaimWaits, ReclaimTimeouts            uint64
	// ByOwner counts entries per owner host id; nil when not computed.
	ByOwner map[uint16]int
}

// Gossip is the gossip node's counters (see gossip.Stats).
type Gossip struct {
	DatagramsSent, BytesSent, HeartbeatsSent, RecordsSent, SendErrors     uint64
	DatagramsReceived, BytesReceived, HeartbeatsReceived, RecordsReceived uint64
	ReceiveErrors                                                         uint64
	// Rejected counts dropped datagrams by reason (bad_magic, auth, replay, ...).
	Rejected                                              map[string]uint64
	AuthFailures, SeqGaps                                 uint64
	RecordsApplied, StaleRecords, ForeignRecords          uint64
	LocalUpdates, GraceDrops, TableErrors, TemplateErrors uint64
	QueueOverflow, DiscoveryErrors                        uint64
	QueueLen, PeersUp, Sessions                           uint64 // gauges
	Incarnation                                           uint64
	// Repair (unicast), as client and as server.
	RepairsStarted, RepairsCompleted, RepairsFailed  uint64
	RepairAuthFailures, RepairRecords, RepairRemoved uint64
	RepairsServed, RepairServeRejects, RepairRefused uint64
	// RepairServeRefused counts repair and NACK connections refused, by reason
	// (stranger, per_source, busy, slow, rejected).
	RepairServeRefused map[string]uint64
	DigestMismatches   uint64
	// SeqConflicts: a peer's fresh heartbeat far below the sequence numbers seen in
	// its name (a keyed impostor sent datagrams as that peer); the tracking was reset.
	SeqConflicts uint64
	// NACK retransmission of lost datagrams.
	NacksSent, NackRecovered, NackFallbacks, NackResent uint64
	// HeartbeatAge is the seconds since each peer's last heartbeat, by host id.
	HeartbeatAge map[uint16]float64
	// Warming: the daemon is warming up after its start (peers' sessions not all learnt).
	Warming bool
}

// Snapshot is everything the collector exports, read at once.
type Snapshot struct {
	Lcores []Lcore
	Ports  []Port
	Table  *Table  // nil: no table
	Gossip *Gossip // nil: gossip is off
	Probe  *Probe  // nil: the probe is off
	Relay  *Relay  // nil: this host is not a gossip relay
	// Serving is the host's announcement state (nil: not started).
	Serving *Serving
}

// Serving is whether the host takes new traffic (daemon's serving state).
type Serving struct {
	State     string   // the current one of States
	States    []string // every state, each exported (1 for the current)
	Announced bool     // the VIPs are announced
	Owned     int      // sessions this host owns
	BGP       []BGPPeer
}

// BGPPeer is one BGP neighbour's session.
type BGPPeer struct {
	Address    string
	Up         bool
	Advertised uint64
	Losses     uint64 // sessions lost after they had come up
}

// Relay is the gossip relay's counters (gossip.RelayStats).
type Relay struct {
	Forwarded, SendErrors, Received, Relayed   uint64
	Duplicates, Loops, AuthFailures, Malformed uint64
	Replays                                    uint64
}

// Probe is the sock_ops probe's counters.
type Probe struct {
	// Lost counts events the kernel could not put on the ring buffer (and records that
	// did not decode): a lost Add leaves a session local, a lost Delete a stale entry.
	Lost uint64
	// Resyncs counts the probe's resyncs from sock_diag after a loss; ResyncAdds and
	// ResyncDeletes the Adds and Deletes they announced (the lost events repaired).
	Resyncs, ResyncAdds, ResyncDeletes uint64
	// Sessions is the number of local sessions the probe announced (gauge).
	Sessions uint64
}

// Source gives the collector a snapshot at scrape time. It is called from the HTTP
// handler's goroutine, once per scrape.
type Source interface {
	Snapshot() Snapshot
}

// SourceFunc adapts a function to Source.
type SourceFunc func() Snapshot

// Snapshot calls f.
func (f SourceFunc) Snapshot() Snapshot { return f() }

// Info labels the homing_info metric.
type Info struct {
	HostID  uint16
	Name    string
	Address string
	Version string
}

// Metrics is a registry with homing's collector, the convergence histogram and the Go
// runtime and process collectors.
type Metrics struct {
	reg      *prometheus.Registry
	converge prometheus.Histogram
	skew     prometheus.Counter
}

// ConvergeBuckets are the convergence histogram's upper bounds in seconds: 100µs to
// about 6.5s, doubling.
var ConvergeBuckets = prometheus.ExponentialBuckets(100e-6, 2, 17)

// New returns Metrics reading src at every scrape.
func New(src Source, info Info) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.converge = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: Namespace, Subsystem: "gossip", Name: "convergence_delay_seconds",
		Help:    "Delay from a peer's sender timestamp (its oldest record queued) to its records applied in this host's table, per records datagram. Includes clock offset between hosts.",
		Buckets: ConvergeBuckets,
	})
	m.skew = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: Namespace, Subsystem: "gossip", Name: "convergence_negative_total",
		Help: "Records datagrams applied before their sender timestamp (the sender's clock is ahead); observed as 0 in the histogram.",
	})
	m.reg.MustRegister(&collector{src: src, info: info}, m.converge, m.skew,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		versioncollector.NewCollector(Namespace)) // homing_build_info: github.com/prometheus/common/version
	return m
}

// ObserveConvergence records one applied records datagram.
func (m *Metrics) ObserveConvergence(sent, applied time.Time) {
	d := applied.Sub(sent)
	if d < 0 {
		m.skew.Inc()
		d = 0
	}
	m.converge.Observe(d.Seconds())
}

// Registry returns the registry (for tests and for other exporters).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// desc is one metric of the collector.
type desc struct {
	d *prometheus.Desc
	t prometheus.ValueType
}

func newDesc(sub, name, help string, t prometheus.ValueType, labels ...string) desc {
	return desc{prometheus.NewDesc(prometheus.BuildFQName(Namespace, sub, name), help, labels, nil), t}
}

var (
	cnt   = prometheus.CounterValue
	gauge = prometheus.GaugeValue

	dInfo = newDesc("", "info", "Always 1; labels identify the host.", gauge, "host_id", "name", "address", "version")

	// per lcore
	dLcRx      = newDesc("lcore", "received_packets_total", "Packets an lcore received, by port (nic: from the POP LAN; kernel: from the local kernel through the TAP).", cnt, "lcore", "port")
	dLcTx      = newDesc("lcore", "sent_packets_total", "Packets an lcore sent, by port (nic: redirected and the kernel's own; kernel: handed to the local kernel).", cnt, "lcore", "port")
	dLcRedir   = newDesc("lcore", "redirected_packets_total", "NIC packets of sessions owned by another live host, tunnelled to it (class redirect).", cnt, "lcore")
	dLcDecap   = newDesc("lcore", "decapsulated_packets_total", "GUE packets for this host whose outer headers were stripped (class decap).", cnt, "lcore")
	dLcClass   = newDesc("lcore", "classified_packets_total", "NIC packets by classification; every NIC packet is in exactly one class.", cnt, "lcore", "class")
	dLcDrop    = newDesc("lcore", "dropped_packets_total", "Packets dropped by the data plane, by reason.", cnt, "lcore", "reason")
	dLcLoops   = newDesc("lcore", "loops_total", "Poll loop iterations.", cnt, "lcore")
	dLcIdle    = newDesc("lcore", "idle_loops_total", "Poll loop iterations that received nothing.", cnt, "lcore")
	dLcSleeps  = newDesc("lcore", "sleeps_total", "Idle backoff sleeps.", cnt, "lcore")
	dLcBusy    = newDesc("lcore", "busy_cycles_total", "TSC cycles spent in loops that moved packets; rate() over homing_lcore_cycles_total is the busy ratio over a window.", cnt, "lcore")
	dLcCycles  = newDesc("lcore", "cycles_total", "TSC cycles since the lcore started.", cnt, "lcore")
	dLcRatio   = newDesc("lcore", "busy_ratio", "Busy cycles over all cycles since the lcore started (0..1).", gauge, "lcore")
	dState     = newDesc("", "state", "The host's serving state: 1 for the current one of warming, ready (announcing), draining, drained, stopping.", gauge, "state")
	dAnnounced = newDesc("", "announced", "1 while the host announces its VIPs (ready), 0 while withdrawn.", gauge)
	dOwned     = newDesc("", "owned_sessions", "Sessions this host owns (a drained host is empty at 0).", gauge)
	dBGPUp     = newDesc("bgp", "session_up", "1 while the BGP session to the neighbour is established.", gauge, "neighbor")
	dBGPAdv    = newDesc("bgp", "advertised_prefixes", "Prefixes advertised to the neighbour.", gauge, "neighbor")
	dBGPLoss   = newDesc("bgp", "session_losses_total", "Times the BGP session to the neighbour went down after it had been established.", cnt, "neighbor")
	dLcParked  = newDesc("lcore", "parked_packets_total", "Packets of unknown VIP sessions held for a second lookup (the park), by protocol (udp: UDP session ports).", cnt, "lcore", "proto")
	dLcUnpark  = newDesc("lcore", "unparked_packets_total", "Parked packets released, by outcome: redirect (the owner became known), local (owned here), expired (hold time over, to the kernel).", cnt, "lcore", "outcome")
	dLcParkFul = newDesc("lcore", "park_full_total", "Packets not parked because the park, or their protocol's share of it (tunnel.park_udp), was full (sent to the kernel), by protocol.", cnt, "lcore", "proto")
	dLcWarmDrp = newDesc("lcore", "warmup_dropped_total", "Packets of unknown sessions dropped (park full) while the daemon warmed up after its start, instead of going to the kernel.", cnt, "lcore")
	dLcICMP    = newDesc("lcore", "icmp_too_big_sent_total", "ICMP fragmentation-needed / ICMPv6 packet-too-big replies sent to clients whose packets were too big for the tunnel (class too_big).", cnt, "lcore")
	dLcClamp   = newDesc("lcore", "mss_clamped_total", "SYN-ACKs from a VIP whose MSS option was lowered to fit the tunnel (tunnel.clamp_mss).", cnt, "lcore")
	dLcFrag    = newDesc("lcore", "fragments_tunnelled_total", "Fragments of IPv4 packets without DF too big for the tunnel (class too_big), tunnelled to the owner, whose kernel reassembles them.", cnt, "lcore")
	dLcRetries = newDesc("lcore", "template_retries_total", "Header template copies retried because the control plane was writing it.", cnt, "lcore")

	// per port
	dPortRxP   = newDesc("port", "received_packets_total", "Packets the DPDK port received.", cnt, "port")
	dPortTxP   = newDesc("port", "sent_packets_total", "Packets the DPDK port sent.", cnt, "port")
	dPortRxB   = newDesc("port", "received_bytes_total", "Bytes the DPDK port received.", cnt, "port")
	dPortTxB   = newDesc("port", "sent_bytes_total", "Bytes the DPDK port sent.", cnt, "port")
	dPortMiss  = newDesc("port", "missed_packets_total", "Packets the port dropped because the rx queue was full (the lcore was too slow).", cnt, "port")
	dPortRxErr = newDesc("port", "receive_errors_total", "Erroneous packets received.", cnt, "port")
	dPortTxErr = newDesc("port", "transmit_errors_total", "Packets the port failed to send.", cnt, "port")
	dPortNoMb  = newDesc("port", "receive_no_mbuf_total", "Receive failures for lack of mbufs (the mempool is too small).", cnt, "port")

	// table
	dTabEntries  = newDesc("table", "entries", "Sessions in the ownership table, by address family.", gauge, "family")
	dTabCap      = newDesc("table", "capacity", "Configured capacity of the ownership table, by address family.", gauge, "family")
	dTabOwner    = newDesc("table", "owner_entries", "Sessions in the ownership table by owner host id (counted by iterating the table when it changed, using at most 1% of a core).", gauge, "owner")
	dTabInserts  = newDesc("table", "inserts_total", "Sessions added to the table.", cnt)
	dTabUpdates  = newDesc("table", "updates_total", "Existing sessions overwritten (owner or epoch changed).", cnt)
	dTabDeletes  = newDesc("table", "deletes_total", "Sessions removed from the table.", cnt)
	dTabDelMiss  = newDesc("table", "delete_misses_total", "Deletes of sessions that were not in the table.", cnt)
	dTabFull     = newDesc("table", "full_total", "Adds refused because the table was full.", cnt)
	dTabErrors   = newDesc("table", "errors_total", "Table writes that failed for another reason.", cnt)
	dTabInvalid  = newDesc("table", "invalid_total", "Table writes refused as invalid (bad key or epoch).", cnt)
	dTabRecWait  = newDesc("table", "reclaim_waits_total", "Adds that waited for a grace period to reuse deleted slots.", cnt)
	dTabRecTmout = newDesc("table", "reclaim_timeouts_total", "Adds that gave up waiting for deleted slots.", cnt)

	// gossip
	dGDgSent     = newDesc("gossip", "sent_datagrams_total", "Gossip datagrams sent (records and heartbeats).", cnt)
	dGBytesSent  = newDesc("gossip", "sent_bytes_total", "Gossip bytes sent (UDP payload).", cnt)
	dGHbSent     = newDesc("gossip", "sent_heartbeats_total", "Heartbeats sent.", cnt)
	dGRecSent    = newDesc("gossip", "sent_records_total", "Ownership records sent.", cnt)
	dGSendErr    = newDesc("gossip", "send_errors_total", "Datagrams the socket refused to send.", cnt)
	dGDgRecv     = newDesc("gossip", "received_datagrams_total", "Gossip datagrams received, accepted or not.", cnt)
	dGBytesRecv  = newDesc("gossip", "received_bytes_total", "Gossip bytes received (UDP payload).", cnt)
	dGHbRecv     = newDesc("gossip", "received_heartbeats_total", "Heartbeats accepted.", cnt)
	dGRecRecv    = newDesc("gossip", "received_records_total", "Ownership records received in accepted datagrams.", cnt)
	dGRecvErr    = newDesc("gossip", "receive_errors_total", "Socket receive errors.", cnt)
	dGRejected   = newDesc("gossip", "rejected_datagrams_total", "Datagrams dropped, by reason.", cnt, "reason")
	dGAuth       = newDesc("gossip", "auth_failures_total", "Datagrams whose authentication tag matched no key (also in rejected_datagrams_total{reason=\"auth\"}).", cnt)
	dGGaps       = newDesc("gossip", "sequence_gaps_total", "Datagrams missed: the sum of peers' sequence number jumps.", cnt)
	dGApplied    = newDesc("gossip", "records_applied_total", "Peers' records that changed the table.", cnt)
	dGStale      = newDesc("gossip", "stale_records_total", "Records that lost to the current owner.", cnt)
	dGForeign    = newDesc("gossip", "foreign_records_total", "Records naming an owner other than their sender, skipped.", cnt)
	dGLocal      = newDesc("gossip", "local_updates_total", "Local session adds and deletes written to the table.", cnt)
	dGGrace      = newDesc("gossip", "grace_drops_total", "Sessions dropped because their owner went away.", cnt)
	dGTableErr   = newDesc("gossip", "table_errors_total", "Table writes from gossip that failed.", cnt)
	dGTmplErr    = newDesc("gossip", "template_errors_total", "Header templates that could not be published.", cnt)
	dGOverflow   = newDesc("gossip", "queue_overflow_total", "Records refused because the send queue was full.", cnt)
	dGDiscErr    = newDesc("gossip", "discovery_errors_total", "Discovery file reads that failed (the previous list stays).", cnt)
	dGQueue      = newDesc("gossip", "queue_records", "Records waiting to be sent.", gauge)
	dGPeersUp    = newDesc("gossip", "peers_up", "Peers whose heartbeats arrive.", gauge)
	dGSessions   = newDesc("gossip", "sessions", "Sessions in the gossip node's ownership map.", gauge)
	dGIncarnated = newDesc("gossip", "incarnation", "This run's incarnation number (unix nanoseconds at start), rounded to a float64: homing_gossip_incarnation_info has it exactly.", gauge)
	dGRepairs    = newDesc("gossip", "repairs_total", "Repairs this host ran against a peer (unicast fetch of its sessions), by outcome: completed or failed (started: repairs_started_total).", cnt, "outcome")
	dGRepAuth    = newDesc("gossip", "repair_auth_failures_total", "Repair answers whose authentication tag matched no key.", cnt)
	dGRepRecs    = newDesc("gossip", "repair_records_total", "Records received in complete repair answers.", cnt)
	dGRepRemoved = newDesc("gossip", "repair_removed_total", "Entries removed because a full repair answer did not list them.", cnt)
	dGServed     = newDesc("gossip", "repair_served_total", "Repair requests of peers answered in full.", cnt)
	dGServeRej   = newDesc("gossip", "repair_serve_rejects_total", "Repair requests refused: failed authentication or checks, or too many or too often.", cnt)
	dGServeRefd  = newDesc("gossip", "repair_serve_refused_total", "Repair and NACK connections refused, by reason: stranger (source not a live peer's address, closed at accept), per_source (over gossip.repair_per_source), busy (every slot taken, or a peer asking too often), slow (no authenticated request within gossip.repair_auth_timeout), rejected (failed authentication or checks).", cnt, "reason")
	dGSeqConfl   = newDesc("gossip", "sequence_conflicts_total", "Peers' fresh heartbeats far below the sequence numbers seen in their name (a keyed host sent datagrams as that peer); the tracking was reset to the heartbeat.", cnt)
	dGDigest     = newDesc("gossip", "digest_mismatches_total", "Heartbeats whose session digest differed from this host's view of the sender.", cnt)
	dGNacks      = newDesc("gossip", "nacks_total", "NACK exchanges started (asking a peer to resend missed datagrams).", cnt)
	dGNackRec    = newDesc("gossip", "nack_recovered_datagrams_total", "Missed datagrams recovered from NACK answers.", cnt)
	dGNackFall   = newDesc("gossip", "nack_fallbacks_total", "Full repairs asked because a NACK did not recover everything.", cnt)
	dGNackResent = newDesc("gossip", "nack_resent_datagrams_total", "Datagrams this host resent to peers that NACKed them.", cnt)
	dProbeLost   = newDesc("probe", "events_lost_total", "sock_ops probe events the kernel could not deliver on the ring buffer (or that did not decode).", cnt)
	dProbeResync = newDesc("probe", "resyncs_total", "Resyncs of the probe from sock_diag after lost events.", cnt)
	dProbeRAdd   = newDesc("probe", "resync_adds_total", "Local sessions announced by resyncs (their Add event was lost).", cnt)
	dProbeRDel   = newDesc("probe", "resync_deletes_total", "Local sessions withdrawn by resyncs (their Delete event was lost, or found closed).", cnt)
	dProbeSess   = newDesc("probe", "sessions", "Local sessions the probe announced and has not withdrawn.", gauge)
	dRelayFwd    = newDesc("relay", "forwarded_envelopes_total", "Envelopes sent to the other domains' relays (one per datagram and peer relay).", cnt)
	dRelaySendE  = newDesc("relay", "send_errors_total", "Envelopes that could not be sent.", cnt)
	dRelayRecv   = newDesc("relay", "received_envelopes_total", "Envelopes received from other domains' relays.", cnt)
	dRelayMcast  = newDesc("relay", "relayed_datagrams_total", "Datagrams of other domains multicast in this domain.", cnt)
	dRelayDrop   = newDesc("relay", "dropped_envelopes_total", "Envelopes or relayed datagrams dropped, by reason (duplicate: already multicast through another relay; loop: this domain's own; auth; malformed; replay).", cnt, "reason")

	allDescs = []desc{dInfo, dState, dAnnounced, dOwned, dBGPUp, dBGPAdv, dBGPLoss, dLcRx, dLcTx, dLcRedir, dLcDecap, dLcClass, dLcDrop, dLcLoops, dLcIdle, dLcSleeps,
		dLcBusy, dLcCycles, dLcRatio, dLcRetries, dLcParked, dLcUnpark, dLcParkFul, dLcWarmDrp, dLcICMP, dLcClamp, dLcFrag, dPortRxP, dPortTxP, dPortRxB, dPortTxB, dPortMiss, dPortRxErr,
		dPortTxErr, dPortNoMb, dTabEntries, dTabCap, dTabOwner, dTabInserts, dTabUpdates, dTabDeletes, dTabDelMiss,
		dTabFull, dTabErrors, dTabInvalid, dTabRecWait, dTabRecTmout, dGDgSent, dGBytesSent, dGHbSent, dGRecSent,
		dGSendErr, dGDgRecv, dGBytesRecv, dGHbRecv, dGRecRecv, dGRecvErr, dGRejected, dGAuth, dGGaps, dGApplied,
		dGStale, dGForeign, dGLocal, dGGrace, dGTableErr, dGTmplErr, dGOverflow, dGDiscErr, dGQueue, dGPeersUp,
		dGSessions, dGIncarnated, dGRepairs, dGRepAuth, dGRepRecs, dGRepRemoved, dGServed, dGServeRej, dGServeRefd, dGSeqConfl, dGDigest,
		dGNacks, dGNackRec, dGNackFall, dGNackResent, dProbeLost, dProbeResync, dProbeRAdd, dProbeRDel, dProbeSess,
		dRelayFwd, dRelaySendE, dRelayRecv, dRelayMcast, dRelayDrop}
)

// collector reads a Source at every scrape.
type collector struct {
	src  Source
	info Info
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range allDescs {
		ch <- d.d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	emit := func(d desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d.d, d.t, v, labels...)
	}
	u := func(d desc, v uint64, labels ...string) { emit(d, float64(v), labels...) }
	emit(dInfo, 1, strconv.Itoa(int(c.info.HostID)), c.info.Name, c.info.Address, c.info.Version)

	s := c.src.Snapshot()
	if sv := s.Serving; sv != nil {
		for _, st := range sv.States {
			v := 0.0
			if st == sv.State {
				v = 1
			}
			emit(dState, v, st)
		}
		a := 0.0
		if sv.Announced {
			a = 1
		}
		emit(dAnnounced, a)
		emit(dOwned, float64(sv.Owned))
		for _, p := range sv.BGP {
			up := 0.0
			if p.Up {
				up = 1
			}
			emit(dBGPUp, up, p.Address)
			emit(dBGPAdv, float64(p.Advertised), p.Address)
			u(dBGPLoss, p.Losses, p.Address)
		}
	}
	for _, l := range s.Lcores {
		id := strconv.FormatUint(uint64(l.ID), 10)
		u(dLcRx, l.RxNIC, id, "nic")
		u(dLcRx, l.RxKernel, id, "kernel")
		u(dLcTx, l.TxNIC, id, "nic")
		u(dLcTx, l.TxKernel, id, "kernel")
		u(dLcRedir, l.Classes[ClassRedirect], id)
		u(dLcDecap, l.Classes[ClassDecap], id)
		for i, v := range l.Classes {
			u(dLcClass, v, id, classNames[i])
		}
		for i, v := range l.Drops {
			u(dLcDrop, v, id, dropNames[i])
		}
		u(dLcLoops, l.Loops, id)
		u(dLcIdle, l.IdleLoops, id)
		u(dLcSleeps, l.Sleeps, id)
		u(dLcBusy, l.BusyCycles, id)
		u(dLcCycles, l.Cycles, id)
		ratio := 0.0
		if l.Cycles > 0 {
			ratio = float64(l.BusyCycles) / float64(l.Cycles)
		}
		emit(dLcRatio, ratio, id)
		u(dLcRetries, l.TemplateRetries, id)
		u(dLcParked, l.ParkIn-l.ParkUDPIn, id, "tcp")
		u(dLcParked, l.ParkUDPIn, id, "udp")
		u(dLcUnpark, l.ParkRedirect, id, "redirect")
		u(dLcUnpark, l.ParkLocal, id, "local")
		u(dLcUnpark, l.ParkExpired, id, "expired")
		u(dLcParkFul, l.ParkFull-l.ParkUDPFull, id, "tcp")
		u(dLcParkFul, l.ParkUDPFull, id, "udp")
		u(dLcWarmDrp, l.ParkWarmDrop, id)
		u(dLcICMP, l.ICMPTooBig, id)
		u(dLcClamp, l.MSSClamped, id)
		u(dLcFrag, l.FragTunnelled, id)
	}
	for _, p := range s.Ports {
		u(dPortRxP, p.RxPackets, p.Name)
		u(dPortTxP, p.TxPackets, p.Name)
		u(dPortRxB, p.RxBytes, p.Name)
		u(dPortTxB, p.TxBytes, p.Name)
		u(dPortMiss, p.RxMissed, p.Name)
		u(dPortRxErr, p.RxErrors, p.Name)
		u(dPortTxErr, p.TxErrors, p.Name)
		u(dPortNoMb, p.RxNoMbuf, p.Name)
		collectPortExtra(ch, p)
	}
	if t := s.Table; t != nil {
		emit(dTabEntries, float64(t.Entries4), "ipv4")
		emit(dTabEntries, float64(t.Entries6), "ipv6")
		emit(dTabCap, float64(t.Capacity4), "ipv4")
		emit(dTabCap, float64(t.Capacity6), "ipv6")
		for owner, n := range t.ByOwner {
			emit(dTabOwner, float64(n), strconv.Itoa(int(owner)))
		}
		u(dTabInserts, t.Inserts)
		u(dTabUpdates, t.Updates)
		u(dTabDeletes, t.Deletes)
		u(dTabDelMiss, t.DeleteMisses)
		u(dTabFull, t.Full)
		u(dTabErrors, t.Errors)
		u(dTabInvalid, t.Invalid)
		u(dTabRecWait, t.ReclaimWaits)
		u(dTabRecTmout, t.ReclaimTimeouts)
	}
	if g := s.Gossip; g != nil {
		u(dGDgSent, g.DatagramsSent)
		u(dGBytesSent, g.BytesSent)
		u(dGHbSent, g.HeartbeatsSent)
		u(dGRecSent, g.RecordsSent)
		u(dGSendErr, g.SendErrors)
		u(dGDgRecv, g.DatagramsReceived)
		u(dGBytesRecv, g.BytesReceived)
		u(dGHbRecv, g.HeartbeatsReceived)
		u(dGRecRecv, g.RecordsReceived)
		u(dGRecvErr, g.ReceiveErrors)
		for reason, v := range g.Rejected {
			u(dGRejected, v, reason)
		}
		u(dGAuth, g.AuthFailures)
		u(dGGaps, g.SeqGaps)
		u(dGApplied, g.RecordsApplied)
		u(dGStale, g.StaleRecords)
		u(dGForeign, g.ForeignRecords)
		u(dGLocal, g.LocalUpdates)
		u(dGGrace, g.GraceDrops)
		u(dGTableErr, g.TableErrors)
		u(dGTmplErr, g.TemplateErrors)
		u(dGOverflow, g.QueueOverflow)
		u(dGDiscErr, g.DiscoveryErrors)
		u(dGQueue, g.QueueLen)
		u(dGPeersUp, g.PeersUp)
		u(dGSessions, g.Sessions)
		u(dGIncarnated, g.Incarnation)
		u(dGRepairs, g.RepairsCompleted, "completed")
		u(dGRepairs, g.RepairsFailed, "failed")
		u(dGRepAuth, g.RepairAuthFailures)
		u(dGRepRecs, g.RepairRecords)
		u(dGRepRemoved, g.RepairRemoved)
		u(dGServed, g.RepairsServed)
		u(dGServeRej, g.RepairServeRejects+g.RepairRefused)
		for reason, v := range g.RepairServeRefused {
			u(dGServeRefd, v, reason)
		}
		u(dGDigest, g.DigestMismatches)
		u(dGSeqConfl, g.SeqConflicts)
		u(dGNacks, g.NacksSent)
		u(dGNackRec, g.NackRecovered)
		u(dGNackFall, g.NackFallbacks)
		u(dGNackResent, g.NackResent)
		collectGossipPeers(ch, g)
	}
	if p := s.Probe; p != nil {
		u(dProbeLost, p.Lost)
		u(dProbeResync, p.Resyncs)
		u(dProbeRAdd, p.ResyncAdds)
		u(dProbeRDel, p.ResyncDeletes)
		u(dProbeSess, p.Sessions)
	}
	if r := s.Relay; r != nil {
		u(dRelayFwd, r.Forwarded)
		u(dRelaySendE, r.SendErrors)
		u(dRelayRecv, r.Received)
		u(dRelayMcast, r.Relayed)
		for _, d := range []struct {
			reason string
			n      uint64
		}{{"duplicate", r.Duplicates}, {"loop", r.Loops}, {"auth", r.AuthFailures}, {"malformed", r.Malformed}, {"replay", r.Replays}} {
			u(dRelayDrop, d.n, d.reason)
		}
	}
}
