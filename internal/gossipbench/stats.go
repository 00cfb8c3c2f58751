package gossipbench

import (
	"math"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/homing-dev/homing/gossip"
	"github.com/homing-dev/homing/gossip/wire"
	"github.com/homing-dev/homing/session"
)

// Inf is the delay of a session that did not reach every peer within the wait.
const Inf = time.Duration(math.MaxInt64)

// maxIndex is the largest session index Key encodes.
const maxIndex = 1<<24 - 1

// Key is session i (i ≤ 2^24-1): an IPv4 TCP session from a client in 198.19.0.0/16 to
// the VIP 198.19.255.1:443. Index inverts it.
func Key(i int) session.Key {
	return session.Key{
		Src: netip.AddrFrom4([4]byte{198, 19, byte(i >> 16), byte(i >> 8)}), Dst: netip.AddrFrom4([4]byte{198, 19, 255, 1}),
		SrcPort: uint16(i), DstPort: 443, Proto: session.TCP,
	}
}

// Index returns the session index of a Key.
func Index(k session.Key) int {
	a := k.Src.As4()
	return int(a[2])<<16 | int(k.SrcPort)
}

// Delays merges one run's samples: for each session base..base+count-1, the time from
// its announcement to its apply at the last of the peers; Inf if it was not announced
// or some peer never applied it. A peer's repeated applies of one session count from
// the first.
func Delays(base, count int, announced []Sample, peers [][]Sample) []time.Duration {
	at := make([]int64, count)
	for _, s := range announced {
		if i := s.Index - base; i >= 0 && i < count && s.At > 0 {
			at[i] = s.At
		}
	}
	last := make([]int64, count) // latest first-apply among the peers
	seen := make([]int, count)   // peers that applied
	first := make([]int64, count)
	for _, ps := range peers {
		clear(first)
		for _, s := range ps {
			if i := s.Index - base; i >= 0 && i < count && s.At > 0 && (first[i] == 0 || s.At < first[i]) {
				first[i] = s.At
			}
		}
		for i, t := range first {
			if t != 0 {
				seen[i]++
				last[i] = max(last[i], t)
			}
		}
	}
	d := make([]time.Duration, count)
	for i := range d {
		switch {
		case at[i] == 0 || seen[i] < len(peers):
			d[i] = Inf
		case last[i] < at[i]:
			d[i] = 0 // applied before the announcer's timestamp: impossible on one clock
		default:
			d[i] = time.Duration(last[i] - at[i])
		}
	}
	return d
}

// Summary describes a run's delays: percentiles by nearest rank over all sessions,
// unconverged ones counting as Inf.
type Summary struct {
	Sessions, Converged int
	P50, P90, P99, Max  time.Duration
}

// Summarize sorts d in place and summarises it.
func Summarize(d []time.Duration) Summary {
	s := Summary{Sessions: len(d)}
	if len(d) == 0 {
		s.P50, s.P90, s.P99, s.Max = Inf, Inf, Inf, Inf
		return s
	}
	slices.Sort(d)
	for _, x := range d {
		if x != Inf {
			s.Converged++
		}
	}
	s.P50, s.P90, s.P99 = Quantile(d, 0.50), Quantile(d, 0.90), Quantile(d, 0.99)
	s.Max = d[len(d)-1]
	return s
}

// Quantile returns the q-quantile (0 < q ≤ 1) of the sorted d by nearest rank: the
// smallest value with at least q·len(d) values at or below it.
func Quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return Inf
	}
	r := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(r, 0), len(sorted)-1)]
}

// Wire describes the records datagrams an announcer sent during a run.
type Wire struct {
	Datagrams, Records uint64
	Bytes              uint64 // gossip payload (UDP payload) bytes of the records datagrams
}

// wireBetween is the records traffic between two snapshots of the announcer's
// counters: everything sent minus the heartbeats, each counted at its size without a
// digest (the smallest heartbeat, so that records are never undercounted).
func wireBetween(s0, s1 gossip.Stats) Wire {
	hb := wire.Heartbeat{Addr: netip.AddrFrom4([4]byte{198, 18, 50, 1}), MAC: make(net.HardwareAddr, 6)}
	hbs := s1.HeartbeatsSent - s0.HeartbeatsSent
	w := Wire{Datagrams: s1.DatagramsSent - s0.DatagramsSent - hbs, Records: s1.RecordsSent - s0.RecordsSent}
	hbBytes := hbs * uint64(wire.Overhead+hb.Len())
	if b := s1.BytesSent - s0.BytesSent; b > hbBytes {
		w.Bytes = b - hbBytes
	}
	return w
}

// ipUDPHeaders is what IPv4 and UDP add to every datagram.
const ipUDPHeaders = 20 + 8

// BytesPerRecord is the gossip payload per record.
func (w Wire) BytesPerRecord() float64 { return ratio(float64(w.Bytes), w.Records) }

// WireBytesPerRecord is the bytes per record on the wire with the IPv4 and UDP headers
// (Ethernet not counted).
func (w Wire) WireBytesPerRecord() float64 {
	return ratio(float64(w.Bytes+ipUDPHeaders*w.Datagrams), w.Records)
}

// RecordsPerDatagram is the mean number of records in a records datagram.
func (w Wire) RecordsPerDatagram() float64 { return ratio(float64(w.Records), w.Datagrams) }

func ratio(a float64, b uint64) float64 {
	if b == 0 {
		return 0
	}
	return a / float64(b)
}
