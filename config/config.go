// Package config reads homingd's TOML configuration into a validated, typed spec.
//
// Parse decodes a file into plain structs that mirror the TOML schema (file.go), then
// checks every key and builds a Config of typed values (netip.Addr, netip.Prefix,
// net.HardwareAddr, time.Duration, session.Key). It reports every problem of a file at
// once, each naming the file and the key:
//
//	configs/h1.toml: host.id: must be 1..4095, got 0
//	configs/h1.toml: peers[1].mac: "02:00:00:00:00" is not a 6-byte Ethernet address
//
// Keys homingd does not know are errors. Optional keys get the defaults documented in
// docs/CONFIG.md, which a test keeps in sync with the structs of this package; the
// gossip keys' defaults are package gossip's, the host-id limit session.MaxHostID.
// Diff names the keys two configurations differ in (a reload's refusal names them).
package config

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/homing-dev/homing/gossip"
	"github.com/homing-dev/homing/session"
)

// Defaults of the optional keys. Keys whose default derives from another key (for
// example dpdk.file_prefix from host.id) are filled in by Parse. The gossip keys' are
// the gossip package's own defaults (what a zero gossip.Config field means), named here
// once more for the configuration's reader.
const (
	DefaultDomain         = "default"
	DefaultMemoryMB       = 256
	DefaultWorkers        = 1
	DefaultIdleSleepMaxUS = 200
	DefaultDPDKLogLevel   = "notice"
	DefaultMTU            = 1500
	DefaultRxDesc         = 1024
	DefaultTxDesc         = 1024
	DefaultKernelName     = "homing0"
	DefaultTunnelPort     = gossip.DefaultTunnelPort
	DefaultParkHold       = 50 * time.Millisecond
	DefaultParkSize       = 1024
	DefaultICMPRate       = 1000
	DefaultICMPBurst      = 100
	// BGP: hold time (keepalives every third) and how long a stopping host serves after
	// its withdrawal.
	DefaultBGPHoldTime       = 9 * time.Second
	DefaultBGPStopLinger     = 5 * time.Second
	DefaultCapacity4         = 1 << 20
	DefaultCapacity6         = 1 << 18
	DefaultGossipGroup       = "239.193.0.1"
	DefaultGossipPort        = gossip.DefaultGossipPort
	DefaultGossipTTL         = 1
	DefaultMaxDatagram       = gossip.DefaultMaxDatagram
	DefaultProbeRingBytes    = 4 << 20
	DefaultFlushDelay        = gossip.DefaultFlushDelay
	DefaultMaxRate           = gossip.DefaultMaxRate
	DefaultHeartbeatInterval = gossip.DefaultHeartbeatInterval
	DefaultDownAfter         = gossip.DefaultDownAfter
	DefaultGrace             = gossip.DefaultGrace
	DefaultLinger            = gossip.DefaultLinger
	DefaultRepairInterval    = gossip.DefaultRepairInterval
	DefaultRepairTimeout     = gossip.DefaultRepairTimeout
	DefaultRepairMaxRecords  = gossip.DefaultRepairMaxRecords
	DefaultRepairAuthTimeout = gossip.DefaultRepairAuthTimeout
	DefaultRepairPerSource   = gossip.DefaultRepairPerSource
	DefaultMaxClockSkew      = gossip.DefaultMaxClockSkew
	DefaultReplayWindow      = gossip.DefaultReplayWindow
	DefaultMaxQueue          = gossip.DefaultMaxQueue
	DefaultNackRing          = gossip.DefaultNackRing
	DefaultRelayPort         = gossip.DefaultRelayPort
	DefaultCgroup            = "/sys/fs/cgroup/unified"
	DefaultTentativeLifetime = 3 * time.Second
	DefaultMetricsListen     = "127.0.0.1:9370"
	DefaultControlSocket     = "/run/homing/homingd.sock"
	DefaultLogLevel          = "info"
	DefaultLogFormat         = "text"
	// MinMbufs is the smallest computed mempool size.
	MinMbufs = 4095
	// MaxHostID is the largest host id (session.MaxHostID).
	MaxHostID = session.MaxHostID
	// MaxWorkers is the largest number of worker lcores (and NIC rx queues).
	MaxWorkers = 16
)

// Config is a validated homingd configuration.
type Config struct {
	Source   string // the file name given to Parse or Load
	Host     Host
	DPDK     DPDK
	NIC      NIC
	Kernel   Kernel
	Tunnel   Tunnel
	Table    Table
	Peers    []Peer    // static peers, in file order
	Sessions []Session // static table entries, in file order
	// UDPSessions are the VIPs' UDP session ports, in file order.
	UDPSessions []UDPSession
	Gossip      Gossip
	Probe       Probe
	BGP         BGP
	Metrics     Metrics
	Control     Control
	Log         Log
}

// BGP is how the host announces its VIPs to the POP's routers. Without neighbours it is
// off: the routers are configured by other means (static routes).
type BGP struct {
	LocalAS     uint32
	RouterID    netip.Addr // IPv4; default: host.address when it is IPv4
	HoldTime    time.Duration
	Communities []string // "AS:value"
	// StopLinger is how long a stopping homingd keeps serving after it has withdrawn
	// its VIPs (the router moves the flows to the other hosts meanwhile).
	StopLinger time.Duration
	Neighbors  []BGPNeighbor
}

// Enabled reports whether the host speaks BGP (it has neighbours).
func (b BGP) Enabled() bool { return len(b.Neighbors) > 0 }

// BGPNeighbor is one BGP peer (a POP router).
type BGPNeighbor struct {
	Address  netip.Addr
	AS       uint32
	Password string
	Port     uint16
}

// Host is this host's identity in the POP.
type Host struct {
	ID      uint16           // 1..4095, unique in the POP
	Name    string           // default: the hostname
	Address netip.Addr       // address on the POP LAN: outer tunnel and gossip source
	MAC     net.HardwareAddr // nil: use the NIC's own MAC
	Domain  string           // L2 domain (rack) name
	Gateway netip.Addr       // zero: no gateway to other domains
	VIPs    []netip.Prefix   // VIP addresses (/32, /128) or prefixes, at least one
}

// VIPAddrs returns the VIPs that are single addresses (/32 or /128): the ones that
// are configured on the kernel interface.
func (h Host) VIPAddrs() []netip.Addr {
	var out []netip.Addr
	for _, p := range h.VIPs {
		if p.IsSingleIP() {
			out = append(out, p.Addr())
		}
	}
	return out
}

// IsVIP reports whether a is within one of the VIPs.
func (h Host) IsVIP(a netip.Addr) bool {
	for _, p := range h.VIPs {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// DPDK is the EAL and lcore setup.
type DPDK struct {
	FilePrefix   string        // --file-prefix; default "homing-<host.id>"
	Hugepages    bool          // false: --no-huge --no-shconf; true: hugepages with --in-memory
	MemoryMB     int           // -m
	CPUs         []int         // CPUs the lcores may run on, sorted, unique
	Workers      int           // worker lcores = NIC rx queues
	Mbufs        int           // mempool size
	IdleSleepMax time.Duration // idle backoff bound; 0 = pure busy polling
	LogLevel     string        // DPDK log level (name or 1..8)
	ExtraArgs    []string      // appended to the EAL arguments
}

// NIC is the DPDK port facing the POP LAN. Exactly one of Device and PCI is set.
type NIC struct {
	Device      string // a DPDK vdev string, e.g. "net_af_packet0,iface=eth0"
	PCI         string // a PCI address, e.g. "0000:01:00.0"
	MTU         int
	Promiscuous bool
	RxDesc      int
	TxDesc      int
}

// Kernel is the exception path to the kernel: a DPDK port (normally net_tap) whose
// kernel-side interface package kni configures.
type Kernel struct {
	Device    string         // DPDK vdev string of the kernel port
	Name      string         // kernel interface name (max 15 characters)
	Addresses []netip.Prefix // interface addresses (address plus prefix length)
	Routes    []Route
	MTU       int
}

// IsTAP reports whether the kernel port is a net_tap device, whose interface kni
// configures (a net_pcap kernel port, used by offline tests, has none).
func (k Kernel) IsTAP() bool {
	d := vdevDriver(k.Device)
	return d == "net_tap" || d == "eth_tap"
}

// Route is a route added through the kernel interface. Via is the zero Addr for a
// directly connected route.
type Route struct {
	To  netip.Prefix
	Via netip.Addr
}

// Tunnel is the GUE encapsulation.
type Tunnel struct {
	Port uint16 // GUE UDP destination port
	// Redirect enables forwarding to other owners. false hands every packet to the local
	// kernel as plain ECMP would (the lab's baseline); decapsulation still works.
	Redirect bool
	// ParkHold is how long a packet of an unknown VIP session is held (and looked up
	// again when the table changes) before it goes to the local kernel; 0 = off.
	ParkHold time.Duration
	// ParkSize bounds the packets held per worker lcore.
	ParkSize int
	// ParkUDP is how many of ParkSize's slots packets of UDP session ports may hold;
	// TCP holds the rest.
	ParkUDP int
	// ClampMSS lowers the MSS option of the SYN-ACKs the kernel sends from a VIP to what
	// fits through the tunnel (nic.mtu minus IP, TCP and tunnel headers), so that clients
	// never send a segment the tunnel cannot carry.
	ClampMSS bool
	// ICMPRate is how many ICMP "fragmentation needed" / ICMPv6 "packet too big" replies
	// per second each worker lcore sends to clients whose packets are too big for the
	// tunnel (bursts of up to ICMPBurst); 0 sends none (those packets are dropped).
	ICMPRate, ICMPBurst int
}

// UDPSession declares a UDP port of the VIPs whose flows are sessions: the only UDP
// whose packets of unknown flows wait in the park.
type UDPSession struct {
	Port uint16
	QUIC bool // a QUIC service: long-header Initial packets go to the kernel like SYNs
	// QUICCID: the port's QUIC servers encode their host id in the connection IDs they
	// issue (quiccid): an unknown flow goes to the live host its DCID names.
	QUICCID bool
	// CIDLen: the length of the connection IDs the port's QUIC servers issue, learnt
	// from their handshake packets so that a packet of an unknown flow whose DCID is one
	// goes to the host that learnt it (session.MinCIDLen..MaxCIDLen; 0: off).
	CIDLen int
	// IdleTimeout: a learned flow of this port that the kernel has not answered for this
	// long is deleted (gossiped).
	IdleTimeout time.Duration
}

// DefaultUDPIdleTimeout is udp_sessions[].idle_timeout's default; MinUDPIdleTimeout and
// MaxUDPIdleTimeout bound it.
const (
	DefaultUDPIdleTimeout = 30 * time.Second
	MinUDPIdleTimeout     = time.Second
	MaxUDPIdleTimeout     = 24 * time.Hour
	// MaxCIDLenPorts is the most udp_sessions with a cid_len (lcore.MaxCIDLenPorts).
	MaxCIDLenPorts = 16
)

// Table sizes the ownership tables.
type Table struct {
	Capacity4 int // IPv4 sessions
	Capacity6 int // IPv6 sessions
}

// Peer is a statically configured peer host.
type Peer struct {
	ID         uint16
	Address    netip.Addr
	MAC        net.HardwareAddr // nil: unknown until learned
	TunnelPort uint16
	Domain     string
}

// Session is a static table entry.
type Session struct {
	Key   session.Key
	Owner uint16 // host id: this host or a configured peer
}

// Gossip is the multicast ownership gossip.
type Gossip struct {
	Enabled           bool
	Group             netip.Addr // multicast group, same family as host.address
	Port              uint16
	Interface         string // default kernel.name
	TTL               int
	KeyFile           string // HMAC key file; the caller reads it
	Insecure          bool   // no authentication (tests only)
	MaxDatagram       int    // bytes of UDP payload
	FlushDelay        time.Duration
	Flush             string // "adaptive" or "fixed"
	MaxRate           int    // datagrams per second
	HeartbeatInterval time.Duration
	DownAfter         int // missed heartbeats before a peer is down
	Grace             time.Duration
	Linger            time.Duration
	DiscoveryFile     string
	Repair            bool   // unicast repair (anti-entropy) of lost gossip
	RepairPort        uint16 // TCP port of the repair listeners; default Port
	RepairInterval    time.Duration
	RepairTimeout     time.Duration
	RepairMaxRecords  int
	// RepairAuthTimeout: a repair or NACK connection's time to authenticate;
	// RepairPerSource: connections served at once per source address.
	RepairAuthTimeout time.Duration
	RepairPerSource   int
	// MaxClockSkew: how far a peer's incarnation may run ahead of this host's clock;
	// ReplayWindow: the age (either way) a first datagram of a peer may have.
	MaxClockSkew time.Duration
	ReplayWindow time.Duration
	MaxQueue     int  // records waiting to be sent, at most
	NackRing     int  // datagrams kept for NACK retransmission; 0: NACK off
	Digest       bool // compare heartbeat digests (repair on silent divergence)
	// Relays are the gossip relays of the POP, every domain's: each forwards its domain's
	// gossip to the relays of the other domains, which multicast it in theirs. This host
	// relays if its host.address is listed.
	Relays    []Relay
	RelayPort uint16 // UDP port of the relays
}

// Relay is one gossip relay host.
type Relay struct {
	Domain  string
	Address netip.Addr
}

// IsRelay reports whether this host is one of the relays.
func (c *Config) IsRelay() bool {
	for _, r := range c.Gossip.Relays {
		if r.Address == c.Host.Address {
			return true
		}
	}
	return false
}

// RelayPeers are the relays of the other domains: where this host, if it relays, sends
// its domain's gossip.
func (c *Config) RelayPeers() []netip.AddrPort {
	var out []netip.AddrPort
	for _, r := range c.Gossip.Relays {
		if r.Domain != c.Host.Domain {
			out = append(out, netip.AddrPortFrom(r.Address, c.Gossip.RelayPort))
		}
	}
	return out
}

// Probe is the sock_ops probe.
type Probe struct {
	Enabled bool
	Cgroup  string // cgroup v2 directory the probe attaches to
	// Tentative claims sessions whose handshake is in flight (SYN received on a VIP),
	// for TentativeLifetime unless the handshake completes.
	Tentative         bool
	TentativeLifetime time.Duration
	RingBytes         int // the probe's ring buffer: a power of two, 4096 .. 1 GiB
}

// Metrics is the Prometheus endpoint.
type Metrics struct {
	Listen string // host:port; "" disables
}

// Control is the local control socket of homingctl.
type Control struct {
	Socket string // Unix socket path
}

// Log is the daemon's own logging.
type Log struct {
	Level  string // debug|info|warn|error
	Format string // text|json
}

// Default returns a Config with every optional key at its default. The required keys
// (host.id, host.address, host.vips, one of nic.device/nic.pci) are zero, and the keys
// whose default derives from them (dpdk.file_prefix, kernel.addresses,
// gossip.interface, ...) are filled in by Parse only.
func Default() *Config {
	return &Config{
		Host: Host{Name: defaultHostname(), Domain: DefaultDomain},
		DPDK: DPDK{
			MemoryMB:     DefaultMemoryMB,
			CPUs:         onlineCPUs(),
			Workers:      DefaultWorkers,
			Mbufs:        computeMbufs(DefaultWorkers, DefaultRxDesc, DefaultTxDesc),
			IdleSleepMax: DefaultIdleSleepMaxUS * time.Microsecond,
			LogLevel:     DefaultDPDKLogLevel,
		},
		NIC: NIC{MTU: DefaultMTU, Promiscuous: true, RxDesc: DefaultRxDesc, TxDesc: DefaultTxDesc},
		Kernel: Kernel{
			Device: "net_tap0,iface=" + DefaultKernelName,
			Name:   DefaultKernelName,
			MTU:    DefaultMTU,
		},
		Tunnel: Tunnel{Port: DefaultTunnelPort, Redirect: true, ParkHold: DefaultParkHold, ParkSize: DefaultParkSize,
			ClampMSS: true, ICMPRate: DefaultICMPRate, ICMPBurst: DefaultICMPBurst},
		Table: Table{Capacity4: DefaultCapacity4, Capacity6: DefaultCapacity6},
		Gossip: Gossip{
			Enabled:           true,
			Group:             netip.MustParseAddr(DefaultGossipGroup),
			Port:              DefaultGossipPort,
			Interface:         DefaultKernelName,
			TTL:               DefaultGossipTTL,
			MaxDatagram:       DefaultMaxDatagram,
			FlushDelay:        DefaultFlushDelay,
			Flush:             "adaptive",
			MaxRate:           DefaultMaxRate,
			HeartbeatInterval: DefaultHeartbeatInterval,
			DownAfter:         DefaultDownAfter,
			Grace:             DefaultGrace,
			Linger:            DefaultLinger,
			Repair:            true,
			RepairPort:        DefaultGossipPort,
			RepairInterval:    DefaultRepairInterval,
			RepairTimeout:     DefaultRepairTimeout,
			RepairMaxRecords:  DefaultRepairMaxRecords,
			RepairAuthTimeout: DefaultRepairAuthTimeout,
			RepairPerSource:   DefaultRepairPerSource,
			MaxClockSkew:      DefaultMaxClockSkew,
			ReplayWindow:      DefaultReplayWindow,
			MaxQueue:          DefaultMaxQueue,
			NackRing:          DefaultNackRing,
			Digest:            true,
			RelayPort:         DefaultRelayPort,
		},
		Probe: Probe{Enabled: true, Cgroup: DefaultCgroup, Tentative: true, TentativeLifetime: DefaultTentativeLifetime,
			RingBytes: DefaultProbeRingBytes},
		BGP:     BGP{HoldTime: DefaultBGPHoldTime, StopLinger: DefaultBGPStopLinger},
		Metrics: Metrics{Listen: DefaultMetricsListen},
		Control: Control{Socket: DefaultControlSocket},
		Log:     Log{Level: DefaultLogLevel, Format: DefaultLogFormat},
	}
}

// Load reads and parses the file at path; errors name path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(data, path)
}

// Parse parses TOML data; name (usually the file path) prefixes every error. The
// error, if any, joins one *FieldError per problem found.
func Parse(data []byte, name string) (*Config, error) {
	return parse(data, name)
}

// Peer returns the static peer with the given id.
func (c *Config) Peer(id uint16) (Peer, bool) {
	for _, p := range c.Peers {
		if p.ID == id {
			return p, true
		}
	}
	return Peer{}, false
}

func defaultHostname() string {
	h, err := os.Hostname()
	if err != nil || h == "" || !validName(h) {
		return "homing"
	}
	return h
}
