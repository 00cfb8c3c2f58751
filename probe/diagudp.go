//go:build linux

package probe

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/homing-dev/homing/session"
)

// ListConnectedUDP lists, in the calling thread's network namespace, the connected UDP
// sockets bound to a VIP address and one of ports whose peer is set: flows a server
// keeps one socket each for (a media or VPN server, a QUIC server that connects a
// socket per connection). Keys are in the client→VIP direction; IPv4 flows of
// dual-stack sockets are IPv4 keys. An unconnected socket (a QUIC server's listening
// one) has no flow to report: its flows are learnt from the packets it sends.
func ListConnectedUDP(vips []netip.Prefix, ports map[uint16]bool) ([]session.Key, error) {
	norm, err := normalizeVIPs(vips)
	if err != nil {
		return nil, err
	}
	h, err := newDiagHandle()
	if err != nil {
		return nil, err
	}
	defer h.Close()
	var out []session.Key
	seen := map[session.Key]bool{}
	for _, fam := range []uint8{unix.AF_INET, unix.AF_INET6} {
		var socks []*netlink.Socket
		for try := 0; ; try++ {
			socks, err = h.SocketDiagUDP(fam)
			if !errors.Is(err, netlink.ErrDumpInterrupted) || try == 2 {
				break
			}
		}
		if err != nil {
			return nil, fmt.Errorf("sock_diag UDP dump of family %d: %w", fam, err)
		}
		for _, k := range connectedUDP(socks, norm, ports) {
			if !seen[k] {
				seen[k] = true
				out = append(out, k)
			}
		}
	}
	return out, nil
}

// connectedUDP picks the connected sockets on a VIP and a session port from a dump.
func connectedUDP(socks []*netlink.Socket, vips []netip.Prefix, ports map[uint16]bool) []session.Key {
	var out []session.Key
	for _, s := range socks {
		local, ok1 := addrOf(s.ID.Source)
		remote, ok2 := addrOf(s.ID.Destination)
		if !ok1 || !ok2 || local.Is4() != remote.Is4() || s.ID.DestinationPort == 0 || remote.IsUnspecified() ||
			!ports[s.ID.SourcePort] || !inVIPs(local, vips) {
			continue
		}
		out = append(out, session.Key{Src: remote, SrcPort: s.ID.DestinationPort, Dst: local, DstPort: s.ID.SourcePort,
			Proto: session.UDP})
	}
	return out
}
