package wire

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"os"
	"strings"
)

// MinKeyLen is the shortest key a KeyRing accepts (the HMAC-SHA256 block security level).
const MinKeyLen = 32

// Key errors.
var (
	// ErrNoKey is returned by New when Config has neither a KeyRing nor Insecure set.
	// Whether to run without authentication is the caller's policy; the daemon refuses.
	ErrNoKey = errors.New("no gossip key (set a key file or insecure mode)")
	// ErrShortKey is returned for keys shorter than MinKeyLen bytes.
	ErrShortKey = errors.New("gossip key shorter than 32 bytes")
)

// KeyRing holds the key datagrams are signed with and, optionally, a second key that is
// accepted on receive (to roll a new key out host by host). It is immutable and safe for
// concurrent use.
type KeyRing struct {
	current  []byte
	accepted []byte // may be nil
}

// NewKeyRing returns a ring that signs with current and also accepts accepted (may be nil).
func NewKeyRing(current, accepted []byte) (*KeyRing, error) {
	if len(current) < MinKeyLen || (accepted != nil && len(accepted) < MinKeyLen) {
		return nil, ErrShortKey
	}
	r := &KeyRing{current: bytes.Clone(current)}
	if accepted != nil {
		r.accepted = bytes.Clone(accepted)
	}
	return r, nil
}

// LoadKeyFile reads a key file: text, one key per line as hexadecimal digits (at least
// 64 digits, i.e. 32 bytes), blank lines and lines starting with '#' ignored. The first
// key signs and is accepted; an optional second key is accepted only. Raw binary files
// are not accepted: the hex form survives editors, config management and copy-paste.
func LoadKeyFile(path string) (*KeyRing, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("gossip key file: %w", err)
	}
	return ParseKeys(b, path)
}

// ParseKeys parses the contents of a key file (see LoadKeyFile); path names it in errors.
func ParseKeys(b []byte, path string) (*KeyRing, error) {
	var keys [][]byte
	sc := bufio.NewScanner(bytes.NewReader(b))
	for line := 1; sc.Scan(); line++ {
		s := strings.TrimSpace(sc.Text())
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		k, err := hex.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("gossip key file %s line %d: not hex: %w", path, line, err)
		}
		if len(k) < MinKeyLen {
			return nil, fmt.Errorf("gossip key file %s line %d: %w", path, line, ErrShortKey)
		}
		keys = append(keys, k)
	}
	switch len(keys) {
	case 0:
		return nil, fmt.Errorf("gossip key file %s: %w", path, ErrNoKey)
	case 1:
		return NewKeyRing(keys[0], nil)
	case 2:
		return NewKeyRing(keys[0], keys[1])
	}
	return nil, fmt.Errorf("gossip key file %s: %d keys, at most 2 (current, accepted)", path, len(keys))
}

// macs is one goroutine's HMAC state for a ring (hash.Hash is not safe for concurrent
// use). A nil ring means insecure mode: the tag is all zeroes and any tag is accepted.
type macs struct {
	current, accepted hash.Hash
	sum               [sha256.Size]byte
}

func newMACs(r *KeyRing) *macs {
	m := &macs{}
	if r != nil {
		m.current = hmac.New(sha256.New, r.current)
		if r.accepted != nil {
			m.accepted = hmac.New(sha256.New, r.accepted)
		}
	}
	return m
}

func (m *macs) compute(h hash.Hash, signed []byte) []byte {
	h.Reset()
	h.Write(signed)
	return h.Sum(m.sum[:0])[:TagLen]
}

// sign writes the tag of d (a valid-length datagram whose header is written).
func (m *macs) sign(d Datagram) {
	tag := d.Tag()
	if m.current == nil {
		clear(tag)
		return
	}
	copy(tag, m.compute(m.current, d.Signed()))
}

// verify reports whether d's tag matches the current or the accepted key.
func (m *macs) verify(d Datagram) bool {
	if m.current == nil {
		return true
	}
	if hmac.Equal(m.compute(m.current, d.Signed()), d.Tag()) {
		return true
	}
	return m.accepted != nil && hmac.Equal(m.compute(m.accepted, d.Signed()), d.Tag())
}

// Opener checks datagrams: Validate, then the tag. One Opener per goroutine.
type Opener struct {
	max  int
	macs *macs
}

// NewOpener returns an Opener for ring (nil: insecure, tags are not checked) accepting
// datagrams up to max bytes (0: MaxDatagramLen).
func NewOpener(ring *KeyRing, max int) *Opener { return &Opener{max: max, macs: newMACs(ring)} }

// Open validates d and checks its tag. The error wraps one of the reject reasons.
func (o *Opener) Open(d Datagram) error {
	if err := d.Validate(o.max); err != nil {
		return err
	}
	if !o.macs.verify(d) {
		return fmt.Errorf("from host %d: %w", d.Sender(), ErrBadTag)
	}
	return nil
}

// Verify reports whether d's tag matches one of the ring's keys (always, insecure);
// nothing else of d is checked. d must be of valid length for its body length.
func (o *Opener) Verify(d Datagram) bool { return o.macs.verify(d) }

// Sealer writes headers and tags. One Sealer per goroutine.
type Sealer struct{ macs *macs }

// NewSealer returns a Sealer for ring (nil: insecure, the tag is zero).
func NewSealer(ring *KeyRing) *Sealer { return &Sealer{macs: newMACs(ring)} }

// Seal completes d, whose body occupies d[HeaderLen:len(d)-TagLen]: it writes the header
// and the tag.
func (s *Sealer) Seal(d Datagram, h Header) {
	d.Encode(h, len(d)-Overhead)
	s.macs.sign(d)
}
