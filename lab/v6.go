package lab

import (
	"fmt"
	"net/netip"
	"strconv"
)

// The lab's addressing plan. A lab is IPv4 (the default) or IPv6 (Options.IPv6), and has
// one rack or several (Options.Racks): rack r is the bridge br<r> of the router, an L2
// domain of its own, with its own subnet.
//
//	            IPv4                      IPv6 (inside the benchmarking range 2001:2::/48)
//	VIP         198.19.255.1/32           2001:2:ff::1/128
//	client      198.18.100.2/24           2001:2:0:100::2/64
//	router, cli 198.18.100.1/24           2001:2:0:100::1/64
//	router, br<r> 198.18.<r>.1/24         2001:2:0:<r>::1/64
//	host n      198.18.<r>.1n/24          2001:2:0:<r>::1n/64
//	gossip      239.193.0.1               ff02::4847:1 (link scope: one rack)
//
// An IPv6 lab is IPv6 end to end: the hosts have no IPv4 address, so their tunnels
// (outer headers), gossip (multicast and repair) and sessions are all IPv6. Only the
// router keeps its IPv4 addresses (unused).

// IPv6 addresses of the lab.
var (
	VIP6        = netip.MustParseAddr("2001:2:ff::1")
	RouterCLI6  = netip.MustParseAddr("2001:2:0:100::1")
	ClientAddr6 = netip.MustParseAddr("2001:2:0:100::2")
	Group6      = netip.MustParseAddr("ff02::4847:1")
	Group4      = netip.MustParseAddr("239.193.0.1")
)

// MaxRacks is the largest number of racks a lab holds.
const MaxRacks = 4

// VIPAddr is the lab's VIP: VIP or VIP6.
func (l *Lab) VIPAddr() netip.Addr {
	if l.opts.IPv6 {
		return VIP6
	}
	return VIP
}

// Service is the VIP's echo service, address and port.
func (l *Lab) Service() netip.AddrPort { return netip.AddrPortFrom(l.VIPAddr(), ServicePort) }

// Client is the client namespace's address.
func (l *Lab) Client() netip.Addr {
	if l.opts.IPv6 {
		return ClientAddr6
	}
	return ClientAddr
}

func (l *Lab) routerCLI() netip.Addr {
	if l.opts.IPv6 {
		return RouterCLI6
	}
	return RouterCLI
}

// Racks is the number of racks (L2 domains) of the lab.
func (l *Lab) Racks() int { return max(1, l.opts.Racks) }

// Rack is the rack of host n: hosts take the racks in turn (h1 rack 0, h2 rack 1, ...).
func (l *Lab) Rack(n int) int { return (n - 1) % l.Racks() }

// Domain is the host.domain of rack r: "lab" in a lab of one rack, else "rack-a",
// "rack-b", ...
func (l *Lab) Domain(r int) string {
	if l.Racks() == 1 {
		return "lab"
	}
	return "rack-" + string(rune('a'+r))
}

// Gateway is the router's address on rack r, of the lab's family.
func (l *Lab) Gateway(r int) netip.Addr {
	if l.opts.IPv6 {
		return rackAddr6(r, 1)
	}
	return netip.AddrFrom4([4]byte{198, 18, byte(r), 1})
}

// HostAddress is host n's address on its rack, of the lab's family.
func (l *Lab) HostAddress(n int) netip.Addr {
	r := l.Rack(n)
	if l.opts.IPv6 {
		v, _ := strconv.ParseUint(fmt.Sprintf("1%d", n), 16, 16) // "::1n"
		return rackAddr6(r, uint16(v))
	}
	return netip.AddrFrom4([4]byte{198, 18, byte(r), byte(10 + n)})
}

// rackAddr6 is 2001:2:0:<r>::<low>.
func rackAddr6(r int, low uint16) netip.Addr {
	a := [16]byte{0x20, 0x01, 0, 0x02, 0, 0, 0, byte(r)}
	a[14], a[15] = byte(low>>8), byte(low)
	return netip.AddrFrom16(a)
}

// bits is the prefix length of the lab's subnets.
func (l *Lab) bits() int {
	if l.opts.IPv6 {
		return 64
	}
	return 24
}

// bridge is rack r's bridge in the router.
func bridge(r int) string { return fmt.Sprintf("br%d", r) }

// group is the gossip group of the lab's family.
func (l *Lab) group() netip.Addr {
	if l.opts.IPv6 {
		return Group6
	}
	return Group4
}

// defaultRoute is the destination of a default route of the lab's family.
func (l *Lab) defaultRoute() string {
	if l.opts.IPv6 {
		return "::/0"
	}
	return "0.0.0.0/0"
}

// hostBits is the prefix length of a single address of the lab's family.
func (l *Lab) hostBits() int { return l.VIPAddr().BitLen() }

// routerScript builds the router and client namespaces: the racks' bridges, the client
// link, forwarding and the multipath hash (of both families: an IPv6 lab's router
// forwards IPv6; the hash seed sysctl, net.ipv4.fib_multipath_hash_seed, serves both).
func (l *Lab) routerScript(rtr, cli string) [][]string {
	sys := []string{"ip", "netns", "exec", rtr, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv4.conf.all.rp_filter=0",
		"net.ipv4.conf.default.rp_filter=0", "net.ipv4.fib_multipath_hash_policy=" + hashPolicy,
		"net.ipv4.fib_multipath_hash_fields=" + hashFields}
	cliSys := []string{"ip", "netns", "exec", cli, "sysctl", "-qw"}
	if l.opts.IPv6 {
		// No duplicate address detection (addresses are usable at once) and no router
		// advertisements; the same hash fields as IPv4 (no flow label: a retransmission
		// timeout changes it).
		sys = append(sys, "net.ipv6.conf.all.forwarding=1", "net.ipv6.conf.all.accept_dad=0",
			"net.ipv6.conf.default.accept_dad=0", "net.ipv6.conf.all.accept_ra=0", "net.ipv6.conf.default.accept_ra=0",
			"net.ipv6.fib_multipath_hash_policy="+hashPolicy, "net.ipv6.fib_multipath_hash_fields="+hashFields)
		cliSys = append(cliSys, "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
	} else {
		sys = append(sys, "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
		cliSys = append(cliSys, "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
	}
	nodad := func(c []string) []string {
		if l.opts.IPv6 {
			return append(c, "nodad")
		}
		return c
	}
	script := [][]string{
		{"ip", "netns", "add", rtr},
		{"ip", "netns", "add", cli},
		{"ip", "-n", rtr, "link", "set", "lo", "up"},
		{"ip", "-n", cli, "link", "set", "lo", "up"},
		sys,
		cliSys,
	}
	for r := range l.Racks() {
		br := bridge(r)
		script = append(script,
			// A bridge whose MAC is not set takes the lowest of its ports': a new host's
			// port would change the router's MAC under the hosts' neighbour entries.
			[]string{"ip", "-n", rtr, "link", "add", br, "address", fmt.Sprintf("02:48:4c:00:%02x:01", r), "type", "bridge", "mcast_snooping", "0"},
			[]string{"ip", "-n", rtr, "addr", "add", fmt.Sprintf("%d.%d.%d.1/24", 198, 18, r), "dev", br},
		)
		if l.opts.IPv6 {
			script = append(script, nodad([]string{"ip", "-n", rtr, "addr", "add",
				netip.PrefixFrom(l.Gateway(r), 64).String(), "dev", br}))
		}
		script = append(script, []string{"ip", "-n", rtr, "link", "set", br, "up"})
	}
	client := netip.PrefixFrom(l.Client(), l.bits()).String()
	router := netip.PrefixFrom(l.routerCLI(), l.bits()).String()
	return append(script,
		[]string{"ip", "-n", rtr, "link", "add", "vcli", "type", "veth", "peer", "name", "eth0", "netns", cli},
		nodad([]string{"ip", "-n", rtr, "addr", "add", router, "dev", "vcli"}),
		[]string{"ip", "-n", rtr, "link", "set", "vcli", "up"},
		nodad([]string{"ip", "-n", cli, "addr", "add", client, "dev", "eth0"}),
		[]string{"ip", "-n", cli, "link", "set", "eth0", "up"},
		[]string{"ip", "-n", cli, "route", "add", "default", "via", l.routerCLI().String()},
	)
}

// routeArgs is the router's command that routes the VIP over the given hosts.
func (l *Lab) routeArgs(hosts []int) []string {
	args := []string{"ip", "-n", l.NS("rtr")}
	if l.opts.IPv6 {
		args = append(args, "-6")
	}
	args = append(args, "route", "replace", netip.PrefixFrom(l.VIPAddr(), l.hostBits()).String())
	for _, n := range hosts {
		args = append(args, "nexthop", "via", l.HostAddress(n).String(), "dev", bridge(l.Rack(n)))
	}
	return args
}

// capacity6 is table.capacity6 of the hosts: room for every client connection in an
// IPv6 lab, little in an IPv4 one.
func (l *Lab) capacity6() int {
	if l.opts.IPv6 {
		return 65536
	}
	return 1024
}
