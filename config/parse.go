package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"golang.org/x/sys/unix"

	"github.com/homing-dev/homing/session"
)

// checker collects the problems of one file.
type checker struct {
	file string
	md   *toml.MetaData
	errs []error
}

func (c *checker) fail(kind error, key, format string, args ...any) {
	for i, a := range args { // values from the file are echoed cut to a readable length
		if v, ok := a.(string); ok {
			args[i] = clip(v)
		}
	}
	c.errs = append(c.errs, &FieldError{File: c.file, Key: clip(key), Msg: fmt.Sprintf(format, args...), Kind: kind})
}

func (c *checker) defined(key ...string) bool { return c.md.IsDefined(key...) }

// intRange checks lo <= v <= hi.
func (c *checker) intRange(key string, v, lo, hi int) bool {
	if v < lo || v > hi {
		c.fail(ErrInvalid, key, "must be %d..%d, got %d", lo, hi, v)
		return false
	}
	return true
}

func (c *checker) port(key string, v int) uint16 {
	if !c.intRange(key, v, 1, 65535) {
		return 0
	}
	return uint16(v)
}

// addr parses an IP address: no zone, no IPv4-mapped IPv6 form.
func (c *checker) addr(key, s string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(strings.TrimSpace(s))
	if err != nil {
		c.fail(ErrInvalid, key, "%q is not an IP address", s)
		return netip.Addr{}, false
	}
	if a.Zone() != "" {
		c.fail(ErrInvalid, key, "%q: zones are not supported", s)
		return netip.Addr{}, false
	}
	if a.Is4In6() {
		c.fail(ErrInvalid, key, "%q: write IPv4-mapped addresses as IPv4 (%s)", s, a.Unmap())
		return netip.Addr{}, false
	}
	return a, true
}

// unicast additionally rejects unspecified, multicast and broadcast addresses.
func (c *checker) unicast(key, s string) (netip.Addr, bool) {
	a, ok := c.addr(key, s)
	if !ok {
		return a, false
	}
	if a.IsUnspecified() || a.IsMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		c.fail(ErrInvalid, key, "%s is not a unicast address", a)
		return netip.Addr{}, false
	}
	return a, true
}

// prefix parses "a.b.c.d/n"; with canonical, host bits must be zero.
func (c *checker) prefix(key, s string, canonical bool) (netip.Prefix, bool) {
	p, err := netip.ParsePrefix(strings.TrimSpace(s))
	if err != nil {
		c.fail(ErrInvalid, key, "%q is not a prefix (address/length)", s)
		return netip.Prefix{}, false
	}
	if p.Addr().Is4In6() {
		c.fail(ErrInvalid, key, "%q: write IPv4-mapped addresses as IPv4", s)
		return netip.Prefix{}, false
	}
	if canonical && p.Masked() != p {
		c.fail(ErrInvalid, key, "%q has host bits set (did you mean %s?)", s, p.Masked())
		return netip.Prefix{}, false
	}
	return p, true
}

// mac parses an Ethernet MAC: 6 bytes, unicast, not all zero.
func (c *checker) mac(key, s string) (net.HardwareAddr, bool) {
	m, err := net.ParseMAC(strings.TrimSpace(s))
	if err != nil || len(m) != 6 {
		c.fail(ErrInvalid, key, "%q is not a 6-byte Ethernet address", s)
		return nil, false
	}
	if m[0]&1 != 0 {
		c.fail(ErrInvalid, key, "%s is a multicast address", m)
		return nil, false
	}
	if string(m) == "\x00\x00\x00\x00\x00\x00" {
		c.fail(ErrInvalid, key, "%s is all zero", m)
		return nil, false
	}
	return m, true
}

// duration parses a Go duration string that must be > 0.
func (c *checker) duration(key, s string) time.Duration {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		c.fail(ErrInvalid, key, "%q is not a duration (e.g. \"200us\", \"5s\")", s)
		return 0
	}
	if d <= 0 {
		c.fail(ErrInvalid, key, "must be > 0, got %s", s)
		return 0
	}
	return d
}

func (c *checker) oneOf(key, v string, allowed ...string) {
	for _, a := range allowed {
		if v == a {
			return
		}
	}
	c.fail(ErrInvalid, key, "must be one of "+strings.Join(allowed, "|")+", got %q", v)
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,63}$`)

func validName(s string) bool { return nameRE.MatchString(s) }

func (c *checker) name(key, s string) {
	if !validName(s) {
		c.fail(ErrInvalid, key, "%q must be 1..63 characters of A-Z a-z 0-9 . _ -", s)
	}
}

// validIfname mirrors the kernel's dev_valid_name.
func validIfname(s string) bool {
	if s == "" || len(s) > 15 || s == "." || s == ".." {
		return false
	}
	for _, r := range s {
		if r == '/' || r == ':' || r <= ' ' || r == 0x7f {
			return false
		}
	}
	return true
}

func (c *checker) ifname(key, s string) {
	if !validIfname(s) {
		c.fail(ErrInvalid, key, "%q is not an interface name (1..15 characters, no '/', ':' or blanks)", s)
	}
}

var (
	tomlErrRE    = regexp.MustCompile(`^toml: (?:line (\d+) )?\(last key "([^"]*)"\): (.*)$`)
	filePrefixRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	vdevRE       = regexp.MustCompile(`^(net|eth)_[A-Za-z0-9_]+(,[^,\s]+)*$`)
	pciRE        = regexp.MustCompile(`^([0-9a-fA-F]{4,8}:)?[0-9a-fA-F]{2}:[01][0-9a-fA-F]\.[0-7](,[^,\s]+)*$`)
	// the pure device name: driver name followed by an instance number
	vdevNameRE = regexp.MustCompile(`^([A-Za-z_]+(?:[0-9]+[A-Za-z_]+)*)[0-9]*$`)
)

// vdevName returns the device name of a vdev string ("net_tap0,iface=x" -> "net_tap0").
func vdevName(dev string) string {
	name, _, _ := strings.Cut(dev, ",")
	return name
}

// vdevDriver returns the driver of a vdev string ("net_tap0,iface=x" -> "net_tap").
func vdevDriver(dev string) string {
	m := vdevNameRE.FindStringSubmatch(vdevName(dev))
	if m == nil {
		return vdevName(dev)
	}
	return m[1]
}

// vdevArg returns the value of devarg key in a vdev string.
func vdevArg(dev, key string) (string, bool) {
	parts := strings.Split(dev, ",")
	for _, p := range parts[1:] {
		k, v, _ := strings.Cut(p, "=")
		if k == key {
			return v, true
		}
	}
	return "", false
}

func (c *checker) vdev(key, s string) bool {
	if !vdevRE.MatchString(s) {
		c.fail(ErrInvalid, key, "%q is not a DPDK vdev string (\"net_<driver><n>[,key=value...]\")", s)
		return false
	}
	return true
}

var dpdkLogLevels = []string{"emergency", "alert", "critical", "error", "warning", "notice", "info", "debug",
	"1", "2", "3", "4", "5", "6", "7", "8"}

// parse is Parse.
func parse(data []byte, name string) (*Config, error) {
	if name == "" {
		name = "<config>"
	}
	raw := defaultFile()
	md, err := toml.Decode(string(data), &raw)
	if err != nil {
		return nil, decodeError(name, err)
	}
	c := &checker{file: name, md: &md}
	c.unknownKeys()
	cfg := c.build(&raw)
	if len(c.errs) > 0 {
		return nil, errors.Join(c.errs...)
	}
	return cfg, nil
}

func decodeError(name string, err error) error {
	fe := &FieldError{File: name, Msg: err.Error(), Kind: ErrSyntax}
	var pe toml.ParseError
	if errors.As(err, &pe) {
		fe.Key = pe.LastKey
		fe.Msg = fmt.Sprintf("line %d: %s", pe.Position.Line, clip(pe.Message))
	} else if m := tomlErrRE.FindStringSubmatch(err.Error()); m != nil {
		// Type mismatches come as plain errors: toml: line 2 (last key "host.id"): ...
		fe.Key, fe.Msg = m[2], m[3]
		if m[1] != "" {
			fe.Msg = "line " + m[1] + ": " + m[3]
		}
	}
	fe.Key, fe.Msg = clip(fe.Key), clipLen(fe.Msg, maxMsg)
	return fe
}

// unknownKeys reports keys that no struct field took, once per unknown subtree.
func (c *checker) unknownKeys() {
	reported := map[string]bool{}
	for _, k := range c.md.Undecoded() {
		skip := false
		for i := 1; i < len(k); i++ {
			if reported[toml.Key(k[:i]).String()] {
				skip = true
				break
			}
		}
		if skip {
			continue
		}
		reported[k.String()] = true
		c.fail(ErrUnknownKey, k.String(), "unknown key (see docs/CONFIG.md)")
	}
}

func (c *checker) build(r *fileConfig) *Config {
	cfg := &Config{Source: c.file}
	c.host(cfg, &r.Host)
	c.nic(cfg, &r.NIC)
	c.dpdk(cfg, &r.DPDK)
	c.kernel(cfg, &r.Kernel)
	cfg.Tunnel.Port = c.port("tunnel.port", r.Tunnel.Port)
	cfg.Tunnel.Redirect = r.Tunnel.Redirect
	if strings.TrimSpace(r.Tunnel.ParkHold) != "0" {
		cfg.Tunnel.ParkHold = c.duration("tunnel.park_hold", r.Tunnel.ParkHold)
		if cfg.Tunnel.ParkHold > time.Second {
			c.fail(ErrInvalid, "tunnel.park_hold", "at most 1s, got %s", r.Tunnel.ParkHold)
		}
	}
	cfg.Tunnel.ParkSize = r.Tunnel.ParkSize
	c.intRange("tunnel.park_size", r.Tunnel.ParkSize, 1, 4096)
	c.udpSessions(cfg, r.UDP)
	switch {
	case r.Tunnel.ParkUDP != nil:
		cfg.Tunnel.ParkUDP = *r.Tunnel.ParkUDP
		c.intRange("tunnel.park_udp", *r.Tunnel.ParkUDP, 0, max(r.Tunnel.ParkSize-1, 0))
	case len(cfg.UDPSessions) > 0:
		cfg.Tunnel.ParkUDP = r.Tunnel.ParkSize / 4
	}
	cfg.Tunnel.ClampMSS = r.Tunnel.ClampMSS
	cfg.Tunnel.ICMPRate, cfg.Tunnel.ICMPBurst = r.Tunnel.ICMPRate, r.Tunnel.ICMPBurst
	c.intRange("tunnel.icmp_rate", r.Tunnel.ICMPRate, 0, 1000000)
	c.intRange("tunnel.icmp_burst", r.Tunnel.ICMPBurst, 1, 1000000)
	cfg.Table.Capacity4 = r.Table.Capacity4
	cfg.Table.Capacity6 = r.Table.Capacity6
	c.intRange("table.capacity4", r.Table.Capacity4, 64, 1<<30)
	c.intRange("table.capacity6", r.Table.Capacity6, 64, 1<<30)
	c.memory(cfg)
	c.peers(cfg, r.Peers)
	c.sessions(cfg, r.Sessions)
	c.gossip(cfg, &r.Gossip)
	c.bgp(cfg, &r.BGP)

	cfg.Probe = Probe{Enabled: r.Probe.Enabled, Cgroup: r.Probe.Cgroup, Tentative: r.Probe.Tentative,
		TentativeLifetime: c.duration("probe.tentative_lifetime", r.Probe.TentativeLifetime), RingBytes: r.Probe.RingBytes}
	if n := r.Probe.RingBytes; n < 4096 || n > 1<<30 || n&(n-1) != 0 {
		c.fail(ErrInvalid, "probe.ring_bytes", "must be a power of two from 4096 to 1073741824, got %d", n)
	}
	if r.Probe.Enabled && !path.IsAbs(r.Probe.Cgroup) {
		c.fail(ErrInvalid, "probe.cgroup", "%q must be an absolute path", r.Probe.Cgroup)
	}

	cfg.Metrics.Listen = r.Metrics.Listen
	if l := r.Metrics.Listen; l != "" {
		_, p, err := net.SplitHostPort(l)
		if n, perr := strconv.Atoi(p); err != nil || perr != nil || n < 0 || n > 65535 {
			c.fail(ErrInvalid, "metrics.listen", "%q is not host:port (\"\" disables metrics)", l)
		}
	}

	cfg.Control.Socket = r.Control.Socket
	switch s := r.Control.Socket; {
	case s == "":
		c.fail(ErrMissing, "control.socket", "must not be empty")
	case len(s) > 107:
		c.fail(ErrInvalid, "control.socket", "path is %d bytes, Unix sockets allow 107", len(s))
	}

	cfg.Log = Log{Level: r.Log.Level, Format: r.Log.Format}
	c.oneOf("log.level", r.Log.Level, "debug", "info", "warn", "error")
	c.oneOf("log.format", r.Log.Format, "text", "json")
	return cfg
}

func (c *checker) host(cfg *Config, h *fileHost) {
	out := &cfg.Host
	if !c.defined("host", "id") {
		c.fail(ErrMissing, "host.id", "required (1..%d, unique in the POP)", MaxHostID)
	} else if c.intRange("host.id", h.ID, 1, MaxHostID) {
		out.ID = uint16(h.ID)
	}

	out.Name = h.Name
	if !c.defined("host", "name") {
		out.Name = defaultHostname()
	}
	c.name("host.name", out.Name)

	if h.Address == "" {
		c.fail(ErrMissing, "host.address", "required (this host's address on the POP LAN)")
	} else if a, ok := c.unicast("host.address", h.Address); ok {
		out.Address = a
	}

	if h.MAC != "" {
		out.MAC, _ = c.mac("host.mac", h.MAC)
	}
	out.Domain = h.Domain
	c.name("host.domain", h.Domain)

	if h.Gateway != "" {
		if a, ok := c.unicast("host.gateway", h.Gateway); ok {
			if out.Address.IsValid() && a.Is4() != out.Address.Is4() {
				c.fail(ErrConflict, "host.gateway", "%s is not of host.address's family (%s)", a, out.Address)
			} else {
				out.Gateway = a
			}
		}
	}

	if len(h.VIPs) == 0 {
		c.fail(ErrMissing, "host.vips", "at least one VIP is required")
	}
	seen := map[netip.Prefix]bool{}
	for i, s := range h.VIPs {
		key := fmt.Sprintf("host.vips[%d]", i)
		var p netip.Prefix
		if strings.Contains(s, "/") {
			var ok bool
			if p, ok = c.prefix(key, s, true); !ok {
				continue
			}
		} else {
			a, ok := c.addr(key, s)
			if !ok {
				continue
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if a := p.Addr(); a.IsUnspecified() || a.IsMulticast() || a.IsLoopback() {
			c.fail(ErrInvalid, key, "%s is not a usable VIP", p)
			continue
		}
		if seen[p] {
			c.fail(ErrConflict, key, "duplicate VIP %s", p)
			continue
		}
		seen[p] = true
		out.VIPs = append(out.VIPs, p)
	}
	if out.Address.IsValid() && out.IsVIP(out.Address) {
		c.fail(ErrConflict, "host.address", "%s is within host.vips", out.Address)
	}
}

func (c *checker) nic(cfg *Config, n *fileNIC) {
	out := &cfg.NIC
	switch {
	case n.Device == "" && n.PCI == "":
		c.fail(ErrMissing, "nic", "one of nic.device (a DPDK vdev) or nic.pci (a PCI address) is required")
	case n.Device != "" && n.PCI != "":
		c.fail(ErrConflict, "nic", "nic.device and nic.pci are mutually exclusive")
	case n.Device != "":
		if c.vdev("nic.device", n.Device) {
			out.Device = n.Device
		}
	default:
		if pciRE.MatchString(n.PCI) {
			out.PCI = n.PCI
		} else {
			c.fail(ErrInvalid, "nic.pci", "%q is not a PCI address (\"0000:01:00.0\")", n.PCI)
		}
	}
	out.MTU = n.MTU
	c.intRange("nic.mtu", n.MTU, 68, 9600)
	out.Promiscuous = n.Promiscuous
	out.RxDesc, out.TxDesc = n.RxDesc, n.TxDesc
	c.descriptors("nic.rx_desc", n.RxDesc)
	c.descriptors("nic.tx_desc", n.TxDesc)
}

func (c *checker) descriptors(key string, v int) {
	if v < 64 || v > 32768 || v&(v-1) != 0 {
		c.fail(ErrInvalid, key, "must be a power of two in 64..32768, got %d", v)
	}
}

func (c *checker) dpdk(cfg *Config, d *fileDPDK) {
	out := &cfg.DPDK
	out.FilePrefix = d.FilePrefix
	if !c.defined("dpdk", "file_prefix") {
		out.FilePrefix = fmt.Sprintf("homing-%d", cfg.Host.ID)
	}
	if !filePrefixRE.MatchString(out.FilePrefix) {
		c.fail(ErrInvalid, "dpdk.file_prefix", "%q must be 1..64 characters of A-Z a-z 0-9 _ -", out.FilePrefix)
	}
	out.Hugepages = d.Hugepages
	out.MemoryMB = d.MemoryMB
	c.intRange("dpdk.memory_mb", d.MemoryMB, 32, 1<<20)

	if d.CPUs == "" {
		out.CPUs = onlineCPUs()
	} else if cpus, err := ParseCPUList(d.CPUs); err != nil {
		c.fail(ErrInvalid, "dpdk.cpus", "%v", err)
	} else {
		out.CPUs = cpus
	}

	out.Workers = d.Workers
	workersOK := c.intRange("dpdk.workers", d.Workers, 1, MaxWorkers)

	switch {
	case d.Mbufs == 0 && workersOK:
		out.Mbufs = computeMbufs(d.Workers, cfg.NIC.RxDesc, cfg.NIC.TxDesc)
	case d.Mbufs == 0:
	default:
		if c.intRange("dpdk.mbufs", d.Mbufs, 1023, 1<<24-1) {
			out.Mbufs = d.Mbufs
		}
	}

	out.IdleSleepMax = time.Duration(d.IdleSleepMaxUS) * time.Microsecond
	c.intRange("dpdk.idle_sleep_max_us", d.IdleSleepMaxUS, 0, 1000000)
	out.LogLevel = d.LogLevel
	c.oneOf("dpdk.log_level", d.LogLevel, dpdkLogLevels...)
	for i, a := range d.ExtraArgs {
		if a == "" {
			c.fail(ErrInvalid, fmt.Sprintf("dpdk.extra_args[%d]", i), "must not be empty")
		}
	}
	out.ExtraArgs = append([]string(nil), d.ExtraArgs...)
}

func (c *checker) kernel(cfg *Config, k *fileKernel) {
	out := &cfg.Kernel
	out.Name = k.Name
	c.ifname("kernel.name", k.Name)

	out.Device = k.Device
	if k.Device == "" {
		out.Device = "net_tap0,iface=" + k.Name
	} else if c.vdev("kernel.device", k.Device) {
		if out.IsTAP() {
			if iface, ok := vdevArg(k.Device, "iface"); !ok || iface != k.Name {
				c.fail(ErrConflict, "kernel.device", "a net_tap device must have iface=%s (kernel.name)", k.Name)
			}
		}
		if cfg.NIC.Device != "" && vdevName(cfg.NIC.Device) == vdevName(k.Device) {
			c.fail(ErrConflict, "kernel.device", "device name %s is also nic.device's", vdevName(k.Device))
		}
	}

	if !c.defined("kernel", "addresses") {
		if a := cfg.Host.Address; a.IsValid() {
			bits := 24
			if a.Is6() {
				bits = 64
			}
			out.Addresses = []netip.Prefix{netip.PrefixFrom(a, bits)}
		}
	}
	seen := map[netip.Addr]bool{}
	for i, s := range k.Addresses {
		key := fmt.Sprintf("kernel.addresses[%d]", i)
		p, ok := c.prefix(key, s, false)
		if !ok {
			continue
		}
		if a := p.Addr(); a.IsUnspecified() || a.IsMulticast() {
			c.fail(ErrInvalid, key, "%s is not a unicast address", a)
			continue
		}
		if seen[p.Addr()] {
			c.fail(ErrConflict, key, "duplicate address %s", p.Addr())
			continue
		}
		seen[p.Addr()] = true
		out.Addresses = append(out.Addresses, p)
	}

	for i, r := range k.Routes {
		key := fmt.Sprintf("kernel.routes[%d]", i)
		var rt Route
		var ok bool
		if r.To == "" {
			c.fail(ErrMissing, key+".to", "required (a prefix, \"0.0.0.0/0\" for a default route)")
			continue
		}
		if rt.To, ok = c.prefix(key+".to", r.To, true); !ok {
			continue
		}
		if r.Via != "" {
			if rt.Via, ok = c.unicast(key+".via", r.Via); !ok {
				continue
			}
			if rt.Via.Is4() != rt.To.Addr().Is4() {
				c.fail(ErrConflict, key+".via", "%s is not of the family of %s", rt.Via, rt.To)
				continue
			}
		}
		out.Routes = append(out.Routes, rt)
	}

	out.MTU = k.MTU
	if k.MTU == 0 {
		out.MTU = cfg.NIC.MTU
	} else {
		c.intRange("kernel.mtu", k.MTU, 68, 9600)
	}
}

func (c *checker) peers(cfg *Config, peers []filePeer) {
	ids := map[int]int{}
	addrs := map[netip.Addr]int{}
	for i, p := range peers {
		key := fmt.Sprintf("peers[%d]", i)
		var out Peer
		ok := true
		switch {
		case p.ID == 0:
			c.fail(ErrMissing, key+".id", "required (1..%d)", MaxHostID)
			ok = false
		case !c.intRange(key+".id", p.ID, 1, MaxHostID):
			ok = false
		case p.ID == int(cfg.Host.ID):
			c.fail(ErrConflict, key+".id", "%d is this host's own id (host.id)", p.ID)
			ok = false
		default:
			if j, dup := ids[p.ID]; dup {
				c.fail(ErrConflict, key+".id", "duplicate peer id %d (also peers[%d])", p.ID, j)
				ok = false
			}
			ids[p.ID] = i
			out.ID = uint16(p.ID)
		}

		if p.Address == "" {
			c.fail(ErrMissing, key+".address", "required")
			ok = false
		} else if a, aok := c.unicast(key+".address", p.Address); !aok {
			ok = false
		} else {
			h := cfg.Host.Address
			switch j, dup := addrs[a]; {
			case h.IsValid() && a.Is4() != h.Is4():
				c.fail(ErrConflict, key+".address", "%s is not of host.address's family (%s)", a, h)
				ok = false
			case a == h:
				c.fail(ErrConflict, key+".address", "%s is this host's own address", a)
				ok = false
			case dup:
				c.fail(ErrConflict, key+".address", "duplicate peer address %s (also peers[%d])", a, j)
				ok = false
			}
			addrs[a] = i
			out.Address = a
		}

		if p.MAC != "" {
			var mok bool
			if out.MAC, mok = c.mac(key+".mac", p.MAC); !mok {
				ok = false
			}
		}
		out.TunnelPort = cfg.Tunnel.Port
		if p.TunnelPort != nil {
			out.TunnelPort = c.port(key+".tunnel_port", *p.TunnelPort)
		}
		out.Domain = cfg.Host.Domain
		if p.Domain != nil {
			out.Domain = *p.Domain
			c.name(key+".domain", out.Domain)
		}
		if ok {
			cfg.Peers = append(cfg.Peers, out)
		}
	}
}

func (c *checker) sessions(cfg *Config, sessions []fileSession) {
	seen := map[session.Key]int{}
	for i, s := range sessions {
		key := fmt.Sprintf("sessions[%d]", i)
		ok := true
		client, cok := c.addrPort(key+".client", s.Client)
		vip, vok := c.addrPort(key+".vip", s.VIP)
		if !cok || !vok {
			ok = false
		} else if client.Addr().Is4() != vip.Addr().Is4() {
			c.fail(ErrConflict, key, "client %s and vip %s are of different families", client, vip)
			ok = false
		} else if len(cfg.Host.VIPs) > 0 && !cfg.Host.IsVIP(vip.Addr()) {
			c.fail(ErrConflict, key+".vip", "%s is not within host.vips", vip.Addr())
			ok = false
		}
		proto := session.TCP
		if s.Proto != nil {
			switch *s.Proto {
			case "tcp":
			case "udp":
				proto = session.UDP
			default:
				c.fail(ErrInvalid, key+".proto", "must be one of tcp|udp, got %q", *s.Proto)
				ok = false
			}
		}
		var owner uint16
		_, isPeer := cfg.Peer(uint16(s.Owner))
		switch {
		case s.Owner == 0:
			c.fail(ErrMissing, key+".owner", "required (host.id or a peer's id)")
			ok = false
		case s.Owner < 0 || s.Owner > MaxHostID:
			c.fail(ErrInvalid, key+".owner", "must be 1..%d, got %d", MaxHostID, s.Owner)
			ok = false
		case s.Owner != int(cfg.Host.ID) && !isPeer:
			c.fail(ErrConflict, key+".owner", "%d is neither host.id nor the id of a peer in [[peers]]", s.Owner)
			ok = false
		default:
			owner = uint16(s.Owner)
		}
		if !ok {
			continue
		}
		k := session.Key{Src: client.Addr(), Dst: vip.Addr(), SrcPort: client.Port(), DstPort: vip.Port(), Proto: proto}
		if j, dup := seen[k]; dup {
			c.fail(ErrConflict, key, "duplicate session %s (also sessions[%d])", k, j)
			continue
		}
		seen[k] = i
		cfg.Sessions = append(cfg.Sessions, Session{Key: k, Owner: owner})
	}
}

func (c *checker) udpSessions(cfg *Config, ports []fileUDP) {
	seen := map[int]int{}
	cidPorts := 0
	for i, u := range ports {
		key := fmt.Sprintf("udp_sessions[%d]", i)
		if u.Port == 0 {
			c.fail(ErrMissing, key+".port", "required (the VIPs' UDP port whose flows are sessions)")
			continue
		}
		p := c.port(key+".port", u.Port)
		if p == 0 {
			continue
		}
		if j, dup := seen[u.Port]; dup {
			c.fail(ErrConflict, key+".port", "duplicate port %d (also udp_sessions[%d])", u.Port, j)
			continue
		}
		seen[u.Port] = i
		us := UDPSession{Port: p, QUIC: u.QUIC != nil && *u.QUIC, QUICCID: u.QUICCID != nil && *u.QUICCID,
			IdleTimeout: DefaultUDPIdleTimeout}
		if us.QUICCID && !us.QUIC {
			c.fail(ErrConflict, key+".quic_cid", "needs quic = true (connection IDs are QUIC's)")
		}
		if u.CIDLen != 0 {
			us.CIDLen = u.CIDLen
			switch {
			case u.CIDLen < session.MinCIDLen || u.CIDLen > session.MaxCIDLen:
				c.fail(ErrInvalid, key+".cid_len", "must be 0 (off) or %d..%d, got %d", session.MinCIDLen, session.MaxCIDLen, u.CIDLen)
			case !us.QUIC:
				c.fail(ErrConflict, key+".cid_len", "needs quic = true (connection IDs are QUIC's)")
			default:
				if cidPorts++; cidPorts > MaxCIDLenPorts {
					c.fail(ErrInvalid, key+".cid_len", "at most %d udp_sessions may have a cid_len", MaxCIDLenPorts)
				}
			}
		}
		if u.IdleTimeout != nil {
			if d := c.duration(key+".idle_timeout", *u.IdleTimeout); d != 0 {
				if d < MinUDPIdleTimeout || d > MaxUDPIdleTimeout {
					c.fail(ErrInvalid, key+".idle_timeout", "must be %s..%s, got %s", MinUDPIdleTimeout, MaxUDPIdleTimeout, d)
				}
				us.IdleTimeout = d
			}
		}
		cfg.UDPSessions = append(cfg.UDPSessions, us)
	}
}

func (c *checker) addrPort(key, s string) (netip.AddrPort, bool) {
	if s == "" {
		c.fail(ErrMissing, key, "required (address:port, [v6]:port)")
		return netip.AddrPort{}, false
	}
	ap, err := netip.ParseAddrPort(strings.TrimSpace(s))
	if err != nil {
		c.fail(ErrInvalid, key, "%q is not address:port ([v6]:port for IPv6)", s)
		return netip.AddrPort{}, false
	}
	if _, ok := c.unicast(key, ap.Addr().String()); !ok {
		return netip.AddrPort{}, false
	}
	if ap.Port() == 0 {
		c.fail(ErrInvalid, key, "port must be 1..65535, got 0")
		return netip.AddrPort{}, false
	}
	return ap, true
}

func (c *checker) gossip(cfg *Config, g *fileGossip) {
	out := &cfg.Gossip
	out.Enabled = g.Enabled
	if a, ok := c.addr("gossip.group", g.Group); ok {
		h := cfg.Host.Address
		switch {
		case !a.IsMulticast():
			c.fail(ErrInvalid, "gossip.group", "%s is not a multicast address", a)
		case h.IsValid() && a.Is4() != h.Is4():
			c.fail(ErrConflict, "gossip.group", "%s is not of host.address's family (%s)", a, h)
		default:
			out.Group = a
		}
	}
	out.Port = c.port("gossip.port", g.Port)
	if out.Port != 0 && out.Port == cfg.Tunnel.Port {
		c.fail(ErrConflict, "gossip.port", "%d is also tunnel.port", out.Port)
	}
	out.Interface = g.Interface
	if g.Interface == "" {
		out.Interface = cfg.Kernel.Name
	} else {
		c.ifname("gossip.interface", g.Interface)
	}
	out.TTL = g.TTL
	c.intRange("gossip.ttl", g.TTL, 1, 255)
	out.KeyFile, out.Insecure = g.KeyFile, g.Insecure
	switch {
	case g.Insecure && g.KeyFile != "":
		c.fail(ErrConflict, "gossip.key_file", "set together with gossip.insecure = true")
	case g.Enabled && !g.Insecure && g.KeyFile == "":
		c.fail(ErrMissing, "gossip.key_file", "required unless gossip.insecure = true")
	}
	out.MaxDatagram = g.MaxDatagram
	if c.intRange("gossip.max_datagram", g.MaxDatagram, 256, 65507) && g.Enabled {
		hdr := 28 // IPv4 + UDP
		if out.Group.Is6() {
			hdr = 48
		}
		if m := cfg.Kernel.MTU; m > 0 && g.MaxDatagram+hdr > m {
			c.fail(ErrConflict, "gossip.max_datagram", "%d plus %d bytes of IP and UDP headers exceeds the kernel MTU %d",
				g.MaxDatagram, hdr, m)
		}
	}
	out.FlushDelay = c.duration("gossip.flush_delay", g.FlushDelay)
	out.Flush = g.Flush
	switch g.Flush {
	case "adaptive", "fixed":
	default:
		c.fail(ErrInvalid, "gossip.flush", "%q: want \"adaptive\" or \"fixed\"", g.Flush)
	}
	out.MaxRate = g.MaxRate
	c.intRange("gossip.max_rate", g.MaxRate, 1, 10000000)
	out.HeartbeatInterval = c.duration("gossip.heartbeat_interval", g.HeartbeatInterval)
	out.DownAfter = g.DownAfter
	c.intRange("gossip.down_after", g.DownAfter, 1, 1000)
	out.Grace = c.duration("gossip.grace", g.Grace)
	out.Linger = c.duration("gossip.linger", g.Linger)
	out.DiscoveryFile = g.DiscoveryFile
	out.Repair, out.Digest = g.Repair, g.Digest
	out.RepairPort = out.Port
	if g.RepairPort != 0 {
		out.RepairPort = c.port("gossip.repair_port", g.RepairPort)
	}
	out.RepairInterval = c.duration("gossip.repair_interval", g.RepairInterval)
	out.RepairTimeout = c.duration("gossip.repair_timeout", g.RepairTimeout)
	out.RepairMaxRecords = g.RepairMaxRecords
	c.intRange("gossip.repair_max_records", g.RepairMaxRecords, 1, 1<<26)
	out.RepairAuthTimeout = c.duration("gossip.repair_auth_timeout", g.RepairAuthTimeout)
	if out.RepairAuthTimeout > out.RepairTimeout && out.RepairTimeout > 0 {
		c.fail(ErrInvalid, "gossip.repair_auth_timeout", "%s is longer than gossip.repair_timeout (%s)", out.RepairAuthTimeout, out.RepairTimeout)
	}
	out.RepairPerSource = g.RepairPerSource
	c.intRange("gossip.repair_per_source", g.RepairPerSource, 2, 64)
	out.MaxClockSkew = c.duration("gossip.max_clock_skew", g.MaxClockSkew)
	out.ReplayWindow = c.duration("gossip.replay_window", g.ReplayWindow)
	for _, k := range []struct {
		key string
		d   time.Duration
	}{{"gossip.max_clock_skew", out.MaxClockSkew}, {"gossip.replay_window", out.ReplayWindow}} {
		if k.d > time.Hour {
			c.fail(ErrInvalid, k.key, "%s is more than 1h: the hosts' clocks must agree within seconds (NTP)", k.d)
		}
	}
	out.MaxQueue, out.NackRing = g.MaxQueue, g.NackRing
	c.intRange("gossip.max_queue", g.MaxQueue, 64, 1<<24)
	c.intRange("gossip.nack_ring", g.NackRing, 0, 1<<20)
	c.relays(cfg, g)
}

// relays checks gossip.relays and gossip.relay_port.
func (c *checker) relays(cfg *Config, g *fileGossip) {
	out := &cfg.Gossip
	out.RelayPort = c.port("gossip.relay_port", g.RelayPort)
	if out.RelayPort != 0 && (out.RelayPort == out.Port || out.RelayPort == cfg.Tunnel.Port) {
		c.fail(ErrConflict, "gossip.relay_port", "%d is also gossip.port or tunnel.port", out.RelayPort)
	}
	h := cfg.Host
	seen := map[netip.Addr]bool{}
	for i, r := range g.Relays {
		key := fmt.Sprintf("gossip.relays[%d]", i)
		if r.Domain == "" {
			c.fail(ErrMissing, key+".domain", "required (the relay's host.domain)")
			continue
		}
		c.name(key+".domain", r.Domain)
		if r.Address == "" {
			c.fail(ErrMissing, key+".address", "required (the relay's host.address)")
			continue
		}
		a, ok := c.unicast(key+".address", r.Address)
		if !ok {
			continue
		}
		switch {
		case h.Address.IsValid() && a.Is4() != h.Address.Is4():
			c.fail(ErrConflict, key+".address", "%s is not of host.address's family (%s)", a, h.Address)
		case seen[a]:
			c.fail(ErrConflict, key+".address", "%s is listed twice", a)
		case a == h.Address && r.Domain != h.Domain:
			c.fail(ErrConflict, key+".domain", "%q is not host.domain (%q) of this host", r.Domain, h.Domain)
		default:
			seen[a] = true
			out.Relays = append(out.Relays, Relay{Domain: r.Domain, Address: a})
		}
	}
}

// ParseCPUList parses a Linux CPU list ("0-1", "0,2,4-7") into sorted, unique CPU ids.
func ParseCPUList(s string) ([]int, error) {
	var set [maxCPU + 1]bool
	for _, part := range strings.Split(strings.TrimSpace(s), ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		a, err1 := strconv.Atoi(lo)
		b := a
		var err2 error
		if isRange {
			b, err2 = strconv.Atoi(hi)
		}
		if err1 != nil || err2 != nil || a < 0 || b < a || b > maxCPU {
			return nil, fmt.Errorf("%q is not a CPU list (\"0-1\", \"0,2,4-7\"; CPUs 0..%d)", clip(s), maxCPU)
		}
		for i := a; i <= b; i++ {
			set[i] = true
		}
	}
	var out []int
	for i, ok := range set {
		if ok {
			out = append(out, i)
		}
	}
	return out, nil
}

// FormatCPUList is the inverse of ParseCPUList: sorted ids to "0-3,6".
func FormatCPUList(cpus []int) string {
	var b strings.Builder
	for i := 0; i < len(cpus); {
		j := i
		for j+1 < len(cpus) && cpus[j+1] == cpus[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		if j == i {
			fmt.Fprintf(&b, "%d", cpus[i])
		} else {
			fmt.Fprintf(&b, "%d-%d", cpus[i], cpus[j])
		}
		i = j + 1
	}
	return b.String()
}

const maxCPU = 1023

// onlineCPUs returns the CPUs this process may run on (its affinity mask, which
// respects taskset and cpusets), else the online CPUs, else 0..NumCPU-1.
func onlineCPUs() []int {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err == nil && set.Count() > 0 {
		var out []int
		for i := 0; i <= maxCPU; i++ {
			if set.IsSet(i) {
				out = append(out, i)
			}
		}
		return out
	}
	if b, err := os.ReadFile("/sys/devices/system/cpu/online"); err == nil {
		if cpus, err := ParseCPUList(string(b)); err == nil && len(cpus) > 0 {
			return cpus
		}
	}
	n := numCPU()
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

func (c *checker) bgp(cfg *Config, r *fileBGP) {
	b := &cfg.BGP
	b.HoldTime = c.duration("bgp.hold_time", r.HoldTime)
	if b.HoldTime != 0 && (b.HoldTime < 3*time.Second || b.HoldTime > 65535*time.Second || b.HoldTime%time.Second != 0) {
		c.fail(ErrInvalid, "bgp.hold_time", "must be whole seconds from 3s to 65535s (RFC 4271), got %s", r.HoldTime)
	}
	b.StopLinger = c.duration("bgp.stop_linger", r.StopLinger)
	b.Communities = r.Communities
	for i, cm := range r.Communities {
		a, v, ok := strings.Cut(cm, ":")
		_, err1 := strconv.ParseUint(a, 10, 16)
		_, err2 := strconv.ParseUint(v, 10, 16)
		if !ok || err1 != nil || err2 != nil {
			c.fail(ErrInvalid, fmt.Sprintf("bgp.communities[%d]", i), "%q is not AS:value (each 0..65535)", cm)
		}
	}
	if len(r.Neighbors) == 0 {
		if r.LocalAS != 0 || r.RouterID != "" {
			c.fail(ErrMissing, "bgp.neighbors", "bgp.local_as or bgp.router_id is set but no [[bgp.neighbors]]: nothing to announce to")
		}
		return
	}
	if r.LocalAS < 1 || r.LocalAS > 4294967295 {
		c.fail(ErrInvalid, "bgp.local_as", "must be 1..4294967295, got %d", r.LocalAS)
	} else {
		b.LocalAS = uint32(r.LocalAS)
	}
	switch {
	case r.RouterID != "":
		if a, ok := c.addr("bgp.router_id", r.RouterID); ok {
			if !a.Is4() {
				c.fail(ErrInvalid, "bgp.router_id", "%s is not an IPv4 address (a BGP identifier is 32 bits)", a)
			}
			b.RouterID = a
		}
	case cfg.Host.Address.Is4():
		b.RouterID = cfg.Host.Address
	default:
		c.fail(ErrMissing, "bgp.router_id", "required when host.address is IPv6 (a BGP identifier is 32 bits)")
	}
	for _, v := range cfg.Host.VIPs {
		if v.Addr().Is4() != cfg.Host.Address.Is4() {
			c.fail(ErrConflict, "bgp", "VIP %s is not of host.address's family: its next hop would be %s", v, cfg.Host.Address)
		}
	}
	seen := map[netip.Addr]int{}
	for i, n := range r.Neighbors {
		key := fmt.Sprintf("bgp.neighbors[%d]", i)
		out := BGPNeighbor{Port: 179}
		a, ok := c.addr(key+".address", n.Address)
		if ok {
			if j, dup := seen[a]; dup {
				c.fail(ErrConflict, key+".address", "duplicate neighbour %s (also bgp.neighbors[%d])", a, j)
				ok = false
			}
			seen[a] = i
			out.Address = a
		}
		if n.AS < 1 || n.AS > 4294967295 {
			c.fail(ErrInvalid, key+".as", "must be 1..4294967295, got %d", n.AS)
			ok = false
		}
		out.AS = uint32(n.AS)
		if n.Password != nil {
			if len(*n.Password) > 80 {
				c.fail(ErrInvalid, key+".password", "at most 80 bytes (TCP MD5 key), got %d", len(*n.Password))
				ok = false
			}
			out.Password = *n.Password
		}
		if n.Port != nil {
			if out.Port = c.port(key+".port", *n.Port); out.Port == 0 {
				ok = false
			}
		}
		if ok {
			b.Neighbors = append(b.Neighbors, out)
		}
	}
}
