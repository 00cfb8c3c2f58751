package lab

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
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

func rejected(t *testing.T, ctx context.Context, l *Lab, n int) uint64 {
	t.Helper()
	st, err := l.Stats(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	var sum uint64
	for _, v := range st.Reject {
		sum += v
	}
	return sum
}

// TestHostilePOP: while 60 connections run through a POP of 3 hosts, an attacker on the
// Internet (the client namespace) and a rogue host on the POP LAN without the key try
// what issue 14 found open. GUE to h1 carrying a SYN to a host-only port (the repair
// port; inner source the client), a router advertisement, an ICMP redirect of the
// client's route, UDP to the gossip group: from the client's and the rogue's own
// addresses, and with h2's address forged (from the rogue on the LAN, and from the
// client through the router). Forged heartbeats (a wrong key, claiming h2). A repair-
// listener flood from the rogue while h3 restarts and repairs from its peers. Then h1 is
// drained.
//
// Nothing has an effect: no SYN-ACK reaches the client, h1's TAP keeps no global IPv6
// address and no IPv6 default route, h1's route to the client is unchanged, no gossip
// socket sees a datagram it did not before (each host rejects exactly the forged
// heartbeats), h3's repairs succeed during the flood; each refusal moves its counter by
// exactly what was sent (unknown_source for strangers, inner_not_vip and inner_proto for
// a forged peer address); no connection is reset, through the attack and the drain.
func TestHostilePOP(t *testing.T) {
	requireFaultLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	t0 := time.Now()
	l := faultLab(t, ctx, 3, nil)
	hosts := l.Hosts()
	rogue := netip.MustParseAddr("198.18.0.250")
	rogueNS, err := l.AddSpy(rogue)
	if err != nil {
		t.Fatal(err)
	}
	cli := l.NS("cli")
	h1, peer := HostAddr(1), HostAddr(2)
	fleet := openFleet(t, ctx, l, 60, true)
	setup := time.Since(t0)

	// Before.
	tap1 := l.Host(1).NS
	route0 := inNS(t, tap1, "ip", "route", "get", ClientAddr.String())
	refused0 := map[int]map[string]uint64{}
	rejects0 := map[int]uint64{}
	for _, n := range hosts {
		refused0[n], rejects0[n] = gueRefused(t, ctx, l, n), rejected(t, ctx, l, n)
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

	// 2. Forged heartbeats from the rogue: a wrong key, claiming h2.
	wrongKey := make([]byte, 32)
	for i := range wrongKey {
		wrongKey[i] = byte(i*5 + 3)
	}
	ring, err := wire.NewKeyRing(wrongKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	forger := wire.NewSealer(ring)
	st2, err := l.Status(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	var mc *gossip.MulticastConn
	if err := InNS(rogueNS, func() error {
		var err error
		mc, err = gossip.ListenMulticast(gossip.MulticastConfig{Group: netip.AddrPortFrom(l.group(), GossipPort), Interface: "eth0"})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer mc.Close()
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
		if d := rejected(t, ctx, l, n) - rejects0[n]; d != forged {
			t.Errorf("h%d rejected %d gossip datagrams, want the %d forged heartbeats (nothing else from outside)", n, d, forged)
		}
		ps, err := l.Peers(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		if len(ps) != len(hosts)-1 {
			t.Errorf("h%d has %d peers after the attack, want %d", n, len(ps), len(hosts)-1)
		}
		for _, p := range ps {
			if p.ID == 2 && p.Address != peer.String() {
				t.Errorf("h%d: peer 2 at %s", n, p.Address)
			}
		}
	}

	// 3. A repair-listener flood of h1 and h2 from the rogue while h3 restarts: h3's
	// repairs from its peers succeed.
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
	if err := l.Restart(ctx, 3); err != nil {
		t.Fatal(err)
	}
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
	c := fleet.Counts()
	t.Logf("connections: %d alive, %d stalled, %d reset, %d failed, %d exchanges; setup %v, test %v",
		c.Alive, c.Stalled, c.Reset, c.Failed, c.Exchanges, setup.Round(time.Second), time.Since(t0).Round(time.Second))
	if c.Reset+c.Failed != 0 || c.Corrupted != 0 {
		t.Errorf("%d connections reset, %d failed, %d bytes corrupted during the attacks and the drain", c.Reset, c.Failed, c.Corrupted)
	}
}
