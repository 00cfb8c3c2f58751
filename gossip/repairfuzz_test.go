package gossip

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/homing-dev/homing/session"
)

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

// streamConn is a net.Conn that reads a fixed input and discards what is written.
type streamConn struct{ r *bytes.Reader }

func (c streamConn) Read(b []byte) (int, error)       { return c.r.Read(b) }
func (c streamConn) Write(b []byte) (int, error)      { return len(b), nil }
func (c streamConn) Close() error                     { return nil }
func (c streamConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c streamConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c streamConn) SetDeadline(time.Time) error      { return nil }
func (c streamConn) SetReadDeadline(time.Time) error  { return nil }
func (c streamConn) SetWriteDeadline(time.Time) error { return nil }
func (d streamDialer) DialContext(context.Context, string, string) (net.Conn, error) {
	return streamConn{bytes.NewReader(d)}, nil
}

type streamDialer []byte

// fuzzNode is an insecure node whose nonces are zero, so that fuzzed streams can
// answer its challenges and requests.
func fuzzNode(f *testing.F) *Node {
	hb := testHeartbeat()
	n, err := New(Config{HostID: 1, Addr: hb.Addr, MAC: hb.MAC, Insecure: true, Repair: true, RepairMaxRecords: 1000},
		nopConn{}, nopTable{}, nopTemplates{})
	if err != nil {
		f.Fatal(err)
	}
	n.nonce = func(b []byte) { clear(b) }
	return n
}

// FuzzRepairClient feeds a stream to the client side of a repair (fetch and
// reconcile), as the answer of peer 2, incarnation 7.
func FuzzRepairClient(f *testing.F) {
	var stream []byte
	stream = append(stream, seal(nil, Header{Type: TypeRepairChallenge, Sender: 2, Incarnation: 7}, make([]byte, NonceLen))...)
	resp := AppendRepairResponse(nil, &RepairResponse{})
	resp = AppendRecord(resp, Record{Op: OpAdd, Key: key4(1), Owner: session.Owner{Host: 2, Epoch: 3}})
	stream = append(stream, seal(nil, Header{Type: TypeRepairResponse, Sender: 2, Incarnation: 7, Seq: 5}, resp)...)
	resp = AppendRepairResponse(nil, &RepairResponse{Index: 1, Last: true})
	resp = AppendRecord(resp, Record{Op: OpAdd, Key: key6(1), Owner: session.Owner{Host: 2, Epoch: 4}})
	f.Add(append(stream, seal(nil, Header{Type: TypeRepairResponse, Sender: 2, Incarnation: 7, Seq: 5}, resp)...))
	n := fuzzNode(f)
	n.peers[2] = &peerState{state: peerUp, inc: 7, highest: 3}
	// Entries of 2 that a full snapshot may remove, and one of another owner.
	n.mu.Lock()
	n.putLocked(key4(2), entry{owner: session.Owner{Host: 2, Epoch: 1}, inc: 7})
	n.putLocked(key4(3), entry{owner: session.Owner{Host: 5, Epoch: 1}, inc: 1})
	n.mu.Unlock()
	f.Fuzz(func(t *testing.T, b []byte) {
		n.dialer = streamDialer(b)
		job := repairJob{id: 2, inc: 7}
		n.mu.Lock()
		n.tracks[2] = &repairTrack{keys: map[session.Key]uint64{key4(9): 100}}
		n.mu.Unlock()
		snap, err := n.fetch(context.Background(), job)
		if err == nil {
			if len(snap.recs) > n.cfg.RepairMaxRecords {
				t.Fatalf("%d records", len(snap.recs))
			}
			for _, r := range snap.recs {
				if r.Owner.Host != 2 || r.Op != OpAdd {
					t.Fatalf("record %+v", r)
				}
			}
			if err := n.reconcile(job, snap); err != nil {
				t.Fatal(err)
			}
		}
		n.mu.Lock()
		defer n.mu.Unlock()
		if e, ok := n.owners[key4(3)]; !ok || e.owner.Host != 5 {
			t.Fatal("another owner's entry changed")
		}
		for h, d := range n.digests {
			if w := digestOfEntries(n.owners, h); *d != w {
				t.Fatalf("digest of %d: %+v, entries say %+v", h, *d, w)
			}
		}
	})
}

func digestOfEntries(m map[session.Key]entry, host uint16) Digest {
	var d Digest
	for k, e := range m {
		if e.owner.Host == host {
			d.add(k, e.owner.Epoch)
		}
	}
	return d
}

// FuzzRepairServer feeds a stream to the server side of a repair, as a request.
func FuzzRepairServer(f *testing.F) {
	var req RepairRequest
	req.Target = 1
	f.Add([]byte(seal(nil, Header{Type: TypeRepairRequest, Sender: 2, Incarnation: 1, Seq: 1}, AppendRepairRequest(nil, &req))))
	f.Add([]byte(seal(nil, Header{Type: TypeRepairRequest, Sender: 1}, AppendRepairRequest(nil, &req))))
	n := fuzzNode(f)
	n.cfg.RepairInterval = 0 // no rate limit between fuzz inputs
	n.mu.Lock()
	n.putLocked(key4(1), entry{owner: session.Owner{Host: 1, Epoch: 1}, inc: n.inc})
	n.mu.Unlock()
	f.Fuzz(func(t *testing.T, b []byte) {
		sent, _, err := n.answer(streamConn{bytes.NewReader(b)})
		if err == nil && sent < 2*Overhead {
			t.Fatalf("answered with %d bytes", sent)
		}
	})
}
