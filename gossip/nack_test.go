package gossip_test

import (
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/homing-dev/homing/gossip"
	"github.com/homing-dev/homing/gossip/gossiptest"
	"github.com/homing-dev/homing/gossip/wire"
	"github.com/homing-dev/homing/session"
)

// TestNackLossyChurn: 30 % of the datagrams lost on every path while four hosts open
// and close sessions; every datagram seen missing is recovered by a NACK (the rings
// cover every gap), no full repair runs after the start-up ones, and every table
// equals the truth soon after the churn.
func TestNackLossyChurn(t *testing.T) {
	const hosts, ops = 4, 3000
	hub, nt := gossiptest.NewHub(), gossiptest.NewNet()
	var lossOn atomic.Bool
	var lossMu sync.Mutex
	rng := rand.New(rand.NewPCG(3, 4))
	hub.SetDrop(func(_, _ netip.AddrPort, _ []byte) bool {
		if !lossOn.Load() {
			return false
		}
		lossMu.Lock()
		defer lossMu.Unlock()
		return rng.IntN(100) < 30
	})
	var ms []*member
	for id := uint16(1); id <= hosts; id++ {
		c := repairConfig(t, nt, id)
		// Neither 30 % loss nor a loaded machine's stalls (-race, 2 cores shared; 2 s
		// stalls seen at a load average of 18) may take peers down: a peer down drops
		// its missing datagrams for a full repair.
		c.Linger, c.DownAfter, c.Grace = -1, 1000, time.Minute
		ms = append(ms, start(t, hub, c))
	}
	for _, m := range ms {
		gossiptest.WaitFor(t, wait, "peers up and first repairs", func() bool {
			s := m.node.Stats()
			return s.PeersUp == hosts-1 && s.RepairsCompleted >= hosts-1
		})
	}
	time.Sleep(200 * time.Millisecond)
	startRepairs := make([]uint64, hosts)
	for i, m := range ms {
		startRepairs[i] = m.node.Stats().RepairsStarted
	}
	lossOn.Store(true)
	churn := lossyChurn(t, ms, ops, 9)
	took := converged(t, ms, -1, 10*time.Second)
	// Every gap seen is recovered (heartbeats keep revealing the last losses).
	for _, m := range ms {
		deadline := time.Now().Add(wait)
		for s := m.node.Stats(); s.NackRecovered+s.NackLate != s.SeqGaps; s = m.node.Stats() {
			if time.Now().After(deadline) {
				t.Fatalf("node %d: %d gaps, %d recovered, %d late: %+v", m.node.HostID(), s.SeqGaps, s.NackRecovered, s.NackLate, s)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	delivered, dropped, _ := hub.Counts()
	var tot gossip.Stats
	for i, m := range ms {
		s := m.node.Stats()
		if s.RepairsStarted != startRepairs[i] || s.NackFallbacks != 0 || s.NackUnavailable != 0 || s.NackFailures != 0 ||
			s.NackRejects != 0 || s.RepairServeRejects != 0 || s.PeersUp != hosts-1 {
			t.Errorf("node %d: %d full repairs under loss, %d NACK fallbacks (%d unavailable), %d failures, %d rejects; %+v",
				m.node.HostID(), s.RepairsStarted-startRepairs[i], s.NackFallbacks, s.NackUnavailable, s.NackFailures, s.NackRejects, s)
		}
		tot.SeqGaps += s.SeqGaps
		tot.NacksSent += s.NacksSent
		tot.NackSeqsRequested += s.NackSeqsRequested
		tot.NackRecovered += s.NackRecovered
		tot.NackLate += s.NackLate
		tot.NackDuplicates += s.NackDuplicates
		tot.NackSuperseded += s.NackSuperseded
		tot.NackBytes += s.NackBytes
		tot.NacksServed += s.NacksServed
		tot.NackResent += s.NackResent
		tot.DigestMismatches += s.DigestMismatches
	}
	t.Logf("%d hosts, %d sessions at the end, %d ops in %v; %d datagrams delivered, %d dropped (%.0f%%), %d seen missing",
		hosts, len(truth(ms)), hosts*ops, churn.Round(time.Millisecond), delivered, dropped,
		100*float64(dropped)/float64(delivered+dropped), tot.SeqGaps)
	t.Logf("equal to the truth %v after the churn; %d NACKs (%d sequence numbers asked, %d served, %d datagrams resent, %d bytes), "+
		"%d recovered by NACK, %d late, %d duplicates, %d records superseded; 0 full repairs, %d digest mismatches",
		took.Round(time.Millisecond), tot.NacksSent, tot.NackSeqsRequested, tot.NacksServed, tot.NackResent, tot.NackBytes,
		tot.NackRecovered, tot.NackLate, tot.NackDuplicates, tot.NackSuperseded, tot.DigestMismatches)
	if tot.SeqGaps == 0 || tot.NackRecovered == 0 {
		t.Errorf("no gap (%d) or nothing recovered (%d) under 30%% loss", tot.SeqGaps, tot.NackRecovered)
	}
}

// TestNackRingEvicted: a gap the sender's ring no longer holds falls back to a full
// repair, which mends it.
func TestNackRingEvicted(t *testing.T) {
	hub, nt := gossiptest.NewHub(), gossiptest.NewNet()
	var blackout atomic.Bool
	a := repairConfig(t, nt, 1)
	a.NackRing = 4 // the sender keeps 4 datagrams
	a.Linger = -1
	ma := start(t, hub, a)
	b := repairConfig(t, nt, 2)
	b.DownAfter = 50
	mb := start(t, hub, b)
	hub.SetDrop(func(from, _ netip.AddrPort, _ []byte) bool { return blackout.Load() && from.Addr() == a.Addr })
	gossiptest.WaitFor(t, wait, "first repairs", func() bool {
		return mb.node.Stats().RepairsCompleted >= 1 && ma.node.Stats().RepairsCompleted >= 1
	})
	before := mb.node.Stats()
	blackout.Store(true)
	const n = 200
	for j := range n {
		if err := ma.node.LocalAdd(key(j)); err != nil {
			t.Fatal(err)
		}
		if j%10 == 0 {
			time.Sleep(2 * time.Millisecond) // several datagrams
		}
	}
	gossiptest.WaitFor(t, wait, "queue drained", func() bool { return ma.node.Stats().QueueLen == 0 })
	time.Sleep(20 * time.Millisecond)
	blackout.Store(false)
	gossiptest.WaitFor(t, wait, "all sessions", func() bool { return mb.table.Len() == n })
	gossiptest.WaitFor(t, wait, "fallback counted", func() bool { return mb.node.Stats().RepairsCompleted > before.RepairsCompleted })
	s := mb.node.Stats()
	if s.NackFallbacks == 0 || s.NackUnavailable == 0 || s.RepairsStarted == before.RepairsStarted {
		t.Errorf("fallbacks %d, unavailable %d, full repairs %d", s.NackFallbacks, s.NackUnavailable, s.RepairsStarted-before.RepairsStarted)
	}
	if sa := ma.node.Stats(); sa.NackMissed == 0 {
		t.Errorf("the sender missed none: %+v", sa)
	}
	t.Logf("gap of %d datagrams, ring of 4: %d NACKs, %d recovered, %d unavailable; %d fallback, %d full repairs",
		s.SeqGaps-before.SeqGaps, s.NacksSent-before.NacksSent, s.NackRecovered, s.NackUnavailable, s.NackFallbacks,
		s.RepairsStarted-before.RepairsStarted)
}

// nackFake answers repair connections as host 2: full repairs with snapshot(), NACKs
// with the frames nack(i, request) returns for the i-th NACK.
type nackFake struct {
	mu       sync.Mutex
	nacks    int
	fulls    int
	snapshot func() (uint64, []wire.Record)
	nack     func(i int, req wire.NackRequest) [][]byte
}

func serveNackFake(t *testing.T, nt *gossiptest.Net, p *peer, fk *nackFake) {
	l := nt.Listen(netip.AddrPortFrom(p.addr.Addr(), gossip.DefaultGossipPort))
	t.Cleanup(func() { l.Close() })
	good := wire.NewSealer(ring(t, testKey))
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(2 * time.Second))
				nonce := [wire.NonceLen]byte{7}
				f := append(make([]byte, wire.HeaderLen), nonce[:]...)
				f = append(f, make([]byte, wire.TagLen)...)
				good.Seal(f, wire.Header{Type: wire.TypeRepairChallenge, Sender: 2, Incarnation: p.inc})
				if _, err := c.Write(f); err != nil {
					return
				}
				d, _, err := wire.ReadFrame(c, nil, 0)
				if err != nil {
					return
				}
				var frames [][]byte
				fk.mu.Lock()
				switch d.Type() {
				case wire.TypeRepairRequest:
					req, err := wire.ParseRepairRequest(d.Body())
					if err != nil {
						t.Errorf("fake: %v", err)
					}
					seq, recs := fk.snapshot()
					frames = append(frames, responseFrame(good, wire.Header{Sender: 2, Incarnation: p.inc, Seq: seq},
						wire.RepairResponse{Nonce: req.ClientNonce, Last: true}, recs...))
					fk.fulls++
				case wire.TypeNackRequest:
					req, err := wire.ParseNackRequest(d.Body())
					if err != nil || req.ServerNonce != nonce || req.Incarnation != p.inc {
						t.Errorf("fake: nack request %+v, %v", req, err)
					}
					frames = fk.nack(fk.nacks, req)
					fk.nacks++
				}
				fk.mu.Unlock()
				for _, f := range frames {
					if _, err := c.Write(f); err != nil {
						return
					}
				}
			}()
		}
	}()
}

// nackFrame builds a sealed NACK response frame of host 2 carrying dgs.
func nackFrame(s *wire.Sealer, inc uint64, r wire.NackResponse, dgs ...[]byte) []byte {
	f := wire.AppendNackResponse(make([]byte, wire.HeaderLen), &r)
	for _, d := range dgs {
		f = wire.AppendNackDatagram(f, d)
	}
	f = append(f, make([]byte, wire.TagLen)...)
	s.Seal(f, wire.Header{Type: wire.TypeNackResponse, Sender: 2, Incarnation: inc})
	return f
}

// TestNackAnswers drives a node's NACKs against a fake peer: forged, replayed and
// mismatched answers are rejected and fall back to a full repair; a genuine answer
// recovers the datagram without one; a recovered datagram does not undo a later one;
// a recovered datagram multicast again is a replay.
func TestNackAnswers(t *testing.T) {
	hub, nt := gossiptest.NewHub(), gossiptest.NewNet()
	c := repairConfig(t, nt, 1)
	c.NoDigest, c.DownAfter = true, 1000 // one heartbeat keeps the fake peer up
	m := start(t, hub, c)
	p := newPeer(hub, 2, testKey)
	good, bad := wire.NewSealer(ring(t, testKey)), wire.NewSealer(ring(t, badKey))
	forged := key(999)

	var mu sync.Mutex
	truthRecs := map[session.Key]wire.Record{} // what host 2 owns
	announce := func(send bool, rs ...wire.Record) wire.Datagram {
		mu.Lock()
		for _, r := range rs {
			if r.Op == wire.OpAdd {
				truthRecs[r.Key] = r
			} else {
				delete(truthRecs, r.Key)
			}
		}
		var body []byte
		for _, r := range rs {
			body = wire.AppendRecord(body, r)
		}
		d := p.datagram(wire.TypeRecords, body)
		mu.Unlock()
		if send {
			p.send(d)
		}
		return d
	}
	type phase struct {
		name   string
		answer func(req wire.NackRequest, lost wire.Datagram) [][]byte
	}
	var lastGenuine [][]byte
	genuine := func(req wire.NackRequest, lost wire.Datagram) [][]byte {
		lastGenuine = [][]byte{nackFrame(good, p.inc, wire.NackResponse{Nonce: req.ClientNonce, Last: true}, lost)}
		return lastGenuine
	}
	forgedDatagram := func(s *wire.Sealer, sender uint16, seq uint64) []byte {
		body := wire.AppendRecord(nil, add(forged, sender, 9))
		d := make(wire.Datagram, wire.Overhead+len(body))
		copy(d[wire.HeaderLen:], body)
		s.Seal(d, wire.Header{Type: wire.TypeRecords, Sender: sender, Incarnation: p.inc, Seq: seq})
		return d
	}
	phases := []phase{
		{"genuine", genuine},
		{"replayed answer", func(wire.NackRequest, wire.Datagram) [][]byte { return lastGenuine }},
		{"frame with a wrong key", func(req wire.NackRequest, lost wire.Datagram) [][]byte {
			return [][]byte{nackFrame(bad, p.inc, wire.NackResponse{Nonce: req.ClientNonce, Last: true}, lost)}
		}},
		{"datagram with a wrong key", func(req wire.NackRequest, lost wire.Datagram) [][]byte {
			return [][]byte{nackFrame(good, p.inc, wire.NackResponse{Nonce: req.ClientNonce, Last: true},
				forgedDatagram(bad, 2, lost.Seq()))}
		}},
		{"datagram of another sender", func(req wire.NackRequest, lost wire.Datagram) [][]byte {
			return [][]byte{nackFrame(good, p.inc, wire.NackResponse{Nonce: req.ClientNonce, Last: true},
				forgedDatagram(good, 3, lost.Seq()))}
		}},
		{"datagram not asked for", func(req wire.NackRequest, lost wire.Datagram) [][]byte {
			return [][]byte{nackFrame(good, p.inc, wire.NackResponse{Nonce: req.ClientNonce, Last: true},
				forgedDatagram(good, 2, lost.Seq()+100))}
		}},
		{"old incarnation", func(req wire.NackRequest, lost wire.Datagram) [][]byte {
			return [][]byte{nackFrame(good, p.inc-1, wire.NackResponse{Nonce: req.ClientNonce, Last: true}, lost)}
		}},
		{"nothing (evicted)", func(req wire.NackRequest, _ wire.Datagram) [][]byte {
			return [][]byte{nackFrame(good, p.inc, wire.NackResponse{Nonce: req.ClientNonce, Last: true})}
		}},
		{"genuine again", genuine},
	}
	var cur atomic.Pointer[phase]
	var lost atomic.Pointer[wire.Datagram]
	fk := &nackFake{
		snapshot: func() (uint64, []wire.Record) {
			mu.Lock()
			defer mu.Unlock()
			var rs []wire.Record
			for _, r := range truthRecs {
				rs = append(rs, r)
			}
			return p.seq, rs
		},
		nack: func(_ int, req wire.NackRequest) [][]byte {
			l := *lost.Load()
			if len(req.Ranges) != 1 || req.Ranges[0] != (wire.SeqRange{First: l.Seq(), Count: 1}) {
				t.Errorf("%s: asked for %+v, lost %d", cur.Load().name, req.Ranges, l.Seq())
			}
			return cur.Load().answer(req, l)
		},
	}
	serveNackFake(t, nt, p, fk)
	p.heartbeat()
	gossiptest.WaitFor(t, wait, "first repair", func() bool { return m.node.Stats().RepairsCompleted == 1 })

	for i, ph := range phases {
		cur.Store(&ph)
		before := m.node.Stats()
		k := key(i)
		d := announce(false, add(k, 2, 5)) // lost
		lost.Store(&d)
		announce(true, add(key(100+i), 2, 5)) // reveals the gap
		if ph.name == "genuine" || ph.name == "genuine again" {
			gossiptest.WaitFor(t, wait, ph.name, owned(m.table, k, 2))
			gossiptest.WaitFor(t, wait, ph.name+" counted", func() bool { return m.node.Stats().NacksSent == before.NacksSent+1 })
			s := m.node.Stats()
			if s.NackRecovered != before.NackRecovered+1 || s.RepairsStarted != before.RepairsStarted || s.NackFallbacks != before.NackFallbacks {
				t.Errorf("%s: recovered %d, full repairs %d, fallbacks %d", ph.name, s.NackRecovered-before.NackRecovered,
					s.RepairsStarted-before.RepairsStarted, s.NackFallbacks-before.NackFallbacks)
			}
			continue
		}
		// Rejected: the session comes by the fallback full repair.
		gossiptest.WaitFor(t, wait, ph.name+": full repair", func() bool {
			return m.node.Stats().RepairsCompleted == before.RepairsCompleted+1
		})
		gossiptest.WaitFor(t, wait, ph.name+": session", owned(m.table, k, 2))
		s := m.node.Stats()
		if s.NackRecovered != before.NackRecovered || s.NackFallbacks != before.NackFallbacks+1 || s.NackFailures+s.NackRejects+s.NackUnavailable == before.NackFailures+before.NackRejects+before.NackUnavailable {
			t.Errorf("%s: recovered %d, fallbacks %d, failures %d, rejects %d, unavailable %d", ph.name,
				s.NackRecovered-before.NackRecovered, s.NackFallbacks-before.NackFallbacks, s.NackFailures-before.NackFailures,
				s.NackRejects-before.NackRejects, s.NackUnavailable-before.NackUnavailable)
		}
		if _, ok := m.table.Get(forged); ok {
			t.Fatalf("%s: a forged record reached the table", ph.name)
		}
	}

	// Order: the add of k is lost, its delete arrives; the recovered add must not bring
	// k back. Then the recovered datagram, multicast again, is a replay. The answer waits
	// until the delete is applied (to an absent key: a stale record): the gap shows when
	// the delete is admitted, and a fast answer could otherwise be applied before it.
	before := m.node.Stats()
	afterDelete := phase{"genuine, after the delete", func(req wire.NackRequest, lost wire.Datagram) [][]byte {
		for deadline := time.Now().Add(wait); m.node.Stats().StaleRecords == before.StaleRecords; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Errorf("the delete of %v not applied after %v", key(500), wait)
				break
			}
		}
		return genuine(req, lost)
	}}
	cur.Store(&afterDelete)
	k := key(500)
	d := announce(false, add(k, 2, 5))
	lost.Store(&d)
	announce(true, del(k, 2))
	gossiptest.WaitFor(t, wait, "recovered", func() bool { return m.node.Stats().NackRecovered == before.NackRecovered+1 })
	p.send(d)
	gossiptest.WaitFor(t, wait, "replay", func() bool { return m.node.Stats().Replays == before.Replays+1 })
	if _, ok := m.table.Get(k); ok {
		t.Error("a recovered add undid a later delete")
	}
	if s := m.node.Stats(); s.NackSuperseded != before.NackSuperseded+1 {
		t.Errorf("superseded %d", s.NackSuperseded-before.NackSuperseded)
	}
	mu.Lock()
	want := len(truthRecs)
	mu.Unlock()
	if got := m.table.Len(); got != want {
		t.Errorf("table has %d sessions, host 2 owns %d", got, want)
	}
}
