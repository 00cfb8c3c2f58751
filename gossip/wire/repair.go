package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// The repair exchange runs over a reliable unicast stream (TCP in production) from a
// receiver (the client) to the peer whose sessions it repairs (the server). Every
// message is a frame with the datagram layout (header, body, tag; see Datagram) and
// the same key ring, with a repair type:
//
//	server → client  challenge  (type 5)  body: server nonce (16 bytes)
//	client → server  request    (type 3)  body: server nonce | client nonce | target host id | flags (16+16+2+2)
//	server → client  response   (type 4)  one frame or more; body:
//	                                      client nonce | frame index (32 bits) | flags | reserved | add records
//
// The server's challenge nonce in a request proves the request is fresh (a recorded
// request cannot be replayed on another connection); the client's nonce in every
// response frame proves the answer is to this request (a recorded answer cannot be
// replayed to remove entries). Response frames are numbered from 0; flags 0x01 marks
// the last frame, 0x02 says the answer was cut at the server's record cap (it is not a
// full snapshot, so the client removes nothing). A response's header carries the
// server's incarnation and, as sequence number, the highest multicast sequence number
// the server had sent when it took the snapshot; its timestamp is the snapshot time.
// Response records are adds whose owner is the server.
const (
	// NonceLen is the size of repair nonces.
	NonceLen = 16
	// RepairRequestLen is the size of a request body.
	RepairRequestLen = 2*NonceLen + 4
	// RepairResponseHeaderLen is the size of a response body before its records.
	RepairResponseHeaderLen = NonceLen + 4 + 2
	// MaxFrameLen is the largest repair frame, header and tag included.
	MaxFrameLen = 32768

	repairLast      = 0x01
	repairTruncated = 0x02
)

// RepairRequest is the body of a repair request.
type RepairRequest struct {
	ServerNonce [NonceLen]byte // the server's challenge
	ClientNonce [NonceLen]byte // echoed in every response frame
	Target      uint16         // the host asked: the server's id
}

// AppendRepairRequest appends r's encoding to b.
func AppendRepairRequest(b []byte, r *RepairRequest) []byte {
	b = append(b, r.ServerNonce[:]...)
	b = append(b, r.ClientNonce[:]...)
	b = binary.BigEndian.AppendUint16(b, r.Target)
	return append(b, 0, 0)
}

// ParseRepairRequest decodes a request body. Errors wrap ErrMalformed.
func ParseRepairRequest(body []byte) (RepairRequest, error) {
	var r RepairRequest
	if len(body) != RepairRequestLen {
		return r, fmt.Errorf("repair request of %d bytes: %w", len(body), ErrMalformed)
	}
	copy(r.ServerNonce[:], body)
	copy(r.ClientNonce[:], body[NonceLen:])
	r.Target = binary.BigEndian.Uint16(body[2*NonceLen:])
	if r.Target == 0 || body[2*NonceLen+2] != 0 || body[2*NonceLen+3] != 0 {
		return r, fmt.Errorf("repair request target %d, flags %#x: %w", r.Target, body[2*NonceLen+2:], ErrMalformed)
	}
	return r, nil
}

// ParseRepairChallenge decodes a challenge body: the server's nonce. Errors wrap
// ErrMalformed.
func ParseRepairChallenge(body []byte) ([NonceLen]byte, error) {
	var n [NonceLen]byte
	if len(body) != NonceLen {
		return n, fmt.Errorf("repair challenge of %d bytes: %w", len(body), ErrMalformed)
	}
	copy(n[:], body)
	return n, nil
}

// RepairResponse is the part of a response frame's body before its records.
type RepairResponse struct {
	Nonce     [NonceLen]byte // the client's nonce
	Index     uint32         // frame number, from 0
	Last      bool           // the last frame of the answer
	Truncated bool           // the answer stopped at the server's record cap
}

// AppendRepairResponse appends the response header r to b; records follow.
func AppendRepairResponse(b []byte, r *RepairResponse) []byte {
	b = append(b, r.Nonce[:]...)
	b = binary.BigEndian.AppendUint32(b, r.Index)
	var flags byte
	if r.Last {
		flags |= repairLast
	}
	if r.Truncated {
		flags |= repairTruncated
	}
	return append(b, flags, 0)
}

// ParseRepairResponse decodes a response frame's body, appending its records to dst.
// A frame may carry no record (an empty snapshot, or a last frame); every record must
// be an add. Either the whole body decodes or it is rejected (errors wrap ErrMalformed).
func ParseRepairResponse(dst []Record, body []byte) (RepairResponse, []Record, error) {
	var r RepairResponse
	if len(body) < RepairResponseHeaderLen {
		return r, dst, fmt.Errorf("repair response of %d bytes: %w", len(body), ErrMalformed)
	}
	copy(r.Nonce[:], body)
	r.Index = binary.BigEndian.Uint32(body[NonceLen:])
	flags := body[NonceLen+4]
	if flags&^(repairLast|repairTruncated) != 0 || body[NonceLen+5] != 0 {
		return r, dst, fmt.Errorf("repair response flags %#x: %w", body[NonceLen+4:NonceLen+6], ErrMalformed)
	}
	r.Last, r.Truncated = flags&repairLast != 0, flags&repairTruncated != 0
	start := len(dst)
	for off := RepairResponseHeaderLen; off < len(body); {
		rec, n, err := ParseRecord(body[off:])
		if err == nil && rec.Op != OpAdd {
			err = fmt.Errorf("delete in a snapshot: %w", ErrMalformed)
		}
		if err != nil {
			return r, dst[:start], fmt.Errorf("repair record at body offset %d: %w", off, err)
		}
		dst = append(dst, rec)
		off += n
	}
	return r, dst, nil
}

// ReadFrame reads one repair frame from r into buf, which it grows as needed up to
// max bytes (0 or more than MaxFrameLen: MaxFrameLen), and returns it. The frame's size,
// magic, version and type are checked, not its tag (Opener.OpenFrame). At a clean end
// of stream before a frame it returns io.EOF; a stream that ends inside a frame is
// ErrTruncated; other read errors are returned as they are.
func ReadFrame(r io.Reader, buf []byte, max int) (Datagram, []byte, error) {
	if max <= 0 || max > MaxFrameLen {
		max = MaxFrameLen
	}
	if cap(buf) < HeaderLen {
		buf = make([]byte, HeaderLen, 4096)
	}
	buf = buf[:HeaderLen]
	if _, err := io.ReadFull(r, buf); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, buf, fmt.Errorf("frame header: %w", ErrTruncated)
		}
		return nil, buf, err
	}
	d := Datagram(buf)
	if d.Magic() != Magic {
		return nil, buf, fmt.Errorf("frame %#04x: %w", d.Magic(), ErrBadMagic)
	}
	if d.Version() != Version {
		return nil, buf, fmt.Errorf("frame version %d: %w", d.Version(), ErrBadVersion)
	}
	if !d.Type().stream() {
		return nil, buf, fmt.Errorf("frame %v: %w", d.Type(), ErrUnknownType)
	}
	n := Overhead + d.BodyLen()
	if n > max {
		return nil, buf, fmt.Errorf("frame of %d bytes > %d: %w", n, max, ErrOversize)
	}
	if cap(buf) < n {
		buf = append(buf[:cap(buf)], make([]byte, n-cap(buf))...)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf[HeaderLen:]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, buf, fmt.Errorf("frame of %d bytes: %w", n, ErrTruncated)
		}
		return nil, buf, err
	}
	return Datagram(buf), buf, nil
}

// OpenFrame checks the tag of a frame returned by ReadFrame.
func (o *Opener) OpenFrame(d Datagram) error {
	if !o.macs.verify(d) {
		return fmt.Errorf("frame from host %d: %w", d.Sender(), ErrBadTag)
	}
	return nil
}
