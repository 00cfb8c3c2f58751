package lab

import (
	"context"
	"encoding/binary"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/homing-dev/homing/gossip"
	"github.com/homing-dev/homing/gossip/wire"
	"github.com/homing-dev/homing/session"
)

// The hostile end-to-end test of issue 14: what an attacker on the Internet (the client
// namespace) and one on the POP LAN without the key (a rogue namespace on the bridge)
// try against a running POP, and what must come of it: nothing.

// hostileInner are the inner packets the attackers wrap in GUE to h1 (a shorthand per
// attack, the GUE protocol, the packet).
type hostileInner struct {
	what  string
	proto byte // GUE protocol: 4 or 41
	pkt   []byte
}

func serializeLayers(t *testing.T, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

// hostileInners builds the inner packets against host h (address host): a SYN
// from the client to h's repair port (a host-only port: any SYN-ACK would go to the
// client), a router advertisement to all nodes (a default route and a global prefix),
// an ICMP redirect of the client's route to the rogue, and UDP to the gossip group.
func hostileInners(t *testing.T, host, rogue, group netip.Addr) []hostileInner {
	ip4 := func(src, dst netip.Addr, p layers.IPProtocol) *layers.IPv4 {
		return &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: p, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
	}
	synIP := ip4(ClientAddr, host, layers.IPProtocolTCP)
	syn := &layers.TCP{SrcPort: hostileSYNPort, DstPort: GossipPort, SYN: true, Seq: 1, Window: 64240}
	must(t, syn.SetNetworkLayerForChecksum(synIP))

	raIP := &layers.IPv6{Version: 6, NextHeader: layers.IPProtocolICMPv6, HopLimit: 255,
		SrcIP: netip.MustParseAddr("fe80::66").AsSlice(), DstIP: netip.MustParseAddr("ff02::1").AsSlice()}
	icmp6 := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeRouterAdvertisement, 0)}
	must(t, icmp6.SetNetworkLayerForChecksum(raIP))
	prefix := append([]byte{64, 0xc0, 0, 0, 0x1c, 0x20, 0, 0, 0x1c, 0x20, 0, 0, 0, 0}, netip.MustParseAddr(hostilePrefix).AsSlice()...)
	ra := &layers.ICMPv6RouterAdvertisement{HopLimit: 64, RouterLifetime: 1800, Options: layers.ICMPv6Options{
		{Type: layers.ICMPv6OptSourceAddress, Data: net.HardwareAddr{2, 0, 0, 0, 0, 0x66}},
		{Type: layers.ICMPv6OptPrefixInfo, Data: prefix}}}

	// A host redirect (type 5 code 1) from the host's gateway (the router): send the client's packets
	// to the rogue. It quotes a packet the host sent to the client.
	qIP, qUDP := ip4(host, ClientAddr, layers.IPProtocolUDP), &layers.UDP{SrcPort: 53, DstPort: 40000}
	must(t, qUDP.SetNetworkLayerForChecksum(qIP))
	quote := serializeLayers(t, qIP, qUDP)[:28]
	redirect := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeRedirect, 1),
		Id: binary.BigEndian.Uint16(rogue.AsSlice()[:2]), Seq: binary.BigEndian.Uint16(rogue.AsSlice()[2:])}

	gIP := ip4(ClientAddr, group, layers.IPProtocolUDP)
	gIP.TTL = 1
	gUDP := &layers.UDP{SrcPort: GossipPort, DstPort: GossipPort}
	must(t, gUDP.SetNetworkLayerForChecksum(gIP))

	return []hostileInner{
		{"inner SYN to the repair port", 4, serializeLayers(t, synIP, syn)},
		{"inner router advertisement", 41, serializeLayers(t, raIP, icmp6, ra)},
		{"inner ICMP redirect", 4, serializeLayers(t, ip4(RouterLAN, host, layers.IPProtocolICMPv4), redirect, gopacket.Payload(quote))},
		{"inner UDP to the gossip group", 4, serializeLayers(t, gIP, gUDP, gopacket.Payload("HMG1 not from a host"))},
	}
}

const (
	hostileSYNPort = 47001
	hostilePrefix  = "2001:2:66::"
)

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// sendGUE sends each inner packet n times in GUE to dst's tunnel port from the
// namespace ns, from src (IP_TRANSPARENT: any address, a spoofed one included).
func sendGUE(t *testing.T, ns string, src, dst netip.Addr, inners []hostileInner, n int) {
	t.Helper()
	err := InNS(ns, func() error {
		lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_IP, syscall.IP_TRANSPARENT, 1)
			})
			if err != nil {
				return err
			}
			return serr
		}}
		c, err := lc.ListenPacket(context.Background(), "udp4", netip.AddrPortFrom(src, 0).String())
		if err != nil {
			return err
		}
		defer c.Close()
		to := net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, 6080))
		for _, in := range inners {
			for i := 0; i < n; i++ {
				if _, err := c.WriteTo(append([]byte{0, in.proto, 0, 0}, in.pkt...), to); err != nil {
					return fmt.Errorf("%s: %w", in.what, err)
				}
				time.Sleep(time.Millisecond)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("send GUE from %s in %s: %v", src, ns, err)
	}
}

// synAckWatch counts, in namespace ns, the TCP SYN-ACKs to ns's address addr from
// from:port, until stop is closed (a raw socket sees a copy of every TCP packet).
func synAckWatch(t *testing.T, ns string, addr, from netip.Addr, port uint16, stop chan struct{}) *atomic.Int64 {
	t.Helper()
	var n atomic.Int64
	var conn *net.IPConn
	if err := InNS(ns, func() error {
		var err error
		conn, err = net.ListenIP("ip4:tcp", &net.IPAddr{IP: addr.AsSlice()})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	go func() {
		<-stop
		conn.Close()
	}()
	go func() {
		buf := make([]byte, 1500)
		for {
			k, src, err := conn.ReadFrom(buf)
			if err != nil {
				return
			}
			a, _ := netip.AddrFromSlice(src.(*net.IPAddr).IP)
			if k >= 14 && a.Unmap() == from && binary.BigEndian.Uint16(buf) == port && buf[13]&0x12 == 0x12 {
				n.Add(1)
			}
		}
	}()
	return &n
}

// inNS runs a command in namespace ns and returns its output.
func inNS(t *testing.T, ns string, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s in %s: %v\n%s", strings.Join(args, " "), ns, err, out)
	}
	return strings.TrimSpace(string(out))
}

// gueRefused sums host n's GUE refusals by reason over its lcores.
func gueRefused(t *testing.T, ctx context.Context, l *Lab, n int) map[string]uint64 {
	t.Helper()
	st, err := l.Stats(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]uint64{}
	for _, lc := range st.Lcores {
		for k, v := range lc.GUERefused {
			m[k] += v
		}
	}
	return m
}

// rejects is host n's gossip reject counters by reason.
func rejects(t *testing.T, ctx context.Context, l *Lab, n int) map[string]uint64 {
	t.Helper()
	st, err := l.Stats(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	return maps.Clone(st.Reject)
}

// gossipCounters is host n's gossip counters; it fails the test if one this file
// reads is missing.
func gossipCounters(t *testing.T, ctx context.Context, l *Lab, n int) map[string]uint64 {
	t.Helper()
	st, err := l.Stats(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"datagrams_received", "heartbeats_received", "sequence_gaps"} {
		if _, ok := st.Gossip[k]; !ok {
			t.Fatalf("h%d's stats have no gossip counter %s", n, k)
		}
	}
	return st.Gossip
}

// checkRejects compares the reject counters' growth from before to after with want:
// each reason of want exactly, and with exact also every other reason at 0. It returns
// the growth as "reason n, ..." for the log.
func checkRejects(t *testing.T, who string, before, after, want map[string]uint64, exact bool) string {
	t.Helper()
	var parts []string
	for _, r := range sortedKeysU(after) {
		d := after[r] - before[r]
		if d != 0 {
			parts = append(parts, fmt.Sprintf("%s %d", r, d))
		}
		if w, ok := want[r]; ok && d != w || !ok && exact && d != 0 {
			t.Errorf("%s: gossip rejected %s moved by %d, want %d", who, r, d, w)
		}
	}
	for r, w := range want {
		if _, ok := after[r]; !ok && w != 0 {
			t.Errorf("%s: no gossip reject counter %s (want %d)", who, r, w)
		}
	}
	return strings.Join(parts, ", ")
}

// hostileReplayWindow is gossip.replay_window in TestHostilePOP: short, so that the
// datagrams the rogue captures while the connections open are outside it when it replays
// them to the restarted h3 a few seconds later.
const hostileReplayWindow = 2 * time.Second

// gossipCapture keeps the valid heartbeats and records datagrams a multicast socket on
// the POP LAN receives, until stop (at most max of them).
type gossipCapture struct {
	mu  sync.Mutex
	on  bool
	got []wire.Datagram
	max int
}

// captureGossip starts capturing from mc; it reads until mc is closed.
func captureGossip(mc *gossip.MulticastConn, max int) *gossipCapture {
	c := &gossipCapture{on: true, max: max}
	go func() {
		buf := make([]byte, wire.MaxDatagramLen)
		for {
			n, _, err := mc.Recv(buf)
			if err != nil {
				return
			}
			d := wire.Datagram(buf[:n])
			if d.Validate(0) != nil || d.Type() != wire.TypeHeartbeat && d.Type() != wire.TypeRecords {
				continue
			}
			c.mu.Lock()
			if c.on && len(c.got) < c.max {
				c.got = append(c.got, append(wire.Datagram(nil), d...))
			}
			c.mu.Unlock()
		}
	}()
	return c
}

// stop ends the capture and returns what it kept, in order of arrival.
func (c *gossipCapture) stop() []wire.Datagram {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.on = false
	return c.got
}

// blockGossip makes the kernel of namespace ns drop the gossip datagrams from the
// addresses from (an nftables input rule; a homingd's gossip socket is in its host's
// kernel, behind the TAP); unblockGossip removes the rule.
func blockGossip(t *testing.T, ns string, from ...netip.Addr) {
	t.Helper()
	var srcs []string
	for _, a := range from {
		srcs = append(srcs, a.String())
	}
	script := fmt.Sprintf(`add table ip hlabblock
add chain ip hlabblock in { type filter hook input priority 0; policy accept; }
add rule ip hlabblock in ip saddr { %s } udp dport %d counter drop
`, strings.Join(srcs, ", "), GossipPort)
	if err := runIn(script, "ip", "netns", "exec", ns, "nft", "-f", "-"); err != nil {
		t.Fatal(err)
	}
}

func unblockGossip(t *testing.T, ns string) {
	t.Helper()
	if err := run("ip", "netns", "exec", ns, "nft", "delete", "table", "ip", "hlabblock"); err != nil {
		t.Fatal(err)
	}
}

// sealHeartbeat is a heartbeat datagram sealed by s, as hb.Host would send it.
func sealHeartbeat(s *wire.Sealer, hb wire.Heartbeat, seq uint64) wire.Datagram {
	body := wire.AppendHeartbeat(nil, &hb)
	d := make(wire.Datagram, wire.HeaderLen+len(body)+wire.TagLen)
	copy(d[wire.HeaderLen:], body)
	s.Seal(d, wire.Header{Type: wire.TypeHeartbeat, Sender: hb.Host, Incarnation: hb.Incarnation, Seq: seq,
		Timestamp: time.Now().UnixNano()})
	return d
}

// TestHostilePOP: while 60 connections run through a POP of 3 hosts, an attacker on the
// Internet (the client namespace) and a rogue host on the POP LAN try what issue 14
// found open.
//
//  1. GUE to h1 carrying a SYN to a host-only port (the repair port; inner source the
//     client), a router advertisement, an ICMP redirect of the client's route, UDP to
//     the gossip group: from the client's and the rogue's own addresses, and with h2's
//     address forged (from the rogue on the LAN, and from the client through the
//     router).
//  2. Forged heartbeats claiming h2: without the key (a wrong key), and with the POP's
//     key (a keyed rogue): from the rogue's own address and MAC with incarnation 2^63
//     and with one 1 s ahead (within gossip.max_clock_skew), and with h2's own address
//     and MAC and incarnation 2^63.
//  3. Replays to a restarted receiver: the rogue captures the hosts' gossip while the
//     connections open; h3 is killed and restarted (gossip.replay_window is 2 s here)
//     and, before it hears its peers (their gossip is held back from it until then), the
//     rogue replays every captured datagram to the group, seconds old. At the same time
//     a repair-listener flood from the rogue hits h1 and h2, from which h3 repairs.
//  4. h1 is drained.
//
// Nothing has an effect. No SYN-ACK reaches the client, h1's TAP keeps no global IPv6
// address and no IPv6 default route, h1's route to the client is unchanged; GUE
// refusals move by exactly what was sent (unknown_source for strangers, inner_not_vip
// and inner_proto for a forged peer address). Every host refuses exactly the forged
// heartbeats, nothing else reaches a gossip socket: auth for the wrong key, id_conflict
// for the keyed rogue's address (alarmed in the log), future_incarnation for 2^63 from
// h2's own address; h2 keeps its address, MAC and incarnation and stays up on every
// host, and no table changes. The restarted h3 refuses every replayed datagram of h1
// and h2 as outside_window (h1 and h2 as replays of each other, their own as own),
// learns no peer and no session from them, and counts no sequence gap; its repairs
// succeed during the flood. No connection is reset, through the attacks and the drain.
func TestHostilePOP(t *testing.T) {
	requireFaultLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	t0 := time.Now()
	l := faultLab(t, ctx, 3, func(t *testing.T, _ int, toml string) string {
		return setKey(t, toml, "gossip", "replay_window", fmt.Sprintf("%q", hostileReplayWindow.String()))
	})
	hosts := l.Hosts()
	rogue := netip.MustParseAddr("198.18.0.250")
	rogueNS, err := l.AddSpy(rogue)
	if err != nil {
		t.Fatal(err)
	}
	cli := l.NS("cli")
	h1, peer := HostAddr(1), HostAddr(2)
	// The rogue listens to the gossip group from the start, and captures while the
	// connections open (records) and heartbeats flow.
	var mc *gossip.MulticastConn
	var rogueMAC net.HardwareAddr
	if err := InNS(rogueNS, func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		rogueMAC = ifi.HardwareAddr
		mc, err = gossip.ListenMulticast(gossip.MulticastConfig{Group: netip.AddrPortFrom(l.group(), GossipPort), Interface: "eth0"})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer mc.Close()
	capture := captureGossip(mc, 300)
	fleet := openFleet(t, ctx, l, 60, true)
	if err := sleep(ctx, 500*time.Millisecond); err != nil { // heartbeats: 5 a host
		t.Fatal(err)
	}
	captured, capturedAt := capture.stop(), time.Now()
	setup := time.Since(t0)

	// Before.
	tap1 := l.Host(1).NS
	route0 := inNS(t, tap1, "ip", "route", "get", ClientAddr.String())
	refused0 := map[int]map[string]uint64{}
	rejects0 := map[int]map[string]uint64{}
	for _, n := range hosts {
		refused0[n], rejects0[n] = gueRefused(t, ctx, l, n), rejects(t, ctx, l, n)
	}
	stop := make(chan struct{})
	synAcks := synAckWatch(t, cli, ClientAddr, h1, GossipPort, stop)
	vipSynAcks := synAckWatch(t, cli, ClientAddr, l.VIPAddr(), ServicePort, stop)
	// The watcher's control: a real connection to the VIP shows its SYN-ACK.
	if err := InNS(cli, func() error {
		c, err := net.DialTimeout("tcp4", l.Service().String(), 5*time.Second)
		if err == nil {
			c.Close()
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}

	// 1. GUE. Each inner packet twice from each source.
	const reps = 2
	inners := hostileInners(t, h1, rogue, l.group())
	sendGUE(t, cli, ClientAddr, h1, inners, reps) // the Internet, its own address
	sendGUE(t, rogueNS, rogue, h1, inners, reps)  // the LAN, its own address
	sendGUE(t, rogueNS, peer, h1, inners, reps)   // the LAN, h2's address forged
	sendGUE(t, cli, peer, h1, inners[:1], reps)   // the Internet, h2's address forged (through the router)
	want := map[string]uint64{
		"unknown_source": 2 * uint64(len(inners)) * reps,
		"inner_not_vip":  3 * reps, // the SYN (twice: LAN and Internet) and the gossip UDP
		"inner_proto":    2 * reps, // the router advertisement and the redirect
	}

	// 2. Forged heartbeats from the rogue claiming h2: a wrong key; then the POP's key.
	st2, err := l.Status(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	tables0 := map[int]map[string]uint16{}
	for _, n := range hosts {
		if tables0[n], err = l.Sessions(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	wrongKey := make([]byte, 32)
	for i := range wrongKey {
		wrongKey[i] = byte(i*5 + 3)
	}
	ring, err := wire.NewKeyRing(wrongKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	forger := wire.NewSealer(ring)
	const forged = 3
	for i := 0; i < forged; i++ {
		body := wire.AppendRecord(nil, wire.Record{Op: wire.OpAdd, Key: session.Key{Src: ClientAddr, Dst: l.VIPAddr(),
			SrcPort: 9, DstPort: ServicePort, Proto: session.TCP}, Owner: session.Owner{Host: 2, Epoch: 1 << 40}})
		d := make(wire.Datagram, wire.HeaderLen+len(body)+wire.TagLen)
		copy(d[wire.HeaderLen:], body)
		forger.Seal(d, wire.Header{Type: wire.TypeHeartbeat, Sender: 2, Incarnation: st2.Incarnation + 1, Seq: uint64(i + 1),
			Timestamp: time.Now().UnixNano()})
		if err := mc.Send(d); err != nil {
			t.Fatal(err)
		}
	}
	// The keyed rogue (a host of the POP gone bad, or a stolen key): h2's heartbeat as
	// captured, with the rogue's address and MAC, or h2's own, and a huge incarnation.
	keyRing, err := wire.LoadKeyFile(l.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	sealer := wire.NewSealer(keyRing)
	var hb2 wire.Heartbeat
	for _, d := range captured {
		if d.Sender() == 2 && d.Type() == wire.TypeHeartbeat && d.Incarnation() == st2.Incarnation {
			if hb2, err = wire.ParseHeartbeat(d.Body()); err != nil {
				t.Fatalf("a captured heartbeat of h2: %v", err)
			}
		}
	}
	if hb2.Host != 2 {
		t.Fatalf("the rogue captured no heartbeat of h2 (%d datagrams)", len(captured))
	}
	hb2.HasDigest = false
	impostor := func(inc uint64, own bool) wire.Heartbeat {
		hb := hb2
		hb.Incarnation = inc
		if !own {
			hb.Addr, hb.AltAddr, hb.MAC = rogue, netip.Addr{}, rogueMAC
		}
		return hb
	}
	ahead := uint64(time.Now().Add(time.Second).UnixNano())
	keyed := []struct {
		what   string
		hb     wire.Heartbeat
		reason string
	}{
		{"h2's id from the rogue's address and MAC, incarnation 2^63", impostor(1<<63, false), "id_conflict"},
		{"h2's id from the rogue's address and MAC, incarnation 1 s ahead", impostor(ahead, false), "id_conflict"},
		{"h2's id, address and MAC, incarnation 2^63", impostor(1<<63, true), "future_incarnation"},
	}
	wantRejects := map[int]map[string]uint64{}
	for _, n := range hosts {
		wantRejects[n] = map[string]uint64{"auth": forged}
	}
	for i, k := range keyed {
		if err := mc.Send(sealHeartbeat(sealer, k.hb, uint64(1<<40+i))); err != nil {
			t.Fatalf("send %s: %v", k.what, err)
		}
		for _, n := range hosts {
			if n == 2 {
				wantRejects[n]["own"]++ // its own id: ignored
			} else {
				wantRejects[n][k.reason]++
			}
		}
	}
	if err := sleep(ctx, time.Second); err != nil {
		t.Fatal(err)
	}
	close(stop)

	if n := synAcks.Load(); n != 0 {
		t.Errorf("the client saw %d SYN-ACKs from h1's repair port", n)
	}
	if vipSynAcks.Load() == 0 {
		t.Error("the watcher saw no SYN-ACK of the control connection to the VIP")
	}
	if a := inNS(t, tap1, "ip", "-6", "addr", "show", "dev", "homing0", "scope", "global"); a != "" {
		t.Errorf("h1's TAP has a global IPv6 address:\n%s", a)
	}
	if r := inNS(t, tap1, "ip", "-6", "route", "show", "default"); r != "" {
		t.Errorf("h1 has an IPv6 default route: %s", r)
	}
	if r := inNS(t, tap1, "ip", "-6", "route", "show", hostilePrefix+"/64"); r != "" {
		t.Errorf("h1 has a route to the advertised prefix: %s", r)
	}
	if r := inNS(t, tap1, "ip", "route", "get", ClientAddr.String()); r != route0 {
		t.Errorf("h1's route to the client changed:\nbefore %s\nafter  %s", route0, r)
	}
	checkPeer2 := func(when string) {
		t.Helper()
		for _, n := range hosts {
			if n == 2 {
				continue
			}
			ps, err := l.Peers(ctx, n)
			if err != nil {
				t.Fatal(err)
			}
			if len(ps) != len(hosts)-1 {
				t.Errorf("h%d has %d peers %s, want %d", n, len(ps), when, len(hosts)-1)
			}
			for _, p := range ps {
				if p.ID == 2 && (p.Address != peer.String() || p.MAC != st2.MAC || !p.Up || p.Incarnation != st2.Incarnation) {
					t.Errorf("h%d %s: peer 2 at %s %s, up %v, incarnation %d; want %s %s, up, incarnation %d", n, when,
						p.Address, p.MAC, p.Up, p.Incarnation, peer, st2.MAC, st2.Incarnation)
				}
			}
		}
	}
	for _, n := range hosts {
		got := gueRefused(t, ctx, l, n)
		var parts []string
		for _, r := range []string{"unknown_source", "malformed", "inner_malformed", "inner_proto", "inner_not_vip"} {
			d := got[r] - refused0[n][r]
			w := uint64(0)
			if n == 1 {
				w = want[r]
			}
			parts = append(parts, fmt.Sprintf("%s %d", r, d))
			if d != w {
				t.Errorf("h%d: GUE refused %s moved by %d, want %d", n, r, d, w)
			}
		}
		t.Logf("h%d GUE refused: %s", n, strings.Join(parts, ", "))
		// Nothing else from outside reaches a gossip socket: every reason checked.
		t.Logf("h%d gossip rejected (the forged heartbeats): %s", n,
			checkRejects(t, fmt.Sprintf("h%d", n), rejects0[n], rejects(t, ctx, l, n), wantRejects[n], true))
		tab, err := l.Sessions(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		if k, d := TableDiff(tab, tables0[n], 5); k > 0 {
			t.Errorf("h%d's table changed with the forged heartbeats (%d entries): %v", n, k, d)
		}
		if n != 2 {
			if b, err := os.ReadFile(l.Host(n).LogFile); err != nil || !strings.Contains(string(b), "gossip host id claimed from another address or MAC") {
				t.Errorf("h%d logged no alarm about h2's id claimed (%v)", n, err)
			}
		}
	}
	checkPeer2("after the forged heartbeats")

	// 3. h3 restarts, with a repair-listener flood of h1 and h2 (from which it repairs)
	// from the rogue, and the captured gossip replayed to it.
	stat3, err := l.Stats(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	strangers0 := gossipSum(t, ctx, l, []int{1, 2}, "repair_refused_stranger")["repair_refused_stranger"]
	floodCtx, floodStop := context.WithCancel(ctx)
	var flooders sync.WaitGroup
	var accepted atomic.Int64
	for i := 0; i < 8; i++ {
		target := HostAddr(1 + i%2)
		flooders.Add(1)
		go func() {
			defer flooders.Done()
			_ = InNS(rogueNS, func() error {
				d := net.Dialer{Timeout: time.Second}
				for floodCtx.Err() == nil {
					c, err := d.DialContext(floodCtx, "tcp4", netip.AddrPortFrom(target, GossipPort).String())
					if err != nil {
						time.Sleep(5 * time.Millisecond)
						continue
					}
					accepted.Add(1)
					c.Close()
				}
				return nil
			})
		}()
	}
	if err := l.Kill(3); err != nil {
		t.Fatal(err)
	}
	// h1's and h2's gossip is held back from h3 until the replays are counted, so that
	// the replayed datagrams are the first of their senders h3 sees: it holds no state
	// for them. (h3 stays in the ECMP route: every connection it receives is its own,
	// which it lists at start, so learning its peers late resets nothing.)
	ns3 := l.Host(3).NS
	blockGossip(t, ns3, h1, peer)
	blocked := true
	defer func() {
		if blocked {
			unblockGossip(t, ns3)
		}
	}()
	if err := l.Restart(ctx, 3); err != nil {
		t.Fatal(err)
	}
	// The rogue's probe: garbage to the group until h3's gossip socket counts one
	// (its data plane and socket are up). h1 and h2 count each.
	garbage := make([]byte, 64)
	probes := uint64(0)
	for end := time.Now().Add(10 * time.Second); ; {
		if err := mc.Send(garbage); err != nil {
			t.Fatal(err)
		}
		probes++
		if rejects(t, ctx, l, 3)["bad_magic"] > 0 {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("h3's gossip socket saw none of %d probes in 10 s", probes)
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	heartbeats := map[uint16]int{}
	for _, d := range captured {
		if d.Type() == wire.TypeHeartbeat {
			heartbeats[d.Sender()]++
		}
	}
	if heartbeats[1] == 0 || heartbeats[2] == 0 {
		t.Fatalf("the rogue captured %d datagrams, heartbeats by host %v: none of h1 or h2 to replay", len(captured), heartbeats)
	}
	if err := sleep(ctx, time.Until(capturedAt.Add(hostileReplayWindow+time.Second))); err != nil {
		t.Fatal(err)
	}
	rejects1 := map[int]map[string]uint64{1: rejects(t, ctx, l, 1), 2: rejects(t, ctx, l, 2), 3: rejects(t, ctx, l, 3)}
	received3 := gossipCounters(t, ctx, l, 3)["datagrams_received"]
	bySender := map[uint16]uint64{}
	oldest := time.Now()
	for _, d := range captured {
		ts := time.Unix(0, d.Timestamp())
		if time.Since(ts) <= hostileReplayWindow {
			t.Fatalf("a captured datagram of h%d is %v old, inside the replay window", d.Sender(), time.Since(ts))
		}
		if ts.Before(oldest) {
			oldest = ts
		}
		if err := mc.Send(d); err != nil {
			t.Fatal(err)
		}
		bySender[d.Sender()]++
		time.Sleep(time.Millisecond)
	}
	replayWant := map[int]map[string]uint64{
		1: {"own": bySender[1], "replay": bySender[2] + bySender[3], "outside_window": 0},
		2: {"own": bySender[2], "replay": bySender[1] + bySender[3], "outside_window": 0},
		3: {"own": bySender[3], "replay": 0, "outside_window": bySender[1] + bySender[2]},
	}
	t.Logf("replayed %d datagrams captured %v to %v before (h1 %d, h2 %d, h3's previous run %d; heartbeats %d, %d, %d)", len(captured),
		time.Since(capturedAt).Round(time.Millisecond), time.Since(oldest).Round(time.Millisecond), bySender[1], bySender[2], bySender[3],
		heartbeats[1], heartbeats[2], heartbeats[3])
	// Until h3 has received them all (refused or not).
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); {
		if g := gossipCounters(t, ctx, l, 3); g["datagrams_received"] >= received3+uint64(len(captured)) {
			break
		}
		if err := sleep(ctx, 10*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	if hb := gossipCounters(t, ctx, l, 3)["heartbeats_received"]; hb != 0 {
		t.Errorf("the restarted h3 accepted %d of the replayed heartbeats", hb)
	}
	ps3, err := l.Peers(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(ps3) != 0 {
		t.Errorf("the restarted h3 learnt peers from the replays: %+v", ps3)
	}
	tab3, err := l.Sessions(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	learnt := 0
	for _, o := range tab3 {
		if o != 3 {
			learnt++
		}
	}
	if learnt != 0 {
		t.Errorf("the restarted h3 learnt %d sessions of its peers from the replays", learnt)
	}
	unblockGossip(t, ns3)
	blocked = false
	if err := l.WaitPeers(ctx, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	var completed, failed uint64
	for end := time.Now().Add(15 * time.Second); time.Now().Before(end); {
		st, err := l.Stats(ctx, 3)
		if err != nil {
			t.Fatal(err)
		}
		completed, failed = st.Gossip["repairs_completed"], st.Gossip["repairs_failed"]
		if completed >= 2 {
			break
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	floodStop()
	flooders.Wait()
	for _, n := range hosts {
		t.Logf("h%d gossip rejected (the replays): %s", n, checkRejects(t, fmt.Sprintf("h%d (replays)", n), rejects1[n],
			rejects(t, ctx, l, n), replayWant[n], false))
	}
	strangers := gossipSum(t, ctx, l, []int{1, 2}, "repair_refused_stranger")["repair_refused_stranger"] - strangers0
	t.Logf("repair flood: %d connections of the rogue accepted and closed (stranger refusals on h1, h2: %d); h3 restarted: "+
		"%d repairs completed, %d failed (the killed process had %d, %d)", accepted.Load(), strangers, completed, failed,
		stat3.Gossip["repairs_completed"], stat3.Gossip["repairs_failed"])
	if completed < 2 || failed != 0 {
		t.Errorf("h3's repairs during the flood: %d completed, %d failed; want one per peer, none failed", completed, failed)
	}
	if strangers == 0 || accepted.Load() == 0 {
		t.Errorf("the flood: %d accepted, %d refused as strangers", accepted.Load(), strangers)
	}

	// 4. Drain h1: no connection resets.
	if err := l.SetRoute([]int{2, 3}); err != nil {
		t.Fatal(err)
	}
	if err := sleep(ctx, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	checkPeer2("after the drain")
	if g := gossipCounters(t, ctx, l, 3)["sequence_gaps"]; g != 0 {
		t.Errorf("the restarted h3 counted %d sequence gaps (replays taken as its peers' datagrams)", g)
	}
	c := fleet.Counts()
	t.Logf("connections: %d alive, %d stalled, %d reset, %d failed, %d exchanges; setup %v, test %v",
		c.Alive, c.Stalled, c.Reset, c.Failed, c.Exchanges, setup.Round(time.Second), time.Since(t0).Round(time.Second))
	if c.Reset+c.Failed != 0 || c.Corrupted != 0 {
		t.Errorf("%d connections reset, %d failed, %d bytes corrupted during the attacks and the drain", c.Reset, c.Failed, c.Corrupted)
	}
}
