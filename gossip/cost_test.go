package gossip

import (
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/homing-dev/homing/gossip/wire"
	"github.com/homing-dev/homing/session"
)

// Per-record costs of the gossip path (issue 20), each stage alone, IPv4 and IPv6:
//
//	send     records into a datagram (RecordWriter, the sender's batching) and Seal
//	receive  Open (size, magic, tag) and ParseRecords
//	apply    applyRecords: conflict rules, ownership map, digests, into a table that
//	         does nothing (the C table's own cost: table.BenchmarkApply)
//	serve    a repair answer: snapshot of the own sessions, frames, Seal
//	join     a joining host's repair: OpenFrame, ParseRepairResponse, reconcile into
//	         an empty map
//
// Every case reports the process CPU time (user + system, getrusage) per record and
// per datagram or frame besides the wall time: the machine is shared, and CPU time is
// what another process's load distorts least. `make bench` runs them
// (-bench 'BenchmarkCost', see docs/SCALING.md); sessions for apply and serve: costSessions.

const costSessions = 1 << 20

// costKey is session i of a family: distinct for i < 2^32.
func costKey(v6 bool, i int) session.Key {
	k := session.Key{SrcPort: uint16(i), DstPort: 443, Proto: session.TCP}
	if v6 {
		k.Src = netip.AddrFrom16([16]byte{0x20, 0x01, 0, 2, 0, 1, 12: byte(i >> 40), byte(i >> 32), byte(i >> 24), byte(i >> 16)})
		k.Dst = netip.AddrFrom16([16]byte{0x20, 0x01, 0, 2, 0, 0xff, 15: 1})
	} else {
		k.Src = netip.AddrFrom4([4]byte{198, 18, byte(i >> 24), byte(i >> 16)})
		k.Dst = netip.AddrFrom4([4]byte{198, 19, 255, 1})
	}
	return k
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// costRun runs f b.N times and reports its CPU time per record and per unit (datagram
// or frame), f doing recs records in units units per call.
func costRun(b *testing.B, recs, units int, unit string, f func(i int)) {
	b.ReportAllocs()
	b.ResetTimer()
	c0 := cpuTime()
	for i := range b.N {
		f(i)
	}
	cpu := cpuTime() - c0
	b.StopTimer()
	n := float64(b.N)
	b.ReportMetric(float64(cpu.Nanoseconds())/(n*float64(recs)), "cpu-ns/record")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/(n*float64(recs)), "ns/record")
	if units > 0 {
		b.ReportMetric(float64(cpu.Nanoseconds())/(n*float64(units)), "cpu-ns/"+unit)
		b.ReportMetric(float64(recs)/float64(units), "records/"+unit)
	}
	b.ReportMetric(n*float64(recs)/cpu.Seconds(), "records/cpu-s")
}

// costNode is a keyed node on a fixed clock that nothing runs.
func costNode(b *testing.B, v6 bool, sessions int) *Node {
	b.Helper()
	cfg := Config{HostID: 1, Addr: netip.MustParseAddr("198.18.50.1"), MAC: testHeartbeat().MAC,
		Keys: costRing(b), Clock: fixedClock{}, Repair: true, RepairMaxRecords: 1 << 26}
	if v6 {
		cfg.SizeHint6 = sessions
	} else {
		cfg.SizeHint = sessions
	}
	n, err := New(cfg, nopConn{}, nopTable{}, nopTemplates{})
	if err != nil {
		b.Fatal(err)
	}
	return n
}

func costRing(b *testing.B) *wire.KeyRing {
	r, err := wire.NewKeyRing([]byte("0123456789abcdef0123456789abcdef"), nil)
	if err != nil {
		b.Fatal(err)
	}
	return r
}

// costDatagrams returns full records datagrams of peer 2 (sealed, sequence numbers
// from 1): adds of sessions from..from+count, epoch 1000+i.
func costDatagrams(b *testing.B, v6 bool, op wire.Op, from, count int, seq uint64) ([][]byte, int) {
	s := wire.NewSealer(costRing(b))
	ts := fuzzNow.UnixNano()
	var out [][]byte
	recs := 0
	for i := from; i < from+count; {
		dg := make([]byte, wire.HeaderLen, DefaultMaxDatagram)
		w := wire.NewRecordWriter(2, ts)
		for ; i < from+count; i++ {
			r := wire.Record{Op: op, Key: costKey(v6, i), Owner: session.Owner{Host: 2, Epoch: uint64(ts)>>wire.EpochShift + uint64(i)}}
			l, w0 := len(dg), w
			dg = w.Append(dg, r)
			if len(dg)+wire.TagLen > DefaultMaxDatagram {
				dg, w = dg[:l], w0
				break
			}
			recs++
		}
		dg = dg[:len(dg)+wire.TagLen]
		seq++
		s.Seal(dg, wire.Header{Type: wire.TypeRecords, Sender: 2, Incarnation: 7, Seq: seq, Timestamp: ts})
		out = append(out, dg)
	}
	return out, recs
}

func BenchmarkCost(b *testing.B) {
	for _, fam := range []string{"v4", "v6"} {
		v6 := fam == "v6"
		b.Run("send/"+fam, func(b *testing.B) {
			s := wire.NewSealer(costRing(b))
			const per = 4096
			recs := make([]wire.Record, per)
			for i := range recs {
				recs[i] = wire.Record{Op: wire.OpAdd, Key: costKey(v6, i), Owner: session.Owner{Host: 1, Epoch: 1 << 40}}
			}
			dg := make([]byte, 0, DefaultMaxDatagram+64)
			var dgs int
			costRun(b, per, 0, "", func(int) {
				dg = dg[:wire.HeaderLen]
				w := wire.NewRecordWriter(1, 1<<56)
				for _, r := range recs {
					l, w0 := len(dg), w
					dg = w.Append(dg, r)
					if len(dg)+wire.TagLen > DefaultMaxDatagram {
						dg = dg[:l+wire.TagLen]
						s.Seal(dg, wire.Header{Type: wire.TypeRecords, Sender: 1, Incarnation: 7, Seq: 1, Timestamp: 1 << 56})
						dgs++
						dg, w = dg[:wire.HeaderLen], w0
						w = wire.NewRecordWriter(1, 1<<56)
						dg = w.Append(dg, r)
					}
				}
			})
			b.ReportMetric(float64(per*b.N)/float64(dgs), "records/datagram")
		})
		b.Run("receive/"+fam, func(b *testing.B) {
			dgs, recs := costDatagrams(b, v6, wire.OpAdd, 0, 4096, 0)
			op := wire.NewOpener(costRing(b), DefaultMaxDatagram)
			var out []wire.Record
			costRun(b, recs, len(dgs), "datagram", func(int) {
				for _, d := range dgs {
					if err := op.Open(d); err != nil {
						b.Fatal(err)
					}
					h := wire.Datagram(d).Header()
					var err error
					if out, err = wire.ParseRecords(out[:0], wire.Datagram(d).Body(), h.Sender, h.Timestamp); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
		b.Run("apply/"+fam, func(b *testing.B) {
			// costSessions in the map; each op adds 4096 new sessions and deletes them.
			n := costNode(b, v6, costSessions+8192)
			fill, _ := costDatagrams(b, v6, wire.OpAdd, 0, costSessions, 0)
			var recs []wire.Record
			h := wire.Header{Type: wire.TypeRecords, Sender: 2, Incarnation: 7}
			for _, d := range fill {
				recs, _ = wire.ParseRecords(recs[:0], wire.Datagram(d).Body(), 2, fuzzNow.UnixNano())
				n.applyRecords(h, recs, false)
			}
			adds, nrec := costDatagrams(b, v6, wire.OpAdd, 1<<30, 4096, 0)
			dels, _ := costDatagrams(b, v6, wire.OpDelete, 1<<30, 4096, 0)
			parse := func(ds [][]byte) [][]wire.Record {
				var out [][]wire.Record
				for _, d := range ds {
					r, err := wire.ParseRecords(nil, wire.Datagram(d).Body(), 2, fuzzNow.UnixNano())
					if err != nil {
						b.Fatal(err)
					}
					out = append(out, r)
				}
				return out
			}
			pa, pd := parse(adds), parse(dels)
			before := n.Stats().RecordsApplied
			costRun(b, 2*nrec, len(pa)+len(pd), "datagram", func(int) {
				for _, r := range pa {
					n.applyRecords(h, r, false)
				}
				for _, r := range pd {
					n.applyRecords(h, r, false)
				}
			})
			if got := n.Stats().RecordsApplied - before; got != uint64(2*nrec*b.N) || n.owners.len() != costSessions {
				b.Fatalf("applied %d of %d, %d sessions", got, 2*nrec*b.N, n.owners.len())
			}
		})
		b.Run(fmt.Sprintf("serve/%s", fam), func(b *testing.B) {
			n := costNode(b, v6, costSessions)
			for i := range costSessions {
				n.putLocked(costKey(v6, i), entry{owner: session.Owner{Host: 1, Epoch: uint64(1000 + i)}, inc: n.inc})
			}
			frames, _ := costServe(b, n, false)
			costRun(b, costSessions, frames, "frame", func(int) { costServe(b, n, false) })
		})
		b.Run(fmt.Sprintf("join/%s", fam), func(b *testing.B) {
			src := costNode(b, v6, costSessions)
			for i := range costSessions {
				src.putLocked(costKey(v6, i), entry{owner: session.Owner{Host: 1, Epoch: uint64(1000 + i)}, inc: src.inc})
			}
			_, frames := costServe(b, src, true)
			op := wire.NewOpener(costRing(b), 0)
			costRun(b, costSessions, len(frames), "frame", func(int) {
				b.StopTimer()
				n := costNode(b, v6, costSessions)
				n.cfg.HostID = 2
				n.peers[1] = &peerState{inc: src.inc}
				b.StartTimer()
				snap := &snapshot{recs: make([]wire.Record, 0, costSessions)}
				for _, f := range frames {
					if err := op.OpenFrame(f); err != nil {
						b.Fatal(err)
					}
					var err error
					if _, snap.recs, err = wire.ParseRepairResponse(snap.recs, wire.Datagram(f).Body()); err != nil {
						b.Fatal(err)
					}
				}
				if err := n.reconcile(repairJob{id: 1, inc: src.inc}, snap); err != nil {
					b.Fatal(err)
				}
				if n.owners.len() != costSessions {
					b.Fatalf("%d sessions after the repair", n.owners.len())
				}
			})
		})
	}
}

// costServe has n answer a full repair request and returns its frames.
func costServe(b *testing.B, n *Node, keep bool) (int, []wire.Datagram) {
	var nonce [wire.NonceLen]byte
	req := wire.RepairRequest{ServerNonce: nonce, Target: n.cfg.HostID}
	f := wire.AppendRepairRequest(make([]byte, wire.HeaderLen), &req)
	f = f[:len(f)+wire.TagLen]
	wire.NewSealer(costRing(b)).Seal(f, wire.Header{Type: wire.TypeRepairRequest, Sender: 2, Incarnation: 7})
	n.servedMu.Lock()
	clear(n.served)
	n.servedMu.Unlock()
	var frames []wire.Datagram
	count := 0
	sealer := wire.NewSealer(costRing(b))
	err := n.answerFull(wire.Datagram(f), 2, nonce, func(fr []byte, h wire.Header) error {
		h.Sender, h.Incarnation = n.cfg.HostID, n.inc
		sealer.Seal(fr, h)
		count++
		if keep {
			frames = append(frames, append(wire.Datagram(nil), fr...))
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return count, frames
}

// BenchmarkCostRecvmsg measures the kernel's part of a received datagram when the
// receiver is busy (datagrams queued, no wake-up): one recvmsg of a 1400-byte UDP
// datagram on loopback, the receiver's CPU time only (the datagrams are sent before
// the timed loop). The growth sweep measures the other end: a receiver woken for each.
func BenchmarkCostRecvmsg(b *testing.B) {
	rx, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer rx.Close()
	_ = rx.SetReadBuffer(32 << 20)
	tx, err := net.DialUDP("udp4", nil, rx.LocalAddr().(*net.UDPAddr))
	if err != nil {
		b.Fatal(err)
	}
	defer tx.Close()
	msg := make([]byte, DefaultMaxDatagram)
	buf := make([]byte, wire.MaxDatagramLen+1)
	const batch = 64 // within the default socket buffer (rmem_max may cap SetReadBuffer)
	var cpu time.Duration
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	b.ResetTimer()
	for done := 0; done < b.N; done += batch {
		b.StopTimer()
		k := min(batch, b.N-done)
		for range k {
			if _, err := tx.Write(msg); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		c0 := threadCPUTime()
		for range k {
			if _, _, err := rx.ReadFromUDPAddrPort(buf); err != nil {
				b.Fatal(err)
			}
		}
		cpu += threadCPUTime() - c0
	}
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/datagram")
}

// threadCPUTime is the calling thread's CPU time (callers lock their goroutine to it).
func threadCPUTime() time.Duration {
	var ts syscall.Timespec
	_, _, _ = syscall.Syscall(syscall.SYS_CLOCK_GETTIME, 3 /* CLOCK_THREAD_CPUTIME_ID */, uintptr(unsafe.Pointer(&ts)), 0)
	return time.Duration(ts.Nano())
}
