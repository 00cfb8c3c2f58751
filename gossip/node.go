// Package gossip is homing's control plane: it tells the other hosts of a POP which
// sessions this host owns and learns theirs (patent US11616716B1, FIG. 4 and FIG. 5).
//
// Flow through a Node:
//
//	probe ─LocalAdd/LocalDelete─▶ owners map ──localUpd──▶ [sender] ─Apply─▶ Table
//	                               │  (linger FIFO ▶ [linger] ▶ delete)   │
//	                               └──queue (bounded)────────────────────▶ │ batch into datagram,
//	                                                                        │ token bucket, seal, Conn.Send
//	Conn.Recv ─▶ [receiver] ─Open (size, magic, version, tag)─▶ peer sequence/incarnation
//	               │ heartbeat ─▶ membership ─Publish/Withdraw─▶ Templates
//	               └ records ──▶ owners map (conflict rules) ─Apply (one per datagram)─▶ Table
//	[sender] also: heartbeat every interval, with the digest of the own sessions.
//	[housekeeper]: peers down after missed heartbeats, their sessions dropped after
//	               the grace, discovery file polling.
//	[repairer] (Config.Repair): gaps, new peers and incarnations, digest mismatches
//	           ─▶ one goroutine per repair: fetch the peer's snapshot over a stream,
//	           reconcile (repair.go). [repair server]: one goroutine per answer.
//
// Goroutines (started by Run): receiver, sender, linger, housekeeper; with Repair,
// repairer, repair server, and one per repair in flight and per answer.
//
// Where things are: the formats (datagram, records, heartbeats, repair and NACK frames,
// keys and sealing) are the stateless package gossip/wire; this package runs them.
// node.go has Config, Stats and the Node; send.go the sender (a type, one method per
// step of its loop), recv.go the receiver, local.go the local API and the linger,
// membership.go the peers, repair.go, repairserve.go and nack.go the unicast
// exchanges, relay.go the relays between domains, clock.go the Clock (Config.Clock:
// the protocol's time, real by default, gossiptest.Clock in tests).
//
// Locks, always taken in this order (Node's fields are grouped under the lock that
// protects them, each group saying what it holds; the others are set by New or atomic):
//   - Node.peersMu: membership (peer states, sequence tracking, pending drops), the
//     discovery list, repairs in flight; serialises Templates calls.
//   - Node.mu: the ownership map (the source of truth the Table mirrors) and what
//     changes with it (digests, linger state, record queue, pending local updates,
//     repair tracks); serialises Table.Apply calls, so that the table sees updates in
//     the order the map took them.
//   - Node.sendMu: the sequence counter and the sealer, so that sequence numbers go
//     out in increasing order whichever goroutine sends. A repair snapshot reads the
//     counter with Node.mu held.
//   - Node.servedMu (a leaf): the repair server's per-requester state.
package gossip

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"github.com/homing-dev/homing/gossip/wire"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/homing-dev/homing/session"
)

// Defaults for zero Config fields.
const (
	DefaultMaxDatagram       = 1400
	DefaultFlushDelay        = 300 * time.Microsecond
	DefaultMaxRate           = 20000
	DefaultMaxQueue          = 1 << 16
	DefaultHeartbeatInterval = 100 * time.Millisecond
	DefaultDownAfter         = 10
	DefaultGrace             = 5 * time.Second
	DefaultLinger            = 60 * time.Second
	DefaultDiscoveryPoll     = time.Second
	DefaultTunnelPort        = 6080
	DefaultGossipPort        = 6081
	DefaultRepairInterval    = time.Second
	DefaultRepairTimeout     = 5 * time.Second
	DefaultRepairMaxRecords  = 1 << 20
	DefaultRepairConcurrency = 4
	DefaultTailProbe         = 5 * time.Millisecond
	DefaultMaxClockSkew      = 10 * time.Second
	DefaultReplayWindow      = 10 * time.Second
	DefaultRepairAuthTimeout = 200 * time.Millisecond
	DefaultRepairPerSource   = 4
)

// Config configures a Node. Zero fields take the defaults above.
type Config struct {
	// HostID is this host's id, 1..session.MaxHostID, unique in the POP.
	HostID uint16
	// Addr is this host's primary address (tunnel destination); AltAddr an optional
	// address of the other family.
	Addr, AltAddr netip.Addr
	// MAC is the MAC address of the host's NIC port.
	MAC net.HardwareAddr
	// TunnelPort is the UDP port this host decapsulates GUE on (default 6080).
	TunnelPort uint16
	// Domain names the L2 domain of the host (at most 63 printable ASCII bytes).
	Domain string

	// Group, Port (default 6081), Interface and TTL (default 1) describe the multicast
	// transport: ListenMulticast(cfg.MulticastConfig()) opens it.
	Group     netip.Addr
	Port      uint16
	Interface string
	TTL       int

	// Keys signs and checks datagrams. Without keys New returns ErrNoKey unless
	// Insecure is set, in which case tags are zero and not checked.
	Keys     *wire.KeyRing
	Insecure bool

	// MaxDatagram is the largest datagram sent and accepted (UDP payload bytes,
	// default 1400: a 1500 MTU minus IPv6 and UDP headers with room to spare).
	MaxDatagram int
	// FlushDelay paces records datagrams that are not full (full ones go at once). By
	// default the flush adapts: a record that finds no records datagram sent within
	// the last FlushDelay goes out at once, and the records that follow wait until
	// FlushDelay after that datagram — batching only while records come faster than
	// one per FlushDelay, so that a lone record never waits and a busy link carries
	// several records a datagram. With FixedFlush, every datagram waits FlushDelay
	// after its first record. Waits up to 2 ms are timed precisely (a timerfd), not
	// by a Go timer, which fires up to a millisecond late below a millisecond.
	FlushDelay time.Duration
	// FixedFlush: see FlushDelay.
	FixedFlush bool
	// SizeHint and SizeHint6 are how many IPv4 and IPv6 sessions to allocate the
	// ownership map for up front (the data-plane table's capacities; 0: grow as
	// needed). Growing a large map while records stream in stalls the receiver: at
	// 50k new sessions per second, p99 convergence went from 47–83 ms to 9–19 ms with
	// the map allocated up front. The memory is taken at once: about 33 bytes per IPv4
	// session and 58 per IPv6 session (ownermap.go).
	SizeHint, SizeHint6 int
	// MaxRate bounds record datagrams per second (token bucket of MaxBurst).
	// Heartbeats are not counted against it.
	MaxRate  int
	MaxBurst int // default MaxRate/50, at least 1
	// MaxQueue bounds the records waiting to be sent; beyond it LocalAdd and
	// LocalDelete return ErrQueueFull and Stats.QueueOverflow counts.
	MaxQueue int

	// HeartbeatInterval is the heartbeat period; a peer is down after DownAfter
	// intervals without a heartbeat, and its sessions are dropped Grace later unless
	// it returns with the same incarnation.
	HeartbeatInterval time.Duration
	DownAfter         int
	Grace             time.Duration
	// Linger delays the announcement of a local delete (TIME_WAIT); negative means
	// no linger.
	Linger time.Duration

	// DiscoveryFile, if set, lists the hosts of the POP (see ReadDiscovery); hosts
	// not in it are ignored. It is polled every DiscoveryPoll.
	DiscoveryFile string
	DiscoveryPoll time.Duration

	// Incarnation identifies this run of the host; 0 means the start time in unix
	// nanoseconds. It must grow from one run to the next.
	Incarnation uint64
	// MaxClockSkew bounds how far a peer's incarnation (its start time in unix
	// nanoseconds, on its clock) may run ahead of this node's clock: a datagram whose
	// incarnation is later than now+MaxClockSkew is refused (FutureIncarnations) and
	// changes nothing; it is admitted once this node's clock has caught up (default 10 s).
	MaxClockSkew time.Duration
	// ReplayWindow: a datagram of a peer this node holds no state for (first contact,
	// or a new incarnation) is accepted only if its timestamp is within ReplayWindow of
	// this node's clock; older (replayed) or later ones are refused (OutsideWindow).
	// The hosts' clocks are assumed NTP-synchronised well within it (default 10 s).
	ReplayWindow time.Duration

	// Repair turns on the unicast repair exchange (anti-entropy, see repair.go): the
	// node fetches a peer's sessions when it sees a gap in the peer's sequence numbers,
	// a new peer, a new incarnation of a peer, or a digest mismatch that persists over
	// two heartbeats; and it answers peers' requests on RepairListener.
	Repair bool
	// RepairListener accepts repair connections (ListenRepair opens one on this host's
	// address and RepairPort); nil: the node answers no request. Run closes it.
	RepairListener net.Listener
	// RepairDialer connects to peers' repair listeners; nil: TCP (net.Dialer).
	RepairDialer Dialer
	// RepairPort is the TCP port peers' repair listeners use (default: Port, 6081:
	// the gossip port is UDP, so TCP on the same number is free).
	RepairPort uint16
	// RepairInterval is the least time between the starts of two repairs from one
	// peer (default 1 s). A server refuses a requester's second request within half
	// of it.
	RepairInterval time.Duration
	// RepairTimeout bounds one repair exchange, connection included (default 5 s).
	RepairTimeout time.Duration
	// RepairMaxRecords caps the records of one answer (default 1<<20, about 23 MB of
	// IPv4 records); an answer cut at the cap adds sessions but removes none.
	RepairMaxRecords int
	// RepairConcurrency bounds the repairs in flight, and separately the answers being
	// served, at once (default 4).
	RepairConcurrency int
	// RepairAuthTimeout bounds the time a repair or NACK connection may take, from
	// accept, to send its authenticated request (default 200 ms; real time).
	RepairAuthTimeout time.Duration
	// RepairPerSource bounds the repair and NACK connections served at once per
	// source address (default 4; a peer uses at most two: a repair and a NACK).
	RepairPerSource int
	// NackRing is how many of its latest multicast datagrams a node keeps to resend
	// them to peers that missed them (NACK, see nack.go; with Repair only); default
	// 8192, negative turns NACK off (a gap asks for a full repair). A receiver also
	// tracks at most this many missing sequence numbers per peer: a larger gap asks
	// for a full repair.
	NackRing int
	// NackRingBytes bounds the bytes the ring holds (default 8 MiB).
	NackRingBytes int
	// TailProbe: with NACK, a heartbeat follows the last records datagram of a burst
	// after TailProbe, and another 3×TailProbe later, unless records follow: a
	// receiver that lost the tail sees its gap then, not a HeartbeatInterval later
	// (default 5 ms; negative: none).
	TailProbe time.Duration
	// NoDigest turns off the comparison of heartbeat digests with the local view
	// (heartbeats carry digests anyway).
	NoDigest bool

	// Clock is the node's time (see Clock); nil: the real clock.
	Clock Clock

	// OnConverge, if set, is called after each received records datagram is applied,
	// from the receiver goroutine; it must be quick.
	OnConverge func(ConvergeSample)
	// Logger receives rare events (peers up and down, errors); nil discards.
	Logger *slog.Logger
}

// ConvergeSample measures one applied records datagram: Sent is the sender's timestamp
// (the time its oldest record was queued, on the sender's clock), Applied the time the
// records were in this host's table. Clock offset between hosts adds to the difference.
type ConvergeSample struct {
	From    uint16
	Records int
	Sent    time.Time
	Applied time.Time
}

// Stats are a node's counters. Gauges are marked; everything else only grows. Each
// field's tags declare its Prometheus series and its homingctl stats key
// (metrics/counters.go): a new counter is a field with its tags, nothing else.
type Stats struct {
	DatagramsSent  uint64 `metric:"sent_datagrams_total" help:"Gossip datagrams sent (records and heartbeats)."`
	BytesSent      uint64 `metric:"sent_bytes_total" help:"Gossip bytes sent (UDP payload)."`
	HeartbeatsSent uint64 `metric:"sent_heartbeats_total" help:"Heartbeats sent."`
	RecordsSent    uint64 `metric:"sent_records_total" help:"Ownership records sent."`
	SendErrors     uint64 `metric:"send_errors_total" help:"Datagrams the socket refused to send."`

	DatagramsReceived  uint64 `metric:"received_datagrams_total" help:"Gossip datagrams received, accepted or not."`
	BytesReceived      uint64 `metric:"received_bytes_total" help:"Gossip bytes received (UDP payload)."`
	HeartbeatsReceived uint64 `metric:"received_heartbeats_total" help:"Heartbeats accepted."`
	RecordsReceived    uint64 `metric:"received_records_total" help:"Ownership records received in accepted datagrams."`
	RecvErrors         uint64 `metric:"receive_errors_total" ctl:"receive_errors" help:"Socket receive errors."`

	// Reject reasons, one counter each.
	BadMagic     uint64 `metric:"rejected_datagrams_total{reason=bad_magic}" ctl:"rejected/bad_magic" help:"Datagrams dropped, by reason."`
	BadVersion   uint64 `metric:"rejected_datagrams_total{reason=bad_version}" ctl:"rejected/bad_version"`
	UnknownType  uint64 `metric:"rejected_datagrams_total{reason=unknown_type}" ctl:"rejected/unknown_type"`
	Truncated    uint64 `metric:"rejected_datagrams_total{reason=truncated}" ctl:"rejected/truncated"`
	Oversize     uint64 `metric:"rejected_datagrams_total{reason=oversize}" ctl:"rejected/oversize"`
	AuthFailures uint64 `metric:"auth_failures_total rejected_datagrams_total{reason=auth}" ctl:"auth_failures rejected/auth" help:"Datagrams whose authentication tag matched no key (also in rejected_datagrams_total{reason=\"auth\"})."`
	Malformed    uint64 `metric:"rejected_datagrams_total{reason=malformed}" ctl:"rejected/malformed"`

	OwnDatagrams uint64 `metric:"rejected_datagrams_total{reason=own}" ctl:"rejected/own"`                   // datagrams carrying our own host id, ignored
	UnknownHost  uint64 `metric:"rejected_datagrams_total{reason=unknown_host}" ctl:"rejected/unknown_host"` // datagrams from hosts not in the discovery file
	Mismatch     uint64 `metric:"rejected_datagrams_total{reason=mismatch}" ctl:"rejected/mismatch"`         // heartbeats whose address disagrees with the discovery file
	SeqGaps      uint64 `metric:"sequence_gaps_total" ctl:"sequence_gaps" help:"Datagrams missed: the sum of peers' sequence number jumps."`
	Replays      uint64 `metric:"rejected_datagrams_total{reason=replay}" ctl:"rejected/replay"` // datagrams with an old sequence number or incarnation, dropped
	// Membership refusals (membership.go): none of these changes any state.
	IDConflicts        uint64 `metric:"rejected_datagrams_total{reason=id_conflict}" ctl:"rejected/id_conflict"`               // heartbeats claiming a bound host id from another address or MAC (impostor or duplicate id)
	DuplicateIDs       uint64 `metric:"rejected_datagrams_total{reason=duplicate_id}" ctl:"rejected/duplicate_id"`             // heartbeats of a live host id, bound address and MAC, but an older incarnation still running: two hosts with one id
	FutureIncarnations uint64 `metric:"rejected_datagrams_total{reason=future_incarnation}" ctl:"rejected/future_incarnation"` // datagrams whose incarnation runs ahead of our clock by more than MaxClockSkew
	OutsideWindow      uint64 `metric:"rejected_datagrams_total{reason=outside_window}" ctl:"rejected/outside_window"`         // first datagrams of a peer or incarnation timestamped outside ReplayWindow (replays)
	Unannounced        uint64 `metric:"rejected_datagrams_total{reason=unannounced}" ctl:"rejected/unannounced"`               // records datagrams of a new incarnation of a live peer before its heartbeat
	// SeqConflicts: a peer's fresh heartbeat far below its highest sequence number:
	// reset (membership.go).
	SeqConflicts uint64 `metric:"sequence_conflicts_total" ctl:"sequence_conflicts" help:"Peers' fresh heartbeats far below the sequence numbers seen in their name (a keyed host sent datagrams as that peer); the tracking was reset to the heartbeat."`

	ForeignRecords uint64 `metric:"foreign_records_total" help:"Records naming an owner other than their sender, skipped."`
	StaleRecords   uint64 `metric:"stale_records_total" help:"Records that lost to the current owner."` // older epoch, other owner
	RecordsApplied uint64 `metric:"records_applied_total" help:"Peers' records that changed the table."`
	LocalUpdates   uint64 `metric:"local_updates_total" help:"Local session adds and deletes written to the table."`
	GraceDrops     uint64 `metric:"grace_drops_total" help:"Sessions dropped because their owner went away."`
	TableErrors    uint64 `metric:"table_errors_total" help:"Table writes from gossip that failed."`
	TemplateErrors uint64 `metric:"template_errors_total" help:"Header templates that could not be published."`

	QueueOverflow   uint64 `metric:"queue_overflow_total" help:"Records refused because the send queue was full."`
	QueueLen        uint64 `metric:"queue_records" help:"Records waiting to be sent."`             // gauge
	PeersUp         uint64 `metric:"peers_up" help:"Peers whose heartbeats arrive."`               // gauge
	Sessions        uint64 `metric:"sessions" help:"Sessions in the gossip node's ownership map."` // gauge
	DiscoveryErrors uint64 `metric:"discovery_errors_total" help:"Discovery file reads that failed (the previous list stays)."`

	// Repair, as the client (the host that fetches a peer's sessions).
	RepairsStarted     uint64 `metric:"repairs_started_total" help:"Repairs this host started against a peer; each ends in repairs_total{outcome=\"completed\"} or {outcome=\"failed\"}."`
	RepairsCompleted   uint64 `metric:"repairs_total{outcome=completed}" help:"Repairs this host ran against a peer (unicast fetch of its sessions), by outcome: completed or failed (started: repairs_started_total)."`
	RepairsFailed      uint64 `metric:"repairs_total{outcome=failed}"`
	RepairAuthFailures uint64 `metric:"repair_auth_failures_total" help:"Repair answers whose authentication tag matched no key."`
	RepairMismatches   uint64 `metric:"repair_mismatches_total" help:"Repair answers not for this host's request (nonce, sender, incarnation, frame order, foreign owner), dropped."`
	RepairMalformed    uint64 `metric:"repair_malformed_total" help:"Repair answers that did not decode."`
	RepairRecords      uint64 `metric:"repair_records_total" help:"Records received in complete repair answers."`
	RepairRemoved      uint64 `metric:"repair_removed_total" help:"Entries removed because a full repair answer did not list them."`
	RepairBytes        uint64 `metric:"repair_received_bytes_total" help:"Bytes of repair answer frames received."`
	RepairTruncated    uint64 `metric:"repair_truncated_total" help:"Repair answers cut at the server's record cap (gossip.repair_max_records)."`
	RepairSuperseded   uint64 `metric:"repair_superseded_datagrams_total" help:"Multicast datagrams dropped because a repair snapshot already covered them."`
	DigestMismatches   uint64 `metric:"digest_mismatches_total" help:"Heartbeats whose session digest differed from this host's view of the sender."`
	// Repair, as the server. Refusals by reason: RepairServeStranger, PerSource,
	// RepairServeRefused (busy), Slow and RepairServeRejects (rejected).
	RepairsServed        uint64 `metric:"repair_served_total" help:"Repair requests of peers answered in full."`
	RepairServeRejects   uint64 `metric:"repair_serve_rejects_total repair_serve_refused_total{reason=rejected}" ctl:"repair_refused_rejected" help:"Repair requests refused: failed authentication or checks, or too many or too often."`
	RepairServeRefused   uint64 `metric:"repair_serve_rejects_total repair_serve_refused_total{reason=busy}" ctl:"repair_refused_busy"`
	RepairServeStranger  uint64 `metric:"repair_serve_refused_total{reason=stranger}" ctl:"repair_refused_stranger" help:"Repair and NACK connections refused, by reason: stranger (source not a live peer's address, closed at accept), per_source (over gossip.repair_per_source), busy (every slot taken, or a peer asking too often), slow (no authenticated request within gossip.repair_auth_timeout), rejected (failed authentication or checks)."`
	RepairServePerSource uint64 `metric:"repair_serve_refused_total{reason=per_source}" ctl:"repair_refused_per_source"`
	RepairServeSlow      uint64 `metric:"repair_serve_refused_total{reason=slow}" ctl:"repair_refused_slow"`
	RepairServeErrors    uint64 `metric:"repair_serve_errors_total" help:"Repair and NACK connections that failed otherwise (accept errors, timeouts, resets)."`
	RepairBytesSent      uint64 `metric:"repair_sent_bytes_total" help:"Bytes of repair answer frames sent."`

	// NACK (nack.go), as the receiver of multicast.
	NacksSent         uint64 `metric:"nacks_total" ctl:"nacks_sent" help:"NACK exchanges started (asking a peer to resend missed datagrams)."`
	NackFailures      uint64 `metric:"nack_failures_total" help:"NACK exchanges that failed (connection, authentication, mismatch)."`
	NackSeqsRequested uint64 `metric:"nack_requested_datagrams_total" help:"Missed datagrams (sequence numbers) asked for in NACKs."`
	NackRecovered     uint64 `metric:"nack_recovered_datagrams_total" ctl:"nack_recovered" help:"Missed datagrams recovered from NACK answers."`
	NackLate          uint64 `metric:"nack_late_datagrams_total" help:"Missed datagrams that arrived late by multicast."`
	NackDuplicates    uint64 `metric:"nack_duplicate_datagrams_total" help:"Resent datagrams no longer missing when they came."`
	NackRejects       uint64 `metric:"nack_rejected_datagrams_total" help:"Resent datagrams that failed checks (tag, sender, incarnation, not asked for)."`
	NackSuperseded    uint64 `metric:"nack_superseded_records_total" help:"Records of recovered datagrams skipped: a later datagram had touched the session."`
	NackUnavailable   uint64 `metric:"nack_unavailable_datagrams_total" help:"Missed datagrams the sender no longer held (left to a full repair)."`
	NackFallbacks     uint64 `metric:"nack_fallbacks_total" help:"Full repairs asked because a NACK did not recover everything."`
	NackBytes         uint64 `metric:"nack_received_bytes_total" help:"Bytes of NACK answer frames received."`
	// NACK, as the sender.
	NacksServed   uint64 `metric:"nack_served_total" ctl:"nacks_served" help:"NACK requests of peers answered."`
	NackResent    uint64 `metric:"nack_resent_datagrams_total" help:"Datagrams this host resent to peers that NACKed them."`
	NackMissed    uint64 `metric:"nack_missed_datagrams_total" help:"Datagrams peers NACKed that the resend ring no longer held."`
	NackBytesSent uint64 `metric:"nack_sent_bytes_total" help:"Bytes of NACK answer frames sent."`
}

// Errors of the local API.
var (
	ErrQueueFull  = errors.New("gossip send queue full")
	ErrInvalidKey = errors.New("invalid session key")
	ErrConfig     = errors.New("invalid gossip config")
)

// entry is one session in the ownership map: its owner and the owner's incarnation at
// the time we learnt it (a peer's entries of an ended incarnation go after the grace).
type entry struct {
	owner session.Owner
	inc   uint64
	// listed marks the entries a repair snapshot listed, while the repair's
	// reconcile runs (under n.mu; clear otherwise).
	listed bool
}

type queued struct {
	rec session.Update // Delete false: add
	at  int64          // unix ns when queued
}

// Node is one host's gossip control plane.
type Node struct {
	// Set by New, read-only after: no lock.
	cfg       Config
	conn      Conn
	table     Table
	templates Templates
	log       *slog.Logger
	clock     Clock
	inc       uint64
	dialer    Dialer
	nonce     func([]byte)

	// Atomics and channels: no lock.
	stats      Stats         // updated with atomic operations only
	running    atomic.Bool   // Run was called
	queued     atomic.Int64  // records in queue or the sender's backlog
	gapPeers   atomic.Int64  // peers with missing datagrams (nack.go)
	reqSeq     atomic.Uint64 // sequence numbers of repair and NACK requests
	wakeSend   chan struct{} // the sender: records queued, local updates pending
	wakeLing   chan struct{} // the linger goroutine: a first deadline
	wakeRepair chan struct{} // the repairer: a repair or NACK wanted
	fullSem    chan struct{} // full repair answers being served
	// keys seal and check everything; replaced by SetKeys (keyGen counts replacements,
	// bumped after the store, so that a reader that sees a new generation sees its keys).
	keys   atomic.Pointer[wire.KeyRing]
	keyGen atomic.Uint64

	// The housekeeper's own (and New's, before it starts): no lock.
	discMod  time.Time // of the discovery file last read
	discSize int64

	// peersMu (taken before mu) protects membership: the peer states (up and down,
	// sequence tracking, digests compared, repair wanted), the pending drops, the
	// discovery list and the repairs in flight; it serialises Templates calls.
	peersMu   sync.Mutex
	peers     map[uint16]*peerState
	drops     []pendingDrop
	discovery discoveryList        // nil: every host is allowed
	bindings  map[uint16]binding   // host id -> address and MAC, from first contact (membership.go)
	alarms    map[uint16]time.Time // host id -> last conflict logged (rate limit)
	inFlight  int                  // repairs running (RepairConcurrency)

	// mu (taken after peersMu, before sendMu) protects the ownership map, the source of
	// truth the Table mirrors, and all that changes with it: the per-host digests, the
	// linger state, the record queue, the pending local updates and the repair tracks.
	// It serialises Table.Apply calls, so that the table sees updates in the order the
	// map took them.
	mu         sync.Mutex
	owners     *ownerMap
	digests    map[uint16]*wire.Digest // per owner host, over owners
	lastEpoch  uint64                  // the last epoch handed out (nextEpoch)
	lingering  map[session.Key]uint64  // key -> generation of its pending delete
	lingerFIFO []lingerItem            // deadlines in increasing order
	lingerGen  uint64
	queue      []queued                // records to announce, taken by the sender
	localUpd   []session.Update        // local updates to write to the table, by the sender
	updBuf     []session.Update        // the receiver's scratch
	refBuf     []mref                  // the receiver's scratch: the keys of a datagram
	sink       uint64                  // keeps the receiver's touch loads
	tracks     map[uint16]*repairTrack // peers with a repair in flight
	nackTracks map[uint16]*repairTrack // peers with missing datagrams (nack.go)

	// sendMu (taken after mu) protects the multicast sequence counter and the sealer,
	// so that sequence numbers go out in increasing order whichever goroutine sends
	// (a repair snapshot reads the counter with mu held), and the pushes to the ring.
	sendMu sync.Mutex
	seq    uint64
	sealer *wire.Sealer
	ring   *resendRing // nil without NACK; its own lock, taken under sendMu

	// servedMu (a leaf) protects the repair server's per-requester state.
	servedMu    sync.Mutex
	served      map[uint16]time.Time // requester -> last answer started
	sources     map[netip.Addr]int   // source address -> connections being served
	serving     int                  // connections being served
	nackServing map[uint16]bool      // requesters with a NACK answer running
}

// ErrInsecure is returned by SetKeys on a node that runs without keys.
var ErrInsecure = errors.New("gossip runs without keys (insecure)")

// SetKeys replaces the keys at once for every channel: multicast datagrams sent and
// received from now on, and the repair and NACK exchanges started from now on (an
// exchange in flight finishes with the keys it started with). A rotation gives the new
// key with the old one as the accepted key, so that peers not yet rotated still agree
// (see docs/OPERATIONS.md).
func (n *Node) SetKeys(ring *wire.KeyRing) error {
	if ring == nil || n.keys.Load() == nil {
		return ErrInsecure
	}
	n.sendMu.Lock()
	n.keys.Store(ring)
	n.sealer = wire.NewSealer(ring)
	n.keyGen.Add(1)
	n.sendMu.Unlock()
	return nil
}

// New returns a Node that gossips over conn and programs table and templates. Call Run
// to start it; LocalAdd and LocalDelete may be called before.
func New(cfg Config, conn Conn, table Table, templates Templates) (*Node, error) {
	if cfg.Keys == nil && !cfg.Insecure {
		return nil, wire.ErrNoKey
	}
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	n := &Node{
		cfg:        cfg,
		conn:       conn,
		table:      table,
		templates:  templates,
		log:        cfg.Logger,
		clock:      cfg.Clock,
		inc:        cfg.Incarnation,
		owners:     newOwnerMap(cfg.SizeHint, cfg.SizeHint6),
		lingering:  make(map[session.Key]uint64),
		wakeSend:   make(chan struct{}, 1),
		wakeLing:   make(chan struct{}, 1),
		peers:      make(map[uint16]*peerState),
		bindings:   make(map[uint16]binding),
		alarms:     make(map[uint16]time.Time),
		sources:    make(map[netip.Addr]int),
		sealer:     wire.NewSealer(cfg.Keys),
		digests:    make(map[uint16]*wire.Digest),
		tracks:     make(map[uint16]*repairTrack),
		nackTracks: make(map[uint16]*repairTrack),

		wakeRepair:  make(chan struct{}, 1),
		dialer:      cfg.RepairDialer,
		nonce:       func(b []byte) { _, _ = rand.Read(b) },
		fullSem:     make(chan struct{}, cfg.RepairConcurrency),
		served:      make(map[uint16]time.Time),
		nackServing: make(map[uint16]bool),
	}
	if n.nackOn() {
		n.ring = newResendRing(cfg.NackRing, cfg.NackRingBytes)
	}
	if n.dialer == nil {
		n.dialer = sourceDialer{cfg.Addr, cfg.AltAddr}
	}
	if n.log == nil {
		n.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.DiscoveryFile != "" {
		if err := n.pollDiscovery(n.clock.Now(), true); err != nil {
			return nil, err
		}
	}
	n.keys.Store(cfg.Keys)
	return n, nil
}

func (c *Config) setDefaults() error {
	bad := func(what string, v any) error { return fmt.Errorf("%s %v: %w", what, v, ErrConfig) }
	if c.HostID == 0 || c.HostID > session.MaxHostID {
		return bad("host id", c.HostID)
	}
	hb := wire.Heartbeat{Host: c.HostID, Addr: c.Addr, AltAddr: c.AltAddr, MAC: c.MAC, Domain: c.Domain}
	if err := hb.Check(); err != nil {
		return fmt.Errorf("host announcement: %w: %w", err, ErrConfig)
	}
	if c.TunnelPort == 0 {
		c.TunnelPort = DefaultTunnelPort
	}
	if c.MaxDatagram == 0 {
		c.MaxDatagram = DefaultMaxDatagram
	}
	if c.MaxDatagram < wire.Overhead+wire.RecordAdd6Len || c.MaxDatagram > wire.MaxDatagramLen {
		return bad("max datagram", c.MaxDatagram)
	}
	if c.FlushDelay <= 0 {
		c.FlushDelay = DefaultFlushDelay
	}
	if c.MaxRate <= 0 {
		c.MaxRate = DefaultMaxRate
	}
	if c.MaxBurst <= 0 {
		c.MaxBurst = max(1, c.MaxRate/50)
	}
	if c.MaxQueue <= 0 {
		c.MaxQueue = DefaultMaxQueue
	}
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if c.DownAfter <= 0 {
		c.DownAfter = DefaultDownAfter
	}
	if c.Grace <= 0 {
		c.Grace = DefaultGrace
	}
	if c.Linger == 0 {
		c.Linger = DefaultLinger
	}
	if c.DiscoveryPoll <= 0 {
		c.DiscoveryPoll = DefaultDiscoveryPoll
	}
	if c.RepairPort == 0 {
		c.RepairPort = c.Port
		if c.RepairPort == 0 {
			c.RepairPort = DefaultGossipPort
		}
	}
	if c.RepairInterval <= 0 {
		c.RepairInterval = DefaultRepairInterval
	}
	if c.RepairTimeout <= 0 {
		c.RepairTimeout = DefaultRepairTimeout
	}
	if c.RepairMaxRecords <= 0 {
		c.RepairMaxRecords = DefaultRepairMaxRecords
	}
	if c.RepairConcurrency <= 0 {
		c.RepairConcurrency = DefaultRepairConcurrency
	}
	if c.NackRing == 0 {
		c.NackRing = DefaultNackRing
	}
	if c.MaxClockSkew <= 0 {
		c.MaxClockSkew = DefaultMaxClockSkew
	}
	if c.ReplayWindow <= 0 {
		c.ReplayWindow = DefaultReplayWindow
	}
	if c.RepairAuthTimeout <= 0 {
		c.RepairAuthTimeout = DefaultRepairAuthTimeout
	}
	if c.RepairPerSource <= 0 {
		c.RepairPerSource = DefaultRepairPerSource
	}
	if c.TailProbe == 0 {
		c.TailProbe = DefaultTailProbe
	}
	if !c.Repair || c.NackRing < 0 {
		c.TailProbe = -1
	}
	if c.NackRingBytes <= 0 {
		c.NackRingBytes = DefaultNackRingBytes
	}
	if c.NackRingBytes < wire.MaxDatagramLen {
		return bad("nack ring bytes", c.NackRingBytes)
	}
	if c.Clock == nil {
		c.Clock = realClock{}
	}
	if c.Incarnation == 0 {
		c.Incarnation = uint64(c.Clock.Now().UnixNano())
	}
	return nil
}

// MulticastConfig returns the transport part of the configuration.
func (c *Config) MulticastConfig() MulticastConfig {
	port := c.Port
	if port == 0 {
		port = DefaultGossipPort
	}
	return MulticastConfig{Group: netip.AddrPortFrom(c.Group, port), Interface: c.Interface, TTL: c.TTL}
}

// HostID returns the node's host id.
func (n *Node) HostID() uint16 { return n.cfg.HostID }

// Incarnation returns the node's incarnation.
func (n *Node) Incarnation() uint64 { return n.inc }

// Stats returns a snapshot of the counters.
func (n *Node) Stats() Stats {
	s := loadCounters(&n.stats)
	s.QueueLen = uint64(max(0, n.queued.Load()))
	return s
}

// loadCounters reads a struct of uint64 counters, each with an atomic load.
func loadCounters[T any](p *T) T {
	var s T
	src := reflect.ValueOf(p).Elem()
	dst := reflect.ValueOf(&s).Elem()
	for i := range src.NumField() {
		dst.Field(i).SetUint(atomic.LoadUint64(src.Field(i).Addr().Interface().(*uint64)))
	}
	return s
}

func inc(p *uint64)             { atomic.AddUint64(p, 1) }
func add(p *uint64, v int)      { atomic.AddUint64(p, uint64(v)) }
func setGauge(p *uint64, v int) { atomic.StoreUint64(p, uint64(v)) }

// Run runs the node until ctx is done, then closes the Conn. It returns nil after a
// cancellation; it may be called once.
func (n *Node) Run(ctx context.Context) error {
	if !n.running.CompareAndSwap(false, true) {
		return errors.New("gossip node already ran")
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { n.receiver(ctx); cancel() })
	wg.Go(func() { n.sender(ctx) })
	wg.Go(func() { n.linger(ctx) })
	wg.Go(func() { n.housekeeper(ctx) })
	if n.cfg.Repair {
		wg.Go(func() { n.repairer(ctx, &wg) })
		if n.cfg.RepairListener != nil {
			wg.Go(func() { n.repairServer(ctx, &wg) })
		}
	}
	<-ctx.Done()
	err := n.conn.Close()
	if l := n.cfg.RepairListener; l != nil {
		l.Close()
	}
	wg.Wait()
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("gossip close: %w", err)
	}
	return nil
}

// Owner returns the current owner of k in the node's view.
func (n *Node) Owner(k session.Key) (session.Owner, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	e, ok := n.owners.get(k)
	return e.owner, ok
}

// Peers returns the peers that are up.
func (n *Node) Peers() []Peer {
	n.peersMu.Lock()
	defer n.peersMu.Unlock()
	var ps []Peer
	for _, p := range n.peers {
		if p.state == peerUp {
			ps = append(ps, p.info)
		}
	}
	return ps
}

// applyLocked writes ups to the table. n.mu is held.
func (n *Node) applyLocked(ups []session.Update) {
	if len(ups) == 0 {
		return
	}
	if err := n.table.Apply(ups); err != nil {
		inc(&n.stats.TableErrors)
		n.log.Error("gossip table apply", "updates", len(ups), "err", err)
	}
	setGauge(&n.stats.Sessions, n.owners.len())
}
