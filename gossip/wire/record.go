package wire

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"

	"github.com/homing-dev/homing/session"
)

// A records body is a sequence of records back to back, each starting with a kind byte:
//
//	kind: bit 7 = IPv6 key, bits 6..4 = 0 (reserved), bits 3..0 = op (1 add, 2 delete)
//
// IPv4 add, 22 bytes (IPv6: addresses are 16 bytes each, 46 bytes):
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|   kind 0x01   |     proto     |      source (client) port     |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|        destination port       |                               |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+  source (client) address      +
//	|                               |                               |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+  destination (VIP) address    +
//	|                               |         owner host id         |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                     epoch (48 bits)                           |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// A delete is the same without the epoch: 16 bytes for IPv4, 40 for IPv6.

// Op is a record's operation.
type Op uint8

// Record operations.
const (
	OpAdd    Op = 1
	OpDelete Op = 2
)

const (
	kindIPv6   = 0x80
	kindOpMask = 0x0f

	recFixed = 1 + 1 + 2 + 2 // kind, proto, ports
	ownerLen = 2
	epochLen = 6

	// RecordAdd4Len .. RecordDelete6Len are the encoded sizes of each record kind.
	RecordAdd4Len    = recFixed + 8 + ownerLen + epochLen
	RecordDelete4Len = recFixed + 8 + ownerLen
	RecordAdd6Len    = recFixed + 32 + ownerLen + epochLen
	RecordDelete6Len = recFixed + 32 + ownerLen
)

// Record is one ownership record: add (Key, Owner.Host, Owner.Epoch) or delete (Key,
// Owner.Host; the epoch is not carried and decodes as 0).
type Record struct {
	Op    Op
	Key   session.Key
	Owner session.Owner
}

// Len returns the encoded size of r.
func (r Record) Len() int {
	n := recFixed + ownerLen + 8
	if !r.Key.Is4() {
		n += 24
	}
	if r.Op == OpAdd {
		n += epochLen
	}
	return n
}

// AppendRecord appends r's encoding to b. r must be valid (see Record.Check).
func AppendRecord(b []byte, r Record) []byte {
	kind := uint8(r.Op)
	if !r.Key.Is4() {
		kind |= kindIPv6
	}
	b = append(b, kind, r.Key.Proto)
	b = binary.BigEndian.AppendUint16(b, r.Key.SrcPort)
	b = binary.BigEndian.AppendUint16(b, r.Key.DstPort)
	b = appendAddr(b, r.Key.Src)
	b = appendAddr(b, r.Key.Dst)
	b = binary.BigEndian.AppendUint16(b, r.Owner.Host)
	if r.Op == OpAdd {
		e := r.Owner.Epoch
		b = append(b, byte(e>>40), byte(e>>32), byte(e>>24), byte(e>>16), byte(e>>8), byte(e))
	}
	return b
}

// Check reports whether r can be encoded: a known op, a valid key, an epoch in 48 bits.
func (r Record) Check() error {
	if r.Op != OpAdd && r.Op != OpDelete {
		return fmt.Errorf("record op %d: %w", r.Op, ErrMalformed)
	}
	if !r.Key.Valid() {
		return fmt.Errorf("record key %v: %w", r.Key, ErrMalformed)
	}
	if r.Owner.Epoch > session.MaxEpoch {
		return fmt.Errorf("record epoch %#x: %w", r.Owner.Epoch, ErrMalformed)
	}
	return nil
}

// ParseRecord decodes the record at the start of b and returns it with its length.
// Errors wrap ErrMalformed.
func ParseRecord(b []byte) (Record, int, error) {
	var r Record
	if len(b) < 1 {
		return r, 0, fmt.Errorf("empty record: %w", ErrMalformed)
	}
	kind := b[0]
	if kind&0x70 != 0 {
		return r, 0, fmt.Errorf("record kind %#02x: reserved bits: %w", kind, ErrMalformed)
	}
	r.Op = Op(kind & kindOpMask)
	addrLen := 4
	if kind&kindIPv6 != 0 {
		addrLen = 16
	}
	n := recFixed + 2*addrLen + ownerLen
	switch r.Op {
	case OpAdd:
		n += epochLen
	case OpDelete:
	default:
		return r, 0, fmt.Errorf("record op %d: %w", r.Op, ErrMalformed)
	}
	if len(b) < n {
		return r, 0, fmt.Errorf("record of %d bytes, %d left: %w", n, len(b), ErrMalformed)
	}
	r.Key.Proto = b[1]
	r.Key.SrcPort = binary.BigEndian.Uint16(b[2:])
	r.Key.DstPort = binary.BigEndian.Uint16(b[4:])
	p := b[recFixed:]
	if addrLen == 4 {
		r.Key.Src = netip.AddrFrom4([4]byte(p[0:4]))
		r.Key.Dst = netip.AddrFrom4([4]byte(p[4:8]))
	} else {
		r.Key.Src = netip.AddrFrom16([16]byte(p[0:16]))
		r.Key.Dst = netip.AddrFrom16([16]byte(p[16:32]))
	}
	p = p[2*addrLen:]
	r.Owner.Host = binary.BigEndian.Uint16(p)
	if r.Op == OpAdd {
		p = p[ownerLen:]
		r.Owner.Epoch = uint64(p[0])<<40 | uint64(p[1])<<32 | uint64(p[2])<<24 |
			uint64(p[3])<<16 | uint64(p[4])<<8 | uint64(p[5])
	}
	if !r.Key.Valid() {
		return r, 0, fmt.Errorf("record key %v: %w", r.Key, ErrMalformed)
	}
	return r, n, nil
}

// Compact records (records datagrams only; repair frames and digests use the full forms
// above). A records datagram's records are all owned by its sender, and consecutive
// records mostly share a destination and have close epochs, so the kind byte can say:
//
//	bit 6 (compact): no owner (it is the datagram's sender) and, for an add, the epoch
//	    as a zigzag varint delta from the previous add's epoch in the datagram (the
//	    first: from the header timestamp >> EpochShift);
//	bit 5 (same destination, compact only): no proto, VIP port or VIP address: they are
//	    the previous record's in the datagram, which must have the kind's family.
//
// A compact record is: kind, [proto, VIP port, VIP address] unless bit 5, client port,
// client address, [epoch delta] if an add. An IPv4 add is 15 bytes, 8 with bit 5.
const (
	kindCompact  = 0x40
	kindSameDst  = 0x20
	kindReserved = 0x10
)

// RecordWriter encodes the records of one records datagram, compactly where it can.
// Its zero value is not usable: see NewRecordWriter.
type RecordWriter struct {
	sender uint16
	epoch  uint64      // the previous add's epoch, or the base
	last   session.Key // the previous record's key
	has    bool        // last is set
}

// NewRecordWriter returns a writer for a records datagram of sender whose header
// timestamp is timestamp.
func NewRecordWriter(sender uint16, timestamp int64) RecordWriter {
	return RecordWriter{sender: sender, epoch: epochBase(timestamp)}
}

func epochBase(timestamp int64) uint64 { return uint64(timestamp) >> EpochShift & session.MaxEpoch }

// Append appends r's encoding to b: compact if r's owner is the sender (always, for
// what a node sends), else the full form. r must be valid (see Record.Check).
func (w *RecordWriter) Append(b []byte, r Record) []byte {
	defer func() {
		w.last, w.has = r.Key, true
		if r.Op == OpAdd {
			w.epoch = r.Owner.Epoch
		}
	}()
	if r.Owner.Host != w.sender {
		return AppendRecord(b, r)
	}
	kind := uint8(r.Op) | kindCompact
	if !r.Key.Is4() {
		kind |= kindIPv6
	}
	same := w.has && w.last.Dst == r.Key.Dst && w.last.DstPort == r.Key.DstPort && w.last.Proto == r.Key.Proto
	if same {
		b = append(b, kind|kindSameDst)
	} else {
		b = append(b, kind, r.Key.Proto)
		b = binary.BigEndian.AppendUint16(b, r.Key.DstPort)
		b = appendAddr(b, r.Key.Dst)
	}
	b = binary.BigEndian.AppendUint16(b, r.Key.SrcPort)
	b = appendAddr(b, r.Key.Src)
	if r.Op == OpAdd {
		b = binary.AppendVarint(b, int64(r.Owner.Epoch)-int64(w.epoch))
	}
	return b
}

// AppendRecords encodes recs as the body of a records datagram of sender with header
// timestamp timestamp (what the sender does; for tests and tools).
func AppendRecords(b []byte, recs []Record, sender uint16, timestamp int64) []byte {
	w := NewRecordWriter(sender, timestamp)
	for _, r := range recs {
		b = w.Append(b, r)
	}
	return b
}

// parse decodes the record at the start of b, full or compact, and returns it with its
// length. Errors wrap ErrMalformed.
func (w *RecordWriter) parse(b []byte) (Record, int, error) {
	if len(b) == 0 || b[0]&kindCompact == 0 {
		if len(b) > 0 && b[0]&(kindCompact|kindSameDst|kindReserved) != 0 {
			return Record{}, 0, fmt.Errorf("record kind %#02x: reserved bits: %w", b[0], ErrMalformed)
		}
		r, n, err := ParseRecord(b)
		if err == nil {
			w.last, w.has = r.Key, true
			if r.Op == OpAdd {
				w.epoch = r.Owner.Epoch
			}
		}
		return r, n, err
	}
	var r Record
	kind := b[0]
	if kind&kindReserved != 0 {
		return r, 0, fmt.Errorf("record kind %#02x: reserved bits: %w", kind, ErrMalformed)
	}
	r.Op = Op(kind & kindOpMask)
	if r.Op != OpAdd && r.Op != OpDelete {
		return r, 0, fmt.Errorf("record op %d: %w", r.Op, ErrMalformed)
	}
	addrLen := 4
	if kind&kindIPv6 != 0 {
		addrLen = 16
	}
	r.Owner.Host = w.sender
	off := 1
	if kind&kindSameDst != 0 {
		if !w.has || w.last.Is4() != (addrLen == 4) {
			return r, 0, fmt.Errorf("record kind %#02x: no previous destination of its family: %w", kind, ErrMalformed)
		}
		r.Key.Proto, r.Key.DstPort, r.Key.Dst = w.last.Proto, w.last.DstPort, w.last.Dst
	} else {
		if len(b) < off+3+addrLen {
			return r, 0, fmt.Errorf("compact record truncated: %w", ErrMalformed)
		}
		r.Key.Proto = b[off]
		r.Key.DstPort = binary.BigEndian.Uint16(b[off+1:])
		r.Key.Dst = addrFrom(b[off+3 : off+3+addrLen])
		off += 3 + addrLen
	}
	if len(b) < off+2+addrLen {
		return r, 0, fmt.Errorf("compact record truncated: %w", ErrMalformed)
	}
	r.Key.SrcPort = binary.BigEndian.Uint16(b[off:])
	r.Key.Src = addrFrom(b[off+2 : off+2+addrLen])
	off += 2 + addrLen
	if r.Op == OpAdd {
		d, n := binary.Varint(b[off:])
		if n <= 0 || d > session.MaxEpoch || d < -session.MaxEpoch {
			return r, 0, fmt.Errorf("compact record epoch delta: %w", ErrMalformed)
		}
		e := int64(w.epoch) + d
		if e < 0 || e > session.MaxEpoch {
			return r, 0, fmt.Errorf("compact record epoch %d: %w", e, ErrMalformed)
		}
		r.Owner.Epoch = uint64(e)
		off += n
	}
	if !r.Key.Valid() {
		return r, 0, fmt.Errorf("record key %v: %w", r.Key, ErrMalformed)
	}
	w.last, w.has = r.Key, true
	if r.Op == OpAdd {
		w.epoch = r.Owner.Epoch
	}
	return r, off, nil
}

func addrFrom(b []byte) netip.Addr {
	if len(b) == 4 {
		return netip.AddrFrom4([4]byte(b))
	}
	return netip.AddrFrom16([16]byte(b))
}

// ParseRecords decodes the whole body of a records datagram of sender whose header
// timestamp is timestamp (full and compact records), appending to dst. Either every
// record decodes or the body is rejected (the error wraps ErrMalformed).
func ParseRecords(dst []Record, body []byte, sender uint16, timestamp int64) ([]Record, error) {
	start := len(dst)
	if len(body) == 0 {
		return dst, fmt.Errorf("empty records body: %w", ErrMalformed)
	}
	w := NewRecordWriter(sender, timestamp)
	for off := 0; off < len(body); {
		r, n, err := w.parse(body[off:])
		if err != nil {
			return dst[:start], fmt.Errorf("record at body offset %d: %w", off, err)
		}
		dst = append(dst, r)
		off += n
	}
	return dst, nil
}

// appendAddr appends a's 4 (IPv4) or 16 bytes, without zone.
func appendAddr(b []byte, a netip.Addr) []byte {
	if a.Is4() {
		a4 := a.As4()
		return append(b, a4[:]...)
	}
	a16 := a.As16()
	return append(b, a16[:]...)
}

// EpochShift turns unix nanoseconds into epochs: an epoch is a unix time in units of
// 2^16 ns (65.536 µs), which fits 48 bits until the year 2554. A node never hands out
// the same epoch twice: a claim made within the same unit takes the previous epoch + 1.
const EpochShift = 16

// EpochAt returns the epoch of time t.
func EpochAt(t time.Time) uint64 { return uint64(t.UnixNano()) >> EpochShift & session.MaxEpoch }
