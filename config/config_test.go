package config

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/homing-dev/homing/session"
)

// minimal is the smallest valid file.
const minimal = `
[host]
id = 7
address = "198.18.0.17"
vips = ["198.19.255.1"]

[nic]
device = "net_af_packet0,iface=eth0"

[gossip]
insecure = true
`

func mustParse(t *testing.T, src string) *Config {
	t.Helper()
	c, err := Parse([]byte(src), "t.toml")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return c
}

func TestExampleConfigs(t *testing.T) {
	files, err := filepath.Glob("../configs/*.toml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 4 {
		t.Fatalf("found %d files in configs/, want at least 4", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			c, err := Load(f)
			if err != nil {
				t.Fatalf("%v", err)
			}
			if c.Source != f || c.Host.ID == 0 || !c.Host.Address.IsValid() || len(c.Host.VIPs) == 0 {
				t.Errorf("incomplete config: %+v", c.Host)
			}
			if len(c.VDevs()) == 0 || c.DPDK.CPUList() == "" {
				t.Errorf("VDevs %q, CPUs %q", c.VDevs(), c.DPDK.CPUList())
			}
		})
	}
}

func TestMinimalGetsDefaults(t *testing.T) {
	c := mustParse(t, minimal)
	want := Default()
	want.Source = "t.toml"
	want.Host.ID = 7
	want.Host.Address = netip.MustParseAddr("198.18.0.17")
	want.Host.VIPs = []netip.Prefix{netip.MustParsePrefix("198.19.255.1/32")}
	want.NIC.Device = "net_af_packet0,iface=eth0"
	want.DPDK.FilePrefix = "homing-7"
	want.DPDK.ExtraArgs = []string{}
	want.Kernel.Addresses = []netip.Prefix{netip.MustParsePrefix("198.18.0.17/24")}
	want.Gossip.Insecure = true
	// Parse leaves nil slices nil; normalise the one Default sets differently.
	c.DPDK.ExtraArgs = []string{}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("Parse(minimal) =\n%+v\nwant\n%+v", c, want)
	}
	if c.Kernel.Device != "net_tap0,iface=homing0" || !c.Kernel.IsTAP() {
		t.Errorf("kernel.device = %q", c.Kernel.Device)
	}
	if c.Gossip.Interface != "homing0" || c.Kernel.MTU != 1500 || c.DPDK.Mbufs != 8191 {
		t.Errorf("derived defaults: interface %q, kernel mtu %d, mbufs %d", c.Gossip.Interface, c.Kernel.MTU, c.DPDK.Mbufs)
	}
}

func TestFullFile(t *testing.T) {
	c := mustParse(t, `
[host]
id = 4095
name = "edge-9"
address = "2001:2::9"
mac = "02:aa:bb:cc:dd:ee"
domain = "rack-9"
gateway = "2001:2::1"
vips = ["2001:2:0:ff::/120", "198.19.255.9"]

[dpdk]
file_prefix = "fp"
hugepages = true
memory_mb = 512
cpus = "1,3-4"
workers = 3
mbufs = 16383
idle_sleep_max_us = 0
log_level = "debug"
extra_args = ["--huge-unlink"]

[nic]
pci = "0000:01:00.1"
mtu = 9000
promiscuous = false
rx_desc = 512
tx_desc = 256

[kernel]
device = "net_tap3,iface=k9"
name = "k9"
addresses = ["2001:2::9/64", "198.18.9.9/24"]
routes = [{ to = "::/0", via = "2001:2::1" }, { to = "198.18.64.0/18" }]
mtu = 1400

[tunnel]
port = 7000
redirect = false
park_hold = "5ms"
park_size = 64
clamp_mss = false
icmp_rate = 10
icmp_burst = 5

[table]
capacity4 = 100
capacity6 = 64

[[peers]]
id = 1
address = "2001:2::1:1"
mac = "02:00:00:00:00:01"
tunnel_port = 7001
domain = "rack-1"

[[peers]]
id = 2
address = "2001:2::2"

[[sessions]]
client = "[2001:2:0:100::2]:40000"
vip = "[2001:2:0:ff::17]:443"
proto = "udp"
owner = 1

[[sessions]]
client = "198.18.100.2:1"
vip = "198.19.255.9:80"
owner = 4095

[gossip]
enabled = true
group = "ff02::1:6"
port = 7002
interface = "eth9"
ttl = 2
key_file = "/k"
insecure = false
max_datagram = 1300
flush_delay = "1ms"
flush = "fixed"
max_queue = 1000
nack_ring = 0
max_rate = 5
heartbeat_interval = "1s"
down_after = 5
grace = "1m"
linger = "2m30s"
discovery_file = "/var/lib/homing/peers"
repair = false
repair_port = 7003
repair_interval = "250ms"
repair_timeout = "2s"
repair_max_records = 5000
repair_auth_timeout = "300ms"
repair_per_source = 3
max_clock_skew = "5s"
replay_window = "20s"
digest = false

[probe]
enabled = false
cgroup = "relative/is/fine/when/disabled"
tentative = false
tentative_lifetime = "500ms"

[metrics]
listen = "[::1]:0"

[control]
socket = "/tmp/x.sock"

[log]
level = "debug"
format = "json"
`)
	want := &Config{
		Source: "t.toml",
		Host: Host{
			ID: 4095, Name: "edge-9", Address: netip.MustParseAddr("2001:2::9"),
			MAC: net.HardwareAddr{2, 0xaa, 0xbb, 0xcc, 0xdd, 0xee}, Domain: "rack-9",
			Gateway: netip.MustParseAddr("2001:2::1"),
			VIPs:    []netip.Prefix{netip.MustParsePrefix("2001:2:0:ff::/120"), netip.MustParsePrefix("198.19.255.9/32")},
		},
		DPDK: DPDK{FilePrefix: "fp", Hugepages: true, MemoryMB: 512, CPUs: []int{1, 3, 4}, Workers: 3,
			Mbufs: 16383, LogLevel: "debug", ExtraArgs: []string{"--huge-unlink"}},
		NIC: NIC{PCI: "0000:01:00.1", MTU: 9000, RxDesc: 512, TxDesc: 256},
		Kernel: Kernel{Device: "net_tap3,iface=k9", Name: "k9",
			Addresses: []netip.Prefix{netip.MustParsePrefix("2001:2::9/64"), netip.MustParsePrefix("198.18.9.9/24")},
			Routes: []Route{{To: netip.MustParsePrefix("::/0"), Via: netip.MustParseAddr("2001:2::1")},
				{To: netip.MustParsePrefix("198.18.64.0/18")}},
			MTU: 1400},
		Tunnel: Tunnel{Port: 7000, ParkHold: 5 * time.Millisecond, ParkSize: 64, ICMPRate: 10, ICMPBurst: 5},
		Table:  Table{Capacity4: 100, Capacity6: 64},
		Peers: []Peer{
			{ID: 1, Address: netip.MustParseAddr("2001:2::1:1"), MAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, TunnelPort: 7001, Domain: "rack-1"},
			{ID: 2, Address: netip.MustParseAddr("2001:2::2"), TunnelPort: 7000, Domain: "rack-9"},
		},
		Sessions: []Session{
			{Key: session.Key{Src: netip.MustParseAddr("2001:2:0:100::2"), Dst: netip.MustParseAddr("2001:2:0:ff::17"),
				SrcPort: 40000, DstPort: 443, Proto: session.UDP}, Owner: 1},
			{Key: session.Key{Src: netip.MustParseAddr("198.18.100.2"), Dst: netip.MustParseAddr("198.19.255.9"),
				SrcPort: 1, DstPort: 80, Proto: session.TCP}, Owner: 4095},
		},
		Gossip: Gossip{Enabled: true, Group: netip.MustParseAddr("ff02::1:6"), Port: 7002, Interface: "eth9", TTL: 2,
			KeyFile: "/k", MaxDatagram: 1300, FlushDelay: time.Millisecond, Flush: "fixed", MaxRate: 5, HeartbeatInterval: time.Second,
			DownAfter: 5, Grace: time.Minute, Linger: 150 * time.Second, DiscoveryFile: "/var/lib/homing/peers",
			RepairPort: 7003, RepairInterval: 250 * time.Millisecond, RepairTimeout: 2 * time.Second, RepairMaxRecords: 5000,
			RepairAuthTimeout: 300 * time.Millisecond, RepairPerSource: 3, MaxClockSkew: 5 * time.Second, ReplayWindow: 20 * time.Second, MaxQueue: 1000, RelayPort: DefaultRelayPort},
		Probe:   Probe{Cgroup: "relative/is/fine/when/disabled", TentativeLifetime: 500 * time.Millisecond, RingBytes: DefaultProbeRingBytes},
		BGP:     BGP{HoldTime: DefaultBGPHoldTime, StopLinger: DefaultBGPStopLinger},
		Metrics: Metrics{Listen: "[::1]:0"},
		Control: Control{Socket: "/tmp/x.sock"},
		Log:     Log{Level: "debug", Format: "json"},
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got\n%+v\nwant\n%+v", c, want)
	}
	if got := c.Host.VIPAddrs(); !slices.Equal(got, []netip.Addr{netip.MustParseAddr("198.19.255.9")}) {
		t.Errorf("VIPAddrs = %v", got)
	}
	if c.Kernel.IsTAP() != true || c.NICPortName() != "0000:01:00.1" || c.KernelPortName() != "net_tap3" {
		t.Errorf("port names %q %q", c.NICPortName(), c.KernelPortName())
	}
}

// replace returns minimal with the first occurrence of old replaced (old must exist).
func replace(t *testing.T, old, new string) string {
	t.Helper()
	if !strings.Contains(minimal, old) {
		t.Fatalf("minimal has no %q", old)
	}
	return strings.Replace(minimal, old, new, 1)
}

func TestErrors(t *testing.T) {
	cases := []struct {
		name, src string
		want      string // one of the messages, in full
		kind      error
	}{
		{"id zero", replace(t, "id = 7", "id = 0"), "t.toml: host.id: must be 1..4095, got 0", ErrInvalid},
		{"id big", replace(t, "id = 7", "id = 4096"), "t.toml: host.id: must be 1..4095, got 4096", ErrInvalid},
		{"id missing", replace(t, "id = 7", ""), "t.toml: host.id: required (1..4095, unique in the POP)", ErrMissing},
		{"id type", replace(t, "id = 7", `id = "7"`),
			`t.toml: host.id: line 3: incompatible types: TOML value has type string; destination has type integer`, ErrSyntax},
		{"syntax", minimal + "\n[gossip\n", "t.toml: gossip: line 14: expected '.' or ']' to end table name, but got '\\n' instead", ErrSyntax},
		{"unknown key", minimal + "\n[tunnel]\nprot = 1\n", "t.toml: tunnel.prot: unknown key (see docs/CONFIG.md)", ErrUnknownKey},
		{"unknown table", minimal + "\n[tunel]\nport = 1\n", "t.toml: tunel: unknown key (see docs/CONFIG.md)", ErrUnknownKey},
		{"unknown peer key", minimal + "\n[[peers]]\nid = 2\naddress = \"198.18.0.2\"\nmack = \"x\"\n",
			"t.toml: peers.mack: unknown key (see docs/CONFIG.md)", ErrUnknownKey},
		{"address missing", replace(t, `address = "198.18.0.17"`, ""), "t.toml: host.address: required (this host's address on the POP LAN)", ErrMissing},
		{"address bad", replace(t, `"198.18.0.17"`, `"198.18.0.300"`), `t.toml: host.address: "198.18.0.300" is not an IP address`, ErrInvalid},
		{"address mapped", replace(t, `"198.18.0.17"`, `"::ffff:198.18.0.17"`),
			`t.toml: host.address: "::ffff:198.18.0.17": write IPv4-mapped addresses as IPv4 (198.18.0.17)`, ErrInvalid},
		{"address multicast", replace(t, `"198.18.0.17"`, `"239.1.1.1"`), `t.toml: host.address: 239.1.1.1 is not a unicast address`, ErrInvalid},
		{"mac bad", replace(t, "[host]", "[host]\nmac = \"02:00:00:00:00\""), `t.toml: host.mac: "02:00:00:00:00" is not a 6-byte Ethernet address`, ErrInvalid},
		{"mac long", replace(t, "[host]", "[host]\nmac = \"02:00:00:00:00:00:00:01\""), `t.toml: host.mac: "02:00:00:00:00:00:00:01" is not a 6-byte Ethernet address`, ErrInvalid},
		{"mac multicast", replace(t, "[host]", "[host]\nmac = \"01:00:5e:00:00:01\""), `t.toml: host.mac: 01:00:5e:00:00:01 is a multicast address`, ErrInvalid},
		{"gateway family", replace(t, "[host]", "[host]\ngateway = \"2001:2::1\""), `t.toml: host.gateway: 2001:2::1 is not of host.address's family (198.18.0.17)`, ErrConflict},
		{"domain", replace(t, "[host]", "[host]\ndomain = \"a b\""), `t.toml: host.domain: "a b" must be 1..63 characters of A-Z a-z 0-9 . _ -`, ErrInvalid},
		{"no vips", replace(t, `vips = ["198.19.255.1"]`, "vips = []"), "t.toml: host.vips: at least one VIP is required", ErrMissing},
		{"vip host bits", replace(t, `["198.19.255.1"]`, `["198.19.255.1/24"]`), `t.toml: host.vips[0]: "198.19.255.1/24" has host bits set (did you mean 198.19.255.0/24?)`, ErrInvalid},
		{"vip dup", replace(t, `["198.19.255.1"]`, `["198.19.255.1", "198.19.255.1/32"]`), `t.toml: host.vips[1]: duplicate VIP 198.19.255.1/32`, ErrConflict},
		{"address is vip", replace(t, `["198.19.255.1"]`, `["198.18.0.0/24"]`), `t.toml: host.address: 198.18.0.17 is within host.vips`, ErrConflict},
		{"nic none", replace(t, `device = "net_af_packet0,iface=eth0"`, ""),
			"t.toml: nic: one of nic.device (a DPDK vdev) or nic.pci (a PCI address) is required", ErrMissing},
		{"nic both", replace(t, `device = "net_af_packet0,iface=eth0"`, "device = \"net_null0\"\npci = \"01:00.0\""),
			"t.toml: nic: nic.device and nic.pci are mutually exclusive", ErrConflict},
		{"nic vdev", replace(t, `"net_af_packet0,iface=eth0"`, `"af_packet0 iface=eth0"`),
			`t.toml: nic.device: "af_packet0 iface=eth0" is not a DPDK vdev string ("net_<driver><n>[,key=value...]")`, ErrInvalid},
		{"nic pci", replace(t, `device = "net_af_packet0,iface=eth0"`, `pci = "0000:01:00"`),
			`t.toml: nic.pci: "0000:01:00" is not a PCI address ("0000:01:00.0")`, ErrInvalid},
		{"nic mtu", replace(t, "[nic]", "[nic]\nmtu = 67"), "t.toml: nic.mtu: must be 68..9600, got 67", ErrInvalid},
		{"rx desc", replace(t, "[nic]", "[nic]\nrx_desc = 1000"), "t.toml: nic.rx_desc: must be a power of two in 64..32768, got 1000", ErrInvalid},
		{"workers", minimal + "[dpdk]\nworkers = 17\n", "t.toml: dpdk.workers: must be 1..16, got 17", ErrInvalid},
		{"workers zero", minimal + "[dpdk]\nworkers = 0\n", "t.toml: dpdk.workers: must be 1..16, got 0", ErrInvalid},
		{"cpus", minimal + "[dpdk]\ncpus = \"1-0\"\n", `t.toml: dpdk.cpus: "1-0" is not a CPU list ("0-1", "0,2,4-7"; CPUs 0..1023)`, ErrInvalid},
		{"mbufs small", minimal + "[dpdk]\nmbufs = 100\n", "t.toml: dpdk.mbufs: must be 1023..16777215, got 100", ErrInvalid},
		{"mbufs memory", minimal + "[dpdk]\nmbufs = 65535\nmemory_mb = 64\n", "t.toml: dpdk.memory_mb: 64 MiB cannot hold what homingd takes from DPDK memory, 302 MiB: 65535 mbufs 256 MiB (4 KiB each without hugepages), tables of 1048576 IPv4 + 262144 IPv6 sessions 43 MiB, EAL and queues 4 MiB", ErrConflict},
		{"dpdk log", minimal + "[dpdk]\nlog_level = \"loud\"\n", `t.toml: dpdk.log_level: must be one of emergency|alert|critical|error|warning|notice|info|debug|1|2|3|4|5|6|7|8, got "loud"`, ErrInvalid},
		{"prefix", minimal + "[dpdk]\nfile_prefix = \"a/b\"\n", `t.toml: dpdk.file_prefix: "a/b" must be 1..64 characters of A-Z a-z 0-9 _ -`, ErrInvalid},
		{"idle", minimal + "[dpdk]\nidle_sleep_max_us = -1\n", "t.toml: dpdk.idle_sleep_max_us: must be 0..1000000, got -1", ErrInvalid},
		{"kernel name", minimal + "[kernel]\nname = \"a-very-long-name0\"\n", `t.toml: kernel.name: "a-very-long-name0" is not an interface name (1..15 characters, no '/', ':' or blanks)`, ErrInvalid},
		{"tap iface", minimal + "[kernel]\ndevice = \"net_tap0,iface=other\"\n", "t.toml: kernel.device: a net_tap device must have iface=homing0 (kernel.name)", ErrConflict},
		{"same vdev", minimal + "[kernel]\ndevice = \"net_af_packet0,iface=eth1\"\n", "t.toml: kernel.device: device name net_af_packet0 is also nic.device's", ErrConflict},
		{"kernel address", minimal + "[kernel]\naddresses = [\"198.18.0.17\"]\n", `t.toml: kernel.addresses[0]: "198.18.0.17" is not a prefix (address/length)`, ErrInvalid},
		{"route to", minimal + "[kernel]\nroutes = [{ to = \"198.18.1.1/24\" }]\n", `t.toml: kernel.routes[0].to: "198.18.1.1/24" has host bits set (did you mean 198.18.1.0/24?)`, ErrInvalid},
		{"route via family", minimal + "[kernel]\nroutes = [{ to = \"::/0\", via = \"198.18.0.1\" }]\n", "t.toml: kernel.routes[0].via: 198.18.0.1 is not of the family of ::/0", ErrConflict},
		{"route no to", minimal + "[kernel]\nroutes = [{ via = \"198.18.0.1\" }]\n", `t.toml: kernel.routes[0].to: required (a prefix, "0.0.0.0/0" for a default route)`, ErrMissing},
		{"kernel mtu", minimal + "[kernel]\nmtu = 10000\n", "t.toml: kernel.mtu: must be 68..9600, got 10000", ErrInvalid},
		{"tunnel port", minimal + "[tunnel]\nport = 0\n", "t.toml: tunnel.port: must be 1..65535, got 0", ErrInvalid},
		{"capacity", minimal + "[table]\ncapacity4 = 63\n", "t.toml: table.capacity4: must be 64..1073741824, got 63", ErrInvalid},
		{"peer self", minimal + "[[peers]]\nid = 7\naddress = \"198.18.0.2\"\n", "t.toml: peers[0].id: 7 is this host's own id (host.id)", ErrConflict},
		{"peer dup", minimal + "[[peers]]\nid = 2\naddress = \"198.18.0.2\"\n[[peers]]\nid = 2\naddress = \"198.18.0.3\"\n",
			"t.toml: peers[1].id: duplicate peer id 2 (also peers[0])", ErrConflict},
		{"peer dup address", minimal + "[[peers]]\nid = 2\naddress = \"198.18.0.2\"\n[[peers]]\nid = 3\naddress = \"198.18.0.2\"\n",
			"t.toml: peers[1].address: duplicate peer address 198.18.0.2 (also peers[0])", ErrConflict},
		{"peer own address", minimal + "[[peers]]\nid = 2\naddress = \"198.18.0.17\"\n", "t.toml: peers[0].address: 198.18.0.17 is this host's own address", ErrConflict},
		{"peer family", minimal + "[[peers]]\nid = 2\naddress = \"2001:2::2\"\n", "t.toml: peers[0].address: 2001:2::2 is not of host.address's family (198.18.0.17)", ErrConflict},
		{"peer id range", minimal + "[[peers]]\nid = 5000\naddress = \"198.18.0.2\"\n", "t.toml: peers[0].id: must be 1..4095, got 5000", ErrInvalid},
		{"peer no id", minimal + "[[peers]]\naddress = \"198.18.0.2\"\n", "t.toml: peers[0].id: required (1..4095)", ErrMissing},
		{"peer mac", minimal + "[[peers]]\nid = 2\naddress = \"198.18.0.2\"\nmac = \"zz:00:00:00:00:00\"\n", `t.toml: peers[0].mac: "zz:00:00:00:00:00" is not a 6-byte Ethernet address`, ErrInvalid},
		{"peer port", minimal + "[[peers]]\nid = 2\naddress = \"198.18.0.2\"\ntunnel_port = 70000\n", "t.toml: peers[0].tunnel_port: must be 1..65535, got 70000", ErrInvalid},
		{"session family", minimal + "[[sessions]]\nclient = \"[2001:2::5]:1000\"\nvip = \"198.19.255.1:80\"\nowner = 7\n",
			"t.toml: sessions[0]: client [2001:2::5]:1000 and vip 198.19.255.1:80 are of different families", ErrConflict},
		{"session vip", minimal + "[[sessions]]\nclient = \"198.18.100.2:1000\"\nvip = \"198.19.255.2:80\"\nowner = 7\n",
			"t.toml: sessions[0].vip: 198.19.255.2 is not within host.vips", ErrConflict},
		{"session owner", minimal + "[[sessions]]\nclient = \"198.18.100.2:1000\"\nvip = \"198.19.255.1:80\"\nowner = 9\n",
			"t.toml: sessions[0].owner: 9 is neither host.id nor the id of a peer in [[peers]]", ErrConflict},
		{"session no owner", minimal + "[[sessions]]\nclient = \"198.18.100.2:1000\"\nvip = \"198.19.255.1:80\"\n",
			"t.toml: sessions[0].owner: required (host.id or a peer's id)", ErrMissing},
		{"session proto", minimal + "[[sessions]]\nclient = \"198.18.100.2:1000\"\nvip = \"198.19.255.1:80\"\nproto = \"sctp\"\nowner = 7\n",
			`t.toml: sessions[0].proto: must be one of tcp|udp, got "sctp"`, ErrInvalid},
		{"session port", minimal + "[[sessions]]\nclient = \"198.18.100.2:0\"\nvip = \"198.19.255.1:80\"\nowner = 7\n",
			"t.toml: sessions[0].client: port must be 1..65535, got 0", ErrInvalid},
		{"session syntax", minimal + "[[sessions]]\nclient = \"198.18.100.2\"\nvip = \"198.19.255.1:80\"\nowner = 7\n",
			`t.toml: sessions[0].client: "198.18.100.2" is not address:port ([v6]:port for IPv6)`, ErrInvalid},
		{"session dup", minimal + "[[sessions]]\nclient = \"198.18.100.2:1\"\nvip = \"198.19.255.1:80\"\nowner = 7\n[[sessions]]\nclient = \"198.18.100.2:1\"\nvip = \"198.19.255.1:80\"\nproto = \"tcp\"\nowner = 7\n",
			"t.toml: sessions[1]: duplicate session tcp 198.18.100.2:1 -> 198.19.255.1:80 (also sessions[0])", ErrConflict},
		{"group unicast", replace(t, "insecure = true", "insecure = true\ngroup = \"198.18.0.1\""), "t.toml: gossip.group: 198.18.0.1 is not a multicast address", ErrInvalid},
		{"group family", replace(t, "insecure = true", "insecure = true\ngroup = \"ff02::6\""), "t.toml: gossip.group: ff02::6 is not of host.address's family (198.18.0.17)", ErrConflict},
		{"gossip port", replace(t, "insecure = true", "insecure = true\nport = 6080"), "t.toml: gossip.port: 6080 is also tunnel.port", ErrConflict},
		{"no key", replace(t, "insecure = true", ""), "t.toml: gossip.key_file: required unless gossip.insecure = true", ErrMissing},
		{"key and insecure", replace(t, "insecure = true", "insecure = true\nkey_file = \"/k\""), "t.toml: gossip.key_file: set together with gossip.insecure = true", ErrConflict},
		{"duration syntax", replace(t, "insecure = true", "insecure = true\ngrace = \"5\""), `t.toml: gossip.grace: "5" is not a duration (e.g. "200us", "5s")`, ErrInvalid},
		{"duration zero", replace(t, "insecure = true", "insecure = true\nlinger = \"0s\""), "t.toml: gossip.linger: must be > 0, got 0s", ErrInvalid},
		{"duration negative", replace(t, "insecure = true", "insecure = true\nflush_delay = \"-1ms\""), "t.toml: gossip.flush_delay: must be > 0, got -1ms", ErrInvalid},
		{"probe ring", replace(t, "insecure = true", "insecure = true\n[probe]\nring_bytes = 5000"), "t.toml: probe.ring_bytes: must be a power of two from 4096 to 1073741824, got 5000", ErrInvalid},
		{"queue small", replace(t, "insecure = true", "insecure = true\nmax_queue = 10"), "t.toml: gossip.max_queue: must be 64..16777216, got 10", ErrInvalid},
		{"flush mode", replace(t, "insecure = true", "insecure = true\nflush = \"eager\""), `t.toml: gossip.flush: "eager": want "adaptive" or "fixed"`, ErrInvalid},
		{"duration int", replace(t, "insecure = true", "insecure = true\nheartbeat_interval = 100"),
			"t.toml: gossip.heartbeat_interval: line 12: incompatible types: TOML value has type int64; destination has type string", ErrSyntax},
		{"datagram mtu", replace(t, "insecure = true", "insecure = true\nmax_datagram = 1480"), "t.toml: gossip.max_datagram: 1480 plus 28 bytes of IP and UDP headers exceeds the kernel MTU 1500", ErrConflict},
		{"ttl", replace(t, "insecure = true", "insecure = true\nttl = 0"), "t.toml: gossip.ttl: must be 1..255, got 0", ErrInvalid},
		{"down after", replace(t, "insecure = true", "insecure = true\ndown_after = 0"), "t.toml: gossip.down_after: must be 1..1000, got 0", ErrInvalid},
		{"repair port", replace(t, "insecure = true", "insecure = true\nrepair_port = 65536"), "t.toml: gossip.repair_port: must be 1..65535, got 65536", ErrInvalid},
		{"repair records", replace(t, "insecure = true", "insecure = true\nrepair_max_records = 0"), "t.toml: gossip.repair_max_records: must be 1..67108864, got 0", ErrInvalid},
		{"repair timeout", replace(t, "insecure = true", "insecure = true\nrepair_timeout = \"0s\""), "t.toml: gossip.repair_timeout: must be > 0, got 0s", ErrInvalid},
		{"repair auth timeout", replace(t, "insecure = true", "insecure = true\nrepair_auth_timeout = \"6s\""), "t.toml: gossip.repair_auth_timeout: 6s is longer than gossip.repair_timeout (5s)", ErrInvalid},
		{"repair per source", replace(t, "insecure = true", "insecure = true\nrepair_per_source = 1"), "t.toml: gossip.repair_per_source: must be 2..64, got 1", ErrInvalid},
		{"clock skew", replace(t, "insecure = true", "insecure = true\nmax_clock_skew = \"0s\""), "t.toml: gossip.max_clock_skew: must be > 0, got 0s", ErrInvalid},
		{"replay window", replace(t, "insecure = true", "insecure = true\nreplay_window = \"2h\""), "t.toml: gossip.replay_window: 2h0m0s is more than 1h: the hosts' clocks must agree within seconds (NTP)", ErrInvalid},
		{"cgroup", minimal + "[probe]\ncgroup = \"sys/fs\"\n", `t.toml: probe.cgroup: "sys/fs" must be an absolute path`, ErrInvalid},
		{"metrics", minimal + "[metrics]\nlisten = \"9370\"\n", `t.toml: metrics.listen: "9370" is not host:port ("" disables metrics)`, ErrInvalid},
		{"control", minimal + "[control]\nsocket = \"\"\n", "t.toml: control.socket: must not be empty", ErrMissing},
		{"log level", minimal + "[log]\nlevel = \"trace\"\n", `t.toml: log.level: must be one of debug|info|warn|error, got "trace"`, ErrInvalid},
		{"log format", minimal + "[log]\nformat = \"xml\"\n", `t.toml: log.format: must be one of text|json, got "xml"`, ErrInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(tc.src), "t.toml")
			if err == nil {
				t.Fatalf("Parse succeeded: %+v", c)
			}
			if c != nil {
				t.Errorf("Parse returned a config with an error")
			}
			var found *FieldError
			for _, fe := range Problems(err) {
				if fe.Error() == tc.want {
					found = fe
				}
			}
			if found == nil {
				t.Fatalf("want the message\n%s\ngot\n%v", tc.want, err)
			}
			if !errors.Is(found, tc.kind) {
				t.Errorf("%q is not %v", found, tc.kind)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("joined error lacks %q", tc.want)
			}
		})
	}
}

func TestAllProblemsAtOnce(t *testing.T) {
	src := `
[host]
id = 0
address = "nope"
vips = []
[nic]
mtu = 1
[dpdk]
workers = 99
[[peers]]
id = 0
address = "198.18.0.2"
mac = "x"
[gossip]
group = "198.18.0.1"
`
	_, err := Parse([]byte(src), "many.toml")
	probs := Problems(err)
	keys := map[string]bool{}
	for _, p := range probs {
		if p.File != "many.toml" {
			t.Errorf("%q names file %q", p, p.File)
		}
		keys[p.Key] = true
	}
	for _, k := range []string{"host.id", "host.address", "host.vips", "nic", "nic.mtu", "dpdk.workers",
		"peers[0].id", "peers[0].mac", "gossip.group", "gossip.key_file"} {
		if !keys[k] {
			t.Errorf("no problem reported for %s; got:\n%v", k, err)
		}
	}
	if len(probs) != strings.Count(err.Error(), "\n")+1 {
		t.Errorf("%d problems but %d lines", len(probs), strings.Count(err.Error(), "\n")+1)
	}
}

func TestExplicitZeroAndEmptyMeanDerived(t *testing.T) {
	c := mustParse(t, replace(t, "[nic]", "[nic]\nmtu = 9000")+`
[dpdk]
mbufs = 0
[kernel]
mtu = 0
addresses = []
`)
	if c.DPDK.Mbufs != 8191 || c.Kernel.MTU != 9000 || len(c.Kernel.Addresses) != 0 {
		t.Errorf("mbufs %d, kernel mtu %d, addresses %v", c.DPDK.Mbufs, c.Kernel.MTU, c.Kernel.Addresses)
	}
}

func TestIPv6Host(t *testing.T) {
	c := mustParse(t, `
[host]
id = 1
address = "2001:2::11"
vips = ["2001:2:0:ff::1"]
[nic]
device = "net_null0"
[gossip]
group = "ff05::1:6"
insecure = true
`)
	if got := c.Kernel.Addresses; len(got) != 1 || got[0] != netip.MustParsePrefix("2001:2::11/64") {
		t.Errorf("kernel.addresses = %v", got)
	}
	if got := c.Host.VIPs; len(got) != 1 || got[0] != netip.MustParsePrefix("2001:2:0:ff::1/128") {
		t.Errorf("vips = %v", got)
	}
}

func TestMbufs(t *testing.T) {
	for _, tc := range []struct{ workers, rx, tx, want int }{
		{1, 64, 64, 4095},
		{1, 1024, 1024, 8191},
		{2, 1024, 1024, 16383},
		{16, 4096, 4096, 524287},
	} {
		got := computeMbufs(tc.workers, tc.rx, tc.tx)
		if got != tc.want {
			t.Errorf("computeMbufs(%d, %d, %d) = %d, want %d", tc.workers, tc.rx, tc.tx, got, tc.want)
		}
		if got < 2*tc.workers*(tc.rx+tc.tx) || (got+1)&got != 0 {
			t.Errorf("computeMbufs(%d, %d, %d) = %d does not cover the descriptors or is not 2^n-1", tc.workers, tc.rx, tc.tx, got)
		}
	}
}

func TestCPUList(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []int
		out  string
	}{
		{"0", []int{0}, "0"},
		{"0-1", []int{0, 1}, "0-1"},
		{"0-1\n", []int{0, 1}, "0-1"},
		{"3,1,2, 7-8,8", []int{1, 2, 3, 7, 8}, "1-3,7-8"},
		{"1023", []int{1023}, "1023"},
	} {
		got, err := ParseCPUList(tc.in)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("ParseCPUList(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
		if s := FormatCPUList(got); s != tc.out {
			t.Errorf("FormatCPUList(%v) = %q, want %q", got, s, tc.out)
		}
	}
	for _, bad := range []string{"", "a", "1-", "-1", "2-1", "1024", "0,,1", "99999999999999999999"} {
		if _, err := ParseCPUList(bad); err == nil {
			t.Errorf("ParseCPUList(%q) succeeded", bad)
		}
	}
}

func TestEALHelpers(t *testing.T) {
	c := mustParse(t, minimal+"[dpdk]\ncpus = \"0-1,3\"\n")
	if got := c.VDevs(); !slices.Equal(got, []string{"net_af_packet0,iface=eth0", "net_tap0,iface=homing0"}) {
		t.Errorf("VDevs = %q", got)
	}
	if got := c.PCIDevices(); got != nil {
		t.Errorf("PCIDevices = %q", got)
	}
	if got := c.DPDK.CPUList(); got != "0-1,3" {
		t.Errorf("CPUList = %q", got)
	}
	c = mustParse(t, replace(t, `device = "net_af_packet0,iface=eth0"`, `pci = "0000:01:00.0"`))
	if got := c.VDevs(); !slices.Equal(got, []string{"net_tap0,iface=homing0"}) {
		t.Errorf("VDevs = %q", got)
	}
	if got := c.PCIDevices(); !slices.Equal(got, []string{"0000:01:00.0"}) {
		t.Errorf("PCIDevices = %q", got)
	}
	if c.NICPortName() != "0000:01:00.0" || c.KernelPortName() != "net_tap0" {
		t.Errorf("port names %q %q", c.NICPortName(), c.KernelPortName())
	}
}

func TestVdevHelpers(t *testing.T) {
	for _, tc := range []struct{ dev, driver string }{
		{"net_tap0,iface=x", "net_tap"},
		{"net_af_packet12,iface=eth0", "net_af_packet"},
		{"net_pcap1", "net_pcap"},
		{"eth_tap", "eth_tap"},
		{"net_af_xdp0,iface=x", "net_af_xdp"},
	} {
		if got := vdevDriver(tc.dev); got != tc.driver {
			t.Errorf("vdevDriver(%q) = %q, want %q", tc.dev, got, tc.driver)
		}
	}
	if v, ok := vdevArg("net_tap0,remote=eth1,iface=homing0", "iface"); !ok || v != "homing0" {
		t.Errorf("vdevArg = %q %v", v, ok)
	}
	if (Kernel{Device: "net_pcap1,rx_pcap=a"}).IsTAP() {
		t.Error("net_pcap is not a TAP")
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.toml"))
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "nope.toml") {
		t.Errorf("Load = %v", err)
	}
}

func TestDefaultIsSane(t *testing.T) {
	d := Default()
	if len(d.DPDK.CPUs) == 0 || d.DPDK.Mbufs < MinMbufs || d.Host.Name == "" || !d.Gossip.Group.IsMulticast() {
		t.Errorf("Default() = %+v", d)
	}
}
