//go:build linux

package probe

import (
	"net"
	"net/netip"
	"slices"
	"testing"

	"github.com/homing-dev/homing/session"
)

// TestListConnectedUDP: a connected UDP socket on a VIP and a session port is listed in
// the client→VIP direction; an unconnected one, another port and a non-VIP address are
// not.
func TestListConnectedUDP(t *testing.T) {
	listen := func(laddr string) *net.UDPConn {
		c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(laddr)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	dial := func(laddr, raddr string) *net.UDPConn {
		c, err := net.DialUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(laddr)), net.UDPAddrFromAddrPort(netip.MustParseAddrPort(raddr)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	srv := listen("127.0.0.1:0") // unconnected, on the session port
	port := srv.LocalAddr().(*net.UDPAddr).AddrPort().Port()
	// A connected socket on the same port of another VIP address.
	dial("127.0.0.2:"+itoa(port), "127.0.0.9:40000")
	dial("127.0.0.2:0", "127.0.0.9:40001") // another port
	dial("127.0.1.2:"+itoa(port), "127.0.0.9:40002")
	got, err := ListConnectedUDP([]netip.Prefix{netip.MustParsePrefix("127.0.0.0/24")}, map[uint16]bool{port: true})
	if err != nil {
		t.Fatal(err)
	}
	want := []session.Key{{Src: netip.MustParseAddr("127.0.0.9"), SrcPort: 40000, Dst: netip.MustParseAddr("127.0.0.2"), DstPort: port, Proto: session.UDP}}
	if !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func itoa(p uint16) string {
	return netip.AddrPortFrom(netip.IPv4Unspecified(), p).String()[len("0.0.0.0:"):]
}
