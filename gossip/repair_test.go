package gossip_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/homing-dev/homing/gossip"
	"github.com/homing-dev/homing/gossip/gossiptest"
	"github.com/homing-dev/homing/gossip/wire"
	"github.com/homing-dev/homing/session"
)

// repairConfig is fastConfig with repair on, over nt.
func repairConfig(t testing.TB, nt *gossiptest.Net, id uint16) gossip.Config {
	c := fastConfig(t, id)
	c.Repair, c.RepairInterval, c.RepairTimeout = true, 100*time.Millisecond, 2*time.Second
	c.RepairListener = nt.Listen(netip.AddrPortFrom(c.Addr, gossip.DefaultGossipPort))
	c.RepairDialer = nt.From(c.Addr)
	// The listener's 200 ms to authenticate is for a real host; under -race on shared
	// cores a goroutine may wait longer than that to run (listener_test.go tests it).
	c.RepairAuthTimeout = c.RepairTimeout
	return c
}

// own returns the sessions m owns, as its own table has them.
func own(m *member) map[session.Key]session.Owner {
	o := m.table.Snapshot()
	maps.DeleteFunc(o, func(_ session.Key, v session.Owner) bool { return v.Host != m.node.HostID() })
	return o
}

// truth is the union of the members' own sessions.
func truth(ms []*member) map[session.Key]session.Owner {
	all := map[session.Key]session.Owner{}
	for _, m := range ms {
		maps.Copy(all, own(m))
	}
	return all
}

// diff describes how got differs from want, "" if equal.
func diff(got, want map[session.Key]session.Owner) string {
	missing, extra, wrong := 0, 0, 0
	for k, o := range want {
		g, ok := got[k]
		switch {
		case !ok:
			missing++
		case g != o:
			wrong++
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			extra++
		}
	}
	if missing+extra+wrong == 0 {
		return ""
	}
	return fmt.Sprintf("%d entries, want %d: %d missing, %d extra, %d with another owner", len(got), len(want), missing, extra, wrong)
}

// converged waits until every member's table equals the truth, which has size
// sessions (-1: any size), and stays so for 100ms; it returns how long it took to get
// there (the start of the stable run).
func converged(t testing.TB, ms []*member, size int, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(timeout)
	var since time.Time
	for {
		want := truth(ms)
		bad := ""
		if size >= 0 && len(want) != size {
			bad = fmt.Sprintf("%d sessions owned, want %d", len(want), size)
		}
		for _, m := range ms {
			if bad != "" {
				break
			}
			if d := diff(m.table.Snapshot(), want); d != "" {
				bad = fmt.Sprintf("node %d: %s", m.node.HostID(), d)
			}
		}
		switch {
		case bad != "":
			since = time.Time{}
		case since.IsZero():
			since = time.Now()
		case time.Since(since) >= 100*time.Millisecond:
			return since.Sub(start)
		}
		if time.Now().After(deadline) {
			t.Fatalf("not converged after %v: %s", timeout, bad)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestRepairLateJoiner(t *testing.T) {
	const perHost = 1000
	hub, nt := gossiptest.NewHub(), gossiptest.NewNet()
	var ms []*member
	for id := uint16(1); id <= 3; id++ {
		ms = append(ms, start(t, hub, repairConfig(t, nt, id)))
	}
	for i, m := range ms[:2] {
		for j := range perHost {
			k := key(i<<16 | j)
			if j%10 == 0 {
				k = key6(i<<12 | j)
			}
			if err := m.node.LocalAdd(k); err != nil {
				t.Fatal(err)
			}
		}
	}
	converged(t, ms, 2*perHost, wait)

	late := start(t, hub, repairConfig(t, nt, 4))
	ms = append(ms, late)
	took := converged(t, ms, 2*perHost, wait)
	if took > 2*time.Second {
		t.Errorf("late joiner took %v", took)
	}
	s := late.node.Stats()
	if late.table.Len() != 2*perHost || s.RecordsReceived != 0 || s.RepairRecords != 2*perHost || s.RepairsCompleted < 3 || s.RepairsFailed != 0 {
		t.Errorf("late joiner: %d entries, stats %+v", late.table.Len(), s)
	}
	t.Logf("late joiner learnt %d sessions by repair %v after its start (%d repairs, %d bytes)", late.table.Len(), took.Round(time.Millisecond), s.RepairsCompleted, s.RepairBytes)
	for _, m := range ms[:2] {
		if s := m.node.Stats(); s.RepairsServed == 0 || s.RepairServeRejects != 0 {
			t.Errorf("node %d served %d repairs, rejected %d", m.node.HostID(), s.RepairsServed, s.RepairServeRejects)
		}
	}
}

// lossyChurn has every member open sessions and close a third of them, in random order
// (seeded by seed and the member), a few hundred per second; some keys are claimed by
// two hosts (a later claim wins). It returns how long the churn took, once every send
// queue has drained.
func lossyChurn(t *testing.T, ms []*member, ops int, seed uint64) time.Duration {
	t.Helper()
	t0 := time.Now()
	var wg sync.WaitGroup
	for i, m := range ms {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(i), seed))
			var open []session.Key
			for j := range ops {
				if len(open) > 0 && r.IntN(3) == 0 {
					x := r.IntN(len(open))
					if err := m.node.LocalDelete(open[x]); err != nil {
						t.Error(err)
					}
					open[x] = open[len(open)-1]
					open = open[:len(open)-1]
				} else {
					k := key(i<<16 | j)
					if r.IntN(50) == 0 {
						k = key(1<<20 | j) // shared between hosts
					}
					if err := m.node.LocalAdd(k); err != nil {
						t.Error(err)
					}
					open = append(open, k)
				}
				if j%20 == 0 {
					time.Sleep(time.Millisecond)
				}
			}
		})
	}
	wg.Wait()
	churn := time.Since(t0)
	for _, m := range ms {
		gossiptest.WaitFor(t, wait, "queues drained", func() bool { return m.node.Stats().QueueLen == 0 })
	}
	return churn
}

func TestRepairLossyChurn(t *testing.T) {
	const hosts, ops = 4, 3000
	hub, nt := gossiptest.NewHub(), gossiptest.NewNet()
	var lossMu sync.Mutex
	rng := rand.New(rand.NewPCG(1, 2))
	hub.SetDrop(func(_, _ netip.AddrPort, _ []byte) bool {
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
		gossiptest.WaitFor(t, wait, "peers up", func() bool { return m.node.Stats().PeersUp == hosts-1 })
	}
	churn := lossyChurn(t, ms, ops, 7)
	took := converged(t, ms, -1, 10*time.Second)
	delivered, dropped, _ := hub.Counts()
	var started, completed, failed, records, removed, bytes, gaps, mismatches uint64
	for _, m := range ms {
		s := m.node.Stats()
		started, completed, failed = started+s.RepairsStarted, completed+s.RepairsCompleted, failed+s.RepairsFailed
		records, removed, bytes = records+s.RepairRecords, removed+s.RepairRemoved, bytes+s.RepairBytes
		gaps, mismatches = gaps+s.SeqGaps, mismatches+s.DigestMismatches
		if s.PeersUp != hosts-1 || s.RepairAuthFailures+s.RepairMismatches+s.RepairMalformed+s.RepairServeRejects != 0 {
			t.Errorf("node %d: %+v", m.node.HostID(), s)
		}
	}
	t.Logf("%d hosts, %d sessions at the end, %d ops in %v; %d datagrams delivered, %d dropped (%.0f%%), %d seen missing",
		hosts, len(truth(ms)), hosts*ops, churn.Round(time.Millisecond), delivered, dropped, 100*float64(dropped)/float64(delivered+dropped), gaps)
	t.Logf("equal to the truth %v after the churn; repairs %d started, %d completed, %d failed; %d records, %d removed, %d bytes; %d digest mismatches",
		took.Round(time.Millisecond), started, completed, failed, records, removed, bytes, mismatches)
	if completed == 0 || gaps == 0 {
		t.Errorf("no repair (%d) or no gap (%d) under 30%% loss", completed, gaps)
	}
}

func TestRepairRestart(t *testing.T) {
	const n, kept = 300, 100
	hub, nt := gossiptest.NewHub(), gossiptest.NewNet()
	var ms []*member
	for id := uint16(1); id <= 3; id++ {
		c := repairConfig(t, nt, id)
		c.Grace = time.Hour // the old incarnation's sessions must go by repair, not by the grace
		ms = append(ms, start(t, hub, c))
	}
	for j := range n {
		if err := ms[2].node.LocalAdd(key(j)); err != nil {
			t.Fatal(err)
		}
	}
	converged(t, ms, n, wait)
	old := ms[2].node.Incarnation()
	ms[2].stop()

	// Host 3 restarts at once and re-learns a subset of its sessions (sock_diag).
	c := repairConfig(t, nt, 3)
	c.Grace = time.Hour
	c.Incarnation = old + 1
	t0 := time.Now()
	again := start(t, hub, c)
	for j := range kept {
		if err := again.node.LocalAdd(key(j)); err != nil {
			t.Fatal(err)
		}
	}
	ms[2] = again
	checked := time.Now()
	took := converged(t, ms, kept, wait)
	for _, m := range ms[:2] {
		tb := m.table.Snapshot()
		for j := range n {
			o, ok := tb[key(j)]
			if ok != (j < kept) || (ok && (o.Host != 3 || o != own(again)[key(j)])) {
				t.Fatalf("node %d: session %d: %+v %v", m.node.HostID(), j, o, ok)
			}
		}
		// At least the old incarnation's sessions that were not re-announced (a snapshot
		// taken while host 3 was still re-adding removes a few that come back after).
		if s := m.node.Stats(); s.RepairRemoved < n-kept || s.GraceDrops != 0 {
			t.Errorf("node %d: %d removed by repair, %d by the grace", m.node.HostID(), s.RepairRemoved, s.GraceDrops)
		}
	}
	if s := again.node.Stats(); s.RepairsCompleted < 2 {
		t.Errorf("restarted node completed %d repairs", s.RepairsCompleted)
	}
	t.Logf("restart: %d sessions before, %d re-announced; peers exact %v after the restart",
		n, kept, (checked.Sub(t0) + took).Round(time.Millisecond))
}

// fakeServer answers repair connections at addr with frames that a test builds.
type fakeServer struct {
	l       *gossiptest.Listener
	mu      sync.Mutex
	answers int
}

// serveFake accepts connections and answers each with answer(challengeNonce, request).
func serveFake(t *testing.T, nt *gossiptest.Net, addr netip.AddrPort, id uint16, inc uint64, answer func(i int, req wire.RepairRequest) [][]byte) *fakeServer {
	fs := &fakeServer{l: nt.Listen(addr)}
	t.Cleanup(func() { fs.l.Close() })
	sealer := wire.NewSealer(ring(t, testKey))
	go func() {
		for {
			c, err := fs.l.Accept()
			if err != nil {
				return
			}
			fs.mu.Lock()
			i := fs.answers
			fs.answers++
			fs.mu.Unlock()
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(2 * time.Second))
				var nonce [wire.NonceLen]byte
				nonce[0] = byte(i)
				f := append(make([]byte, wire.HeaderLen), nonce[:]...)
				f = append(f, make([]byte, wire.TagLen)...)
				sealer.Seal(f, wire.Header{Type: wire.TypeRepairChallenge, Sender: id, Incarnation: inc})
				if _, err := c.Write(f); err != nil {
					return
				}
				d, _, err := wire.ReadFrame(c, nil, 0)
				if err != nil {
					return
				}
				req, err := wire.ParseRepairRequest(d.Body())
				if err != nil || req.ServerNonce != nonce {
					t.Errorf("fake server: request %+v, %v", req, err)
					return
				}
				for _, f := range answer(i, req) {
					if _, err := c.Write(f); err != nil {
						return
					}
				}
			}()
		}
	}()
	return fs
}

// responseFrame builds a sealed response frame.
func responseFrame(s *wire.Sealer, h wire.Header, r wire.RepairResponse, recs ...wire.Record) []byte {
	f := wire.AppendRepairResponse(make([]byte, wire.HeaderLen), &r)
	for _, rec := range recs {
		f = wire.AppendRecord(f, rec)
	}
	f = append(f, make([]byte, wire.TagLen)...)
	h.Type = wire.TypeRepairResponse
	s.Seal(f, h)
	return f
}

func TestRepairForgedAnswers(t *testing.T) {
	hub, nt := gossiptest.NewHub(), gossiptest.NewNet()
	c := repairConfig(t, nt, 1)
	c.DownAfter = 1000 // the fake peer stays up however late its heartbeats come on a loaded machine
	m := start(t, hub, c)
	p := newPeer(hub, 2, testKey)
	good, bad := wire.NewSealer(ring(t, testKey)), wire.NewSealer(ring(t, badKey))
	kept, forged := key(100), key(200)
	hdr := func(seq uint64) wire.Header { return wire.Header{Sender: 2, Incarnation: p.inc, Seq: seq} }
	type forgery struct {
		name  string
		frame func(req wire.RepairRequest) []byte
	}
	// Each forged answer would add forged and, as a full snapshot without kept,
	// remove kept.
	forgeries := []forgery{
		{"wrong key", func(req wire.RepairRequest) []byte {
			return responseFrame(bad, hdr(100), wire.RepairResponse{Nonce: req.ClientNonce, Last: true}, add(forged, 2, 9))
		}},
		{"wrong nonce", func(req wire.RepairRequest) []byte {
			n := req.ClientNonce
			n[3] ^= 1
			return responseFrame(good, hdr(100), wire.RepairResponse{Nonce: n, Last: true}, add(forged, 2, 9))
		}},
		{"sender not the peer", func(req wire.RepairRequest) []byte {
			h := hdr(100)
			h.Sender = 3
			return responseFrame(good, h, wire.RepairResponse{Nonce: req.ClientNonce, Last: true}, add(forged, 3, 9))
		}},
		{"records of another owner", func(req wire.RepairRequest) []byte {
			return responseFrame(good, hdr(100), wire.RepairResponse{Nonce: req.ClientNonce, Last: true}, add(forged, 3, 9))
		}},
		{"old incarnation", func(req wire.RepairRequest) []byte {
			h := hdr(100)
			h.Incarnation--
			return responseFrame(good, h, wire.RepairResponse{Nonce: req.ClientNonce, Last: true}, add(forged, 2, 9))
		}},
		{"frame index skipped", func(req wire.RepairRequest) []byte {
			return responseFrame(good, hdr(100), wire.RepairResponse{Nonce: req.ClientNonce, Index: 1, Last: true}, add(forged, 2, 9))
		}},
		{"a delete", func(req wire.RepairRequest) []byte {
			return responseFrame(good, hdr(100), wire.RepairResponse{Nonce: req.ClientNonce, Last: true}, del(kept, 2))
		}},
	}
	fs := serveFake(t, nt, netip.AddrPortFrom(p.addr.Addr(), gossip.DefaultGossipPort), 2, p.inc, func(i int, req wire.RepairRequest) [][]byte {
		if req.Target != 2 {
			t.Errorf("request for host %d", req.Target)
		}
		if i < len(forgeries) {
			return [][]byte{forgeries[i].frame(req)}
		}
		// Then a genuine answer, so that the rejections above are the forgeries'.
		return [][]byte{
			responseFrame(good, hdr(100), wire.RepairResponse{Nonce: req.ClientNonce}, add(kept, 2, 5)),
			responseFrame(good, hdr(100), wire.RepairResponse{Nonce: req.ClientNonce, Index: 1, Last: true}, add(key(300), 2, 5)),
		}
	})
	p.heartbeat()
	p.records(add(kept, 2, 5))
	gossiptest.WaitFor(t, wait, "multicast session", owned(m.table, kept, 2))
	stop := make(chan struct{})
	defer close(stop)
	go func() { // keep peer 2 up
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
				p.heartbeat()
			}
		}
	}()
	gossiptest.WaitFor(t, 10*time.Second, "genuine answer", func() bool { return m.node.Stats().RepairsCompleted == 1 })
	s := m.node.Stats()
	if s.RepairsFailed != uint64(len(forgeries)) || s.RepairAuthFailures != 1 || s.RepairMalformed != 1 ||
		s.RepairMismatches != uint64(len(forgeries))-2 {
		t.Errorf("failed %d (auth %d, mismatch %d, malformed %d) of %d forgeries",
			s.RepairsFailed, s.RepairAuthFailures, s.RepairMismatches, s.RepairMalformed, len(forgeries))
	}
	if _, ok := m.table.Get(forged); ok {
		t.Error("a forged record reached the table")
	}
	if _, ok := m.table.Get(kept); !ok || m.table.Len() != 2 {
		t.Errorf("table %v", m.table.Snapshot())
	}
	fs.mu.Lock()
	if fs.answers != len(forgeries)+1 {
		t.Errorf("%d connections", fs.answers)
	}
	fs.mu.Unlock()
}

// exchange runs a hand-made client exchange against addr on nt: it reads the
// challenge, lets req build the request frame, and returns what the server sent next.
func exchange(t *testing.T, nt gossip.Dialer, addr netip.AddrPort, req func(challenge wire.Datagram) []byte) (wire.Datagram, error) {
	c, err := nt.DialContext(context.Background(), "tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	d, _, err := wire.ReadFrame(c, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	ch := append(wire.Datagram(nil), d...)
	if _, err := c.Write(req(ch)); err != nil {
		return nil, err
	}
	d, _, err = wire.ReadFrame(c, nil, 0)
	return d, err
}

func TestRepairForgedRequests(t *testing.T) {
	hub, nt := gossiptest.NewHub(), gossiptest.NewNet()
	c := repairConfig(t, nt, 1)
	c.RepairInterval = time.Millisecond
	m := start(t, hub, c)
	if err := m.node.LocalAdd(key(1)); err != nil {
		t.Fatal(err)
	}
	addr := netip.AddrPortFrom(c.Addr, gossip.DefaultGossipPort)
	// The requests come from live host 2's address (strangers are closed at accept).
	p2 := newPeer(hub, 2, testKey)
	p2.heartbeat()
	gossiptest.WaitFor(t, wait, "2 up", func() bool { return m.node.Stats().PeersUp == 1 })
	from2 := nt.From(p2.addr.Addr())
	request := func(s *wire.Sealer, from uint16, body wire.RepairRequest) []byte {
		f := wire.AppendRepairRequest(make([]byte, wire.HeaderLen), &body)
		f = append(f, make([]byte, wire.TagLen)...)
		s.Seal(f, wire.Header{Type: wire.TypeRepairRequest, Sender: from, Incarnation: 1, Seq: 1})
		return f
	}
	good, bad := wire.NewSealer(ring(t, testKey)), wire.NewSealer(ring(t, badKey))
	nonce := func(ch wire.Datagram) [wire.NonceLen]byte {
		n, _ := wire.ParseRepairChallenge(ch.Body())
		return n
	}
	var recorded []byte
	for name, req := range map[string]func(ch wire.Datagram) []byte{
		"wrong key": func(ch wire.Datagram) []byte {
			return request(bad, 2, wire.RepairRequest{ServerNonce: nonce(ch), Target: 1})
		},
		"replayed": func(wire.Datagram) []byte { return recorded },
		"wrong target": func(ch wire.Datagram) []byte {
			return request(good, 2, wire.RepairRequest{ServerNonce: nonce(ch), Target: 5})
		},
		"own id": func(ch wire.Datagram) []byte {
			return request(good, 1, wire.RepairRequest{ServerNonce: nonce(ch), Target: 1})
		},
	} {
		if name == "replayed" {
			// Record a genuine exchange first.
			d, err := exchange(t, from2, addr, func(ch wire.Datagram) []byte {
				recorded = request(good, 2, wire.RepairRequest{ServerNonce: nonce(ch), Target: 1})
				return recorded
			})
			if err != nil || d.Type() != wire.TypeRepairResponse {
				t.Fatalf("genuine request: %v", err)
			}
		}
		before := m.node.Stats().RepairServeRejects
		if d, err := exchange(t, from2, addr, req); err == nil {
			t.Errorf("%s: answered with %v", name, d.Type())
		}
		gossiptest.WaitFor(t, wait, name+" rejected", func() bool { return m.node.Stats().RepairServeRejects == before+1 })
	}
	gossiptest.WaitFor(t, wait, "the genuine request served", func() bool { return m.node.Stats().RepairsServed == 1 })
}

func TestRepairBounded(t *testing.T) {
	hub, nt := gossiptest.NewHub(), gossiptest.NewNet()
	a := repairConfig(t, nt, 1)
	a.RepairMaxRecords = 50
	ma := start(t, hub, a)
	for j := range 120 {
		if err := ma.node.LocalAdd(key(j)); err != nil {
			t.Fatal(err)
		}
	}
	// 2 is unreachable by repair at first: at most one attempt per RepairInterval.
	b := repairConfig(t, nt, 2)
	b.RepairInterval = 200 * time.Millisecond
	nt.SetRefuse(func(to netip.AddrPort) bool { return to.Addr() == a.Addr })
	mb := start(t, hub, b)
	time.Sleep(time.Second)
	s := mb.node.Stats()
	// At most one attempt at once and one per interval: 1 + 1s/200ms, minus one the
	// scheduler may miss; the last may still be in flight.
	if s.RepairsStarted < 2 || s.RepairsStarted > 6 || s.RepairsCompleted != 0 || s.RepairsFailed+1 < s.RepairsStarted {
		t.Errorf("%d repairs started, %d failed in 1s at one per 200ms", s.RepairsStarted, s.RepairsFailed)
	}
	nt.SetRefuse(nil)
	gossiptest.WaitFor(t, wait, "a repair", func() bool { return mb.node.Stats().RepairsCompleted >= 1 })
	// The answer stops at the cap and says so; the receiver removes nothing.
	gossiptest.WaitFor(t, wait, "the capped answer", func() bool { return mb.table.Len() >= 50 })
	s = mb.node.Stats()
	if s.RepairTruncated == 0 || s.RepairRemoved != 0 || s.RepairRecords%50 != 0 {
		t.Errorf("stats %+v", s)
	}
}

func TestRepairNetRefuses(t *testing.T) {
	nt := gossiptest.NewNet()
	if _, err := nt.DialContext(context.Background(), "tcp", "198.18.50.9:6081"); !errors.Is(err, gossiptest.ErrRefused) {
		t.Errorf("dial nobody: %v", err)
	}
	l := nt.Listen(netip.MustParseAddrPort("198.18.50.9:6081"))
	l.Close()
	if _, err := nt.DialContext(context.Background(), "tcp", "198.18.50.9:6081"); !errors.Is(err, gossiptest.ErrRefused) {
		t.Errorf("dial a closed listener: %v", err)
	}
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("accept after close: %v", err)
	}
}

// TestRepairRaceWithMulticast drives the races between a snapshot and the multicast
// around it: records sent after the snapshot was taken win over it, records the
// snapshot covers are dropped when they arrive late.
func TestRepairRaceWithMulticast(t *testing.T) {
	hub, nt := gossiptest.NewHub(), gossiptest.NewNet()
	c := repairConfig(t, nt, 1)
	c.NoDigest = true
	c.NackRing = -1 // gaps ask for full repairs
	m := start(t, hub, c)
	p := newPeer(hub, 2, testKey)
	good := wire.NewSealer(ring(t, testKey))
	k1, k2, k3, k4, k5, k6, k7 := key(1), key(2), key(3), key(4), key(5), key(6), key(7)
	asked, answer := make(chan int, 2), make(chan struct{})
	serveFake(t, nt, netip.AddrPortFrom(p.addr.Addr(), gossip.DefaultGossipPort), 2, p.inc, func(i int, req wire.RepairRequest) [][]byte {
		asked <- i
		<-answer
		h := wire.Header{Sender: 2, Incarnation: p.inc}
		r := wire.RepairResponse{Nonce: req.ClientNonce, Last: true}
		if i == 0 {
			// Taken after the datagram of sequence number 2: k1 and k4 (k3 went before).
			h.Seq = 2
			return [][]byte{responseFrame(good, h, r, add(k1, 2, 5), add(k4, 2, 5))}
		}
		h.Seq = 12
		return [][]byte{responseFrame(good, h, r, add(k2, 2, 6), add(k4, 2, 5), add(k5, 2, 6))}
	})
	p.heartbeat()                           // seq 1: a new peer, a repair is due
	p.records(add(k1, 2, 5), add(k3, 2, 5)) // seq 2
	gossiptest.WaitFor(t, wait, "k1, k3", func() bool { return m.table.Len() == 2 })
	if i := <-asked; i != 0 {
		t.Fatal(i)
	}
	// While the answer is in flight: records after the snapshot.
	p.records(add(k2, 2, 6)) // seq 3
	p.records(del(k1, 2))    // seq 4
	gossiptest.WaitFor(t, wait, "k2 in, k1 out", func() bool { _, ok := m.table.Get(k1); return !ok && m.table.Len() == 2 })
	answer <- struct{}{}
	gossiptest.WaitFor(t, wait, "first repair", func() bool { return m.node.Stats().RepairsCompleted == 1 })
	want := map[session.Key]session.Owner{k2: {Host: 2, Epoch: 6}, k4: {Host: 2, Epoch: 5}}
	if d := diff(m.table.Snapshot(), want); d != "" {
		t.Fatalf("after the first repair: %s: %v", d, m.table.Snapshot())
	}
	if s := m.node.Stats(); s.RepairRemoved != 1 {
		t.Errorf("removed %d (k3 only)", s.RepairRemoved)
	}

	// A gap (5..9) asks for another repair; its snapshot is taken at 12, so datagram
	// 11, arriving late, is already in it, and 13 follows without a gap.
	time.Sleep(c.RepairInterval)
	p.seq = 9
	p.heartbeat() // seq 10
	if i := <-asked; i != 1 {
		t.Fatal(i)
	}
	answer <- struct{}{}
	gossiptest.WaitFor(t, wait, "second repair", func() bool { return m.node.Stats().RepairsCompleted == 2 })
	p.records(add(k6, 2, 7)) // seq 11: superseded
	p.seq = 12
	p.records(add(k7, 2, 8)) // seq 13
	gossiptest.WaitFor(t, wait, "k7", owned(m.table, k7, 2))
	want = map[session.Key]session.Owner{k2: {Host: 2, Epoch: 6}, k4: {Host: 2, Epoch: 5}, k5: {Host: 2, Epoch: 6}, k7: {Host: 2, Epoch: 8}}
	if d := diff(m.table.Snapshot(), want); d != "" {
		t.Errorf("after the second repair: %s: %v", d, m.table.Snapshot())
	}
	if s := m.node.Stats(); s.RepairSuperseded != 1 || s.SeqGaps != 5 || s.Replays != 0 || s.RepairsStarted != 2 {
		t.Errorf("superseded %d, gaps %d, replays %d, repairs %d", s.RepairSuperseded, s.SeqGaps, s.Replays, s.RepairsStarted)
	}
}

// TestDigestRepair: records that were never sent (the send queue overflowed) leave no
// sequence gap; the heartbeat digests show the divergence and a repair mends it.
func TestDigestRepair(t *testing.T) {
	for _, digest := range []bool{true, false} {
		t.Run(fmt.Sprintf("digest=%v", digest), func(t *testing.T) {
			const n = 300
			hub, nt := gossiptest.NewHub(), gossiptest.NewNet()
			c1 := repairConfig(t, nt, 1)
			c1.NoDigest = !digest // the receiver's switch
			m1 := start(t, hub, c1)
			c := repairConfig(t, nt, 2)
			c.MaxQueue = 10
			m2 := start(t, hub, c)
			gossiptest.WaitFor(t, wait, "first repairs", func() bool { return m1.node.Stats().RepairsCompleted >= 1 })
			refused := 0
			for j := range n {
				if err := m2.node.LocalAdd(key(j)); errors.Is(err, gossip.ErrQueueFull) {
					refused++
				}
			}
			if refused == 0 {
				t.Fatal("no overflow")
			}
			if !digest {
				time.Sleep(500 * time.Millisecond)
				if got := m1.table.Len(); got != n-refused || m1.node.Stats().DigestMismatches != 0 {
					t.Errorf("without digests: %d sessions, want the %d sent; %+v", got, n-refused, m1.node.Stats())
				}
				return
			}
			t0 := time.Now()
			gossiptest.WaitFor(t, wait, "all sessions", func() bool { return m1.table.Len() == n })
			took := time.Since(t0)
			// The repair's records reach the table before it is counted complete.
			gossiptest.WaitFor(t, wait, "the repair counted", func() bool { return m1.node.Stats().RepairsCompleted >= 2 })
			s := m1.node.Stats()
			if s.SeqGaps != 0 || s.DigestMismatches < 2 || s.RepairsCompleted < 2 {
				t.Errorf("gaps %d, digest mismatches %d, repairs %d", s.SeqGaps, s.DigestMismatches, s.RepairsCompleted)
			}
			t.Logf("%d of %d sessions never sent; repaired after %v (%d digest mismatches)", refused, n, took.Round(time.Millisecond), s.DigestMismatches)
		})
	}
}
