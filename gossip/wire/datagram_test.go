package wire

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/homing-dev/homing/session"
)

var (
	testKey   = bytes.Repeat([]byte{0x5a}, 32)
	otherKey  = bytes.Repeat([]byte{0xa5}, 32)
	testRing  = mustRing(testKey, nil)
	otherRing = mustRing(otherKey, nil)
)

func mustRing(cur, acc []byte) *KeyRing {
	r, err := NewKeyRing(cur, acc)
	if err != nil {
		panic(err)
	}
	return r
}

func key4(i int) session.Key {
	return session.Key{
		Src: netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}), Dst: netip.MustParseAddr("198.19.255.1"),
		SrcPort: uint16(1024 + i), DstPort: 443, Proto: session.TCP,
	}
}

func key6(i int) session.Key {
	return session.Key{
		Src: netip.MustParseAddr("2001:db8::1").Next().Next(), Dst: netip.MustParseAddr("2001:db8:ffff::1"),
		SrcPort: uint16(1024 + i), DstPort: 443, Proto: session.UDP,
	}
}

// seal builds a sealed datagram with body under ring.
func seal(ring *KeyRing, h Header, body []byte) Datagram {
	d := make(Datagram, Overhead+len(body))
	copy(d[HeaderLen:], body)
	NewSealer(ring).Seal(d, h)
	return d
}

func TestRecordRoundTrip(t *testing.T) {
	recs := []Record{
		{Op: OpAdd, Key: key4(1), Owner: session.Owner{Host: 7, Epoch: session.MaxEpoch}},
		{Op: OpDelete, Key: key4(2), Owner: session.Owner{Host: 65535}},
		{Op: OpAdd, Key: key6(3), Owner: session.Owner{Host: 1, Epoch: 0x123456789abc}},
		{Op: OpDelete, Key: key6(4), Owner: session.Owner{Host: 2}},
	}
	wantLen := []int{RecordAdd4Len, RecordDelete4Len, RecordAdd6Len, RecordDelete6Len}
	var body []byte
	for i, r := range recs {
		if err := r.Check(); err != nil {
			t.Fatal(err)
		}
		before := len(body)
		body = AppendRecord(body, r)
		if got := len(body) - before; got != wantLen[i] || got != r.Len() {
			t.Errorf("record %d: encoded %d bytes, Len %d, want %d", i, got, r.Len(), wantLen[i])
		}
	}
	if RecordAdd4Len != 22 {
		t.Errorf("IPv4 add record is %d bytes, want 22", RecordAdd4Len)
	}
	got, err := ParseRecords(nil, body, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(recs) {
		t.Fatalf("decoded %d records, want %d", len(got), len(recs))
	}
	for i := range recs {
		if got[i] != recs[i] {
			t.Errorf("record %d: got %+v, want %+v", i, got[i], recs[i])
		}
	}
}

func TestRecordRejects(t *testing.T) {
	good := AppendRecord(nil, Record{Op: OpAdd, Key: key4(1), Owner: session.Owner{Host: 1, Epoch: 1}})
	mod := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	cases := map[string][]byte{
		"empty body":     {},
		"truncated":      good[:len(good)-1],
		"reserved bits":  mod(func(b []byte) []byte { b[0] |= 0x10; return b }),
		"unknown op":     mod(func(b []byte) []byte { b[0] = 3; return b }),
		"op zero":        mod(func(b []byte) []byte { b[0] = 0; return b }),
		"bad proto":      mod(func(b []byte) []byte { b[1] = 1; return b }),
		"trailing bytes": append(bytes.Clone(good), 0x01),
		"mapped v6": AppendRecord(nil, Record{Op: OpDelete, Key: session.Key{
			Src: netip.MustParseAddr("::ffff:1.2.3.4"), Dst: netip.MustParseAddr("::ffff:1.2.3.5"), Proto: session.TCP}}),
	}
	for name, body := range cases {
		if _, err := ParseRecords(nil, body, 0, 0); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err %v, want ErrMalformed", name, err)
		}
	}
	for _, r := range []Record{
		{Op: 9, Key: key4(1)},
		{Op: OpAdd, Key: session.Key{Src: key4(1).Src, Dst: key6(1).Dst, Proto: session.TCP}},
		{Op: OpAdd, Key: key4(1), Owner: session.Owner{Epoch: session.MaxEpoch + 1}},
	} {
		if err := r.Check(); !errors.Is(err, ErrMalformed) {
			t.Errorf("Check(%+v) = %v, want ErrMalformed", r, err)
		}
	}
}

func testHeartbeat() Heartbeat {
	return Heartbeat{
		Host: 3, Incarnation: 42, Addr: netip.MustParseAddr("198.18.0.13"),
		AltAddr: netip.MustParseAddr("2001:db8::13"), MAC: net.HardwareAddr{2, 0, 0, 0, 0, 0x13},
		TunnelPort: 6080, Domain: "pop1-a",
	}
}

func TestHeartbeatRoundTrip(t *testing.T) {
	v6only := testHeartbeat()
	v6only.Addr, v6only.AltAddr = v6only.AltAddr, netip.Addr{}
	v6primary := testHeartbeat()
	v6primary.Addr, v6primary.AltAddr = v6primary.AltAddr, v6primary.Addr
	v4only := testHeartbeat()
	v4only.AltAddr, v4only.Domain = netip.Addr{}, ""
	digest := v6primary
	digest.Digest, digest.HasDigest = Digest{Count: 7, Sum: 1<<63 | 5}, true
	zeroDigest := v4only
	zeroDigest.HasDigest = true
	for _, hb := range []Heartbeat{testHeartbeat(), v6only, v6primary, v4only, digest, zeroDigest} {
		if err := hb.Check(); err != nil {
			t.Fatal(err)
		}
		b := AppendHeartbeat(nil, &hb)
		if len(b) != hb.Len() {
			t.Errorf("encoded %d bytes, Len %d", len(b), hb.Len())
		}
		got, err := ParseHeartbeat(b)
		if err != nil {
			t.Fatalf("%+v: %v", hb, err)
		}
		if got.Host != hb.Host || got.Incarnation != hb.Incarnation || got.Addr != hb.Addr ||
			got.AltAddr != hb.AltAddr || !bytes.Equal(got.MAC, hb.MAC) || got.TunnelPort != hb.TunnelPort ||
			got.Domain != hb.Domain || got.Digest != hb.Digest || got.HasDigest != hb.HasDigest {
			t.Errorf("got %+v, want %+v", got, hb)
		}
	}
}

func TestHeartbeatRejects(t *testing.T) {
	hb := testHeartbeat()
	good := AppendHeartbeat(nil, &hb)
	mod := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	cases := map[string][]byte{
		"short":           good[:hbFixedLen-1],
		"truncated":       good[:len(good)-1],
		"trailing":        append(bytes.Clone(good), 'x'),
		"flags":           mod(func(b []byte) []byte { b[hbFlagsOff] |= 0x10; return b }),
		"digest flag":     mod(func(b []byte) []byte { b[hbFlagsOff] |= hbDigest; return b }),
		"no primary":      mod(func(b []byte) []byte { b[hbFlagsOff] = hbPrimary6; return b[:len(b)-16-4] }),
		"domain control":  mod(func(b []byte) []byte { b[len(b)-1] = '\n'; return b }),
		"domain too long": AppendHeartbeat(nil, &Heartbeat{Addr: hb.Addr, MAC: hb.MAC, Domain: strings.Repeat("d", 64)}),
	}
	for name, body := range cases {
		if _, err := ParseHeartbeat(body); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err %v, want ErrMalformed", name, err)
		}
	}
	bad := []Heartbeat{
		{MAC: hb.MAC},
		{Addr: hb.Addr, AltAddr: netip.MustParseAddr("198.18.0.14"), MAC: hb.MAC},
		{Addr: hb.Addr},
		{Addr: hb.Addr, MAC: hb.MAC, Domain: "a b"},
	}
	for _, h := range bad {
		if err := h.Check(); !errors.Is(err, ErrMalformed) {
			t.Errorf("Check(%+v) = %v, want ErrMalformed", h, err)
		}
	}
}

func TestDatagramOpen(t *testing.T) {
	h := Header{Type: TypeRecords, Sender: 9, Incarnation: 1 << 60, Seq: 77, Timestamp: 1234567890}
	body := AppendRecord(nil, Record{Op: OpAdd, Key: key4(1), Owner: session.Owner{Host: 9, Epoch: 5}})
	d := seal(testRing, h, body)
	if err := NewOpener(testRing, 0).Open(d); err != nil {
		t.Fatal(err)
	}
	if d.Header() != h || !bytes.Equal(d.Body(), body) {
		t.Errorf("header %+v body %x, want %+v %x", d.Header(), d.Body(), h, body)
	}
	// Rotation: a ring that signs with a new key and still accepts the old one.
	if err := NewOpener(mustRing(otherKey, testKey), 0).Open(d); err != nil {
		t.Errorf("accepted key: %v", err)
	}
	// Insecure openers take anything well formed.
	if err := NewOpener(nil, 0).Open(d); err != nil {
		t.Errorf("insecure: %v", err)
	}

	mod := func(f func(d Datagram) Datagram) Datagram { return f(bytes.Clone(d)) }
	cases := []struct {
		name string
		d    Datagram
		max  int
		want error
	}{
		{"wrong key", seal(otherRing, h, body), 0, ErrBadTag},
		{"insecure sender", seal(nil, h, body), 0, ErrBadTag},
		{"flipped body bit", mod(func(d Datagram) Datagram { d[HeaderLen+3] ^= 1; return d }), 0, ErrBadTag},
		{"flipped seq bit", mod(func(d Datagram) Datagram { d[seqOff+7] ^= 1; return d }), 0, ErrBadTag},
		{"bad magic", mod(func(d Datagram) Datagram { d[0] = 'X'; return d }), 0, ErrBadMagic},
		{"version 2", mod(func(d Datagram) Datagram { d[versionOff] = 2; return d }), 0, ErrBadVersion},
		{"type 3", seal(testRing, Header{Type: 3}, body), 0, ErrUnknownType},
		{"tiny", d[:3], 0, ErrTruncated},
		{"header only", d[:HeaderLen], 0, ErrTruncated},
		{"short body", d[:len(d)-1], 0, ErrTruncated},
		{"trailing", append(bytes.Clone(d), 0), 0, ErrMalformed},
		{"over configured max", d, len(d) - 1, ErrOversize},
		{"jumbo", make(Datagram, MaxDatagramLen+1), 0, ErrOversize},
	}
	for _, c := range cases {
		if err := NewOpener(testRing, c.max).Open(c.d); !errors.Is(err, c.want) {
			t.Errorf("%s: err %v, want %v", c.name, err, c.want)
		}
	}
}

func TestKeyFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	h1, h2 := hex.EncodeToString(testKey), hex.EncodeToString(otherKey)
	r, err := LoadKeyFile(write("one", "# gossip key\n"+h1+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(r.current, testKey) || r.accepted != nil {
		t.Errorf("ring %+v", r)
	}
	r, err = LoadKeyFile(write("two", h2+"\n\n"+h1+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(r.current, otherKey) || !bytes.Equal(r.accepted, testKey) {
		t.Errorf("ring %+v", r)
	}
	for name, s := range map[string]string{
		"empty": "# nothing\n", "short": h1[:62] + "\n", "not hex": strings.Repeat("zz", 32), "three": h1 + "\n" + h1 + "\n" + h1,
	} {
		if _, err := LoadKeyFile(write(name, s)); err == nil {
			t.Errorf("%s: loaded", name)
		}
	}
	if _, err := LoadKeyFile(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	if _, err := NewKeyRing(testKey[:31], nil); !errors.Is(err, ErrShortKey) {
		t.Errorf("short key: %v", err)
	}
}

func TestCompactRecords(t *testing.T) {
	const sender, ts = 3, 1_700_000_000_123_456_789
	base := EpochAt(time.Unix(0, ts))
	own := func(op Op, k session.Key, epoch uint64) Record {
		return Record{Op: op, Key: k, Owner: session.Owner{Host: sender, Epoch: epoch}}
	}
	other := key4(9)
	other.Dst, other.DstPort = netip.MustParseAddr("198.19.255.2"), 80
	recs := []Record{
		own(OpAdd, key4(1), base),                                          // 15: kind, proto, VIP port, VIP, port, client, delta 0
		own(OpAdd, key4(2), base+1),                                        // 8: same destination
		own(OpDelete, key4(3), 0),                                          // 7
		own(OpAdd, other, base+200),                                        // 16: new destination, 2-byte delta
		own(OpAdd, key4(4), base+190),                                      // 15: back to the first destination, delta -10
		own(OpAdd, key6(5), base+191),                                      // 39
		own(OpAdd, key6(6), session.MaxEpoch),                              // 26: same destination, 7-byte delta
		{Op: OpAdd, Key: key4(7), Owner: session.Owner{Host: 4, Epoch: 9}}, // foreign: full, 22
		own(OpDelete, key4(8), 0),                                          // 7: the foreign record's destination again
	}
	want := []int{15, 8, 7, 16, 15, 39, 26, RecordAdd4Len, 7}
	w := NewRecordWriter(sender, ts)
	var body []byte
	for i, r := range recs {
		before := len(body)
		body = w.Append(body, r)
		if got := len(body) - before; got != want[i] {
			t.Errorf("record %d (%v %v): %d bytes, want %d", i, r.Op, r.Key, got, want[i])
		}
	}
	got, err := ParseRecords(nil, body, sender, ts)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, recs) {
		t.Fatalf("decoded\n%+v\nwant\n%+v", got, recs)
	}
	// The same bytes from another sender or at another time mean other owners/epochs.
	if got, _ := ParseRecords(nil, body, sender+1, ts); got[0].Owner.Host != sender+1 {
		t.Errorf("owner %d, want the datagram's sender %d", got[0].Owner.Host, sender+1)
	}

	first := NewRecordWriter(sender, ts)
	add := first.Append(nil, own(OpAdd, key4(1), base))
	cases := map[string][]byte{
		"same destination first": {0x61, 0, 1, 198, 18, 0, 1, 0},
		"same destination, other family": append(bytes.Clone(add),
			0x61|0x80, 0, 1, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0),
		"reserved bit 4":     {0x51, 6, 1, 187, 198, 19, 255, 1, 0, 1, 198, 18, 0, 1, 0},
		"truncated":          add[:len(add)-2],
		"no epoch delta":     add[:len(add)-1],
		"unterminated delta": append(bytes.Clone(add[:len(add)-1]), 0x80),
		"epoch below zero":   append(bytes.Clone(add[:len(add)-1]), binary.AppendVarint(nil, -int64(base)-1)...),
		"epoch above 48 bits": append(bytes.Clone(add[:len(add)-1]),
			binary.AppendVarint(nil, int64(session.MaxEpoch-base)+1)...),
		"bad op": {0x43, 6, 1, 187, 198, 19, 255, 1, 0, 1, 198, 18, 0, 1, 0},
	}
	for name, body := range cases {
		if _, err := ParseRecords(nil, body, sender, ts); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err %v, want ErrMalformed", name, err)
		}
	}
}
