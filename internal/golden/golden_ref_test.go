package golden

// A reference pipeline in pure Go, written from the rules in the package comment and
// sharing no code with the expectations (it parses raw bytes with encoding/binary and
// builds the encapsulation by hand). Its outputs must pass Check.

import (
	"encoding/binary"
	"hash/fnv"
	"net/netip"

	"github.com/homing-dev/homing/session"
)

type refHost struct {
	addr [4]byte
	mac  [6]byte
	port uint16
}

type refPipeline struct {
	self   refHost
	vips   map[netip.Addr]bool
	peers  map[uint16]refHost // live peers (templates)
	owner  map[session.Key]uint16
	selfID uint16
}

func newRefPipeline() *refPipeline {
	toHost := func(h Host) refHost {
		var r refHost
		r.addr = h.Addr.As4()
		copy(r.mac[:], h.MAC)
		r.port = h.Port
		return r
	}
	p := &refPipeline{
		self:   toHost(Self),
		selfID: Self.ID,
		vips:   map[netip.Addr]bool{},
		peers:  map[uint16]refHost{},
		owner:  map[session.Key]uint16{},
	}
	for _, v := range VIPs {
		p.vips[v] = true
	}
	for _, h := range Peers {
		p.peers[h.ID] = toHost(h)
	}
	for _, e := range Sessions {
		p.owner[e.Key] = e.Owner
	}
	return p
}

// run feeds the two inputs through the pipeline. The kernel port's frames reach the NIC
// output before (kernelFirst) or after the NIC port's encapsulated frames.
func (p *refPipeline) run(nicIn, kernelIn [][]byte, kernelFirst bool) (nicOut, kernelOut [][]byte) {
	var encaps [][]byte
	for _, f := range nicIn {
		out, toNIC := p.nicRx(f)
		if out == nil {
			continue // dropped
		}
		if toNIC {
			encaps = append(encaps, out)
		} else {
			kernelOut = append(kernelOut, out)
		}
	}
	var passed [][]byte
	for _, f := range kernelIn {
		passed = append(passed, append([]byte(nil), f...))
	}
	if kernelFirst {
		return append(passed, encaps...), kernelOut
	}
	return append(encaps, passed...), kernelOut
}

// nicRx returns the output frame and whether it goes to the NIC (else to the kernel);
// nil: dropped.
func (p *refPipeline) nicRx(f []byte) ([]byte, bool) {
	same := append([]byte(nil), f...)
	if len(f) < 14 {
		return same, false
	}
	be := binary.BigEndian
	l3 := f[14:]
	var k session.Key
	var ipLen int
	var l4 []byte
	switch be.Uint16(f[12:]) {
	case 0x0800:
		if len(l3) < 20 || l3[0]>>4 != 4 {
			return same, false
		}
		ihl := int(l3[0]&0x0f) * 4
		total := int(be.Uint16(l3[2:]))
		if ihl < 20 || total < ihl || total > len(l3) {
			return same, false
		}
		if be.Uint16(l3[6:])&0x3fff != 0 || ihl != 20 {
			return same, false // fragment or options
		}
		ipLen, l4 = total, l3[ihl:total]
		src, _ := netip.AddrFromSlice(l3[12:16])
		dst, _ := netip.AddrFromSlice(l3[16:20])
		k = session.Key{Src: src, Dst: dst, Proto: l3[9]}
		if k.Proto == session.UDP && [4]byte(l3[16:20]) == p.self.addr && len(l4) >= 8 &&
			be.Uint16(l4[2:]) == p.self.port {
			if !p.peerAddr(src) {
				return nil, false
			}
			inner, ok := p.gue(l4)
			if !ok || !p.innerOK(inner) {
				return nil, false
			}
			out := append([]byte(nil), f[:12]...)
			if inner[0]>>4 == 4 {
				out = append(out, 0x08, 0x00)
			} else {
				out = append(out, 0x86, 0xdd)
			}
			return append(out, inner...), false
		}
	case 0x86dd:
		if len(l3) < 40 || l3[0]>>4 != 6 {
			return same, false
		}
		ipLen = 40 + int(be.Uint16(l3[4:]))
		if ipLen > len(l3) {
			return same, false
		}
		l4 = l3[40:ipLen]
		src, _ := netip.AddrFromSlice(l3[8:24])
		dst, _ := netip.AddrFromSlice(l3[24:40])
		k = session.Key{Src: src, Dst: dst, Proto: l3[6]}
	default:
		return same, false
	}
	switch k.Proto {
	case session.TCP:
		if len(l4) < 20 {
			return same, false
		}
		if l4[13]&0x12 == 0x02 { // SYN without ACK
			return same, false
		}
	case session.UDP:
		if len(l4) < 8 {
			return same, false
		}
	default:
		return same, false
	}
	if !p.vips[k.Dst] {
		return same, false
	}
	k.SrcPort, k.DstPort = be.Uint16(l4), be.Uint16(l4[2:])
	owner, ok := p.owner[k]
	if !ok || owner == p.selfID {
		return same, false
	}
	peer, live := p.peers[owner]
	if !live {
		return same, false
	}
	return p.encap(peer, k, l3[:ipLen]), true
}

// peerAddr: a is a live peer's tunnel address.
func (p *refPipeline) peerAddr(a netip.Addr) bool {
	for _, h := range p.peers {
		if netip.AddrFrom4(h.addr) == a {
			return true
		}
	}
	return false
}

// innerOK: what a peer tunnels, TCP/UDP to a VIP (IPv4 without options; a fragment only
// up to its protocol and destination) or an ICMP error about a VIP flow.
func (p *refPipeline) innerOK(in []byte) bool {
	be := binary.BigEndian
	var proto byte
	var dst netip.Addr
	var l4 []byte
	frag := false
	if in[0]>>4 == 4 {
		n := int(be.Uint16(in[2:]))
		if in[0]&0x0f != 5 {
			return false
		}
		proto, dst, l4 = in[9], netip.AddrFrom4([4]byte(in[16:20])), in[20:n]
		frag = be.Uint16(in[6:])&0x3fff != 0
	} else {
		proto, dst, l4 = in[6], netip.AddrFrom16([16]byte(in[24:40])), in[40:40+int(be.Uint16(in[4:]))]
	}
	if !p.vips[dst] {
		return false
	}
	switch proto {
	case session.TCP:
		return frag || len(l4) >= 20 && int(l4[12]>>4)*4 >= 20 && int(l4[12]>>4)*4 <= len(l4)
	case session.UDP:
		return frag || len(l4) >= 8
	case 1, 58:
		if frag || len(l4) < 8 {
			return false
		}
		q := l4[8:]
		if proto == 1 {
			if (l4[0] != 3 && l4[0] != 11 && l4[0] != 12) || len(q) < 20 || q[0]>>4 != 4 {
				return false
			}
			qhl := int(q[0]&0x0f) * 4
			return qhl >= 20 && len(q) >= qhl+4 && (q[9] == 6 || q[9] == 17) &&
				be.Uint16(q[6:])&0x1fff == 0 && netip.AddrFrom4([4]byte(q[12:16])) == dst
		}
		return l4[0] >= 1 && l4[0] <= 4 && len(q) >= 44 && q[0]>>4 == 6 && (q[6] == 6 || q[6] == 17) &&
			netip.AddrFrom16([16]byte(q[8:24])) == dst
	}
	return false
}

// gue validates a GUE payload and returns its inner packet.
func (p *refPipeline) gue(udp []byte) ([]byte, bool) {
	if len(udp) < 8 || binary.BigEndian.Uint16(udp[2:]) != p.self.port {
		return nil, false
	}
	g := udp[8:]
	if len(g) < 4 || g[0] != 0 || g[2] != 0 || g[3] != 0 {
		return nil, false
	}
	inner := g[4:]
	switch g[1] {
	case 4:
		if len(inner) < 20 || inner[0]>>4 != 4 || inner[0]&0x0f < 5 {
			return nil, false
		}
		n := int(binary.BigEndian.Uint16(inner[2:]))
		if n < int(inner[0]&0x0f)*4 || n > len(inner) {
			return nil, false
		}
	case 41:
		if len(inner) < 40 || inner[0]>>4 != 6 || 40+int(binary.BigEndian.Uint16(inner[4:])) > len(inner) {
			return nil, false
		}
	default:
		return nil, false
	}
	return inner, true
}

func (p *refPipeline) encap(peer refHost, k session.Key, inner []byte) []byte {
	be := binary.BigEndian
	out := make([]byte, 46+len(inner))
	copy(out[0:], peer.mac[:])
	copy(out[6:], p.self.mac[:])
	be.PutUint16(out[12:], 0x0800)
	ip := out[14:34]
	ip[0] = 0x45
	be.PutUint16(ip[2:], uint16(20+8+4+len(inner)))
	be.PutUint16(ip[6:], 0x4000)
	ip[8], ip[9] = 64, 17
	copy(ip[12:], p.self.addr[:])
	copy(ip[16:], peer.addr[:])
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(be.Uint16(ip[i:]))
	}
	sum = sum>>16 + sum&0xffff
	sum += sum >> 16
	be.PutUint16(ip[10:], ^uint16(sum))
	udp := out[34:42]
	be.PutUint16(udp[0:], refFlowPort(k))
	be.PutUint16(udp[2:], peer.port)
	be.PutUint16(udp[4:], uint16(8+4+len(inner)))
	out[43] = 4
	if inner[0]>>4 == 6 {
		out[43] = 41
	}
	copy(out[46:], inner)
	return out
}

func refFlowPort(k session.Key) uint16 {
	h := fnv.New32a()
	h.Write(k.Src.AsSlice())
	h.Write(k.Dst.AsSlice())
	h.Write([]byte{byte(k.SrcPort >> 8), byte(k.SrcPort), byte(k.DstPort >> 8), byte(k.DstPort), k.Proto})
	return 49152 | uint16(h.Sum32()&0x3fff)
}

// refInputs splits Cases into the two input streams.
func refInputs() (nicIn, kernelIn [][]byte) {
	for _, c := range Cases() {
		if c.In == PortNIC {
			nicIn = append(nicIn, c.Frame)
		} else {
			kernelIn = append(kernelIn, c.Frame)
		}
	}
	return nicIn, kernelIn
}
