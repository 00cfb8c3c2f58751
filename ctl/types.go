package ctl

import "time"

// Commands and their arguments and results. Field names are the JSON of `homingctl
// --json`, a stable interface for scripts: fields may be added, never renamed.
const (
	CmdStatus   = "status"   // no arguments; Status
	CmdPeers    = "peers"    // no arguments; []Peer
	CmdLookup   = "lookup"   // LookupArgs; Lookup
	CmdSessions = "sessions" // SessionsArgs; Sessions
	CmdStats    = "stats"    // no arguments; Stats
	CmdDrain    = "drain"    // no arguments; Status after the drain
	CmdUndrain  = "undrain"  // no arguments; Status after the undrain
	CmdRebind   = "rebind"   // RebindArgs; Rebind
)

// RebindArgs names the host id whose binding to an address and MAC gossip forgets.
type RebindArgs struct {
	Host uint16 `json:"host"`
}

// Rebind is the answer to a rebind: whether the id was bound.
type Rebind struct {
	Host  uint16 `json:"host"`
	Bound bool   `json:"bound"`
}

// Status is the daemon's identity and health.
type Status struct {
	HostID        uint16    `json:"host_id"`
	Name          string    `json:"name"`
	Address       string    `json:"address"`
	MAC           string    `json:"mac"`
	Domain        string    `json:"domain"`
	VIPs          []string  `json:"vips"`
	Version       string    `json:"version"`
	PID           int       `json:"pid"`
	Started       time.Time `json:"started"`
	Uptime        string    `json:"uptime"`
	ConfigFile    string    `json:"config_file"`
	Workers       int       `json:"workers"`
	NIC           string    `json:"nic"`
	Kernel        string    `json:"kernel"`
	Redirect      bool      `json:"redirect"`
	Gossip        bool      `json:"gossip"`
	Incarnation   uint64    `json:"incarnation,omitempty"`
	PeersUp       int       `json:"peers_up"`
	StaticPeers   int       `json:"static_peers"`
	Sessions4     int       `json:"sessions_ipv4"`
	Sessions6     int       `json:"sessions_ipv6"`
	Capacity4     int       `json:"capacity_ipv4"`
	Capacity6     int       `json:"capacity_ipv6"`
	Metrics       string    `json:"metrics"`
	LogLevel      string    `json:"log_level"`
	KeyRotation   bool      `json:"key_rotation"`      // a second gossip key is accepted
	Warming       bool      `json:"warming,omitempty"` // still learning its peers' sessions after the start
	LastReload    time.Time `json:"last_reload,omitzero"`
	LastReloadErr string    `json:"last_reload_error,omitempty"`
	// State is warming, ready, draining, drained or stopping (see OPERATIONS.md, Drain
	// and maintenance); Announced whether the VIPs are announced (ready), since
	// AnnouncedAt; WarmAt when the warm-up ended; Owned the sessions this host owns.
	State         string    `json:"state"`
	Announced     bool      `json:"announced"`
	AnnouncedAt   time.Time `json:"announced_at,omitzero"`
	AnnounceError string    `json:"announce_error,omitempty"`
	WarmAt        time.Time `json:"warm_at,omitzero"`
	Owned         int       `json:"owned_sessions"`
	BGP           []BGPPeer `json:"bgp,omitempty"`
}

// BGPPeer is one BGP neighbour's session.
type BGPPeer struct {
	Address    string    `json:"address"`
	AS         uint32    `json:"as"`
	State      string    `json:"state"` // idle, connect, active, opensent, openconfirm, established
	Since      time.Time `json:"since,omitzero"`
	Advertised uint64    `json:"advertised"`
	Losses     uint64    `json:"losses"` // times the session went down after it had come up
}

// Peer is a host this daemon forwards to, learned by gossip or configured.
type Peer struct {
	ID          uint16 `json:"id"`
	Address     string `json:"address"`
	MAC         string `json:"mac,omitempty"`
	TunnelPort  uint16 `json:"tunnel_port"`
	Domain      string `json:"domain,omitempty"`
	Source      string `json:"source"` // "gossip", "static" or "static+gossip"
	Up          bool   `json:"up"`     // a header template exists: packets are forwarded to it
	Incarnation uint64 `json:"incarnation,omitempty"`
	Sessions    int    `json:"sessions"` // entries it owns in the table (-1: not counted)
}

// LookupArgs names one session, client→VIP.
type LookupArgs struct {
	Proto  string `json:"proto"`  // tcp or udp
	Client string `json:"client"` // address:port
	VIP    string `json:"vip"`    // address:port
}

// Lookup is the data plane's view of one session.
type Lookup struct {
	Session string `json:"session"`
	Found   bool   `json:"found"`
	Owner   uint16 `json:"owner,omitempty"`
	Epoch   uint64 `json:"epoch,omitempty"`
	// Verdict is what the data plane does with the session's packets (SYNs always go
	// to the local kernel).
	Verdict string `json:"verdict"`
}

// SessionsArgs filters the table.
type SessionsArgs struct {
	Owner *uint16 `json:"owner,omitempty"`
	VIP   string  `json:"vip,omitempty"`   // address or address:port
	Limit int     `json:"limit,omitempty"` // 0: DefaultLimit; negative: no limit
}

// DefaultLimit is the number of sessions listed unless asked otherwise.
const DefaultLimit = 1000

// Session is one table entry.
type Session struct {
	Proto  string `json:"proto"`
	Client string `json:"client"`
	VIP    string `json:"vip"`
	Owner  uint16 `json:"owner"`
	Epoch  uint64 `json:"epoch"`
}

// Sessions is a filtered listing of the table.
type Sessions struct {
	Sessions  []Session `json:"sessions"`
	Matched   int       `json:"matched"`   // entries that matched the filter
	Truncated bool      `json:"truncated"` // Matched > len(Sessions)
}

// LcoreStats are one lcore's counters.
type LcoreStats struct {
	Lcore        uint              `json:"lcore"`
	RxNIC        uint64            `json:"rx_nic"`
	RxKernel     uint64            `json:"rx_kernel"`
	TxNIC        uint64            `json:"tx_nic"`
	TxKernel     uint64            `json:"tx_kernel"`
	Redirected   uint64            `json:"redirected"`
	Decapsulated uint64            `json:"decapsulated"`
	Classes      map[string]uint64 `json:"classes"`
	Drops        map[string]uint64 `json:"drops"`
	// GUERefused: GUE to this host's tunnel port refused (dropped), by reason
	// (unknown_source, malformed, inner_malformed, inner_proto, inner_not_vip).
	GUERefused    map[string]uint64 `json:"gue_refused"`
	ICMPTooBig    uint64            `json:"icmp_too_big"`        // ICMP too-big replies sent to clients
	MSSClamped    uint64            `json:"mss_clamped"`         // SYN-ACK MSS options lowered
	FragTunnelled uint64            `json:"fragments_tunnelled"` // fragments of too-big IPv4 packets without DF
	// Park: packets of unknown sessions held for a second lookup: held (by protocol),
	// released (to the owner or the local kernel once known), expired (to the kernel
	// after tunnel.park_hold), full (not held: the protocol's share was full),
	// warmup_dropped.
	Park      map[string]uint64 `json:"park"`
	BusyRatio float64           `json:"busy_ratio"`
	// Counters are the lcore's other counters (loops, cycles, ...), by name: every
	// counter of lcore.Stats is in a field above or here.
	Counters map[string]uint64 `json:"counters,omitempty"`
}

// PortStats are a DPDK port's counters.
type PortStats struct {
	Name      string `json:"name"`
	RxPackets uint64 `json:"rx_packets"`
	TxPackets uint64 `json:"tx_packets"`
	RxBytes   uint64 `json:"rx_bytes"`
	TxBytes   uint64 `json:"tx_bytes"`
	RxMissed  uint64 `json:"rx_missed"`
	RxErrors  uint64 `json:"rx_errors"`
	TxErrors  uint64 `json:"tx_errors"`
	RxNoMbuf  uint64 `json:"rx_nombuf"`
	// Counters are the port's other counters, by name: per queue, q<N>_rx_packets,
	// q<N>_rx_bytes, q<N>_rx_errors, q<N>_tx_packets, q<N>_tx_bytes (ethdev xstats).
	Counters map[string]uint64 `json:"counters,omitempty"`
}

// Stats are every counter, as the metrics show them: the daemon fills them from the
// ctl tags of the counter structs (metrics/counters.go), not field by field.
type Stats struct {
	Lcores []LcoreStats      `json:"lcores"`
	Ports  []PortStats       `json:"ports"`
	Table  map[string]uint64 `json:"table"`
	Gossip map[string]uint64 `json:"gossip,omitempty"` // absent when gossip is off
	Reject map[string]uint64 `json:"gossip_rejected,omitempty"`
	Owners map[string]int    `json:"owners,omitempty"` // entries per owner host id
	Probe  map[string]uint64 `json:"probe,omitempty"`  // absent when the probe is off
	Relay  map[string]uint64 `json:"relay,omitempty"`  // absent unless this host is a gossip relay
	UDP    map[string]uint64 `json:"udp,omitempty"`    // absent without [[udp_sessions]]
}
