//go:build harness

package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/homing-dev/homing/gossip"
	"github.com/homing-dev/homing/gossip/gossiptest"
	"github.com/homing-dev/homing/gossip/wire"
	"github.com/homing-dev/homing/session"
	"github.com/homing-dev/homing/table"
)

// The apply side of gossip at scale (issue 20, point 4), measured through the
// gossip.Node's own paths into the data plane's table (this process's EAL):
//
//   - receive → map + table: a node whose Conn hands it sealed records datagrams of a
//     peer as fast as it takes them; its receiver opens, parses, admits and applies
//     them to the ownership map and the table (one Apply per datagram). Timed: rounds
//     of adds of new sessions, then their deletes, on a map and table holding
//     `sessions` sessions. Target: >= 8M records/s on one core.
//   - join: a host with `sessions` own sessions, and a host that starts and repairs
//     from it (in-memory stream, gossiptest.Net; in-memory multicast, gossiptest.Hub):
//     from the joining node's start to its table holding them all. Both hosts are in
//     this process: the CPU time is the server's answer and the client's reconcile
//     together. Target: >= 5M sessions/s.
//
// Both report the process's CPU time (getrusage: user + system of every thread,
// the Go runtime's included) per record, and the wall time: the machine is shared.

const applyRounds = 8

func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

var benchRing = func() *wire.KeyRing {
	r, err := wire.NewKeyRing([]byte("homing-bench gossip apply key 32"), nil)
	if err != nil {
		panic(err)
	}
	return r
}()

// applyKey is session i of a family (distinct for i < 2^32).
func applyKey(v6 bool, i int) session.Key {
	k := session.Key{SrcPort: uint16(i), DstPort: 443, Proto: session.TCP}
	if v6 {
		k.Src = netip.AddrFrom16([16]byte{0x20, 0x01, 0, 2, 0, 1, 14: byte(i >> 24), 15: byte(i >> 16)})
		k.Dst = netip.AddrFrom16([16]byte{0x20, 0x01, 0, 2, 0, 0xff, 15: 1})
	} else {
		k.Src = netip.AddrFrom4([4]byte{198, 18, byte(i >> 24), byte(i >> 16)})
		k.Dst = vip
	}
	return k
}

// feedConn is a gossip.Conn whose Recv returns queued datagrams, then blocks.
type feedConn struct {
	ch   chan []byte
	done chan struct{}
}

func (c *feedConn) Send([]byte) error { return nil }
func (c *feedConn) Recv(b []byte) (int, netip.AddrPort, error) {
	select {
	case d := <-c.ch:
		return copy(b, d), netip.AddrPortFrom(netip.MustParseAddr("198.18.50.2"), gossip.DefaultGossipPort), nil
	case <-c.done:
		return 0, netip.AddrPort{}, net.ErrClosed
	}
}
func (c *feedConn) Close() error { close(c.done); return nil }

type nopTemplates struct{}

func (nopTemplates) Publish(gossip.Peer) error { return nil }
func (nopTemplates) Withdraw(uint16) error     { return nil }

// datagrams seals records of host 2 into full datagrams from sequence number *seq.
func datagrams(recs []wire.Record, seq *uint64) [][]byte {
	s := wire.NewSealer(benchRing)
	ts := time.Now().UnixNano()
	var out [][]byte
	for i := 0; i < len(recs); {
		dg := make([]byte, wire.HeaderLen, gossip.DefaultMaxDatagram)
		w := wire.NewRecordWriter(2, ts)
		for ; i < len(recs); i++ {
			l, w0 := len(dg), w
			dg = w.Append(dg, recs[i])
			if len(dg)+wire.TagLen > gossip.DefaultMaxDatagram {
				dg, w = dg[:l], w0
				break
			}
		}
		dg = dg[:len(dg)+wire.TagLen]
		*seq++
		s.Seal(dg, wire.Header{Type: wire.TypeRecords, Sender: 2, Incarnation: 7, Seq: *seq, Timestamp: ts})
		out = append(out, dg)
	}
	return out
}

// applyRows measures receive → map + table and the join, IPv4 and IPv6.
func applyRows(sessions int) ([][]string, error) {
	var rows [][]string
	for _, v6 := range []bool{false, true} {
		fam := "IPv4"
		if v6 {
			fam = "IPv6"
		}
		cpu, wall, recs, err := receiveApply(v6, sessions)
		if err != nil {
			return rows, fmt.Errorf("gossip apply %s: %w", fam, err)
		}
		rows = append(rows, []string{fmt.Sprintf("gossip receive -> map + table, %s, one node: CPU, wall", fam), fmt.Sprint(sessions),
			fmt.Sprintf("%.1f ns/record (%.2fM/s), %.1f ns (%.2fM/s)", float64(cpu.Nanoseconds())/float64(recs), float64(recs)/cpu.Seconds()/1e6,
				float64(wall.Nanoseconds())/float64(recs), float64(recs)/wall.Seconds()/1e6), "-", "-", ">= 8M records/s"})
		cpu, wall, err = join(v6, sessions)
		if err != nil {
			return rows, fmt.Errorf("gossip join %s: %w", fam, err)
		}
		rows = append(rows, []string{fmt.Sprintf("gossip join: repair of a new host into map + table, %s: CPU (both hosts), wall", fam), fmt.Sprint(sessions),
			fmt.Sprintf("%.1f ns/session (%.2fM/s), %.1f ns (%.2fM/s)", float64(cpu.Nanoseconds())/float64(sessions), float64(sessions)/cpu.Seconds()/1e6,
				float64(wall.Nanoseconds())/float64(sessions), float64(sessions)/wall.Seconds()/1e6), "-", "-", ">= 5M sessions/s"})
	}
	return rows, nil
}

// benchTable is a data-plane table for n sessions of one family.
func benchTable(name string, v6 bool, n int) (*table.Table, error) {
	c4, c6 := uint32(n+n/4), uint32(table.CapacityMin)
	if v6 {
		c4, c6 = c6, c4
	}
	return table.New(name, c4, c6, -1)
}

// receiveApply fills a node's map and table with sessions records, then times
// applyRounds rounds of adds of churn new sessions and their deletes.
func receiveApply(v6 bool, sessions int) (cpu, wall time.Duration, records int, err error) {
	const churn = 1 << 16
	tbl, err := benchTable(fmt.Sprintf("gapply%v", v6), v6, sessions+churn)
	if err != nil {
		return 0, 0, 0, err
	}
	defer tbl.Close()
	conn := &feedConn{ch: make(chan []byte, 1024), done: make(chan struct{})}
	var applied atomic.Int64
	cfg := gossip.Config{HostID: 1, Addr: netip.MustParseAddr("198.18.50.1"), MAC: net.HardwareAddr{2, 0, 0, 0, 0, 1},
		Keys: benchRing, Linger: -1, HeartbeatInterval: time.Hour,
		OnConverge: func(s gossip.ConvergeSample) { applied.Add(int64(s.Records)) }}
	if v6 {
		cfg.SizeHint6 = sessions + churn
	} else {
		cfg.SizeHint = sessions + churn
	}
	n, err := gossip.New(cfg, conn, tbl, nopTemplates{})
	if err != nil {
		return 0, 0, 0, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	defer func() { cancel(); <-done }()
	var seq uint64
	feed := func(dgs [][]byte, want int64) error {
		deadline := time.Now().Add(time.Minute)
		for _, d := range dgs {
			conn.ch <- d
		}
		for applied.Load() < want {
			if time.Now().After(deadline) {
				return fmt.Errorf("%d of %d records applied; %+v", applied.Load(), want, n.Stats())
			}
			time.Sleep(200 * time.Microsecond)
		}
		return nil
	}
	epoch := wire.EpochAt(time.Now())
	recs := make([]wire.Record, sessions)
	for i := range recs {
		recs[i] = wire.Record{Op: wire.OpAdd, Key: applyKey(v6, i), Owner: session.Owner{Host: 2, Epoch: epoch}}
	}
	if err := feed(datagrams(recs, &seq), int64(sessions)); err != nil {
		return 0, 0, 0, err
	}
	var dgs [][]byte
	for range applyRounds {
		adds := make([]wire.Record, churn)
		dels := make([]wire.Record, churn)
		for i := range adds {
			k := applyKey(v6, sessions+i)
			adds[i] = wire.Record{Op: wire.OpAdd, Key: k, Owner: session.Owner{Host: 2, Epoch: epoch}}
			dels[i] = wire.Record{Op: wire.OpDelete, Key: k, Owner: session.Owner{Host: 2}}
		}
		dgs = append(dgs, datagrams(adds, &seq)...)
		dgs = append(dgs, datagrams(dels, &seq)...)
	}
	records = 2 * churn * applyRounds
	before := applied.Load()
	c0, t0 := processCPU(), time.Now()
	if err := feed(dgs, before+int64(records)); err != nil {
		return 0, 0, 0, err
	}
	cpu, wall = processCPU()-c0, time.Since(t0)
	if v4, v6n := tbl.Len(); v4+v6n != sessions {
		return 0, 0, 0, fmt.Errorf("table holds %d sessions, want %d", v4+v6n, sessions)
	}
	if st := n.Stats(); st.TableErrors != 0 || st.SeqGaps != 0 {
		return 0, 0, 0, fmt.Errorf("node: %d table errors, %d gaps", st.TableErrors, st.SeqGaps)
	}
	return cpu, wall, records, nil
}

// join has host 1 own sessions sessions and host 2 start and repair from it.
func join(v6 bool, sessions int) (cpu, wall time.Duration, err error) {
	hub, nt := gossiptest.NewHub(), gossiptest.NewNet()
	cfg := func(id uint16) gossip.Config {
		c := gossip.Config{HostID: id, Addr: netip.AddrFrom4([4]byte{198, 18, 50, byte(id)}), MAC: net.HardwareAddr{2, 0, 0, 0, 0, byte(id)},
			Keys: benchRing, Linger: -1, HeartbeatInterval: 20 * time.Millisecond, Repair: true, NackRing: -1,
			RepairTimeout: time.Minute, RepairAuthTimeout: 10 * time.Second, RepairMaxRecords: sessions}
		c.RepairListener = nt.Listen(netip.AddrPortFrom(c.Addr, gossip.DefaultGossipPort))
		c.RepairDialer = nt.From(c.Addr)
		if v6 {
			c.SizeHint6 = sessions
		} else {
			c.SizeHint = sessions
		}
		return c
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	src, err := gossip.New(cfg(1), hub.Conn(), gossiptest.NewTableSize(sessions), nopTemplates{})
	if err != nil {
		return 0, 0, err
	}
	for i := range sessions {
		if err := src.LocalAdd(applyKey(v6, i)); err != nil && !errors.Is(err, gossip.ErrQueueFull) {
			return 0, 0, err
		}
	}
	srcDone := make(chan error, 1)
	go func() { srcDone <- src.Run(ctx) }()
	defer func() { cancel(); <-srcDone }()
	// Let the source send what it queued (at most MaxQueue records) before the new
	// host listens: the new host learns everything from the repair.
	for deadline := time.Now().Add(time.Minute); src.Stats().QueueLen > 0; {
		if time.Now().After(deadline) {
			return 0, 0, errors.New("source queue not drained")
		}
		time.Sleep(time.Millisecond)
	}
	tbl, err := benchTable(fmt.Sprintf("gjoin%v", v6), v6, sessions)
	if err != nil {
		return 0, 0, err
	}
	defer tbl.Close()
	c0, t0 := processCPU(), time.Now()
	dst, err := gossip.New(cfg(2), hub.Conn(), tbl, nopTemplates{})
	if err != nil {
		return 0, 0, err
	}
	ctx2, cancel2 := context.WithCancel(ctx)
	dstDone := make(chan error, 1)
	go func() { dstDone <- dst.Run(ctx2) }()
	defer func() { cancel2(); <-dstDone }()
	for deadline := time.Now().Add(time.Minute); ; {
		if v4, v6n := tbl.Len(); v4+v6n == sessions {
			break
		}
		if time.Now().After(deadline) {
			v4, v6n := tbl.Len()
			return 0, 0, fmt.Errorf("%d of %d sessions after a minute; %+v", v4+v6n, sessions, dst.Stats())
		}
		time.Sleep(200 * time.Microsecond)
	}
	cpu, wall = processCPU()-c0, time.Since(t0)
	// The repair counts itself complete just after its last Apply.
	for deadline := time.Now().Add(10 * time.Second); dst.Stats().RepairsCompleted == 0; {
		if time.Now().After(deadline) {
			return 0, 0, fmt.Errorf("no repair completed: %+v", dst.Stats())
		}
		time.Sleep(time.Millisecond)
	}
	return cpu, wall, nil
}
