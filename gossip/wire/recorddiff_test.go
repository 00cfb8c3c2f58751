package wire_test

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	"github.com/homing-dev/homing/gossip/wire"
	"github.com/homing-dev/homing/session"
)

func rkey(r *rand.Rand) session.Key {
	var k session.Key
	k.Proto = session.TCP
	if r.IntN(3) == 0 {
		k.Proto = session.UDP
	}
	k.SrcPort = uint16(r.IntN(65536))
	k.DstPort = uint16(80 + r.IntN(2))
	if r.IntN(2) == 0 {
		k.Src = netip.AddrFrom4([4]byte{198, 18, byte(r.IntN(256)), byte(r.IntN(256))})
		k.Dst = netip.AddrFrom4([4]byte{198, 19, 0, byte(r.IntN(2))})
	} else {
		var a, b [16]byte
		a[0], b[0] = 0x20, 0x20
		a[15] = byte(r.IntN(256))
		b[15] = byte(r.IntN(2))
		k.Src, k.Dst = netip.AddrFrom16(a), netip.AddrFrom16(b)
	}
	return k
}

// TestRecordWriterDifferential (from a review): random mixes of own/foreign, v4/v6, add/delete, extreme
// epochs, with undo of random appends (as the sender does) round-trip exactly.
func TestRecordWriterDifferential(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for it := 0; it < 20000; it++ {
		sender := uint16(1 + r.IntN(3))
		ts := r.Int64()
		if r.IntN(4) == 0 {
			ts = -r.Int64()
		}
		w := wire.NewRecordWriter(sender, ts)
		var body []byte
		var recs []wire.Record
		n := 1 + r.IntN(12)
		for i := 0; i < n; i++ {
			rec := wire.Record{Op: wire.OpAdd, Key: rkey(r), Owner: session.Owner{Host: uint16(1 + r.IntN(3))}}
			switch r.IntN(4) {
			case 0:
				rec.Owner.Epoch = 0
			case 1:
				rec.Owner.Epoch = session.MaxEpoch
			default:
				rec.Owner.Epoch = r.Uint64() & session.MaxEpoch
			}
			if r.IntN(3) == 0 {
				rec.Op, rec.Owner.Epoch = wire.OpDelete, 0
			}
			l, saved := len(body), w
			body = w.Append(body, rec)
			if r.IntN(4) == 0 { // undo, as send.go does
				body, w = body[:l], saved
				continue
			}
			recs = append(recs, rec)
		}
		if len(recs) == 0 {
			continue
		}
		got, err := wire.ParseRecords(nil, body, sender, ts)
		if err != nil || !slices.Equal(got, recs) {
			t.Fatalf("it %d: %v\n got %+v\nwant %+v\nbody %x", it, err, got, recs, body)
		}
		// Full form never exceeds 46 bytes per record: compact IPv6 add bound.
	}
}

func TestReviewMaxCompactLen(t *testing.T) {
	k := rkey(rand.New(rand.NewPCG(3, 3)))
	for k.Is4() {
		k = rkey(rand.New(rand.NewPCG(uint64(k.SrcPort), 5)))
	}
	for _, e := range []uint64{0, session.MaxEpoch} {
		for _, ts := range []int64{0, -1, 1 << 62} {
			w := wire.NewRecordWriter(1, ts)
			b := w.Append(nil, wire.Record{Op: wire.OpAdd, Key: k, Owner: session.Owner{Host: 1, Epoch: e}})
			if len(b) > wire.RecordAdd6Len {
				t.Errorf("compact v6 add %d bytes > %d", len(b), wire.RecordAdd6Len)
			}
		}
	}
}
