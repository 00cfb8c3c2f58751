// Package quiccid encodes a homing host id in the QUIC connection IDs a server issues,
// so that homing's data plane sends a packet whose 5-tuple it does not know (a client
// that migrated or was rebound to a new address, an ECMP change before the flow was
// learnt) to the host that holds the connection. This is the route Katran offers for
// QUIC; docs/PROTOCOL.md ("QUIC connection IDs") has the layout for servers in other
// languages.
//
// Layout (version 1), at least MinLen bytes:
//
//	byte 0: 0 1 h h h h h h    layout version 1 (top two bits), host id bits 11..6
//	byte 1: h h h h h h r r    host id bits 5..0, two random bits
//	byte 2..: random
//
// A QUIC server uses Generator as its quic-go Transport's ConnectionIDGenerator, or
// calls New for every connection ID it issues (its first SCID and every NEW_CONNECTION_ID).
// The random bytes keep CIDs unlinkable to each other beyond the host id (RFC 9000 5.1).
package quiccid

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"

	"github.com/quic-go/quic-go"
)

// Layout constants (lcore/udplearn.h has the data plane's copy).
const (
	Version = 1  // the layout version in the top two bits of byte 0
	MinLen  = 8  // shortest CID: the data plane assumes 8 for short headers
	MaxLen  = 20 // RFC 9000's longest CID
	Len     = 8  // Generator's default length
	MaxHost = 4095
)

// ErrHost is returned for a host id outside 1..MaxHost.
var ErrHost = errors.New("quiccid: host id out of 1..4095")

// Encode writes host into cid (len(cid) >= 2), whose other bits are kept: the caller
// fills cid with random bytes first.
func Encode(cid []byte, host uint16) {
	cid[0] = Version<<6 | byte(host>>6)&0x3f
	cid[1] = byte(host&0x3f)<<2 | cid[1]&3
}

// New returns a CID of n bytes (MinLen..MaxLen) for host, random from r (crypto/rand
// if nil) but for the layout's bits.
func New(host uint16, n int, r io.Reader) ([]byte, error) {
	if host == 0 || host > MaxHost {
		return nil, ErrHost
	}
	if n < MinLen || n > MaxLen {
		return nil, fmt.Errorf("quiccid: length %d out of %d..%d", n, MinLen, MaxLen)
	}
	if r == nil {
		r = rand.Reader
	}
	cid := make([]byte, n)
	if _, err := io.ReadFull(r, cid); err != nil {
		return nil, fmt.Errorf("quiccid: %w", err)
	}
	Encode(cid, host)
	return cid, nil
}

// Host returns the host id a CID carries, and false if it is shorter than MinLen or of
// another layout version (or carries host id 0).
func Host(cid []byte) (uint16, bool) {
	if len(cid) < MinLen || cid[0]>>6 != Version {
		return 0, false
	}
	h := uint16(cid[0]&0x3f)<<6 | uint16(cid[1]>>2)
	return h, h != 0
}

// Generator is a quic-go ConnectionIDGenerator that issues CIDs of Length bytes (0:
// Len) carrying Host.
type Generator struct {
	Host   uint16
	Length int
}

var _ quic.ConnectionIDGenerator = Generator{}

// GenerateConnectionID returns a fresh CID for g.Host.
func (g Generator) GenerateConnectionID() (quic.ConnectionID, error) {
	b, err := New(g.Host, g.ConnectionIDLen(), nil)
	if err != nil {
		return quic.ConnectionID{}, err
	}
	return quic.ConnectionIDFromBytes(b), nil
}

// ConnectionIDLen is the length of the CIDs g issues.
func (g Generator) ConnectionIDLen() int {
	if g.Length == 0 {
		return Len
	}
	return g.Length
}
