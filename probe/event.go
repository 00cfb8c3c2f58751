package probe

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/homing-dev/homing/session"
)

// Kind says what happened to a session.
type Kind uint8

// Event kinds, as numbered on the ring buffer (EVENT_* in sockops.c).
const (
	// Add: a connection to a VIP was accepted (or found established at start).
	Add Kind = 1
	// Delete: an added connection's socket closed (reset, or its last state before
	// TIME_WAIT or CLOSE).
	Delete Kind = 2
	// Tentative: a SYN to a VIP was taken by a listener (request socket, SYN-ACK
	// sent, handshake not complete). An Add follows if the handshake completes;
	// nothing follows otherwise.
	Tentative Kind = 3
)

func (k Kind) String() string {
	switch k {
	case Add:
		return "add"
	case Delete:
		return "delete"
	case Tentative:
		return "tentative"
	}
	return fmt.Sprintf("kind%d", uint8(k))
}

// Event is one session change reported by the probe. Key is in the client→VIP
// direction: Src is the client, Dst the VIP.
type Event struct {
	Kind Kind
	Key  session.Key
	// Cookie is the kernel's socket cookie (the one sock_diag reports): it tells two
	// connections with the same 4-tuple apart, one after the other.
	Cookie uint64
}

func (e Event) String() string {
	return fmt.Sprintf("%s %s cookie %d", e.Kind, e.Key, e.Cookie)
}

// eventBytes is one ring-buffer record, struct event in sockops.c. Multi-byte
// integers are network order except the cookie, which is in host order as the
// kernel wrote it. IPv4 addresses fill the first 4 bytes of their field.
//
//	 0               1               2               3
//	+---------------+---------------+---------------+---------------+
//	|     kind      |  family 4|6   |  proto (6)    |     pad       |  0
//	+---------------+---------------+---------------+---------------+
//	|       src port (client)       |        dst port (VIP)         |  4
//	+---------------+---------------+---------------+---------------+
//	|                     socket cookie (64 bits)                   |  8
//	+---------------+---------------+---------------+---------------+
//	|                    src address (16 bytes)                     | 16
//	+---------------+---------------+---------------+---------------+
//	|                    dst address (16 bytes)                     | 32
//	+---------------+---------------+---------------+---------------+
//	                                                                  48
type eventBytes []byte

const (
	evKind    = 0
	evFamily  = 1
	evProto   = 2
	evSrcPort = 4
	evDstPort = 6
	evCookie  = 8
	evSrc     = 16
	evDst     = 32
	eventSize = 48
)

// ErrBadEvent is returned for a ring-buffer record that does not decode.
var ErrBadEvent = errors.New("bad probe event")

func (b eventBytes) kind() Kind          { return Kind(b[evKind]) }
func (b eventBytes) family() uint8       { return b[evFamily] }
func (b eventBytes) proto() uint8        { return b[evProto] }
func (b eventBytes) srcPort() uint16     { return binary.BigEndian.Uint16(b[evSrcPort:]) }
func (b eventBytes) dstPort() uint16     { return binary.BigEndian.Uint16(b[evDstPort:]) }
func (b eventBytes) cookie() uint64      { return binary.NativeEndian.Uint64(b[evCookie:]) }
func (b eventBytes) addr(off int) []byte { return b[off : off+16] }

// parseEvent decodes one record written by the sock_ops program.
func parseEvent(raw []byte) (Event, error) {
	if len(raw) < eventSize {
		return Event{}, fmt.Errorf("%w: %d bytes, want %d", ErrBadEvent, len(raw), eventSize)
	}
	b := eventBytes(raw)
	k := b.kind()
	if k != Add && k != Delete && k != Tentative {
		return Event{}, fmt.Errorf("%w: kind %d", ErrBadEvent, k)
	}
	if b.proto() != session.TCP {
		return Event{}, fmt.Errorf("%w: protocol %d", ErrBadEvent, b.proto())
	}
	var src, dst netip.Addr
	switch b.family() {
	case 4:
		src = netip.AddrFrom4([4]byte(b.addr(evSrc)))
		dst = netip.AddrFrom4([4]byte(b.addr(evDst)))
	case 6:
		src = netip.AddrFrom16([16]byte(b.addr(evSrc)))
		dst = netip.AddrFrom16([16]byte(b.addr(evDst)))
		if src.Is4In6() || dst.Is4In6() {
			return Event{}, fmt.Errorf("%w: IPv4-mapped address in an IPv6 event", ErrBadEvent)
		}
	default:
		return Event{}, fmt.Errorf("%w: family %d", ErrBadEvent, b.family())
	}
	return Event{
		Kind:   k,
		Cookie: b.cookie(),
		Key: session.Key{
			Src:     src,
			Dst:     dst,
			SrcPort: b.srcPort(),
			DstPort: b.dstPort(),
			Proto:   session.TCP,
		},
	}, nil
}

// appendEvent encodes e as the sock_ops program would; tests and fuzzing use it.
func appendEvent(dst []byte, e Event) []byte {
	var b [eventSize]byte
	b[evKind] = byte(e.Kind)
	b[evProto] = e.Key.Proto
	if e.Key.Src.Is4() {
		b[evFamily] = 4
		s4, d4 := e.Key.Src.As4(), e.Key.Dst.As4()
		copy(b[evSrc:], s4[:])
		copy(b[evDst:], d4[:])
	} else {
		b[evFamily] = 6
		s16, d16 := e.Key.Src.As16(), e.Key.Dst.As16()
		copy(b[evSrc:], s16[:])
		copy(b[evDst:], d16[:])
	}
	binary.BigEndian.PutUint16(b[evSrcPort:], e.Key.SrcPort)
	binary.BigEndian.PutUint16(b[evDstPort:], e.Key.DstPort)
	binary.NativeEndian.PutUint64(b[evCookie:], e.Cookie)
	return append(dst, b[:]...)
}
