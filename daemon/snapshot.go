package daemon

import (
	"time"

	"github.com/homing-dev/homing/gossip"
	"github.com/homing-dev/homing/lcore"
	"github.com/homing-dev/homing/metrics"
	"github.com/homing-dev/homing/session"
)

// The metrics source: Snapshot reads every counter for the Prometheus collector (lcore,
// ports, table, gossip), and the per-owner entry counts it caches.

// Snapshot reads every counter (metrics.Source).
func (o *ops) Snapshot() metrics.Snapshot {
	d := o.d
	var s metrics.Snapshot
	if d.DP != nil {
		for _, l := range d.DP.Stats() {
			s.Lcores = append(s.Lcores, lcoreMetrics(l))
		}
	}
	if ps, err := d.NICStats(); err == nil {
		s.Ports = append(s.Ports, withLinkQueues(d.nic, portMetrics("nic", ps.RxPackets, ps.TxPackets, ps.RxBytes, ps.TxBytes, ps.RxMissed, ps.RxErrors, ps.TxErrors, ps.RxNoMbuf)))
	}
	if ps, err := d.KernelStats(); err == nil {
		s.Ports = append(s.Ports, withLinkQueues(d.tap, portMetrics("kernel", ps.RxPackets, ps.TxPackets, ps.RxBytes, ps.TxBytes, ps.RxMissed, ps.RxErrors, ps.TxErrors, ps.RxNoMbuf)))
	}
	if d.Table != nil {
		t := &metrics.Table{}
		t.Entries4, t.Entries6 = d.Table.Len()
		t.Capacity4, t.Capacity6 = d.Table.Capacity()
		ts := d.Table.Stats()
		t.Inserts, t.Updates, t.Deletes, t.DeleteMisses = ts.Inserts, ts.Updates, ts.Deletes, ts.DeleteMiss
		t.Full, t.Errors, t.Invalid = ts.Full, ts.Errors, ts.Invalid
		t.ReclaimWaits, t.ReclaimTimeouts = ts.ReclaimWaits, ts.ReclaimTimeouts
		t.ByOwner = o.ownerCounts()
		s.Table = t
	}
	if sv := d.serving.Load(); sv != nil {
		s.Serving = sv.metrics()
	}
	if n := d.Node(); n != nil {
		s.Gossip = gossipMetrics(n)
		s.Gossip.Warming = d.warming.Load()
	}
	if d.ctl != nil && d.ctl.dom != nil && d.ctl.dom.relay != nil {
		rs := d.ctl.dom.relay.Stats()
		s.Relay = &metrics.Relay{Forwarded: rs.Forwarded, SendErrors: rs.SendErrors, Received: rs.Received,
			Relayed: rs.Relayed, Duplicates: rs.Duplicates, Loops: rs.Loops, AuthFailures: rs.AuthFailures,
			Malformed: rs.Malformed, Replays: rs.Replays}
	}
	if d.ctl != nil && d.ctl.probe != nil {
		ps := d.ctl.probe.Stats()
		s.Probe = &metrics.Probe{Lost: ps.Lost, Resyncs: ps.Resyncs, ResyncAdds: ps.ResyncAdds, ResyncDeletes: ps.ResyncDeletes, Sessions: ps.Sessions}
	}
	return s
}

func lcoreMetrics(l lcore.Stats) metrics.Lcore {
	m := metrics.Lcore{ID: l.Lcore, RxNIC: l.RxNIC, RxKernel: l.FromKernel, TxNIC: l.TxNIC, TxKernel: l.TxTAP,
		Loops: l.Loops, IdleLoops: l.IdleLoops, Sleeps: l.Sleeps, BusyCycles: l.BusyCycles, Cycles: l.Cycles,
		TemplateRetries: l.TemplateRetries, ParkIn: l.ParkIn, ParkRedirect: l.ParkRedirect, ParkLocal: l.ParkLocal,
		ParkExpired: l.ParkExpired, ParkFull: l.ParkFull, ParkWarmDrop: l.ParkWarmDrop,
		ParkUDPIn: l.ParkUDPIn, ParkUDPFull: l.ParkUDPFull,
		ICMPTooBig: l.ICMPTooBig, MSSClamped: l.MSSClamped, FragTunnelled: l.FragTunnelled}
	m.Classes = [metrics.NumClasses]uint64{
		metrics.ClassRedirect: l.Redirect, metrics.ClassLocal: l.Local, metrics.ClassMiss: l.Miss,
		metrics.ClassDeadOwner: l.DeadOwner, metrics.ClassSYN: l.SYN, metrics.ClassDecap: l.Decap,
		metrics.ClassGUEBad: l.GUEBad, metrics.ClassOther: l.Other, metrics.ClassFrag: l.Frag,
		metrics.ClassIPOptions: l.IPOpt, metrics.ClassMalformed: l.Malformed, metrics.ClassNoRedirect: l.NoRedirect,
		metrics.ClassUDPPlain: l.UDPPlain, metrics.ClassQUICInitial: l.QUICInitial, metrics.ClassTooBig: l.TooBig,
	}
	m.Drops = [metrics.NumDrops]uint64{metrics.DropNICTxFull: l.DropNICTx, metrics.DropKernelTxFull: l.DropTAPTx,
		metrics.DropNoHeadroom: l.DropHeadroom, metrics.DropTooBig: l.DropTooBig}
	return m
}

func portMetrics(name string, v ...uint64) metrics.Port {
	return metrics.Port{Name: name, RxPackets: v[0], TxPackets: v[1], RxBytes: v[2], TxBytes: v[3],
		RxMissed: v[4], RxErrors: v[5], TxErrors: v[6], RxNoMbuf: v[7]}
}

func gossipMetrics(n *gossip.Node) *metrics.Gossip {
	st := n.Stats()
	return &metrics.Gossip{
		DatagramsSent: st.DatagramsSent, BytesSent: st.BytesSent, HeartbeatsSent: st.HeartbeatsSent,
		RecordsSent: st.RecordsSent, SendErrors: st.SendErrors,
		DatagramsReceived: st.DatagramsReceived, BytesReceived: st.BytesReceived,
		HeartbeatsReceived: st.HeartbeatsReceived, RecordsReceived: st.RecordsReceived, ReceiveErrors: st.RecvErrors,
		Rejected: map[string]uint64{
			"bad_magic": st.BadMagic, "bad_version": st.BadVersion, "unknown_type": st.UnknownType,
			"truncated": st.Truncated, "oversize": st.Oversize, "auth": st.AuthFailures, "malformed": st.Malformed,
			"own": st.OwnDatagrams, "unknown_host": st.UnknownHost, "mismatch": st.Mismatch, "replay": st.Replays,
			"id_conflict": st.IDConflicts, "duplicate_id": st.DuplicateIDs, "future_incarnation": st.FutureIncarnations,
			"outside_window": st.OutsideWindow, "unannounced": st.Unannounced,
		},
		RepairServeRefused: map[string]uint64{
			"stranger": st.RepairServeStranger, "per_source": st.RepairServePerSource, "busy": st.RepairServeRefused,
			"slow": st.RepairServeSlow, "rejected": st.RepairServeRejects,
		},
		AuthFailures: st.AuthFailures, SeqGaps: st.SeqGaps, RecordsApplied: st.RecordsApplied,
		StaleRecords: st.StaleRecords, ForeignRecords: st.ForeignRecords, LocalUpdates: st.LocalUpdates,
		GraceDrops: st.GraceDrops, TableErrors: st.TableErrors, TemplateErrors: st.TemplateErrors,
		QueueOverflow: st.QueueOverflow, DiscoveryErrors: st.DiscoveryErrors,
		QueueLen: st.QueueLen, PeersUp: st.PeersUp, Sessions: st.Sessions, Incarnation: n.Incarnation(),
		RepairsStarted: st.RepairsStarted, RepairsCompleted: st.RepairsCompleted, RepairsFailed: st.RepairsFailed,
		RepairAuthFailures: st.RepairAuthFailures, RepairRecords: st.RepairRecords, RepairRemoved: st.RepairRemoved,
		RepairsServed: st.RepairsServed, RepairServeRejects: st.RepairServeRejects, RepairRefused: st.RepairServeRefused,
		DigestMismatches: st.DigestMismatches, SeqConflicts: st.SeqConflicts,
		NacksSent: st.NacksSent, NackRecovered: st.NackRecovered, NackFallbacks: st.NackFallbacks, NackResent: st.NackResent,
		HeartbeatAge: heartbeatAges(n),
	}
}

// ownerCounts counts table entries per owner. It iterates the table (about 150 ms per
// million entries on the development VM) only when the table changed since the last
// count, and then at most at 1/OwnerCountDuty of one core: a small table is counted
// afresh at every call, a large one at most every 100 × its counting time.
func (o *ops) ownerCounts() map[uint16]int {
	o.countMu.Lock()
	defer o.countMu.Unlock()
	ts := o.d.Table.Stats()
	gen := ts.Inserts + ts.Updates + ts.Deletes
	if o.owners != nil && (gen == o.ownersGen || time.Since(o.ownersAt) < OwnerCountDuty*o.ownersCost) {
		return o.owners
	}
	start := time.Now()
	m := map[uint16]int{}
	o.d.Table.Entries(func(_ session.Key, ow session.Owner) bool {
		m[ow.Host]++
		return true
	})
	o.owners, o.ownersAt, o.ownersCost, o.ownersGen = m, time.Now(), time.Since(start), gen
	return m
}
