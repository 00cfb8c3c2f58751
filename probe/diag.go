//go:build linux

package probe

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/homing-dev/homing/session"
)

// TCP states as sock_diag reports them (include/net/tcp_states.h).
const (
	tcpEstablished = 1
	tcpSynRecv     = 3
	tcpFinWait1    = 4
	tcpFinWait2    = 5
	tcpCloseWait   = 8
	tcpLastAck     = 9
	tcpListen      = 10
	tcpClosing     = 11
)

// alive reports whether a socket in state st still is the full socket of a session
// the probe added: it has not reached TCP_CLOSE (nor become a TIME_WAIT socket).
func alive(st uint8) bool {
	switch st {
	case tcpEstablished, tcpFinWait1, tcpFinWait2, tcpCloseWait, tcpLastAck, tcpClosing:
		return true
	}
	return false
}

// diagSocket is one TCP socket of a sock_diag dump, in the client→VIP direction.
type diagSocket struct {
	key    session.Key
	state  uint8
	cookie uint64
}

// dumpTCP lists every TCP socket of both families through h, whose netlink socket
// belongs to the network namespace it was created in. IPv4-mapped addresses of
// dual-stack sockets are returned as IPv4.
func dumpTCP(h *netlink.Handle) ([]diagSocket, error) {
	var out []diagSocket
	for _, fam := range []uint8{unix.AF_INET, unix.AF_INET6} {
		var socks []*netlink.Socket
		var err error
		for try := 0; ; try++ {
			socks, err = h.SocketDiagTCP(fam)
			if !errors.Is(err, netlink.ErrDumpInterrupted) || try == 2 {
				break
			}
		}
		if err != nil {
			return nil, fmt.Errorf("sock_diag dump of family %d: %w", fam, err)
		}
		for _, s := range socks {
			local, ok1 := addrOf(s.ID.Source)
			remote, ok2 := addrOf(s.ID.Destination)
			if !ok1 || !ok2 || local.Is4() != remote.Is4() {
				continue
			}
			out = append(out, diagSocket{
				key: session.Key{
					Src: remote, SrcPort: s.ID.DestinationPort,
					Dst: local, DstPort: s.ID.SourcePort,
					Proto: session.TCP,
				},
				state:  s.State,
				cookie: uint64(s.ID.Cookie[0]) | uint64(s.ID.Cookie[1])<<32,
			})
		}
	}
	return out, nil
}

func addrOf(ip net.IP) (netip.Addr, bool) {
	a, ok := netip.AddrFromSlice(ip)
	return a.Unmap(), ok
}

// established picks from a dump the ESTABLISHED sockets whose local address is in
// vips and whose local port has a listener (any address): accepted connections, not
// connections this host opened from a VIP.
func established(socks []diagSocket, vips []netip.Prefix) []diagSocket {
	listening := make(map[uint16]bool)
	for _, s := range socks {
		if s.state == tcpListen {
			listening[s.key.DstPort] = true
		}
	}
	var out []diagSocket
	for _, s := range socks {
		if s.state == tcpEstablished && listening[s.key.DstPort] && inVIPs(s.key.Dst, vips) {
			out = append(out, s)
		}
	}
	return out
}

func inVIPs(a netip.Addr, vips []netip.Prefix) bool {
	for _, p := range vips {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// newDiagHandle opens a sock_diag netlink socket in the calling thread's network
// namespace.
func newDiagHandle() (*netlink.Handle, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	h, err := netlink.NewHandle(unix.NETLINK_INET_DIAG)
	if err != nil {
		return nil, fmt.Errorf("open sock_diag socket: %w", err)
	}
	return h, nil
}

// ListEstablished lists, in the calling thread's network namespace, the TCP
// connections accepted on a VIP: ESTABLISHED sockets whose local address is within
// one of vips and whose local port has a listening socket. Keys are in the
// client→VIP direction; IPv4 connections on dual-stack sockets are IPv4 keys.
func ListEstablished(vips []netip.Prefix) ([]session.Key, error) {
	norm, err := normalizeVIPs(vips)
	if err != nil {
		return nil, err
	}
	h, err := newDiagHandle()
	if err != nil {
		return nil, err
	}
	defer h.Close()
	socks, err := dumpTCP(h)
	if err != nil {
		return nil, err
	}
	est := established(socks, norm)
	keys := make([]session.Key, len(est))
	for i, s := range est {
		keys[i] = s.key
	}
	return keys, nil
}

// normalizeVIPs validates prefixes, turns IPv4-mapped ones into IPv4 and masks them.
func normalizeVIPs(vips []netip.Prefix) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(vips))
	for _, p := range vips {
		if !p.IsValid() {
			return nil, fmt.Errorf("%w: %v", ErrBadVIP, p)
		}
		if p.Addr().Is4In6() {
			if p.Bits() < 96 {
				return nil, fmt.Errorf("%w: %v is wider than the IPv4-mapped range", ErrBadVIP, p)
			}
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}
