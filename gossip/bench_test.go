package gossip_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/homing-dev/homing/gossip"
	"github.com/homing-dev/homing/gossip/gossiptest"
	"github.com/homing-dev/homing/gossip/wire"
	"github.com/homing-dev/homing/session"
)

// benchKey is session i; benchIndex inverts it.
func benchKey(i int) session.Key {
	return session.Key{
		Src: netip.AddrFrom4([4]byte{198, 19, byte(i >> 16), byte(i >> 8)}), Dst: netip.MustParseAddr("198.19.255.1"),
		SrcPort: uint16(i), DstPort: 443, Proto: session.TCP,
	}
}

func benchIndex(k session.Key) int {
	a := k.Src.As4()
	return int(a[2])<<16 | int(k.SrcPort)
}

// BenchmarkConvergence measures, over the in-memory hub with default timers and sizes,
// the delay from LocalAdd on one host to the session being in the tables of all its 4
// peers, while new sessions arrive at a steady rate. It reports p50 and p99 of that
// delay and the bytes each record costs on the wire (gossip payload, and with the
// IPv4 and UDP headers).
func BenchmarkConvergence(b *testing.B) {
	for _, rate := range []int{1000, 10000, 50000} {
		b.Run(fmt.Sprintf("rate=%d", rate), func(b *testing.B) { benchConvergence(b, rate, 4) })
	}
}

func benchConvergence(b *testing.B, rate, peers int) {
	if b.N >= 1<<24 {
		b.Fatalf("b.N %d too large for benchKey", b.N)
	}
	hub := gossiptest.NewHub()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg := func(id uint16) gossip.Config {
		return gossip.Config{
			HostID: id, Addr: netip.AddrFrom4([4]byte{198, 18, 50, byte(id)}),
			MAC: net.HardwareAddr{2, 0, 0, 0, 0, byte(id)}, Keys: ring(b, testKey),
		}
	}
	added := make([]atomic.Int64, b.N)
	seen := make([]atomic.Int32, b.N)
	delays := make([]time.Duration, b.N)
	var converged atomic.Int64
	run := func(n *gossip.Node) {
		go func() { _ = n.Run(ctx) }()
	}
	announcer, err := gossip.New(cfg(1), hub.Conn(), gossiptest.NewTable(), gossiptest.NewTemplates())
	if err != nil {
		b.Fatal(err)
	}
	run(announcer)
	var nodes []*gossip.Node
	for p := range peers {
		tb := gossiptest.NewTable()
		tb.OnApply(func(ups []session.Update) {
			now := time.Now().UnixNano()
			for _, u := range ups {
				i := benchIndex(u.Key)
				if u.Delete || i >= len(seen) {
					continue
				}
				if seen[i].Add(1) == int32(peers) {
					delays[i] = time.Duration(now - added[i].Load())
					converged.Add(1)
				}
			}
		})
		n, err := gossip.New(cfg(uint16(p+2)), hub.Conn(), tb, gossiptest.NewTemplates())
		if err != nil {
			b.Fatal(err)
		}
		nodes = append(nodes, n)
		run(n)
	}
	deadline := time.Now().Add(5 * time.Second)
	for announcer.Stats().PeersUp != uint64(peers) {
		if time.Now().After(deadline) {
			b.Fatal("peers not up")
		}
		time.Sleep(time.Millisecond)
	}
	s0 := announcer.Stats()

	b.ResetTimer()
	t0 := time.Now()
	for i := 0; i < b.N; {
		due := min(b.N, int(time.Since(t0).Seconds()*float64(rate))+1)
		for ; i < due; i++ {
			added[i].Store(time.Now().UnixNano())
			if err := announcer.LocalAdd(benchKey(i)); err != nil {
				b.Fatal(err)
			}
		}
		time.Sleep(100 * time.Microsecond)
	}
	deadline = time.Now().Add(10 * time.Second)
	for converged.Load() < int64(b.N) {
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d sessions converged; announcer %+v; peer %+v", converged.Load(), b.N, announcer.Stats(), nodes[0].Stats())
		}
		time.Sleep(100 * time.Microsecond)
	}
	b.StopTimer()

	slices.Sort(delays)
	q := func(p float64) float64 { return float64(delays[int(p*float64(len(delays)-1))].Microseconds()) }
	b.ReportMetric(q(0.50), "p50-µs")
	b.ReportMetric(q(0.99), "p99-µs")
	b.ReportMetric(0, "ns/op")
	s := announcer.Stats()
	hb := wire.Heartbeat{Addr: netip.MustParseAddr("198.18.50.1"), MAC: make(net.HardwareAddr, 6)}
	hbBytes := (s.HeartbeatsSent - s0.HeartbeatsSent) * uint64(wire.Overhead+hb.Len())
	dgs := s.DatagramsSent - s0.DatagramsSent - (s.HeartbeatsSent - s0.HeartbeatsSent)
	recs := s.RecordsSent - s0.RecordsSent
	bytes := s.BytesSent - s0.BytesSent - hbBytes
	if recs > 0 {
		b.ReportMetric(float64(bytes)/float64(recs), "B/record")
		b.ReportMetric(float64(bytes+28*dgs)/float64(recs), "B/record+udp+ip")
		b.ReportMetric(float64(recs)/float64(dgs), "records/datagram")
	}
	for _, n := range nodes {
		if st := n.Stats(); st.SeqGaps != 0 || st.AuthFailures != 0 {
			b.Errorf("peer %d: %+v", n.HostID(), st)
		}
	}
}
