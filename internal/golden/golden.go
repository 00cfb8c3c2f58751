// Package golden holds the golden-pcap test vectors of the homing data plane: a fixed
// scenario (this host, one live peer, one dead owner, a small ownership table), a list of
// named input frames for the NIC port and for the kernel (TAP) port, and, decided here
// from the pipeline's written rules and independently of the C code, what must come out
// of each output port.
//
// How a data-plane test uses it:
//
//	golden.Self, golden.Peers, golden.Sessions  --> program the table and the templates
//	golden.WritePcaps(dir)                       --> nic-in.pcap, kernel-in.pcap
//	run the pipeline on net_pcap (rx_pcap=nic-in.pcap,tx_pcap=nic-out.pcap, and the
//	same for the kernel port)
//	golden.CheckPcaps(nicOut, kernelOut)         --> nil, or every mismatch by case name
//
// The rules the vectors encode (the data plane's contract):
//
//	NIC rx:
//	  IPv4 UDP to Self.Addr:Self.Port from a live peer (Peers[].Addr), GUE 00 {04|29}
//	    0000, valid inner IP of that version, TCP/UDP to a VIP (or an ICMP error about
//	    a VIP flow, see gue.go)                        -> Decap -> kernel port
//	  the same from another source, with an invalid GUE header or inner packet, or an
//	    inner packet to another destination            -> Drop, counted by reason
//	  TCP SYN without ACK                               -> kernel port, unchanged
//	  TCP/UDP to a VIP (IPv4: IHL 5, not a fragment; IPv6: next header TCP/UDP),
//	    owner a live peer                               -> Encap -> NIC port
//	    owned here, dead owner, not in the table        -> kernel port, unchanged
//	  anything else (ARP, ICMP, ND, options, fragments, extension headers, VLAN,
//	    other EtherTypes, multicast, truncated/malformed) -> kernel port, unchanged
//	kernel rx: everything                               -> NIC port, unchanged
//	Order is preserved per (input port, output port) pair.
//
// Check reports every mismatch as a Problem naming the case, the output port and position,
// the field (e.g. "ipv4.checksum (offset 24)", "inner.tcp.seq (offset 40)", "order",
// "missing") with want/got values and a marked hex dump of small differences.
//
// The vectors are plain Go values: nothing here touches DPDK. For tools outside Go the
// inputs are also committed as testdata/nic-in.pcap and testdata/kernel-in.pcap, with the
// verdict of every frame in testdata/cases.txt (a test keeps them in step with Cases;
// "go test ./internal/golden -run TestCommittedTestdata -update" rewrites them). FuzzSeeds
// returns every input frame for seeding a classifier's fuzz corpus.
package golden

import (
	"net"
	"net/netip"

	"github.com/homing-dev/homing/session"
)

// Host is one homing host as the data plane of this host sees it.
type Host struct {
	ID   uint16
	Addr netip.Addr       // outer (tunnel) address; IPv4 in this scenario
	MAC  net.HardwareAddr // NIC MAC (same L2 domain: the template's destination MAC)
	Port uint16           // GUE UDP port
}

// Entry is one row of the ownership table.
type Entry struct {
	Key   session.Key
	Owner uint16
}

// Scenario constants.
const (
	// TunnelPort is the GUE UDP port of every host in the scenario.
	TunnelPort = 6080
	// DeadPeer owns S7 but has no published template (not live).
	DeadPeer uint16 = 7
	// SrcPortMin and SrcPortMax bound the flow-hash UDP source port of encapsulated frames.
	SrcPortMin = 49152
	SrcPortMax = 65535
)

func self() Host {
	return Host{ID: 1, Addr: netip.MustParseAddr("198.18.0.11"), MAC: mac(0x01), Port: TunnelPort}
}

func peer2() Host {
	return Host{ID: 2, Addr: netip.MustParseAddr("198.18.0.12"), MAC: mac(0x02), Port: TunnelPort}
}

func vips() []netip.Addr {
	return []netip.Addr{netip.MustParseAddr("198.19.255.1"), netip.MustParseAddr("2001:2:ff::1")}
}

func mac(last byte) net.HardwareAddr { return net.HardwareAddr{0x02, 0, 0, 0, 0, last} }

var (
	client4 = netip.MustParseAddr("198.18.100.2")
	client6 = netip.MustParseAddr("2001:2:100::2")
	vip4    = netip.MustParseAddr("198.19.255.1")
	vip6    = netip.MustParseAddr("2001:2:ff::1")
)

func key(proto uint8, src netip.Addr, sport uint16, dst netip.Addr, dport uint16) session.Key {
	return session.Key{Src: src, Dst: dst, SrcPort: sport, DstPort: dport, Proto: proto}
}

// The scenario's sessions (client -> VIP).
var (
	S1 = key(session.TCP, client4, 40001, vip4, 80) // owner 2 (live peer)
	S2 = key(session.TCP, client6, 40002, vip6, 80) // owner 2, IPv6
	S3 = key(session.TCP, client4, 40003, vip4, 80) // owner 1 (this host)
	S4 = key(session.TCP, client4, 40004, vip4, 80) // not in the table
	S5 = key(session.UDP, client4, 5353, vip4, 53)  // owner 2, UDP
	S7 = key(session.TCP, client4, 40007, vip4, 80) // owner 7 (dead peer)
)

func sessions() []Entry {
	return []Entry{{S1, 2}, {S2, 2}, {S3, 1}, {S5, 2}, {S7, DeadPeer}}
}

// The scenario as exported values, for the test glue that programs the data plane. The
// package's own expectations are built from private copies: changing these changes nothing
// in Cases or Check.
var (
	// Self is this host.
	Self = self()
	// VIPs are this host's virtual addresses (the destinations that are looked up).
	VIPs = vips()
	// Peers are the live peers, each with a published header template.
	Peers = []Host{peer2()}
	// Sessions is the ownership table. S4 is deliberately absent.
	Sessions = sessions()
	// RouterMAC is the source MAC of client frames arriving on the NIC port.
	RouterMAC = mac(0xfe)
)

// Port is a data-plane port.
type Port int

// The two ports of the pipeline.
const (
	PortNIC    Port = iota // the NIC (DPDK-owned) port
	PortKernel             // the kernel exception port (TAP)
)

func (p Port) String() string {
	switch p {
	case PortNIC:
		return "nic"
	case PortKernel:
		return "kernel"
	}
	return "port?"
}

// Kind is what the pipeline must do with a frame.
type Kind int

// The pipeline's verdicts.
const (
	ToKernel Kind = iota + 1 // NIC rx -> kernel port, byte for byte
	ToNIC                    // kernel rx -> NIC port, byte for byte
	Encap                    // NIC rx -> GUE-encapsulated to Want.Owner -> NIC port
	Decap                    // NIC rx -> outer headers stripped -> kernel port
)

func (k Kind) String() string {
	switch k {
	case ToKernel:
		return "to-kernel"
	case ToNIC:
		return "to-nic"
	case Encap:
		return "encap"
	case Decap:
		return "decap"
	}
	if n, ok := kindNames[k]; ok {
		return n
	}
	return "kind?"
}

// kindNames names the kinds of other scenarios (mtu.go).
var kindNames = map[Kind]string{}

// Want is the expected outcome of one input frame.
type Want struct {
	Kind Kind
	// Owner is the owner host of an encapsulated frame (Encap only).
	Owner uint16
	// Session is the session of an encapsulated frame: frames of one session carry one
	// UDP source port (Encap only).
	Session session.Key
	// Inner is the inner IP packet: what Encap must carry (the input without its Ethernet
	// header and padding) and what Decap must deliver after the Ethernet header.
	Inner []byte
	// Frame is the expected output frame, exact for ToKernel, ToNIC and Decap; for Encap
	// exact except the UDP source port (bytes 34-35), which is zero here.
	Frame []byte
	// More are further output frames after Frame, in order, compared as Frame is (the
	// MTU budget's fragments: Frame carries the first).
	More [][]byte
	// Counter is, for Drop, the data plane's refusal counter that the frame moves by
	// one (GUE: the reason label of homing_lcore_gue_refused_total); "" for the drops
	// of the MTU budget, counted in its own counters.
	Counter string
}

// WantCounters sums the Counter of the Drop cases of cs: what the refusal counters must
// have moved by after a run of cs's NIC inputs.
func WantCounters(cs []Case) map[string]uint64 {
	m := map[string]uint64{}
	for _, c := range cs {
		if c.Want.Kind == Drop && c.Want.Counter != "" {
			m[c.Want.Counter]++
		}
	}
	return m
}

// Out is the output port of the verdict (Drop: none; PortKernel is returned).
func (w Want) Out() Port {
	if w.Kind == Encap || w.Kind == ToNIC || w.Kind == Reply || w.Kind == Rewrite {
		return PortNIC
	}
	return PortKernel
}

// Case is one named input frame and its expected outcome.
type Case struct {
	Name  string
	In    Port
	Frame []byte
	Want  Want
	// Why names the rule that decides the outcome.
	Why string
}
