package gossip

import (
	"bytes"
	"errors"
	"github.com/homing-dev/homing/gossip/wire"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/homing-dev/homing/session"
)

var testTime = time.Unix(1_700_000_000, 0)

func FuzzDiscovery(f *testing.F) {
	f.Add([]byte("# hosts\n1 198.18.0.11 02:00:00:00:00:11\n2 2001:db8::12\n"))
	f.Add([]byte("65535 198.18.0.1\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		hosts, err := ReadDiscovery(bytes.NewReader(b))
		if err != nil {
			if !errors.Is(err, ErrDiscovery) {
				t.Fatalf("err %v", err)
			}
			return
		}
		seen := map[uint16]bool{}
		for _, h := range hosts {
			if h.ID == 0 || seen[h.ID] || !h.Addr.IsValid() || (h.MAC != nil && len(h.MAC) != 6) {
				t.Fatalf("bad host %+v", h)
			}
			seen[h.ID] = true
		}
	})
}

type nopTable struct{}

func (nopTable) Apply([]session.Update) error { return nil }

type nopTemplates struct{}

func (nopTemplates) Publish(Peer) error    { return nil }
func (nopTemplates) Withdraw(uint16) error { return nil }

type nopConn struct{}

func (nopConn) Send([]byte) error                        { return nil }
func (nopConn) Recv([]byte) (int, netip.AddrPort, error) { return 0, netip.AddrPort{}, net.ErrClosed }
func (nopConn) Close() error                             { return nil }

// fuzzNow is the fuzzed node's time, and the seeds' timestamp: within the first-contact
// window, so that mutations reach the whole path (and, changing the timestamp's
// high bytes, the window's refusal).
var fuzzNow = time.Unix(1_800_000_000, 0)

type fixedClock struct{ realClock }

func (fixedClock) Now() time.Time { return fuzzNow }

// FuzzHandle feeds datagrams through a node's whole receive path (insecure, so that
// inputs get past the tag): checks, identity, incarnation skew, first-contact window,
// sequence tracking, membership, ownership.
func FuzzHandle(f *testing.F) {
	ts := fuzzNow.UnixNano()
	hb := testHeartbeat()
	f.Add([]byte(seal(nil, wire.Header{Type: wire.TypeHeartbeat, Sender: 3, Incarnation: 42, Seq: 1, Timestamp: ts}, wire.AppendHeartbeat(nil, &hb))))
	f.Add([]byte(seal(nil, wire.Header{Type: wire.TypeRecords, Sender: 2, Incarnation: 7, Seq: 9, Timestamp: ts},
		wire.AppendRecord(wire.AppendRecord(nil, wire.Record{Op: wire.OpAdd, Key: key4(1), Owner: session.Owner{Host: 2, Epoch: 3}}),
			wire.Record{Op: wire.OpDelete, Key: key4(1), Owner: session.Owner{Host: 2}}))))
	hb.Digest, hb.HasDigest = wire.Digest{Count: 1, Sum: 2}, true
	f.Add([]byte(seal(nil, wire.Header{Type: wire.TypeHeartbeat, Sender: 3, Incarnation: 42, Seq: 2, Timestamp: ts}, wire.AppendHeartbeat(nil, &hb))))
	hb.MAC = net.HardwareAddr{2, 0, 0, 0, 6, 6} // another MAC for host 3: an id conflict
	f.Add([]byte(seal(nil, wire.Header{Type: wire.TypeHeartbeat, Sender: 3, Incarnation: 43, Seq: 1, Timestamp: ts}, wire.AppendHeartbeat(nil, &hb))))
	hb.Incarnation = 1 << 63 // beyond the skew
	f.Add([]byte(seal(nil, wire.Header{Type: wire.TypeHeartbeat, Sender: 3, Incarnation: 1 << 63, Seq: 1, Timestamp: ts}, wire.AppendHeartbeat(nil, &hb))))
	n, err := New(Config{HostID: 1, Addr: hb.Addr, MAC: testHeartbeat().MAC, Insecure: true, Repair: true, Clock: fixedClock{}}, nopConn{}, nopTable{}, nopTemplates{})
	if err != nil {
		f.Fatal(err)
	}
	op := wire.NewOpener(nil, 0)
	f.Fuzz(func(t *testing.T, b []byte) {
		n.handle(op, wire.Datagram(b), nil)
		n.checkPeers(fuzzNow.Add(time.Hour))
	})
}
