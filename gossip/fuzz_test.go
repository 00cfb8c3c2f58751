package gossip

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/homing-dev/homing/session"
)

var testTime = time.Unix(1_700_000_000, 0)

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

type nopTable struct{}

func (nopTable) Apply([]session.Update) error { return nil }

type nopTemplates struct{}

func (nopTemplates) Publish(Peer) error    { return nil }
func (nopTemplates) Withdraw(uint16) error { return nil }

type nopConn struct{}

func (nopConn) Send([]byte) error                        { return nil }
func (nopConn) Recv([]byte) (int, netip.AddrPort, error) { return 0, netip.AddrPort{}, net.ErrClosed }
func (nopConn) Close() error                             { return nil }

// FuzzHandle feeds datagrams through a node's whole receive path (insecure, so that
// inputs get past the tag): checks, sequence tracking, membership, ownership.
func FuzzHandle(f *testing.F) {
	hb := testHeartbeat()
	f.Add([]byte(seal(nil, Header{Type: TypeHeartbeat, Sender: 3, Incarnation: 42, Seq: 1}, AppendHeartbeat(nil, &hb))))
	f.Add([]byte(seal(nil, Header{Type: TypeRecords, Sender: 2, Incarnation: 7, Seq: 9},
		AppendRecord(AppendRecord(nil, Record{Op: OpAdd, Key: key4(1), Owner: session.Owner{Host: 2, Epoch: 3}}),
			Record{Op: OpDelete, Key: key4(1), Owner: session.Owner{Host: 2}}))))
	hb.Digest, hb.HasDigest = Digest{Count: 1, Sum: 2}, true
	f.Add([]byte(seal(nil, Header{Type: TypeHeartbeat, Sender: 3, Incarnation: 42, Seq: 2}, AppendHeartbeat(nil, &hb))))
	n, err := New(Config{HostID: 1, Addr: hb.Addr, MAC: hb.MAC, Insecure: true, Repair: true}, nopConn{}, nopTable{}, nopTemplates{})
	if err != nil {
		f.Fatal(err)
	}
	op := NewOpener(nil, 0)
	f.Fuzz(func(t *testing.T, b []byte) {
		n.handle(op, Datagram(b), nil)
		n.checkPeers(time.Now().Add(time.Hour))
	})
}
