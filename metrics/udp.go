package metrics

// UDPSessions are the counters of UDP session learning and QUIC CID routing (daemon's
// UDP learner and the lcores' rings), summed over lcores.
type UDPSessions struct {
	// Reported: flows the lcores reported (new, and live ones once per refresh tick);
	// RingFull: reports lost to a full ring (made again by the flow's next packet).
	Reported, RingFull uint64
	// Learned: flows claimed; Refreshed: reports of flows already claimed (nothing
	// gossiped); Expired: flows deleted after their idle timeout; Errors: claims or
	// deletes that failed.
	Learned, Refreshed, Expired, Errors uint64
	// Flows: UDP flows claimed by this host (gauge).
	Flows uint64
	// CIDRedirect, CIDLocal, CIDNotLive: unknown flows routed by the host id in their
	// QUIC DCID to a peer, to this host, or not (the host named was not live).
	CIDRedirect, CIDLocal, CIDNotLive uint64
}

var (
	dUDPReported = newDesc("udp", "reported_flows_total", "UDP flows of [[udp_sessions]] ports the lcores saw this host's kernel answer and reported (new flows, and live ones once per refresh tick).", cnt)
	dUDPRingFull = newDesc("udp", "ring_full_total", "Reports of UDP flows lost to a full learning ring (the flow's next packet reports it again).", cnt)
	dUDPLearned  = newDesc("udp", "learned_flows_total", "UDP flows claimed by this host and gossiped.", cnt)
	dUDPRefresh  = newDesc("udp", "refreshed_flows_total", "Reports of UDP flows already claimed by this host (alive: nothing gossiped).", cnt)
	dUDPExpired  = newDesc("udp", "expired_flows_total", "UDP flows deleted after their port's idle_timeout without an answer from this host.", cnt)
	dUDPErrors   = newDesc("udp", "errors_total", "UDP flow claims or deletes that failed (gossip queue full, table errors).", cnt)
	dUDPFlows    = newDesc("udp", "flows", "UDP flows claimed by this host now.", gauge)
	dUDPCID      = newDesc("udp", "quic_cid_routed_total", "Packets of unknown flows on quic_cid ports, by where their DCID's host id sent them: redirect (a live peer), local (this host), not_live (the host named had no template: parked or to the kernel).", cnt, "to")
)

func init() {
	allDescs = append(allDescs, dUDPReported, dUDPRingFull, dUDPLearned, dUDPRefresh, dUDPExpired, dUDPErrors, dUDPFlows, dUDPCID)
}

// collectUDP emits s's UDP session counters (nil: no [[udp_sessions]]).
func collectUDP(u func(d desc, v uint64, labels ...string), s *UDPSessions) {
	if s == nil {
		return
	}
	u(dUDPReported, s.Reported)
	u(dUDPRingFull, s.RingFull)
	u(dUDPLearned, s.Learned)
	u(dUDPRefresh, s.Refreshed)
	u(dUDPExpired, s.Expired)
	u(dUDPErrors, s.Errors)
	u(dUDPFlows, s.Flows)
	u(dUDPCID, s.CIDRedirect, "redirect")
	u(dUDPCID, s.CIDLocal, "local")
	u(dUDPCID, s.CIDNotLive, "not_live")
}
