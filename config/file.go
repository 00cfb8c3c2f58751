package config

// The structs in this file mirror the TOML schema key by key: their toml tags are the
// set of accepted keys (docs/CONFIG.md lists the same set; a test compares them).
// Values stay as TOML gives them (strings, integers, booleans) so that validation can
// report every problem of a file at once; parse() turns them into a Config.
//
// Keys of tables are prefilled with their defaults before decoding (TOML overwrites
// only what the file sets). Elements of arrays of tables cannot be prefilled, so their
// optional keys are pointers.

type fileConfig struct {
	Host     fileHost      `toml:"host"`
	DPDK     fileDPDK      `toml:"dpdk"`
	NIC      fileNIC       `toml:"nic"`
	Kernel   fileKernel    `toml:"kernel"`
	Tunnel   fileTunnel    `toml:"tunnel"`
	Table    fileTable     `toml:"table"`
	Peers    []filePeer    `toml:"peers"`
	Sessions []fileSession `toml:"sessions"`
	UDP      []fileUDP     `toml:"udp_sessions"`
	Gossip   fileGossip    `toml:"gossip"`
	Probe    fileProbe     `toml:"probe"`
	BGP      fileBGP       `toml:"bgp"`
	Metrics  fileMetrics   `toml:"metrics"`
	Control  fileControl   `toml:"control"`
	Log      fileLog       `toml:"log"`
}

type fileHost struct {
	ID      int      `toml:"id"`
	Name    string   `toml:"name"`
	Address string   `toml:"address"`
	MAC     string   `toml:"mac"`
	Domain  string   `toml:"domain"`
	Gateway string   `toml:"gateway"`
	VIPs    []string `toml:"vips"`
}

type fileDPDK struct {
	FilePrefix     string   `toml:"file_prefix"`
	Hugepages      bool     `toml:"hugepages"`
	MemoryMB       int      `toml:"memory_mb"`
	CPUs           string   `toml:"cpus"`
	Workers        int      `toml:"workers"`
	Mbufs          int      `toml:"mbufs"`
	IdleSleepMaxUS int      `toml:"idle_sleep_max_us"`
	LogLevel       string   `toml:"log_level"`
	ExtraArgs      []string `toml:"extra_args"`
}

type fileNIC struct {
	Device      string `toml:"device"`
	PCI         string `toml:"pci"`
	MTU         int    `toml:"mtu"`
	Promiscuous bool   `toml:"promiscuous"`
	RxDesc      int    `toml:"rx_desc"`
	TxDesc      int    `toml:"tx_desc"`
}

type fileKernel struct {
	Device    string      `toml:"device"`
	Name      string      `toml:"name"`
	Addresses []string    `toml:"addresses"`
	Routes    []fileRoute `toml:"routes"`
	MTU       int         `toml:"mtu"`
}

// fileRelay is one gossip relay of the POP.
type fileRelay struct {
	Domain  string `toml:"domain"`
	Address string `toml:"address"`
}

type fileRoute struct {
	To  string `toml:"to"`
	Via string `toml:"via"`
}

type fileTunnel struct {
	Port      int    `toml:"port"`
	Redirect  bool   `toml:"redirect"`
	ParkHold  string `toml:"park_hold"`
	ParkSize  int    `toml:"park_size"`
	ParkUDP   *int   `toml:"park_udp"` // default: a quarter of park_size with [[udp_sessions]]
	ClampMSS  bool   `toml:"clamp_mss"`
	ICMPRate  int    `toml:"icmp_rate"`
	ICMPBurst int    `toml:"icmp_burst"`
}

// fileUDP declares a UDP port of the VIPs whose flows are sessions.
type fileUDP struct {
	Port        int     `toml:"port"`
	QUIC        *bool   `toml:"quic"`
	QUICCID     *bool   `toml:"quic_cid"`
	CIDLen      int     `toml:"cid_len"`
	IdleTimeout *string `toml:"idle_timeout"`
}

type fileTable struct {
	Capacity4 int `toml:"capacity4"`
	Capacity6 int `toml:"capacity6"`
}

type filePeer struct {
	ID         int     `toml:"id"`
	Address    string  `toml:"address"`
	MAC        string  `toml:"mac"`
	TunnelPort *int    `toml:"tunnel_port"`
	Domain     *string `toml:"domain"`
}

type fileSession struct {
	Client string  `toml:"client"`
	VIP    string  `toml:"vip"`
	Proto  *string `toml:"proto"`
	Owner  int     `toml:"owner"`
}

type fileGossip struct {
	Enabled           bool        `toml:"enabled"`
	Group             string      `toml:"group"`
	Port              int         `toml:"port"`
	Interface         string      `toml:"interface"`
	TTL               int         `toml:"ttl"`
	KeyFile           string      `toml:"key_file"`
	Insecure          bool        `toml:"insecure"`
	MaxDatagram       int         `toml:"max_datagram"`
	FlushDelay        string      `toml:"flush_delay"`
	Flush             string      `toml:"flush"`
	MaxRate           int         `toml:"max_rate"`
	HeartbeatInterval string      `toml:"heartbeat_interval"`
	DownAfter         int         `toml:"down_after"`
	Grace             string      `toml:"grace"`
	Linger            string      `toml:"linger"`
	DiscoveryFile     string      `toml:"discovery_file"`
	Repair            bool        `toml:"repair"`
	RepairPort        int         `toml:"repair_port"`
	RepairInterval    string      `toml:"repair_interval"`
	RepairTimeout     string      `toml:"repair_timeout"`
	RepairMaxRecords  int         `toml:"repair_max_records"`
	RepairAuthTimeout string      `toml:"repair_auth_timeout"`
	RepairPerSource   int         `toml:"repair_per_source"`
	MaxClockSkew      string      `toml:"max_clock_skew"`
	ReplayWindow      string      `toml:"replay_window"`
	MaxQueue          int         `toml:"max_queue"`
	NackRing          int         `toml:"nack_ring"`
	Digest            bool        `toml:"digest"`
	Relays            []fileRelay `toml:"relays"`
	RelayPort         int         `toml:"relay_port"`
}

type fileProbe struct {
	Enabled           bool   `toml:"enabled"`
	Cgroup            string `toml:"cgroup"`
	Tentative         bool   `toml:"tentative"`
	TentativeLifetime string `toml:"tentative_lifetime"`
	RingBytes         int    `toml:"ring_bytes"`
}

type fileBGP struct {
	LocalAS     int               `toml:"local_as"`
	RouterID    string            `toml:"router_id"`
	HoldTime    string            `toml:"hold_time"`
	Communities []string          `toml:"communities"`
	StopLinger  string            `toml:"stop_linger"`
	Neighbors   []fileBGPNeighbor `toml:"neighbors"`
}

type fileBGPNeighbor struct {
	Address  string  `toml:"address"`
	AS       int     `toml:"as"`
	Password *string `toml:"password"`
	Port     *int    `toml:"port"`
}

type fileMetrics struct {
	Listen string `toml:"listen"`
}

type fileControl struct {
	Socket string `toml:"socket"`
}

type fileLog struct {
	Level  string `toml:"level"`
	Format string `toml:"format"`
}

// defaultFile is the decoding target before a file is read: every table key at its
// static default. Keys whose default derives from another key are left empty here.
func defaultFile() fileConfig {
	return fileConfig{
		Host: fileHost{Domain: DefaultDomain},
		DPDK: fileDPDK{
			MemoryMB:       DefaultMemoryMB,
			Workers:        DefaultWorkers,
			IdleSleepMaxUS: DefaultIdleSleepMaxUS,
			LogLevel:       DefaultDPDKLogLevel,
		},
		NIC:    fileNIC{MTU: DefaultMTU, Promiscuous: true, RxDesc: DefaultRxDesc, TxDesc: DefaultTxDesc},
		Kernel: fileKernel{Name: DefaultKernelName},
		Tunnel: fileTunnel{Port: DefaultTunnelPort, Redirect: true, ParkHold: DefaultParkHold.String(), ParkSize: DefaultParkSize,
			ClampMSS: true, ICMPRate: DefaultICMPRate, ICMPBurst: DefaultICMPBurst},
		Table: fileTable{Capacity4: DefaultCapacity4, Capacity6: DefaultCapacity6},
		BGP:   fileBGP{HoldTime: DefaultBGPHoldTime.String(), StopLinger: DefaultBGPStopLinger.String()},
		Gossip: fileGossip{
			Enabled:           true,
			Group:             DefaultGossipGroup,
			Port:              DefaultGossipPort,
			TTL:               DefaultGossipTTL,
			MaxDatagram:       DefaultMaxDatagram,
			FlushDelay:        DefaultFlushDelay.String(),
			Flush:             "adaptive",
			MaxRate:           DefaultMaxRate,
			HeartbeatInterval: DefaultHeartbeatInterval.String(),
			DownAfter:         DefaultDownAfter,
			Grace:             DefaultGrace.String(),
			Linger:            DefaultLinger.String(),
			Repair:            true,
			RepairInterval:    DefaultRepairInterval.String(),
			RepairTimeout:     DefaultRepairTimeout.String(),
			RepairMaxRecords:  DefaultRepairMaxRecords,
			RepairAuthTimeout: DefaultRepairAuthTimeout.String(),
			RepairPerSource:   DefaultRepairPerSource,
			MaxClockSkew:      DefaultMaxClockSkew.String(),
			ReplayWindow:      DefaultReplayWindow.String(),
			MaxQueue:          DefaultMaxQueue,
			NackRing:          DefaultNackRing,
			Digest:            true,
			RelayPort:         DefaultRelayPort,
		},
		Probe: fileProbe{Enabled: true, Cgroup: DefaultCgroup, Tentative: true, TentativeLifetime: DefaultTentativeLifetime.String(),
			RingBytes: DefaultProbeRingBytes},
		Metrics: fileMetrics{Listen: DefaultMetricsListen},
		Control: fileControl{Socket: DefaultControlSocket},
		Log:     fileLog{Level: DefaultLogLevel, Format: DefaultLogFormat},
	}
}
