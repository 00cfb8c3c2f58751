package gossip_test

import (
	"cmp"
	"fmt"
	"math"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/homing-dev/homing/gossip"
	"github.com/homing-dev/homing/session"
)

// convergeMeter records, per session index, when it was announced and when the last of
// its peers applied it.
type convergeMeter struct {
	peers     int32
	base      int // index of the first session of the run
	added     []atomic.Int64
	seen      []atomic.Int32
	delays    []time.Duration
	converged atomic.Int64
}

func newConvergeMeter(peers, base, n int) *convergeMeter {
	return &convergeMeter{peers: int32(peers), base: base, added: make([]atomic.Int64, n),
		seen: make([]atomic.Int32, n), delays: make([]time.Duration, n)}
}

// applied notes that one peer holds session index i (an absolute index) at now.
func (m *convergeMeter) applied(i int, now int64) {
	i -= m.base
	if i < 0 || i >= len(m.seen) {
		return
	}
	if m.seen[i].Add(1) == m.peers {
		m.delays[i] = time.Duration(now - m.added[i].Load())
		m.converged.Add(1)
	}
}

// run announces the n sessions at rate per second through announce, waits until every
// peer holds every one, and reports p50 and p99 of the delays.
func (m *convergeMeter) run(b *testing.B, rate int, announce func(i int) error) {
	m.runWait(b, rate, 20*time.Second, false, announce)
}

// runWait is run waiting at most wait for convergence; with lossy, sessions that have
// not converged by then count as never converging (their delay is infinite) and the
// converged fraction is reported, instead of failing.
func (m *convergeMeter) runWait(b *testing.B, rate int, wait time.Duration, lossy bool, announce func(i int) error) {
	n := len(m.added)
	t0 := time.Now()
	for i := 0; i < n; {
		due := min(n, int(time.Since(t0).Seconds()*float64(rate))+1)
		for ; i < due; i++ {
			m.added[i].Store(time.Now().UnixNano())
			if err := announce(m.base + i); err != nil {
				b.Fatal(err)
			}
		}
		time.Sleep(100 * time.Microsecond)
	}
	deadline := time.Now().Add(wait)
	for m.converged.Load() < int64(n) {
		if time.Now().After(deadline) {
			if lossy {
				break
			}
			b.Fatalf("%d of %d sessions converged", m.converged.Load(), n)
		}
		time.Sleep(200 * time.Microsecond)
	}
	if lossy {
		b.ReportMetric(100*float64(m.converged.Load())/float64(n), "converged-%")
		for i := range m.seen {
			if m.seen[i].Load() < m.peers {
				m.delays[i] = math.MaxInt64
			}
		}
	}
	if os.Getenv("HMG_DBG") != "" {
		var big []int
		for i, d := range m.delays {
			if d > 5*time.Millisecond {
				big = append(big, i)
			}
		}
		if len(big) > 0 {
			b.Logf("%d delays > 5ms, indices %d..%d of %d, max at first %v", len(big), big[0], big[len(big)-1], n, m.delays[big[0]])
		}
	}
	slices.Sort(m.delays)
	q := func(p float64) float64 {
		d := m.delays[int(p*float64(n-1))]
		if d == math.MaxInt64 {
			return math.Inf(1)
		}
		return float64(d.Microseconds())
	}
	b.ReportMetric(q(0.50), "p50-µs")
	if lossy {
		b.ReportMetric(q(0.90), "p90-µs")
	}
	b.ReportMetric(q(0.99), "p99-µs")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkConvergenceNetns measures convergence over real multicast: 5 nodes (one
// announcer, 4 peers) in network namespaces on one bridge, default sizes with
// AdaptiveFlush; the announcer adds new sessions at 1k, 10k and 50k per second for
// about 2 s each (-benchtime=1x: each rate runs once). It reports p50/p99 of the delay
// from LocalAdd to the session in all 4 peers' tables, and the bytes per record on the
// wire (gossip payload; with the IPv4 and UDP headers). Root only. Environment:
// HMG_NOADAPT=1 turns AdaptiveFlush off, HMG_FLUSH_DELAY sets FlushDelay (a Go
// duration), HMG_DBG=1 logs the sessions slower than 5 ms.
//
//	go test -run '^$' -bench ConvergenceNetns -benchtime=1x ./gossip
func BenchmarkConvergenceNetns(b *testing.B) {
	const peers = 4
	names := bridgeLab(b, peers+1)
	group := netip.MustParseAddr("239.77.0.9")
	flush, err := time.ParseDuration(cmp.Or(os.Getenv("HMG_FLUSH_DELAY"), "0s"))
	if err != nil {
		b.Fatal(err)
	}
	cfg := func(id uint16) gossip.Config {
		return gossip.Config{
			HostID: id, Addr: netip.AddrFrom4([4]byte{198, 18, 50, byte(id)}),
			MAC: net.HardwareAddr{2, 0, 0, 0, 0, byte(id)}, Keys: ring(b, testKey),
			Group: group, Port: 6081, Interface: "eth0", FixedFlush: os.Getenv("HMG_NOADAPT") != "",
			FlushDelay: flush,
		}
	}
	var meter atomic.Pointer[convergeMeter]
	ann := startNetns(b, names[0], cfg(1))
	var ms []*member
	for p := range peers {
		m := startNetns(b, names[p+1], cfg(uint16(p+2)))
		m.table.OnApply(func(ups []session.Update) {
			now := time.Now().UnixNano()
			mt := meter.Load()
			if mt == nil {
				return
			}
			for _, u := range ups {
				if !u.Delete {
					mt.applied(benchIndex(u.Key), now)
				}
			}
		})
		ms = append(ms, m)
	}
	deadline := time.Now().Add(10 * time.Second)
	for ann.node.Stats().PeersUp != peers {
		if time.Now().After(deadline) {
			b.Fatal("peers not up")
		}
		time.Sleep(time.Millisecond)
	}
	next := 0
	for _, rate := range []int{1000, 10000, 50000} {
		b.Run(fmt.Sprintf("rate=%d", rate), func(b *testing.B) {
			for range b.N {
				n := 2 * rate
				if next+n >= 1<<24 {
					b.Fatal("out of session keys")
				}
				mt := newConvergeMeter(peers, next, n)
				next += n
				meter.Store(mt)
				s0 := ann.node.Stats()
				mt.run(b, rate, func(i int) error { return ann.node.LocalAdd(benchKey(i)) })
				reportWire(b, s0, ann.node.Stats())
			}
		})
	}
	for _, m := range ms {
		if st := m.node.Stats(); st.SeqGaps != 0 || st.AuthFailures != 0 {
			b.Errorf("peer %d: %d gaps, %d auth failures", m.node.HostID(), st.SeqGaps, st.AuthFailures)
		}
	}
}

// reportWire reports the bytes per record the announcer sent between s0 and s, records
// datagrams only (heartbeats subtracted).
func reportWire(b *testing.B, s0, s gossip.Stats) {
	hb := gossip.Heartbeat{Addr: netip.MustParseAddr("198.18.50.1"), MAC: make(net.HardwareAddr, 6)}
	hbs := s.HeartbeatsSent - s0.HeartbeatsSent
	dgs := s.DatagramsSent - s0.DatagramsSent - hbs
	recs := s.RecordsSent - s0.RecordsSent
	bytes := s.BytesSent - s0.BytesSent - hbs*uint64(gossip.Overhead+hb.Len())
	if recs > 0 && dgs > 0 {
		b.ReportMetric(float64(bytes)/float64(recs), "B/record")
		b.ReportMetric(float64(bytes+28*dgs)/float64(recs), "B/record+udp+ip")
		b.ReportMetric(float64(recs)/float64(dgs), "records/datagram")
	}
}
