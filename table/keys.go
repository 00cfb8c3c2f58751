package table

import (
	"encoding/binary"
	"net/netip"

	"github.com/homing-dev/homing/session"
)

// The C key layouts (homing_table.h), in network byte order:
//
//	struct homing_key4 (16 bytes)         struct homing_key6 (40 bytes)
//	 0  src     client IPv4 address        0  src    client IPv6 address
//	 4  dst     VIP                       16  dst    VIP
//	 8  sport   client port               32  sport
//	10  dport   VIP port                  34  dport
//	12  proto   6 or 17                   36  proto
//	13  pad[3]  zero                      37  pad[3] zero
const (
	keyLen4 = 16
	keyLen6 = 40
)

// putKey4 writes k (IPv4) into b[:keyLen4].
func putKey4(b []byte, k session.Key) {
	b = b[:keyLen4]
	s, d := k.Src.As4(), k.Dst.As4()
	copy(b[0:4], s[:])
	copy(b[4:8], d[:])
	binary.BigEndian.PutUint16(b[8:], k.SrcPort)
	binary.BigEndian.PutUint16(b[10:], k.DstPort)
	b[12] = k.Proto
	b[13], b[14], b[15] = 0, 0, 0
}

// putKey6 writes k (IPv6) into b[:keyLen6].
func putKey6(b []byte, k session.Key) {
	b = b[:keyLen6]
	s, d := k.Src.As16(), k.Dst.As16()
	copy(b[0:16], s[:])
	copy(b[16:32], d[:])
	binary.BigEndian.PutUint16(b[32:], k.SrcPort)
	binary.BigEndian.PutUint16(b[34:], k.DstPort)
	b[36] = k.Proto
	b[37], b[38], b[39] = 0, 0, 0
}

// key4 decodes an IPv4 C key (the padding is ignored).
func key4(b []byte) session.Key {
	b = b[:keyLen4]
	return session.Key{
		Src:     netip.AddrFrom4([4]byte(b[0:4])),
		Dst:     netip.AddrFrom4([4]byte(b[4:8])),
		SrcPort: binary.BigEndian.Uint16(b[8:]),
		DstPort: binary.BigEndian.Uint16(b[10:]),
		Proto:   b[12],
	}
}

// key6 decodes an IPv6 C key (the padding is ignored).
func key6(b []byte) session.Key {
	b = b[:keyLen6]
	return session.Key{
		Src:     netip.AddrFrom16([16]byte(b[0:16])),
		Dst:     netip.AddrFrom16([16]byte(b[16:32])),
		SrcPort: binary.BigEndian.Uint16(b[32:]),
		DstPort: binary.BigEndian.Uint16(b[34:]),
		Proto:   b[36],
	}
}

// packVal is the C value word: host in the low 16 bits, epoch (48 bits) above.
func packVal(o session.Owner) uint64 {
	return o.Epoch<<16 | uint64(o.Host)
}

func unpackVal(v uint64) session.Owner {
	return session.Owner{Host: uint16(v), Epoch: v >> 16}
}
