//go:build linux

package probe

import (
	"errors"
	"net/netip"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"

	"github.com/homing-dev/homing/session"
)

func TestEstablishedFilter(t *testing.T) {
	vips := []netip.Prefix{netip.MustParsePrefix("198.19.255.0/24"), netip.MustParsePrefix("2001:2::/64")}
	listener := func(addr string, port uint16) diagSocket {
		return diagSocket{state: tcpListen, key: session.Key{Dst: netip.MustParseAddr(addr), DstPort: port, Src: netip.IPv4Unspecified()}}
	}
	accepted := diagSocket{state: tcpEstablished, cookie: 1, key: key("198.18.100.2", 40000, "198.19.255.1", 80)}
	accepted6 := diagSocket{state: tcpEstablished, cookie: 2, key: key("2001:2::100", 40000, "2001:2::1", 443)}
	socks := []diagSocket{
		listener("0.0.0.0", 80),
		listener("::", 443),
		accepted,
		accepted6,
		// from a VIP, to a remote server: no listener on its port
		{state: tcpEstablished, cookie: 3, key: key("198.18.0.9", 80, "198.19.255.1", 40001)},
		// not a VIP
		{state: tcpEstablished, cookie: 4, key: key("198.18.100.2", 40002, "198.18.77.1", 80)},
		// not established
		{state: tcpCloseWait, cookie: 5, key: key("198.18.100.2", 40003, "198.19.255.1", 80)},
		{state: tcpSynRecv, cookie: 6, key: key("198.18.100.2", 40004, "198.19.255.1", 80)},
	}
	got := established(socks, vips)
	if want := []diagSocket{accepted, accepted6}; !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestAlive(t *testing.T) {
	for st := uint8(0); st < 14; st++ {
		want := st == tcpEstablished || st == tcpFinWait1 || st == tcpFinWait2 ||
			st == tcpCloseWait || st == tcpLastAck || st == tcpClosing
		if alive(st) != want {
			t.Errorf("alive(%d) = %v", st, !want)
		}
	}
}

func TestNormalizeVIPs(t *testing.T) {
	got, err := normalizeVIPs([]netip.Prefix{
		netip.MustParsePrefix("198.19.255.7/24"),
		netip.MustParsePrefix("::ffff:198.19.0.1/112"),
		netip.MustParsePrefix("2001:2::1/128"),
	})
	want := []netip.Prefix{
		netip.MustParsePrefix("198.19.255.0/24"),
		netip.MustParsePrefix("198.19.0.0/16"),
		netip.MustParsePrefix("2001:2::1/128"),
	}
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("got %v, %v; want %v", got, err, want)
	}
	for _, bad := range []netip.Prefix{{}, netip.MustParsePrefix("::ffff:0.0.0.0/64")} {
		if _, err := normalizeVIPs([]netip.Prefix{bad}); !errors.Is(err, ErrBadVIP) {
			t.Errorf("%v: got %v, want ErrBadVIP", bad, err)
		}
	}
}

// Configuration errors come before anything touches the kernel: no root needed.
func TestOpenConfigErrors(t *testing.T) {
	vips := []netip.Prefix{netip.MustParsePrefix("198.19.255.1/32")}
	dir := t.TempDir()
	for name, c := range map[string]struct {
		cfg  Config
		want error
	}{
		"no VIPs":      {Config{CgroupPath: dir}, ErrNoVIPs},
		"bad VIP":      {Config{CgroupPath: dir, VIPs: []netip.Prefix{{}}}, ErrBadVIP},
		"ring not 2^n": {Config{CgroupPath: dir, VIPs: vips, RingBytes: 3 << 12}, ErrRingSize},
		"ring small":   {Config{CgroupPath: dir, VIPs: vips, RingBytes: 64}, ErrRingSize},
		"not cgroup2":  {Config{CgroupPath: dir, VIPs: vips}, ErrNotCgroup2},
		"missing":      {Config{CgroupPath: dir + "/nope", VIPs: vips}, os.ErrNotExist},
	} {
		p, err := Open(c.cfg)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", name, err, c.want)
		}
		if p != nil {
			p.Close()
		}
	}
}

// TestLookupTCP: lookupTCP finds a connection by its key and cookie (IPv4, IPv4 on a
// dual-stack socket, IPv6), reports its state once it is in TIME_WAIT, and does not
// find it under another cookie, nor once it is gone.
func TestLookupTCP(t *testing.T) {
	ns, _, h, vip := vipLab(t)
	dual := netip.AddrPortFrom(vip4, 8081)
	v6 := netip.AddrPortFrom(vip6, 8080)
	h.do("listen [::]:8081") // IPv4 connections arrive IPv4-mapped
	h.do("listen %s", v6)
	conns := map[string]session.Key{
		"v4":   h.dial("v4", 1, client4, vip)[0],
		"dual": h.dial("dual", 1, client4, dual)[0],
		"v6":   h.dial("v6", 1, client6, v6)[0],
	}
	var dh *netlink.Handle
	var sh *nl.SocketHandle
	inNetns(t, ns, func() {
		var err error
		if dh, err = newDiagHandle(); err != nil {
			t.Fatal(err)
		}
		if sh, err = newLookupSocket(); err != nil {
			t.Fatal(err)
		}
	})
	t.Cleanup(func() { dh.Close(); sh.Close() })
	socks, err := dumpTCP(dh)
	if err != nil {
		t.Fatal(err)
	}
	cookies := make(map[session.Key]uint64)
	for _, s := range socks {
		cookies[s.key] = s.cookie
	}
	lookup := func(what string, k session.Key, cookie uint64) (uint8, bool) {
		t.Helper()
		st, found, err := lookupTCP(sh, k, cookie)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return st, found
	}
	for name, k := range conns {
		c, ok := cookies[k]
		if !ok {
			t.Fatalf("%s: %v not in the dump", name, k)
		}
		if st, found := lookup(name, k, c); !found || st != tcpEstablished {
			t.Errorf("%s: found %v, state %d; want established", name, found, st)
		}
		if _, found := lookup(name+", other cookie", k, c+1<<40); found {
			t.Errorf("%s: found under another cookie", name)
		}
		other := k
		other.SrcPort = 1
		if _, found := lookup(name+", other port", other, c); found {
			t.Errorf("%s: found with another client port", name)
		}
	}
	// The server closes first: its socket becomes TIME_WAIT (same cookie). A reset
	// removes the others.
	h.do("close v4 server-first")
	h.do("close dual rst")
	h.do("close v6 rst")
	deadline := time.Now().Add(5 * time.Second)
	for name, k := range conns {
		for {
			st, found := lookup(name, k, cookies[k])
			if name == "v4" && found && st == tcpTimeWait || name != "v4" && !found {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s after close: found %v, state %d", name, found, st)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}
