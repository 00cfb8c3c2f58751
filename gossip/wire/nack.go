package wire

import (
	"encoding/binary"
	"fmt"
)

// NACK retransmission (the gossip package's nack.go) runs over the repair stream
// (repair.go): after the server's challenge, the client may send a NACK request instead
// of a repair request, and the server answers with the sealed multicast datagrams it
// still holds:
//
//	server → client  challenge      (type 5)  body: server nonce (16 bytes)
//	client → server  NACK request   (type 7)  body: server nonce | client nonce | target host id |
//	                                                range count | target incarnation | ranges
//	                                                (16+16+2+2+8, then 10 bytes a range:
//	                                                first sequence number (64 bits), count (16 bits))
//	server → client  NACK response  (type 8)  one frame or more; body: client nonce |
//	                                          frame index (32 bits) | flags | reserved |
//	                                          datagrams, each: length (16 bits) | the datagram
//
// The ranges are sorted, do not overlap or touch, each counts 1 or more, and all
// together at most MaxNackSeqs sequence numbers. The response's datagrams are the
// original multicast datagrams, byte for byte (header, body and tag as sent): the
// client opens each as a multicast datagram. The server leaves out what it no longer
// holds; the client falls back to a full repair for those. Flags: 0x01 the last frame.
const (
	// NackRequestHeaderLen is the size of a NACK request body before its ranges.
	NackRequestHeaderLen = 2*NonceLen + 2 + 2 + 8
	// NackRangeLen is the size of one range of a NACK request.
	NackRangeLen = 10
	// MaxNackRanges bounds the ranges of one NACK request.
	MaxNackRanges = 256
	// MaxNackSeqs bounds the sequence numbers one NACK request asks for.
	MaxNackSeqs = 1024
	// MaxNackRequestLen is the largest NACK request frame, header and tag included.
	MaxNackRequestLen = Overhead + NackRequestHeaderLen + MaxNackRanges*NackRangeLen
	// NackResponseHeaderLen is the size of a NACK response body before its datagrams.
	NackResponseHeaderLen = NonceLen + 4 + 2

	nackLast = 0x01
)

// SeqRange is the sequence numbers First .. First+Count-1.
type SeqRange struct {
	First uint64
	Count uint16
}

// NackRequest is the body of a NACK request.
type NackRequest struct {
	ServerNonce [NonceLen]byte // the server's challenge
	ClientNonce [NonceLen]byte // echoed in every response frame
	Target      uint16         // the host asked: the server's id
	Incarnation uint64         // the server's incarnation the sequence numbers belong to
	Ranges      []SeqRange
}

// Seqs returns the number of sequence numbers r asks for.
func (r *NackRequest) Seqs() int {
	n := 0
	for _, g := range r.Ranges {
		n += int(g.Count)
	}
	return n
}

// AppendNackRequest appends r's encoding to b. r must be valid (see ParseNackRequest).
func AppendNackRequest(b []byte, r *NackRequest) []byte {
	b = append(b, r.ServerNonce[:]...)
	b = append(b, r.ClientNonce[:]...)
	b = binary.BigEndian.AppendUint16(b, r.Target)
	b = binary.BigEndian.AppendUint16(b, uint16(len(r.Ranges)))
	b = binary.BigEndian.AppendUint64(b, r.Incarnation)
	for _, g := range r.Ranges {
		b = binary.BigEndian.AppendUint64(b, g.First)
		b = binary.BigEndian.AppendUint16(b, g.Count)
	}
	return b
}

// ParseNackRequest decodes a NACK request body. Errors wrap ErrMalformed.
func ParseNackRequest(body []byte) (NackRequest, error) {
	var r NackRequest
	if len(body) < NackRequestHeaderLen {
		return r, fmt.Errorf("nack request of %d bytes: %w", len(body), ErrMalformed)
	}
	copy(r.ServerNonce[:], body)
	copy(r.ClientNonce[:], body[NonceLen:])
	r.Target = binary.BigEndian.Uint16(body[2*NonceLen:])
	count := int(binary.BigEndian.Uint16(body[2*NonceLen+2:]))
	r.Incarnation = binary.BigEndian.Uint64(body[2*NonceLen+4:])
	if r.Target == 0 || count == 0 || count > MaxNackRanges || len(body) != NackRequestHeaderLen+count*NackRangeLen {
		return r, fmt.Errorf("nack request target %d, %d ranges in %d bytes: %w", r.Target, count, len(body), ErrMalformed)
	}
	r.Ranges = make([]SeqRange, count)
	total := 0
	var next uint64 // the least first sequence number the next range may have
	for i := range r.Ranges {
		p := body[NackRequestHeaderLen+i*NackRangeLen:]
		g := SeqRange{First: binary.BigEndian.Uint64(p), Count: binary.BigEndian.Uint16(p[8:])}
		total += int(g.Count)
		if g.Count == 0 || g.First < next || g.First == 0 || g.First > ^uint64(0)-uint64(g.Count) || total > MaxNackSeqs {
			return r, fmt.Errorf("nack range %d (%d+%d): %w", i, g.First, g.Count, ErrMalformed)
		}
		next = g.First + uint64(g.Count) + 1
		r.Ranges[i] = g
	}
	return r, nil
}

// NackRanges coalesces sorted, distinct sequence numbers into ranges for a request.
func NackRanges(seqs []uint64) []SeqRange {
	var rs []SeqRange
	for _, s := range seqs {
		if l := len(rs) - 1; l >= 0 && rs[l].First+uint64(rs[l].Count) == s && rs[l].Count < ^uint16(0) {
			rs[l].Count++
			continue
		}
		rs = append(rs, SeqRange{First: s, Count: 1})
	}
	return rs
}

// NackResponse is the part of a NACK response frame's body before its datagrams.
type NackResponse struct {
	Nonce [NonceLen]byte // the client's nonce
	Index uint32         // frame number, from 0
	Last  bool           // the last frame of the answer
}

// AppendNackResponse appends the response header r to b; datagrams follow
// (AppendNackDatagram).
func AppendNackResponse(b []byte, r *NackResponse) []byte {
	b = append(b, r.Nonce[:]...)
	b = binary.BigEndian.AppendUint32(b, r.Index)
	var flags byte
	if r.Last {
		flags |= nackLast
	}
	return append(b, flags, 0)
}

// AppendNackDatagram appends one resent datagram, length first, to a response body.
func AppendNackDatagram(b []byte, d []byte) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(d)))
	return append(b, d...)
}

// ParseNackResponse decodes a NACK response frame's body, appending its datagrams to
// dst (slices of body, not copies). Each datagram's length must be at least Overhead
// and at most MaxDatagramLen; what the datagrams hold is not checked here (the client
// opens each). Either the whole body decodes or it is rejected (errors wrap
// ErrMalformed).
func ParseNackResponse(dst []Datagram, body []byte) (NackResponse, []Datagram, error) {
	var r NackResponse
	if len(body) < NackResponseHeaderLen {
		return r, dst, fmt.Errorf("nack response of %d bytes: %w", len(body), ErrMalformed)
	}
	copy(r.Nonce[:], body)
	r.Index = binary.BigEndian.Uint32(body[NonceLen:])
	flags := body[NonceLen+4]
	if flags&^nackLast != 0 || body[NonceLen+5] != 0 {
		return r, dst, fmt.Errorf("nack response flags %#x: %w", body[NonceLen+4:NonceLen+6], ErrMalformed)
	}
	r.Last = flags&nackLast != 0
	start := len(dst)
	for off := NackResponseHeaderLen; off < len(body); {
		if len(body)-off < 2 {
			return r, dst[:start], fmt.Errorf("nack datagram length at body offset %d: %w", off, ErrMalformed)
		}
		n := int(binary.BigEndian.Uint16(body[off:]))
		off += 2
		if n < Overhead || n > MaxDatagramLen || n > len(body)-off {
			return r, dst[:start], fmt.Errorf("nack datagram of %d bytes at body offset %d, %d left: %w", n, off, len(body)-off, ErrMalformed)
		}
		dst = append(dst, Datagram(body[off:off+n:off+n]))
		off += n
	}
	return r, dst, nil
}
