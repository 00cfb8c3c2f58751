package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Datagram is one gossip datagram: the UDP payload, header, body and tag. It is a byte
// slice with accessors in the style of gVisor's header package; call Validate (or
// Open, which also checks the tag) before reading the body.
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|   magic 'H'   |   magic 'G'   |    version    |     type      |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|        sender host id         |          body length          |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                                                               |
//	+                   incarnation (64 bits)                       +
//	|                                                               |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                                                               |
//	+                   sequence number (64 bits)                   +
//	|                                                               |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                                                               |
//	+           timestamp (64 bits, unix ns, sender's clock)        +
//	|                                                               |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                     body (body length bytes)                  |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                                                               |
//	+     tag: HMAC-SHA256(key, bytes 0 .. 32+body length),         +
//	|          first 16 bytes                                       |
//	+                                                               +
//	|                                                               |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// All integers are big-endian. The datagram's length is exactly
// HeaderLen + body length + TagLen.
type Datagram []byte

// Offsets and sizes of the header fields.
const (
	magicOff       = 0
	versionOff     = 2
	typeOff        = 3
	senderOff      = 4
	bodyLenOff     = 6
	incarnationOff = 8
	seqOff         = 16
	timestampOff   = 24

	// HeaderLen is the size of the fixed header.
	HeaderLen = 32
	// TagLen is the size of the truncated HMAC-SHA256 tag that ends every datagram.
	TagLen = 16
	// Overhead is what every datagram spends besides its body.
	Overhead = HeaderLen + TagLen
	// MaxDatagramLen is the largest datagram accepted whatever the configuration
	// (a jumbo frame's payload).
	MaxDatagramLen = 9000
)

// Magic is the first two bytes of every datagram ("HG").
const Magic uint16 = 0x4847

// Version is the only wire version this package speaks.
const Version uint8 = 1

// Type is a datagram's message type.
type Type uint8

// Message types. Heartbeats and records are multicast datagrams; the repair types are
// frames of the unicast repair exchange (see repair.go) and are unknown types on
// multicast, as datagram types are on a repair stream.
const (
	TypeHeartbeat       Type = 1
	TypeRecords         Type = 2
	TypeRepairRequest   Type = 3
	TypeRepairResponse  Type = 4
	TypeRepairChallenge Type = 5
	// NACK retransmission, on the repair stream (nack.go).
	TypeNackRequest  Type = 7
	TypeNackResponse Type = 8
	// TypeRelay is the message type of a relay envelope (unicast between relays only; on
	// multicast it is an unknown type; see the gossip package's relay.go).
	TypeRelay Type = 6
)

func (t Type) String() string {
	switch t {
	case TypeHeartbeat:
		return "heartbeat"
	case TypeRecords:
		return "records"
	case TypeRepairRequest:
		return "repair-request"
	case TypeRepairResponse:
		return "repair-response"
	case TypeRepairChallenge:
		return "repair-challenge"
	case TypeNackRequest:
		return "nack-request"
	case TypeNackResponse:
		return "nack-response"
	}
	return fmt.Sprintf("type%d", uint8(t))
}

// known reports whether t is a multicast datagram type.
func (t Type) known() bool { return t == TypeHeartbeat || t == TypeRecords }

// stream reports whether t is a repair frame type.
func (t Type) stream() bool {
	return t >= TypeRepairRequest && t <= TypeRepairChallenge || t == TypeNackRequest || t == TypeNackResponse
}

// Reject reasons. Every decoder error wraps exactly one of them, so that receivers can
// count each reason separately (errors.Is).
var (
	ErrBadMagic    = errors.New("bad magic")
	ErrBadVersion  = errors.New("unknown version")
	ErrUnknownType = errors.New("unknown message type")
	ErrTruncated   = errors.New("truncated")
	ErrOversize    = errors.New("oversize")
	ErrBadTag      = errors.New("authentication tag mismatch")
	ErrMalformed   = errors.New("malformed")
)

// Magic returns the magic field.
func (d Datagram) Magic() uint16 { return binary.BigEndian.Uint16(d[magicOff:]) }

// Version returns the wire version.
func (d Datagram) Version() uint8 { return d[versionOff] }

// Type returns the message type.
func (d Datagram) Type() Type { return Type(d[typeOff]) }

// Sender returns the sender's host id.
func (d Datagram) Sender() uint16 { return binary.BigEndian.Uint16(d[senderOff:]) }

// BodyLen returns the body length field.
func (d Datagram) BodyLen() int { return int(binary.BigEndian.Uint16(d[bodyLenOff:])) }

// Incarnation returns the sender's incarnation.
func (d Datagram) Incarnation() uint64 { return binary.BigEndian.Uint64(d[incarnationOff:]) }

// Seq returns the sequence number (per sender, per incarnation, starting at 1).
func (d Datagram) Seq() uint64 { return binary.BigEndian.Uint64(d[seqOff:]) }

// Timestamp returns the sender's timestamp in unix nanoseconds.
func (d Datagram) Timestamp() int64 { return int64(binary.BigEndian.Uint64(d[timestampOff:])) }

// Body returns the body. The datagram must be valid.
func (d Datagram) Body() []byte { return d[HeaderLen : HeaderLen+d.BodyLen()] }

// Tag returns the authentication tag. The datagram must be valid.
func (d Datagram) Tag() []byte { return d[HeaderLen+d.BodyLen():][:TagLen] }

// Signed returns the bytes the tag covers. The datagram must be valid.
func (d Datagram) Signed() []byte { return d[:HeaderLen+d.BodyLen()] }

// Header holds the header fields for Encode.
type Header struct {
	Type        Type
	Sender      uint16
	Incarnation uint64
	Seq         uint64
	Timestamp   int64
}

// Header returns the header fields.
func (d Datagram) Header() Header {
	return Header{Type: d.Type(), Sender: d.Sender(), Incarnation: d.Incarnation(), Seq: d.Seq(), Timestamp: d.Timestamp()}
}

// Encode writes h and a body length of bodyLen into d's first HeaderLen bytes.
func (d Datagram) Encode(h Header, bodyLen int) {
	binary.BigEndian.PutUint16(d[magicOff:], Magic)
	d[versionOff] = Version
	d[typeOff] = uint8(h.Type)
	binary.BigEndian.PutUint16(d[senderOff:], h.Sender)
	binary.BigEndian.PutUint16(d[bodyLenOff:], uint16(bodyLen))
	binary.BigEndian.PutUint64(d[incarnationOff:], h.Incarnation)
	binary.BigEndian.PutUint64(d[seqOff:], h.Seq)
	binary.BigEndian.PutUint64(d[timestampOff:], uint64(h.Timestamp))
}

// Validate checks everything but the tag and the body's contents: size, magic,
// version, type and length. max is the configured largest datagram (0 means
// MaxDatagramLen). The checks run in the order the reject reasons are listed.
func (d Datagram) Validate(max int) error {
	if max <= 0 || max > MaxDatagramLen {
		max = MaxDatagramLen
	}
	if len(d) > max {
		return fmt.Errorf("%d bytes > %d: %w", len(d), max, ErrOversize)
	}
	if len(d) < 4 {
		return fmt.Errorf("%d bytes: %w", len(d), ErrTruncated)
	}
	if d.Magic() != Magic {
		return fmt.Errorf("%#04x: %w", d.Magic(), ErrBadMagic)
	}
	if d.Version() != Version {
		return fmt.Errorf("version %d: %w", d.Version(), ErrBadVersion)
	}
	if len(d) < Overhead {
		return fmt.Errorf("%d bytes: %w", len(d), ErrTruncated)
	}
	want := Overhead + d.BodyLen()
	if len(d) < want {
		return fmt.Errorf("%d bytes, header says %d: %w", len(d), want, ErrTruncated)
	}
	if len(d) > want {
		return fmt.Errorf("%d bytes, header says %d: trailing bytes: %w", len(d), want, ErrMalformed)
	}
	if !d.Type().known() {
		return fmt.Errorf("%v: %w", d.Type(), ErrUnknownType)
	}
	return nil
}
