// Package kni configures the kernel side of homingd's exception path.
//
// DPDK's net_tap PMD (started by the daemon as the "kernel" port) creates a TAP
// interface by name; packets the data plane hands to the kernel arrive on it, and what
// the kernel sends on it leaves through the NIC. Configure makes that interface look
// like the host's NIC to the kernel:
//
//  1. waits (bounded) for the interface to appear;
//  2. sets the NIC's MAC (frames from the NIC carry it as destination) and the MTU;
//  3. sets per-interface sysctls:
//     - ipv6 accept_dad = 0: addresses are usable at once (every IPv6 address is also
//     added with IFA_F_NODAD, which covers a kernel that ignores the sysctl);
//     - ipv4 rp_filter = 2 (loose): decapsulated packets arrive from clients whose
//     route may point elsewhere on a multi-homed host; strict mode would drop them;
//     - ipv4 arp_ignore = 2 and arp_announce = 2: the host answers ARP only for
//     addresses of the sender's subnet, so it never claims a VIP on the LAN (every host
//     of the POP has it), and never uses a VIP as an ARP source;
//     - ipv4 accept_redirects = 0 and send_redirects = 0, ipv6 accept_redirects = 0
//     and accept_ra = 0: the host's routes are the configured ones (kernel.routes), not
//     what an ICMP redirect or a router advertisement on the POP LAN says; and the
//     host, which hands packets back out of the interface they came in on (a client's
//     packet rehashed to it arrives from the router and may leave toward it), must
//     not tell the router to redirect its traffic;
//  4. sets it up;
//  5. adds the addresses, then the VIPs as /32 or /128 with IFA_F_NOPREFIXROUTE, so that
//     they add nothing but their local route, and waits (bounded) until every IPv6
//     one routes locally;
//  6. adds the routes (a route through a gateway needs the gateway's subnet, which an
//     address of step 5 brings).
//
// VIPs go on the TAP interface, not on lo: they live exactly as long as the exception
// path, so a host whose homingd is gone stops accepting VIP traffic, and removing the
// TAP (which DPDK does when the port closes) removes them. IPv6 has no arp_ignore: the
// kernel answers neighbour solicitations for a VIP on the TAP. The POP's router routes
// VIPs to the hosts' addresses and never solicits them, so this does not matter there.
//
// Remove takes away exactly what Configure added (routes, VIPs, addresses; not what
// was there before) and is idempotent. It leaves MAC, MTU, link state and sysctls: they
// belong to the interface, which goes when DPDK closes the port (a TAP of the same name
// made again starts from the namespace's defaults, net.ipv4.conf.default and
// net.ipv6.conf.default).
//
// Everything happens in the network namespace of the calling goroutine's OS thread at
// the time of Configure (the netlink handle and the /proc/sys writes are made on that
// thread); Remove may be called from any goroutine.
package kni

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Errors returned by Configure.
var (
	// ErrNotFound: the interface did not appear within Spec.Wait.
	ErrNotFound = errors.New("interface not found")
	// ErrSpec: the Spec is invalid; nothing was changed.
	ErrSpec = errors.New("invalid spec")
)

// DefaultWait is how long Configure waits for the interface when Spec.Wait is zero.
const DefaultWait = 5 * time.Second

// Route is a route through the interface. A zero Via makes it directly connected.
type Route struct {
	To  netip.Prefix
	Via netip.Addr
}

func (r Route) String() string {
	if r.Via.IsValid() {
		return r.To.String() + " via " + r.Via.String()
	}
	return r.To.String()
}

// Spec is what Configure sets on the interface.
type Spec struct {
	MAC       net.HardwareAddr // the NIC's MAC; nil leaves the MAC alone
	MTU       int              // 0 leaves the MTU alone
	Addresses []netip.Prefix   // interface addresses, with prefix length
	VIPs      []netip.Addr     // added as /32 or /128 without prefix route
	Routes    []Route
	Wait      time.Duration // how long to wait for the interface; 0 means DefaultWait
}

// Iface is an interface that Configure set up.
type Iface struct {
	name  string
	index int

	mu     sync.Mutex      // guards the fields below
	h      *netlink.Handle // bound to the namespace of Configure; nil once fully removed
	addrs  []*netlink.Addr // added by Configure (addresses, then VIPs), not yet removed
	routes []*netlink.Route
}

// Name returns the interface name.
func (i *Iface) Name() string { return i.name }

// Index returns the interface index.
func (i *Iface) Index() int { return i.index }

// Configure waits for the interface name, then configures it as described in the
// package comment. On error it undoes what it did and returns an error naming the
// interface.
func Configure(name string, spec Spec) (*Iface, error) {
	if err := spec.validate(name); err != nil {
		return nil, err
	}
	// Netlink sockets and /proc/sys/net both belong to the namespace of the thread
	// that opens them: stay on this one.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	h, err := netlink.NewHandle()
	if err != nil {
		return nil, fmt.Errorf("kni: %s: netlink: %w", name, err)
	}
	link, err := waitLink(h, name, spec.Wait)
	if err != nil {
		h.Close()
		return nil, err
	}
	i := &Iface{name: name, index: link.Attrs().Index, h: h}
	if err := i.configure(link, spec); err != nil {
		if rerr := i.Remove(); rerr != nil {
			err = errors.Join(err, rerr)
		}
		return nil, err
	}
	return i, nil
}

func (s *Spec) validate(name string) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("kni: %s: %w: %s", name, ErrSpec, fmt.Sprintf(format, a...))
	}
	if name == "" || len(name) > 15 {
		return bad("interface name must be 1..15 bytes")
	}
	if s.MAC != nil && (len(s.MAC) != 6 || s.MAC[0]&1 != 0) {
		return bad("MAC %s is not a unicast Ethernet address", s.MAC)
	}
	if s.MTU != 0 && (s.MTU < 68 || s.MTU > 65535) {
		return bad("MTU %d out of 68..65535", s.MTU)
	}
	for _, p := range s.Addresses {
		if !p.IsValid() || p.Addr().Is4In6() || p.Addr().Zone() != "" {
			return bad("address %s", p)
		}
	}
	for _, v := range s.VIPs {
		if !v.IsValid() || v.Is4In6() || v.Zone() != "" {
			return bad("VIP %s", v)
		}
	}
	for _, r := range s.Routes {
		if !r.To.IsValid() || r.To.Addr().Is4In6() || r.To.Masked() != r.To {
			return bad("route destination %s", r.To)
		}
		if r.Via.IsValid() && (r.Via.Is4() != r.To.Addr().Is4() || r.Via.Is4In6()) {
			return bad("route %s: gateway of another family", r)
		}
	}
	if s.Wait < 0 {
		return bad("negative wait")
	}
	return nil
}

// waitLink polls for the link until wait (DefaultWait if 0) has passed.
func waitLink(h *netlink.Handle, name string, wait time.Duration) (netlink.Link, error) {
	if wait == 0 {
		wait = DefaultWait
	}
	deadline := time.Now().Add(wait)
	pause := 5 * time.Millisecond
	for {
		link, err := h.LinkByName(name)
		if err == nil {
			return link, nil
		}
		var nf netlink.LinkNotFoundError
		if !errors.As(err, &nf) && !errors.Is(err, unix.ENODEV) {
			return nil, fmt.Errorf("kni: %s: %w", name, err)
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("kni: %s: %w after %s", name, ErrNotFound, wait)
		}
		time.Sleep(pause)
		pause = min(2*pause, 100*time.Millisecond)
	}
}

func (i *Iface) configure(link netlink.Link, spec Spec) error {
	h := i.h
	attrs := link.Attrs()
	if spec.MAC != nil && !bytes.Equal(attrs.HardwareAddr, spec.MAC) {
		err := h.LinkSetHardwareAddr(link, spec.MAC)
		if errors.Is(err, unix.EBUSY) {
			// Some drivers refuse a new MAC while up.
			if err = h.LinkSetDown(link); err == nil {
				err = h.LinkSetHardwareAddr(link, spec.MAC)
			}
		}
		if err != nil {
			return i.errorf("set MAC %s: %w", spec.MAC, err)
		}
	}
	if spec.MTU != 0 && attrs.MTU != spec.MTU {
		if err := h.LinkSetMTU(link, spec.MTU); err != nil {
			return i.errorf("set MTU %d: %w", spec.MTU, err)
		}
	}
	for _, s := range []struct{ path, value string }{
		{"ipv6/conf/" + i.name + "/accept_dad", "0"},
		{"ipv4/conf/" + i.name + "/rp_filter", "2"},
		{"ipv4/conf/" + i.name + "/arp_ignore", "2"},
		{"ipv4/conf/" + i.name + "/arp_announce", "2"},
		{"ipv4/conf/" + i.name + "/accept_redirects", "0"},
		{"ipv4/conf/" + i.name + "/send_redirects", "0"},
		{"ipv6/conf/" + i.name + "/accept_redirects", "0"},
		{"ipv6/conf/" + i.name + "/accept_ra", "0"},
	} {
		if err := writeSysctl(s.path, s.value); err != nil {
			return i.errorf("%w", err)
		}
	}
	if err := h.LinkSetUp(link); err != nil {
		return i.errorf("set up: %w", err)
	}

	have := map[netip.Addr]bool{}
	add := func(p netip.Prefix, flags int, what string) error {
		if have[p.Addr()] {
			return nil
		}
		have[p.Addr()] = true
		if p.Addr().Is6() {
			flags |= unix.IFA_F_NODAD
		}
		a := &netlink.Addr{IPNet: ipNet(p), Flags: flags}
		err := h.AddrAdd(link, a)
		if errors.Is(err, unix.EEXIST) {
			return nil // was there before: not ours to remove
		}
		if err != nil {
			return i.errorf("add %s %s: %w", what, p, err)
		}
		i.addrs = append(i.addrs, a)
		return nil
	}
	for _, p := range spec.Addresses {
		if err := add(p, 0, "address"); err != nil {
			return err
		}
	}
	for _, v := range spec.VIPs {
		if err := add(netip.PrefixFrom(v, v.BitLen()), unix.IFA_F_NOPREFIXROUTE, "VIP"); err != nil {
			return err
		}
	}

	// The kernel inserts an IPv6 address's local route from a work queue, even without
	// DAD: wait until each one routes locally, so that the address takes traffic when
	// Configure returns.
	for a := range have {
		if a.Is6() {
			if err := i.waitLocal(a); err != nil {
				return err
			}
		}
	}

	for _, r := range spec.Routes {
		nr := &netlink.Route{
			LinkIndex: i.index,
			Dst:       ipNet(r.To),
			Protocol:  unix.RTPROT_STATIC,
			Family:    unix.AF_INET,
		}
		if r.To.Addr().Is6() {
			nr.Family = unix.AF_INET6
		}
		if r.Via.IsValid() {
			nr.Gw = net.IP(r.Via.AsSlice())
		} else {
			nr.Scope = netlink.SCOPE_LINK
		}
		if err := h.RouteAdd(nr); err != nil {
			if errors.Is(err, unix.EEXIST) {
				return i.errorf("add route %s: a route to %s exists already", r, r.To)
			}
			return i.errorf("add route %s: %w", r, err)
		}
		i.routes = append(i.routes, nr)
	}
	return nil
}

// localWait bounds how long Configure waits for an IPv6 address to become local.
const localWait = 2 * time.Second

func (i *Iface) waitLocal(a netip.Addr) error {
	deadline := time.Now().Add(localWait)
	for {
		rs, err := i.h.RouteGet(net.IP(a.AsSlice()))
		if err == nil && len(rs) > 0 && rs[0].Type == unix.RTN_LOCAL {
			return nil
		}
		if time.Now().After(deadline) {
			return i.errorf("address %s is not local after %s (route lookup: %v)", a, localWait, err)
		}
		time.Sleep(time.Millisecond)
	}
}

// Remove deletes the routes, VIPs and addresses Configure added, in reverse order.
// What is already gone (or the whole interface) is no error. After a complete removal
// further calls return nil; after a partial one, a further call retries the rest.
func (i *Iface) Remove() error {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.h == nil {
		return nil
	}
	var errs []error
	var keepRoutes []*netlink.Route
	for k := len(i.routes) - 1; k >= 0; k-- {
		r := i.routes[k]
		if err := i.h.RouteDel(r); err != nil && !gone(err) {
			errs = append(errs, i.errorf("delete route %s: %w", r.Dst, err))
			keepRoutes = append(keepRoutes, r)
		}
	}
	var keepAddrs []*netlink.Addr
	for k := len(i.addrs) - 1; k >= 0; k-- {
		a := i.addrs[k]
		link := &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Index: i.index, Name: i.name}}
		if err := i.h.AddrDel(link, a); err != nil && !gone(err) {
			errs = append(errs, i.errorf("delete address %s: %w", a.IPNet, err))
			keepAddrs = append(keepAddrs, a)
		}
	}
	i.routes, i.addrs = keepRoutes, keepAddrs
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	i.h.Close()
	i.h = nil
	return nil
}

// gone reports errors meaning "already deleted": no such route, address or device.
func gone(err error) bool {
	return errors.Is(err, unix.ESRCH) || errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENODEV) ||
		errors.Is(err, unix.EADDRNOTAVAIL)
}

func (i *Iface) errorf(format string, a ...any) error {
	return fmt.Errorf("kni: %s: "+format, append([]any{i.name}, a...)...)
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// writeSysctl writes /proc/sys/net/<path> unless it holds value already: a container
// has /proc/sys read-only, and sets the values through the defaults its new interfaces
// inherit (net.ipv4.conf.default.*, docker/compose.yaml). A missing file of IPv6 (IPv6
// disabled) is not an error.
func writeSysctl(path, value string) error {
	full := "/proc/sys/net/" + path
	if b, err := os.ReadFile(full); err == nil && string(bytes.TrimSpace(b)) == value {
		return nil
	}
	err := os.WriteFile(full, []byte(value), 0)
	if err == nil {
		return nil
	}
	if errors.Is(err, syscall.ENOENT) && len(path) > 4 && path[:4] == "ipv6" {
		if _, serr := os.Stat("/proc/sys/net/ipv6"); serr != nil {
			return nil
		}
	}
	return fmt.Errorf("sysctl %s = %s: %w", full, value, err)
}
