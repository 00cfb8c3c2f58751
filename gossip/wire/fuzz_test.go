package wire

import (
	"bytes"
	"errors"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/homing-dev/homing/session"
)

func FuzzDatagram(f *testing.F) {
	hb := testHeartbeat()
	f.Add([]byte(seal(testRing, Header{Type: TypeHeartbeat, Sender: 3, Incarnation: 42, Seq: 1}, AppendHeartbeat(nil, &hb))))
	f.Add([]byte(seal(nil, Header{Type: TypeRecords, Sender: 2, Seq: 9},
		AppendRecord(nil, Record{Op: OpAdd, Key: key4(1), Owner: session.Owner{Host: 2, Epoch: 3}}))))
	f.Add([]byte("HG\x01\x02"))
	f.Fuzz(func(t *testing.T, b []byte) {
		reasons := []error{ErrBadMagic, ErrBadVersion, ErrUnknownType, ErrTruncated, ErrOversize, ErrBadTag, ErrMalformed}
		for _, ring := range []*KeyRing{nil, testRing} {
			d := Datagram(b)
			err := NewOpener(ring, 0).Open(d)
			if err != nil {
				n := 0
				for _, r := range reasons {
					if errors.Is(err, r) {
						n++
					}
				}
				if n != 1 {
					t.Fatalf("error %v wraps %d reasons", err, n)
				}
				continue
			}
			_ = d.Header()
			switch d.Type() {
			case TypeHeartbeat:
				_, _ = ParseHeartbeat(d.Body())
			case TypeRecords:
				_, _ = ParseRecords(nil, d.Body(), d.Sender(), d.Timestamp())
			}
		}
	})
}

// fuzzSender and fuzzTimestamp are the datagram context FuzzRecords decodes bodies in.
const (
	fuzzSender    = 1
	fuzzTimestamp = 1_700_000_000_000_000_000
)

func FuzzRecords(f *testing.F) {
	f.Add(AppendRecord(AppendRecord(nil, Record{Op: OpAdd, Key: key4(1), Owner: session.Owner{Host: 1, Epoch: 2}}),
		Record{Op: OpDelete, Key: key6(2), Owner: session.Owner{Host: 1}}))
	f.Add(AppendRecord(nil, Record{Op: OpAdd, Key: key6(1), Owner: session.Owner{Host: 9, Epoch: session.MaxEpoch}}))
	f.Add([]byte{0x81, 6})
	base := EpochAt(time.Unix(0, fuzzTimestamp))
	f.Add(AppendRecords(nil, []Record{
		{Op: OpAdd, Key: key4(1), Owner: session.Owner{Host: fuzzSender, Epoch: base + 1}},
		{Op: OpAdd, Key: key4(2), Owner: session.Owner{Host: fuzzSender, Epoch: base + 2}},
		{Op: OpDelete, Key: key4(3), Owner: session.Owner{Host: fuzzSender}},
		{Op: OpAdd, Key: key6(4), Owner: session.Owner{Host: fuzzSender, Epoch: base - 100}},
		{Op: OpAdd, Key: key6(5), Owner: session.Owner{Host: 2, Epoch: 7}},
		{Op: OpDelete, Key: key6(6), Owner: session.Owner{Host: fuzzSender}},
	}, fuzzSender, fuzzTimestamp))
	// QUIC connection IDs (session.CIDKey), full and compact, with a flow between.
	cid1, _ := session.CIDKey([]byte{0xc1, 0xd2, 0xe3, 0xf4}, 443)
	cid2, _ := session.CIDKey(bytes.Repeat([]byte{0xff}, 20), 443)
	f.Add(AppendRecord(nil, Record{Op: OpAdd, Key: cid1, Owner: session.Owner{Host: 2, Epoch: 7}}))
	f.Add(AppendRecords(nil, []Record{
		{Op: OpAdd, Key: key6(1), Owner: session.Owner{Host: fuzzSender, Epoch: base + 1}},
		{Op: OpAdd, Key: cid1, Owner: session.Owner{Host: fuzzSender, Epoch: base + 1}},
		{Op: OpAdd, Key: cid2, Owner: session.Owner{Host: fuzzSender, Epoch: base + 2}},
		{Op: OpDelete, Key: cid1, Owner: session.Owner{Host: fuzzSender}},
	}, fuzzSender, fuzzTimestamp))
	f.Fuzz(func(t *testing.T, body []byte) {
		recs, err := ParseRecords(nil, body, fuzzSender, fuzzTimestamp)
		if err != nil {
			if !errors.Is(err, ErrMalformed) || len(recs) != 0 {
				t.Fatalf("err %v with %d records", err, len(recs))
			}
			return
		}
		for _, r := range recs {
			if err := r.Check(); err != nil {
				t.Fatalf("decoded record fails Check: %v", err)
			}
		}
		// What decodes re-encodes (in the sender's canonical, shortest forms) to at
		// most as many bytes, which decode to the same records.
		again := AppendRecords(nil, recs, fuzzSender, fuzzTimestamp)
		if len(again) > len(body) {
			t.Fatalf("re-encoded to %d bytes, was %d", len(again), len(body))
		}
		back, err := ParseRecords(nil, again, fuzzSender, fuzzTimestamp)
		if err != nil || !slices.Equal(back, recs) {
			t.Fatalf("re-encoded %x decodes to %+v, %v; want %+v", again, back, err, recs)
		}
		// The full forms of records owned by someone else are unchanged.
		if len(recs) == 1 && recs[0].Owner.Host != fuzzSender && !bytes.Equal(again, body) {
			t.Fatalf("full record re-encoded %x, was %x", again, body)
		}
	})
}

func FuzzHeartbeat(f *testing.F) {
	hb := testHeartbeat()
	f.Add(AppendHeartbeat(nil, &hb))
	hb.AltAddr, hb.Domain = hb.Addr, ""
	hb.Addr = testHeartbeat().AltAddr
	f.Add(AppendHeartbeat(nil, &hb))
	hb.Digest, hb.HasDigest = Digest{Count: 3, Sum: 0xfeedface}, true
	f.Add(AppendHeartbeat(nil, &hb))
	f.Fuzz(func(t *testing.T, body []byte) {
		h, err := ParseHeartbeat(body)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("err %v", err)
			}
			return
		}
		if err := h.Check(); err != nil {
			t.Fatalf("decoded heartbeat fails Check: %v", err)
		}
		if again := AppendHeartbeat(nil, &h); !bytes.Equal(again, body) {
			t.Fatalf("re-encoded %x, was %x", again, body)
		}
	})
}

func FuzzKeys(f *testing.F) {
	f.Add([]byte("# k\n" + string(bytes.Repeat([]byte("ab"), 32)) + "\n"))
	f.Add([]byte(string(bytes.Repeat([]byte("01"), 40)) + "\n" + string(bytes.Repeat([]byte("ff"), 32))))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseKeys(b, "fuzz")
		if err == nil && (len(r.current) < MinKeyLen || (r.accepted != nil && len(r.accepted) < MinKeyLen)) {
			t.Fatalf("short key accepted")
		}
	})
}

func FuzzNackRequest(f *testing.F) {
	r := NackRequest{ServerNonce: [NonceLen]byte{1}, ClientNonce: [NonceLen]byte{2}, Target: 3, Incarnation: 4,
		Ranges: NackRanges([]uint64{5, 6, 7, 9, 1000})}
	f.Add(AppendNackRequest(nil, &r))
	r.Ranges = []SeqRange{{First: 1, Count: MaxNackSeqs}}
	f.Add(AppendNackRequest(nil, &r))
	f.Add(make([]byte, NackRequestHeaderLen+NackRangeLen))
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := ParseNackRequest(body)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("err %v", err)
			}
			return
		}
		if n := r.Seqs(); n < 1 || n > MaxNackSeqs || len(r.Ranges) > MaxNackRanges {
			t.Fatalf("%d sequence numbers in %d ranges", n, len(r.Ranges))
		}
		var seqs []uint64
		for _, g := range r.Ranges {
			for s := g.First; s < g.First+uint64(g.Count); s++ {
				seqs = append(seqs, s)
			}
		}
		if again := NackRanges(seqs); len(again) != len(r.Ranges) {
			t.Fatalf("ranges %+v coalesce to %+v", r.Ranges, again)
		}
		if again := AppendNackRequest(nil, &r); !bytes.Equal(again, body) {
			t.Fatalf("re-encoded %x, was %x", again, body)
		}
	})
}

func FuzzNackResponse(f *testing.F) {
	r := NackResponse{Nonce: [NonceLen]byte{9}, Index: 2, Last: true}
	b := AppendNackResponse(nil, &r)
	f.Add(bytes.Clone(b))
	d := seal(nil, Header{Type: TypeRecords, Sender: 2, Incarnation: 1, Seq: 3},
		AppendRecord(nil, Record{Op: OpAdd, Key: key4(1), Owner: session.Owner{Host: 2, Epoch: 3}}))
	f.Add(AppendNackDatagram(AppendNackDatagram(b, d), d))
	f.Add(append(b, 0, 1, 2))
	f.Fuzz(func(t *testing.T, body []byte) {
		r, dgs, err := ParseNackResponse(nil, body)
		if err != nil {
			if !errors.Is(err, ErrMalformed) || len(dgs) != 0 {
				t.Fatalf("err %v with %d datagrams", err, len(dgs))
			}
			return
		}
		again := AppendNackResponse(nil, &r)
		for _, d := range dgs {
			if len(d) < Overhead || len(d) > MaxDatagramLen {
				t.Fatalf("datagram of %d bytes", len(d))
			}
			again = AppendNackDatagram(again, d)
		}
		if !bytes.Equal(again, body) {
			t.Fatalf("re-encoded %x, was %x", again, body)
		}
	})
}

func FuzzRepairRequest(f *testing.F) {
	f.Add(AppendRepairRequest(nil, &RepairRequest{ServerNonce: [NonceLen]byte{1}, ClientNonce: [NonceLen]byte{2}, Target: 3}))
	f.Add(make([]byte, RepairRequestLen))
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := ParseRepairRequest(body)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("err %v", err)
			}
			return
		}
		if again := AppendRepairRequest(nil, &r); !bytes.Equal(again, body) {
			t.Fatalf("re-encoded %x, was %x", again, body)
		}
	})
}

func FuzzRepairChallenge(f *testing.F) {
	f.Add(make([]byte, NonceLen))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, body []byte) {
		n, err := ParseRepairChallenge(body)
		if (err == nil) != (len(body) == NonceLen) || (err == nil && !bytes.Equal(n[:], body)) {
			t.Fatalf("%x: %x, %v", body, n, err)
		}
	})
}

func FuzzRepairResponse(f *testing.F) {
	r := RepairResponse{Nonce: [NonceLen]byte{9}, Index: 2, Last: true}
	b := AppendRepairResponse(nil, &r)
	f.Add(bytes.Clone(b))
	b = AppendRecord(b, Record{Op: OpAdd, Key: key4(1), Owner: session.Owner{Host: 2, Epoch: 3}})
	f.Add(AppendRecord(b, Record{Op: OpAdd, Key: key6(1), Owner: session.Owner{Host: 2, Epoch: session.MaxEpoch}}))
	f.Fuzz(func(t *testing.T, body []byte) {
		r, recs, err := ParseRepairResponse(nil, body)
		if err != nil {
			if !errors.Is(err, ErrMalformed) || len(recs) != 0 {
				t.Fatalf("err %v with %d records", err, len(recs))
			}
			return
		}
		again := AppendRepairResponse(nil, &r)
		for _, rec := range recs {
			if rec.Op != OpAdd || rec.Check() != nil {
				t.Fatalf("record %+v", rec)
			}
			again = AppendRecord(again, rec)
		}
		if !bytes.Equal(again, body) {
			t.Fatalf("re-encoded %x, was %x", again, body)
		}
	})
}

func FuzzReadFrame(f *testing.F) {
	var req RepairRequest
	req.Target = 1
	f.Add([]byte(seal(testRing, Header{Type: TypeRepairRequest, Sender: 2}, AppendRepairRequest(nil, &req))))
	f.Add(append([]byte(seal(nil, Header{Type: TypeRepairChallenge, Sender: 1}, make([]byte, NonceLen))),
		seal(nil, Header{Type: TypeRepairResponse, Sender: 1}, AppendRepairResponse(nil, &RepairResponse{Last: true}))...))
	f.Add([]byte("HG\x01\x04\x00\x01\xff\xff"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		var buf []byte
		for range 64 {
			d, nb, err := ReadFrame(r, buf, 4096)
			buf = nb
			if err != nil {
				if err != io.EOF && !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrBadMagic) && !errors.Is(err, ErrBadVersion) &&
					!errors.Is(err, ErrUnknownType) && !errors.Is(err, ErrOversize) {
					t.Fatalf("err %v", err)
				}
				return
			}
			if len(d) != Overhead+d.BodyLen() || len(d) > 4096 || !d.Type().stream() {
				t.Fatalf("frame %x", d)
			}
			_ = NewOpener(testRing, 0).OpenFrame(d)
		}
	})
}
