package wire

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/homing-dev/homing/session"
)

func TestRepairBodies(t *testing.T) {
	req := RepairRequest{ServerNonce: [NonceLen]byte{1, 2}, ClientNonce: [NonceLen]byte{15: 9}, Target: 7}
	b := AppendRepairRequest(nil, &req)
	if got, err := ParseRepairRequest(b); err != nil || got != req || len(b) != RepairRequestLen {
		t.Errorf("request %+v, %v (%d bytes)", got, err, len(b))
	}
	for name, body := range map[string][]byte{
		"short":    b[:len(b)-1],
		"long":     append(bytes.Clone(b), 0),
		"target 0": AppendRepairRequest(nil, &RepairRequest{}),
		"flags":    append(bytes.Clone(b[:len(b)-1]), 1),
	} {
		if _, err := ParseRepairRequest(body); !errors.Is(err, ErrMalformed) {
			t.Errorf("request %s: %v", name, err)
		}
	}
	if n, err := ParseRepairChallenge(req.ServerNonce[:]); err != nil || n != req.ServerNonce {
		t.Errorf("challenge %x, %v", n, err)
	}
	if _, err := ParseRepairChallenge(b); !errors.Is(err, ErrMalformed) {
		t.Errorf("long challenge: %v", err)
	}

	resp := RepairResponse{Nonce: req.ClientNonce, Index: 1 << 31, Last: true, Truncated: true}
	recs := []Record{{Op: OpAdd, Key: key4(1), Owner: session.Owner{Host: 7, Epoch: 1}}, {Op: OpAdd, Key: key6(2), Owner: session.Owner{Host: 7, Epoch: 2}}}
	b = AppendRepairResponse(nil, &resp)
	for _, r := range recs {
		b = AppendRecord(b, r)
	}
	got, grecs, err := ParseRepairResponse(nil, b)
	if err != nil || got != resp || len(grecs) != 2 || grecs[0] != recs[0] || grecs[1] != recs[1] {
		t.Errorf("response %+v %+v, %v", got, grecs, err)
	}
	if got, grecs, err := ParseRepairResponse(nil, b[:RepairResponseHeaderLen]); err != nil || got != resp || len(grecs) != 0 {
		t.Errorf("empty response %+v %v, %v", got, grecs, err)
	}
	withDelete := AppendRecord(bytes.Clone(b), Record{Op: OpDelete, Key: key4(3), Owner: session.Owner{Host: 7}})
	for name, body := range map[string][]byte{
		"short":     b[:RepairResponseHeaderLen-1],
		"flags":     func() []byte { c := bytes.Clone(b); c[NonceLen+4] |= 4; return c }(),
		"reserved":  func() []byte { c := bytes.Clone(b); c[NonceLen+5] = 1; return c }(),
		"truncated": b[:len(b)-1],
		"delete":    withDelete,
	} {
		if _, recs, err := ParseRepairResponse(nil, body); !errors.Is(err, ErrMalformed) || len(recs) != 0 {
			t.Errorf("response %s: %v, %d records", name, err, len(recs))
		}
	}
}

func TestReadFrame(t *testing.T) {
	var req RepairRequest
	req.Target = 1
	f1 := seal(testRing, Header{Type: TypeRepairRequest, Sender: 2, Incarnation: 3, Seq: 4}, AppendRepairRequest(nil, &req))
	f2 := seal(testRing, Header{Type: TypeRepairChallenge, Sender: 1}, make([]byte, NonceLen))
	r := bytes.NewReader(append(bytes.Clone(f1), f2...))
	var buf []byte
	for i, want := range []Datagram{f1, f2} {
		d, b, err := ReadFrame(r, buf, 0)
		if err != nil || !bytes.Equal(d, want) {
			t.Fatalf("frame %d: %x, %v", i, d, err)
		}
		if err := NewOpener(testRing, 0).OpenFrame(d); err != nil {
			t.Errorf("frame %d: %v", i, err)
		}
		buf = b
	}
	if _, _, err := ReadFrame(r, buf, 0); err != io.EOF {
		t.Errorf("at the end: %v", err)
	}
	big := seal(testRing, Header{Type: TypeRepairResponse}, make([]byte, 2000))
	records := seal(testRing, Header{Type: TypeRecords}, make([]byte, 22))
	badTag := bytes.Clone(f1)
	badTag[len(badTag)-1] ^= 1
	for name, c := range map[string]struct {
		b    []byte
		max  int
		want error
	}{
		"header cut":   {f1[:10], 0, ErrTruncated},
		"body cut":     {f1[:len(f1)-1], 0, ErrTruncated},
		"magic":        {append([]byte("XX"), f1[2:]...), 0, ErrBadMagic},
		"version":      {append([]byte{'H', 'G', 2}, f1[3:]...), 0, ErrBadVersion},
		"datagram":     {records, 0, ErrUnknownType},
		"over the max": {big, 1000, ErrOversize},
	} {
		if _, _, err := ReadFrame(bytes.NewReader(c.b), nil, c.max); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", name, err, c.want)
		}
	}
	d, _, err := ReadFrame(bytes.NewReader(badTag), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := NewOpener(testRing, 0).OpenFrame(d); !errors.Is(err, ErrBadTag) {
		t.Errorf("bad tag: %v", err)
	}
	if err := NewOpener(nil, 0).OpenFrame(d); err != nil {
		t.Errorf("insecure: %v", err)
	}
}

func TestDigest(t *testing.T) {
	m := map[session.Key]session.Owner{key4(1): {Host: 1, Epoch: 5}, key6(2): {Host: 1, Epoch: 6}, key4(3): {Host: 2, Epoch: 5}}
	d := DigestOf(m, 1)
	if d.Count != 2 {
		t.Errorf("%+v", d)
	}
	var inc Digest
	inc.Add(key6(2), 6)
	inc.Add(key4(9), 1)
	inc.Add(key4(1), 5)
	inc.Remove(key4(9), 1)
	if inc != d {
		t.Errorf("incremental %+v, whole %+v", inc, d)
	}
	m[key4(1)] = session.Owner{Host: 1, Epoch: 7}
	if DigestOf(m, 1) == d {
		t.Error("digest blind to an epoch")
	}
	if sessionHash(key4(1), 5) == sessionHash(key4(2), 5) {
		t.Error("hash collision")
	}
	// The hash is part of the protocol (every host must compute the same): pin one
	// value. Epoch bits above 48 are not part of it.
	if h := sessionHash(key4(1), 5); h != 0xeee85f8d61fbdd2c || h != sessionHash(key4(1), 5|1<<50) {
		t.Errorf("hash %#x", h)
	}
}
