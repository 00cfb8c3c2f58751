package wire

import (
	"bytes"
	"slices"
	"testing"

	"github.com/homing-dev/homing/session"
)

// TestRecordCIDKey: a QUIC connection-ID key (session.CIDKey) travels in full and compact
// records unchanged, and a record whose CID key has a bad padding or length is refused.
func TestRecordCIDKey(t *testing.T) {
	var keys []session.Key
	for _, cid := range [][]byte{{1, 2, 3, 4}, {0, 0, 0, 0}, bytes.Repeat([]byte{0xab}, 16), bytes.Repeat([]byte{0xff}, 20)} {
		k, ok := session.CIDKey(cid, 443)
		if !ok {
			t.Fatal("CIDKey")
		}
		keys = append(keys, k)
	}
	var recs []Record
	for i, k := range keys {
		recs = append(recs, Record{Op: OpAdd, Key: k, Owner: session.Owner{Host: 3, Epoch: uint64(100 + i)}})
	}
	recs = append(recs, Record{Op: OpDelete, Key: keys[0], Owner: session.Owner{Host: 3}})
	body := AppendRecords(nil, recs, 3, 1<<40)
	got, err := ParseRecords(nil, body, 3, 1<<40)
	if err != nil || !slices.Equal(got, recs) {
		t.Fatalf("compact: %+v, %v", got, err)
	}
	full := AppendRecord(nil, recs[3])
	r, n, err := ParseRecord(full)
	if err != nil || n != len(full) || r != recs[3] {
		t.Fatalf("full: %+v %d %v", r, n, err)
	}
	// The length byte (Dst byte 4: after kind, proto, ports, Src) set to 3: refused.
	bad := bytes.Clone(full)
	bad[6+16+4] = 3
	if _, _, err := ParseRecord(bad); err == nil {
		t.Fatal("a CID key of length 3 was accepted")
	}
	bad = bytes.Clone(full)
	bad[6+16+9] = 1 // padding
	if _, _, err := ParseRecord(bad); err == nil {
		t.Fatal("a CID key with a non-zero pad was accepted")
	}
}
