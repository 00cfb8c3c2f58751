//go:build linux

package probe

import (
	"errors"
	"net/netip"
	"os"
	"slices"
	"testing"

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
