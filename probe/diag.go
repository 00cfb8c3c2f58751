//go:build linux

package probe

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
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

// newLookupSocket opens a sock_diag netlink socket, for lookupTCP, in the calling
// thread's network namespace. (netlink.Handle.SocketGet is not an exact lookup: it
// sends a dump request, which the kernel filters by ports only.)
func newLookupSocket() (*nl.SocketHandle, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	s, err := nl.GetNetlinkSocketAt(netns.None(), netns.None(), unix.NETLINK_INET_DIAG)
	if err != nil {
		return nil, fmt.Errorf("open sock_diag socket: %w", err)
	}
	return &nl.SocketHandle{Socket: s}, nil
}

// inetDiagReq is a struct inet_diag_req_v2 (linux/inet_diag.h).
type inetDiagReq [56]byte

func (r *inetDiagReq) Len() int          { return len(r) }
func (r *inetDiagReq) Serialize() []byte { return r[:] }

// lookupTCP asks sock_diag, through sh, for the socket of key whose cookie is
// cookie: an exact lookup (inet_diag_find_one_icsk: the established hash, TIME_WAIT
// sockets included), not a dump. found is false when no socket has key's 4-tuple or
// the one that has it is another socket (another cookie, or the listener the lookup
// falls back to); state is the socket's TCP state otherwise. An IPv4 key finds an
// IPv4-mapped connection of a dual-stack socket too (the hash is shared).
func lookupTCP(sh *nl.SocketHandle, key session.Key, cookie uint64) (state uint8, found bool, err error) {
	var r inetDiagReq
	r[0] = unix.AF_INET6
	if key.Dst.Is4() {
		r[0] = unix.AF_INET
	}
	r[1] = unix.IPPROTO_TCP
	binary.NativeEndian.PutUint32(r[4:], ^uint32(0)) // idiag_states: any
	// inet_diag_sockid: the local end (VIP) is the source.
	binary.BigEndian.PutUint16(r[8:], key.DstPort)
	binary.BigEndian.PutUint16(r[10:], key.SrcPort)
	copy(r[12:28], key.Dst.AsSlice())
	copy(r[28:44], key.Src.AsSlice())
	binary.NativeEndian.PutUint32(r[48:], uint32(cookie))
	binary.NativeEndian.PutUint32(r[52:], uint32(cookie>>32))

	req := nl.NewNetlinkRequest(nl.SOCK_DIAG_BY_FAMILY, 0)
	req.AddData(&r)
	req.Sockets = map[int]*nl.SocketHandle{unix.NETLINK_INET_DIAG: sh}
	msgs, err := req.Execute(unix.NETLINK_INET_DIAG, nl.SOCK_DIAG_BY_FAMILY)
	switch {
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ESTALE):
		return 0, false, nil
	case err != nil:
		return 0, false, fmt.Errorf("sock_diag lookup of %v: %w", key, err)
	case len(msgs) != 1 || len(msgs[0]) < 52:
		return 0, false, fmt.Errorf("sock_diag lookup of %v: %w", key, errBadDiagReply)
	}
	// struct inet_diag_msg: family, state, ..., id at 4 (cookie at 4+40).
	m := msgs[0]
	got := uint64(binary.NativeEndian.Uint32(m[44:])) | uint64(binary.NativeEndian.Uint32(m[48:]))<<32
	if got != cookie {
		return 0, false, nil
	}
	return m[1], true, nil
}

var errBadDiagReply = errors.New("unexpected sock_diag reply")

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
