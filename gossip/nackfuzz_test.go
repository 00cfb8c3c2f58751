package gossip

import (
	"bytes"
	"context"
	"github.com/homing-dev/homing/gossip/wire"
	"testing"

	"github.com/homing-dev/homing/session"
)

// FuzzNackClient feeds a stream to the client side of a NACK (fetchNack and the
// datagrams' checks), as the answer of peer 2, incarnation 7, for sequence numbers 4
// and 5.
func FuzzNackClient(f *testing.F) {
	var stream []byte
	stream = append(stream, seal(nil, wire.Header{Type: wire.TypeRepairChallenge, Sender: 2, Incarnation: 7}, make([]byte, wire.NonceLen))...)
	d4 := seal(nil, wire.Header{Type: wire.TypeRecords, Sender: 2, Incarnation: 7, Seq: 4},
		wire.AppendRecord(nil, wire.Record{Op: wire.OpAdd, Key: key4(1), Owner: session.Owner{Host: 2, Epoch: 3}}))
	d5 := seal(nil, wire.Header{Type: wire.TypeRecords, Sender: 2, Incarnation: 7, Seq: 5},
		wire.AppendRecord(nil, wire.Record{Op: wire.OpDelete, Key: key4(2), Owner: session.Owner{Host: 2}}))
	resp := wire.AppendNackDatagram(wire.AppendNackResponse(nil, &wire.NackResponse{}), d4)
	stream = append(stream, seal(nil, wire.Header{Type: wire.TypeNackResponse, Sender: 2, Incarnation: 7}, resp)...)
	resp = wire.AppendNackDatagram(wire.AppendNackResponse(nil, &wire.NackResponse{Index: 1, Last: true}), d5)
	f.Add(append(stream, seal(nil, wire.Header{Type: wire.TypeNackResponse, Sender: 2, Incarnation: 7}, resp)...))
	n := fuzzNode(f)
	n.mu.Lock()
	n.putLocked(key4(3), entry{owner: session.Owner{Host: 5, Epoch: 1}, inc: 1})
	n.mu.Unlock()
	f.Fuzz(func(t *testing.T, b []byte) {
		n.dialer = streamDialer(b)
		n.peersMu.Lock()
		n.peers[2] = &peerState{state: peerUp, inc: 7, highest: 6, missing: map[uint64]struct{}{4: {}, 5: {}}}
		n.peersMu.Unlock()
		n.mu.Lock()
		n.nackTracks[2] = &repairTrack{keys: map[session.Key]uint64{key4(9): 6}}
		n.mu.Unlock()
		job := nackJob{id: 2, inc: 7, seqs: []uint64{4, 5}}
		dgs, err := n.fetchNack(context.Background(), job)
		if err == nil {
			if len(dgs) > len(job.seqs) {
				t.Fatalf("%d datagrams", len(dgs))
			}
			op := wire.NewOpener(nil, 0)
			var recs []wire.Record
			for _, d := range dgs {
				recs = n.handleResent(op, job, d, recs[:0])
			}
		}
		n.peersMu.Lock()
		if len(n.peers[2].missing) > 2 {
			t.Fatal("missing grew")
		}
		n.peersMu.Unlock()
		n.mu.Lock()
		defer n.mu.Unlock()
		if e, ok := n.owners.get(key4(3)); !ok || e.owner.Host != 5 {
			t.Fatal("another owner's entry changed")
		}
		for k, e := range n.owners.all() {
			if e.owner.Host != 2 && e.owner.Host != 5 {
				t.Fatalf("entry %v of host %d", k, e.owner.Host)
			}
		}
	})
}

func TestResendRing(t *testing.T) {
	r := newResendRing(4, 10_000)
	dg := func(seq uint64, n int) []byte { return bytes.Repeat([]byte{byte(seq)}, n) }
	for s := uint64(1); s <= 6; s++ {
		r.push(s, dg(s, 100))
	}
	for s := uint64(1); s <= 7; s++ {
		got, ok := r.get(s, nil)
		if ok != (s >= 3 && s <= 6) || (ok && !bytes.Equal(got, dg(s, 100))) {
			t.Errorf("seq %d: %v %x", s, ok, got[:min(4, len(got))])
		}
	}
	// The byte bound: 3 of 4000 bytes do not fit in 10000.
	for s := uint64(7); s <= 9; s++ {
		r.push(s, dg(s, 4000))
	}
	if _, ok := r.get(7, nil); ok || r.bytes > 10_000 {
		t.Errorf("7 still held, %d bytes", r.bytes)
	}
	if got, ok := r.get(9, nil); !ok || len(got) != 4000 {
		t.Error("9 not held")
	}
	// A jump (a new counter) starts over.
	r.push(100, dg(100, 10))
	if _, ok := r.get(9, nil); ok || r.bytes != 10 {
		t.Errorf("after a jump: %d bytes", r.bytes)
	}
	if _, ok := r.get(100, nil); !ok {
		t.Error("100 not held")
	}
}
