package gossip

import (
	"bytes"
	"context"
	"github.com/homing-dev/homing/gossip/wire"
	"net"
	"testing"
	"time"

	"github.com/homing-dev/homing/session"
)

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
	stream = append(stream, seal(nil, wire.Header{Type: wire.TypeRepairChallenge, Sender: 2, Incarnation: 7}, make([]byte, wire.NonceLen))...)
	resp := wire.AppendRepairResponse(nil, &wire.RepairResponse{})
	resp = wire.AppendRecord(resp, wire.Record{Op: wire.OpAdd, Key: key4(1), Owner: session.Owner{Host: 2, Epoch: 3}})
	stream = append(stream, seal(nil, wire.Header{Type: wire.TypeRepairResponse, Sender: 2, Incarnation: 7, Seq: 5}, resp)...)
	resp = wire.AppendRepairResponse(nil, &wire.RepairResponse{Index: 1, Last: true})
	resp = wire.AppendRecord(resp, wire.Record{Op: wire.OpAdd, Key: key6(1), Owner: session.Owner{Host: 2, Epoch: 4}})
	f.Add(append(stream, seal(nil, wire.Header{Type: wire.TypeRepairResponse, Sender: 2, Incarnation: 7, Seq: 5}, resp)...))
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
				if r.Owner.Host != 2 || r.Op != wire.OpAdd {
					t.Fatalf("record %+v", r)
				}
			}
			if err := n.reconcile(job, snap); err != nil {
				t.Fatal(err)
			}
		}
		n.mu.Lock()
		defer n.mu.Unlock()
		if e, ok := n.owners.get(key4(3)); !ok || e.owner.Host != 5 {
			t.Fatal("another owner's entry changed")
		}
		for h, d := range n.digests {
			if w := digestOfEntries(n.owners, h); *d != w {
				t.Fatalf("digest of %d: %+v, entries say %+v", h, *d, w)
			}
		}
	})
}

func digestOfEntries(m *ownerMap, host uint16) wire.Digest {
	var d wire.Digest
	for k, e := range m.all() {
		if e.owner.Host == host {
			d.Add(k, e.owner.Epoch)
		}
	}
	return d
}

// FuzzRepairServer feeds a stream to the server side of a repair, as a request.
func FuzzRepairServer(f *testing.F) {
	var req wire.RepairRequest
	req.Target = 1
	f.Add([]byte(seal(nil, wire.Header{Type: wire.TypeRepairRequest, Sender: 2, Incarnation: 1, Seq: 1}, wire.AppendRepairRequest(nil, &req))))
	f.Add([]byte(seal(nil, wire.Header{Type: wire.TypeRepairRequest, Sender: 1}, wire.AppendRepairRequest(nil, &req))))
	n := fuzzNode(f)
	n.cfg.RepairInterval = 0 // no rate limit between fuzz inputs
	n.mu.Lock()
	n.putLocked(key4(1), entry{owner: session.Owner{Host: 1, Epoch: 1}, inc: n.inc})
	n.mu.Unlock()
	f.Fuzz(func(t *testing.T, b []byte) {
		sent, _, err := n.answer(streamConn{bytes.NewReader(b)}, func() {})
		if err == nil && sent < 2*wire.Overhead {
			t.Fatalf("answered with %d bytes", sent)
		}
	})
}
