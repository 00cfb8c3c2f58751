package kni

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/homing-dev/homing/internal/testenv"
)

// Addresses from 198.18.0.0/15 and 2001:2::/48 only.
var (
	nicMAC = net.HardwareAddr{0x02, 0x00, 0x00, 0x00, 0x00, 0x11}
	spec   = Spec{
		MAC: nicMAC,
		MTU: 1400,
		Addresses: []netip.Prefix{
			netip.MustParsePrefix("198.18.0.11/24"),
			netip.MustParsePrefix("2001:2::11/64"),
		},
		VIPs: []netip.Addr{netip.MustParseAddr("198.19.255.1"), netip.MustParseAddr("2001:2:0:ff::1")},
		Routes: []Route{
			{To: netip.MustParsePrefix("0.0.0.0/0"), Via: netip.MustParseAddr("198.18.0.1")},
			{To: netip.MustParsePrefix("198.18.64.0/18")},
			{To: netip.MustParsePrefix("::/0"), Via: netip.MustParseAddr("2001:2::1")},
			{To: netip.MustParsePrefix("2001:2:0:100::/64"), Via: netip.MustParseAddr("2001:2::1")},
		},
	}
)

var nsCount atomic.Int32

// inNetns runs fn on a goroutine whose OS thread is in a fresh network namespace
// (deleted at cleanup). The thread stays locked until the goroutine ends, so Go
// discards it and no other goroutine ever runs in the namespace. fn may only use
// t.Error*/t.Log (not t.Fatal): it is not the test goroutine. It gets a handle on the
// namespace for goroutines that are not on that thread.
func inNetns(t *testing.T, fn func(ns netns.NsHandle)) {
	t.Helper()
	testenv.RequireRoot(t)
	name := fmt.Sprintf("hmg-kni-%d-%d", os.Getpid(), nsCount.Add(1))
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		ns, err := netns.NewNamed(name)
		if err != nil {
			t.Errorf("create netns %s: %v", name, err)
			return
		}
		defer ns.Close()
		fn(ns)
	}()
	<-done
	t.Cleanup(func() {
		if err := netns.DeleteNamed(name); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Errorf("delete netns %s: %v", name, err)
		}
	})
	if t.Failed() {
		t.FailNow()
	}
}

// newTAP creates a non-persistent TAP with a queue held open, as net_tap does: it has
// a carrier and disappears when the returned close function runs.
func newTAP(t *testing.T, name string) (close func()) {
	tap := &netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Name: name}, Mode: netlink.TUNTAP_MODE_TAP,
		Queues: 1, NonPersist: true, Flags: netlink.TUNTAP_NO_PI}
	if err := netlink.LinkAdd(tap); err != nil {
		t.Errorf("create TAP %s: %v", name, err)
		return nil
	}
	return func() {
		for _, f := range tap.Fds {
			f.Close()
		}
	}
}

func TestConfigureAndRemove(t *testing.T) {
	inNetns(t, func(netns.NsHandle) {
		closeTAP := newTAP(t, "homing0")
		if closeTAP == nil {
			return
		}
		defer closeTAP()
		lo, _ := netlink.LinkByName("lo")
		tap, _ := netlink.LinkByName("homing0")
		// net_tap brings the TAP up when DPDK starts the port, before Configure runs.
		for _, l := range []netlink.Link{lo, tap} {
			if err := netlink.LinkSetUp(l); err != nil {
				t.Errorf("%s up: %v", l.Attrs().Name, err)
			}
		}

		// A new interface starts with the namespace's defaults: redirects and router
		// advertisements accepted, redirects sent.
		for _, file := range []string{"ipv4/conf/homing0/accept_redirects", "ipv4/conf/homing0/send_redirects",
			"ipv6/conf/homing0/accept_redirects", "ipv6/conf/homing0/accept_ra"} {
			if b, err := os.ReadFile("/proc/sys/net/" + file); err != nil || strings.TrimSpace(string(b)) != "1" {
				t.Errorf("before Configure: %s = %q (%v), want the default 1", file, b, err)
			}
		}

		iface, err := Configure("homing0", spec)
		if err != nil {
			t.Errorf("Configure: %v", err)
			return
		}
		link, err := netlink.LinkByName("homing0")
		if err != nil {
			t.Errorf("LinkByName: %v", err)
			return
		}
		a := link.Attrs()
		if iface.Name() != "homing0" || iface.Index() != a.Index {
			t.Errorf("Iface %s/%d, link %d", iface.Name(), iface.Index(), a.Index)
		}
		if a.HardwareAddr.String() != nicMAC.String() {
			t.Errorf("MAC %s, want %s", a.HardwareAddr, nicMAC)
		}
		if a.MTU != 1400 {
			t.Errorf("MTU %d, want 1400", a.MTU)
		}
		if a.Flags&net.FlagUp == 0 {
			t.Errorf("link is not up: %v", a.Flags)
		}
		for file, want := range map[string]string{
			"ipv6/conf/homing0/accept_dad":       "0",
			"ipv4/conf/homing0/rp_filter":        "2",
			"ipv4/conf/homing0/arp_ignore":       "2",
			"ipv4/conf/homing0/arp_announce":     "2",
			"ipv4/conf/homing0/accept_redirects": "0",
			"ipv4/conf/homing0/send_redirects":   "0",
			"ipv6/conf/homing0/accept_redirects": "0",
			"ipv6/conf/homing0/accept_ra":        "0",
		} {
			b, err := os.ReadFile("/proc/sys/net/" + file)
			if got := strings.TrimSpace(string(b)); err != nil || got != want {
				t.Errorf("%s = %q (%v), want %s", file, got, err, want)
			}
		}

		addrs := addrMap(t, link)
		for _, p := range spec.Addresses {
			f, ok := addrs[p]
			if !ok {
				t.Errorf("address %s missing; have %v", p, addrs)
			}
			if p.Addr().Is6() && f&unix.IFA_F_TENTATIVE != 0 {
				t.Errorf("address %s is tentative (DAD not disabled)", p)
			}
		}
		for _, v := range spec.VIPs {
			p := netip.PrefixFrom(v, v.BitLen())
			f, ok := addrs[p]
			if !ok {
				t.Errorf("VIP %s missing; have %v", p, addrs)
			}
			if f&unix.IFA_F_NOPREFIXROUTE == 0 {
				t.Errorf("VIP %s flags %#x lack NOPREFIXROUTE", p, f)
			}
		}

		routes := routeSet(t, link)
		if len(routes) != len(spec.Routes) {
			t.Errorf("routes %v, want %v", routes, spec.Routes)
		}
		for _, r := range spec.Routes {
			if !routes[r] {
				t.Errorf("route %s missing; have %v", r, routes)
			}
		}
		// The VIPs are local and usable: the kernel routes them to itself.
		for _, v := range spec.VIPs {
			rs, err := netlink.RouteGet(net.IP(v.AsSlice()))
			if err != nil || len(rs) == 0 || rs[0].Type != unix.RTN_LOCAL {
				t.Errorf("RouteGet(%s) = %+v, %v; want a local route", v, rs, err)
			}
		}

		if err := iface.Remove(); err != nil {
			t.Errorf("Remove: %v", err)
		}
		// The kernel's own fe80:: link-local address remains; nothing else.
		for p := range addrMap(t, link) {
			if !p.Addr().IsLinkLocalUnicast() {
				t.Errorf("after Remove: address %s left", p)
			}
		}
		for r := range routeSet(t, link) {
			t.Errorf("after Remove: route %s left", r)
		}
		if err := iface.Remove(); err != nil {
			t.Errorf("second Remove: %v", err)
		}
	})
}

// addrMap returns the interface's addresses with their flags.
func addrMap(t *testing.T, link netlink.Link) map[netip.Prefix]int {
	list, err := netlink.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		t.Errorf("AddrList: %v", err)
	}
	m := map[netip.Prefix]int{}
	for _, a := range list {
		ip, _ := netip.AddrFromSlice(a.IP)
		bits, _ := a.Mask.Size()
		m[netip.PrefixFrom(ip.Unmap(), bits)] = a.Flags
	}
	return m
}

// routeSet returns the main-table unicast routes through link (without the kernel's
// own prefix routes for IPv4, which have no protocol static).
func routeSet(t *testing.T, link netlink.Link) map[Route]bool {
	list, err := netlink.RouteListFiltered(netlink.FAMILY_ALL,
		&netlink.Route{LinkIndex: link.Attrs().Index, Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_OIF|netlink.RT_FILTER_TABLE)
	if err != nil {
		t.Errorf("RouteList: %v", err)
	}
	m := map[Route]bool{}
	for _, r := range list {
		if r.Protocol != unix.RTPROT_STATIC {
			continue
		}
		var rt Route
		if r.Dst == nil {
			if r.Family == unix.AF_INET6 {
				rt.To = netip.MustParsePrefix("::/0")
			} else {
				rt.To = netip.MustParsePrefix("0.0.0.0/0")
			}
		} else {
			ip, _ := netip.AddrFromSlice(r.Dst.IP)
			bits, _ := r.Dst.Mask.Size()
			rt.To = netip.PrefixFrom(ip.Unmap(), bits)
		}
		if r.Gw != nil {
			rt.Via, _ = netip.AddrFromSlice(r.Gw)
			rt.Via = rt.Via.Unmap()
		}
		m[rt] = true
	}
	return m
}

func TestWaitsForLateInterface(t *testing.T) {
	inNetns(t, func(ns netns.NsHandle) {
		// Another goroutine (another thread) creates the interface through a handle
		// bound to the namespace, 200 ms after Configure starts waiting.
		h, err := netlink.NewHandleAt(ns)
		if err != nil {
			t.Errorf("NewHandleAt: %v", err)
			return
		}
		defer h.Close()
		created := make(chan error, 1)
		go func() {
			time.Sleep(200 * time.Millisecond)
			created <- h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "late0"}, PeerName: "late1"})
		}()
		start := time.Now()
		iface, err := Configure("late0", Spec{Addresses: []netip.Prefix{netip.MustParsePrefix("198.18.1.2/24")}, Wait: 3 * time.Second})
		if cerr := <-created; cerr != nil {
			t.Errorf("create late0: %v", cerr)
			return
		}
		if err != nil {
			t.Errorf("Configure: %v", err)
			return
		}
		if d := time.Since(start); d < 150*time.Millisecond {
			t.Errorf("Configure returned after %s, before the interface existed", d)
		}
		if err := iface.Remove(); err != nil {
			t.Errorf("Remove: %v", err)
		}
	})
}

func TestNotFound(t *testing.T) {
	inNetns(t, func(netns.NsHandle) {
		_, err := Configure("absent0", Spec{Wait: 100 * time.Millisecond})
		if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "absent0") {
			t.Errorf("Configure(absent0) = %v, want ErrNotFound naming the interface", err)
		}
	})
}

func TestKeepsWhatWasThere(t *testing.T) {
	inNetns(t, func(netns.NsHandle) {
		closeTAP := newTAP(t, "homing0")
		if closeTAP == nil {
			return
		}
		defer closeTAP()
		link, _ := netlink.LinkByName("homing0")
		pre := &netlink.Addr{IPNet: ipNet(netip.MustParsePrefix("198.18.0.11/24"))}
		if err := netlink.AddrAdd(link, pre); err != nil {
			t.Errorf("AddrAdd: %v", err)
			return
		}
		iface, err := Configure("homing0", Spec{Addresses: []netip.Prefix{
			netip.MustParsePrefix("198.18.0.11/24"), netip.MustParsePrefix("198.18.2.11/24")}})
		if err != nil {
			t.Errorf("Configure: %v", err)
			return
		}
		if err := iface.Remove(); err != nil {
			t.Errorf("Remove: %v", err)
		}
		addrs := addrMap(t, link)
		if _, ok := addrs[netip.MustParsePrefix("198.18.0.11/24")]; !ok {
			t.Errorf("Remove took the address that was there before: %v", addrs)
		}
		if _, ok := addrs[netip.MustParsePrefix("198.18.2.11/24")]; ok {
			t.Errorf("Remove left its own address: %v", addrs)
		}
	})
}

func TestRemoveAfterInterfaceIsGone(t *testing.T) {
	inNetns(t, func(netns.NsHandle) {
		closeTAP := newTAP(t, "homing0")
		if closeTAP == nil {
			return
		}
		iface, err := Configure("homing0", spec)
		if err != nil {
			t.Errorf("Configure: %v", err)
			closeTAP()
			return
		}
		closeTAP() // DPDK closed the port: the TAP and everything on it is gone
		deadline := time.Now().Add(2 * time.Second)
		for time.Now().Before(deadline) {
			if _, err := netlink.LinkByName("homing0"); err != nil {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if err := iface.Remove(); err != nil {
			t.Errorf("Remove after the TAP is gone: %v", err)
		}
		// The sysctls went with the interface: a TAP of the same name made again (the
		// next start) has the namespace's defaults, not what Configure set.
		closeTAP = newTAP(t, "homing0")
		if closeTAP == nil {
			return
		}
		defer closeTAP()
		for file, want := range map[string]string{"ipv6/conf/homing0/accept_ra": "1", "ipv4/conf/homing0/send_redirects": "1",
			"ipv4/conf/homing0/arp_ignore": "0"} {
			if b, err := os.ReadFile("/proc/sys/net/" + file); err != nil || strings.TrimSpace(string(b)) != want {
				t.Errorf("TAP made again: %s = %q (%v), want the default %s", file, b, err, want)
			}
		}
	})
}

func TestFailureRollsBack(t *testing.T) {
	inNetns(t, func(netns.NsHandle) {
		closeTAP := newTAP(t, "homing0")
		if closeTAP == nil {
			return
		}
		defer closeTAP()
		// The gateway 198.18.9.1 is on no subnet of the interface: the route fails,
		// and the address added before it must be taken away again.
		_, err := Configure("homing0", Spec{
			Addresses: []netip.Prefix{netip.MustParsePrefix("198.18.0.11/24")},
			Routes:    []Route{{To: netip.MustParsePrefix("198.18.128.0/17"), Via: netip.MustParseAddr("198.18.9.1")}},
		})
		if err == nil || !strings.Contains(err.Error(), "kni: homing0: add route 198.18.128.0/17 via 198.18.9.1") {
			t.Errorf("Configure = %v, want a route error naming the interface", err)
		}
		link, _ := netlink.LinkByName("homing0")
		for p := range addrMap(t, link) {
			if p.Addr().Is4() {
				t.Errorf("address %s left after a failed Configure", p)
			}
		}
	})
}

func TestSpecValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		s    Spec
	}{
		{"", Spec{}},
		{"a-name-too-long0", Spec{}},
		{"x", Spec{MAC: net.HardwareAddr{1, 0, 0, 0, 0, 1}}},
		{"x", Spec{MAC: net.HardwareAddr{2, 0, 0, 0, 1}}},
		{"x", Spec{MTU: 67}},
		{"x", Spec{Addresses: []netip.Prefix{{}}}},
		{"x", Spec{Addresses: []netip.Prefix{netip.MustParsePrefix("::ffff:198.18.0.1/120")}}},
		{"x", Spec{VIPs: []netip.Addr{{}}}},
		{"x", Spec{Routes: []Route{{To: netip.MustParsePrefix("198.18.0.1/24")}}}},
		{"x", Spec{Routes: []Route{{To: netip.MustParsePrefix("::/0"), Via: netip.MustParseAddr("198.18.0.1")}}}},
		{"x", Spec{Wait: -1}},
	} {
		_, err := Configure(tc.name, tc.s)
		if !errors.Is(err, ErrSpec) {
			t.Errorf("Configure(%q, %+v) = %v, want ErrSpec", tc.name, tc.s, err)
		}
	}
}
