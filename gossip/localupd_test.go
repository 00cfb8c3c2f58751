package gossip

import (
	"github.com/homing-dev/homing/gossip/wire"
	"testing"

	"github.com/homing-dev/homing/session"
)

// mapTable is a Table that keeps what is written to it.
type mapTable map[session.Key]session.Owner

func (t mapTable) Apply(ups []session.Update) error {
	for _, u := range ups {
		if u.Delete {
			delete(t, u.Key)
		} else {
			t[u.Key] = u.Owner
		}
	}
	return nil
}

// TestLocalUpdateAfterNewerClaim: a local claim is written to the table by the sender,
// after the receiver may have applied a newer claim of another host to map and table;
// the table must end as the map is (the newer claim), not with the older local one.
// (Seen as a rare failure of TestNackLossyChurn: a key claimed by two hosts at once
// stayed with the older local claim in one host's table.)
func TestLocalUpdateAfterNewerClaim(t *testing.T) {
	tbl := mapTable{}
	hb := testHeartbeat()
	n, err := New(Config{HostID: 1, Addr: hb.Addr, MAC: hb.MAC, Insecure: true}, nopConn{}, tbl, nopTemplates{})
	if err != nil {
		t.Fatal(err)
	}
	k := key4(1)
	if err := n.LocalAdd(k); err != nil { // queued for the sender, not written yet
		t.Fatal(err)
	}
	local := n.ownerOf(k)
	newer := session.Owner{Host: 2, Epoch: local.Epoch + 1}
	n.applyRecords(wire.Header{Type: wire.TypeRecords, Sender: 2, Incarnation: 7}, []wire.Record{{Op: wire.OpAdd, Key: k, Owner: newer}}, false)
	n.mu.Lock()
	n.applyLocalLocked(nil) // the sender's turn
	n.mu.Unlock()
	if got, ok := tbl[k]; !ok || got != newer || n.ownerOf(k) != newer {
		t.Fatalf("table %+v (%v), map %+v; want the newer claim %+v", got, ok, n.ownerOf(k), newer)
	}
	// A local delete queued after: the table follows the map (the key is gone only if
	// this host still owned it; here host 2 does, so it stays).
	if err := n.LocalDelete(k); err != nil {
		t.Fatal(err)
	}
	n.mu.Lock()
	n.applyLocalLocked(nil)
	n.mu.Unlock()
	if got := tbl[k]; got != newer {
		t.Fatalf("after a local delete of a key host 2 owns: table %+v", got)
	}
}
