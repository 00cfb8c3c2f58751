package gossip

import (
	"github.com/homing-dev/homing/gossip/wire"
	"net"
	"net/netip"
	"testing"
)

// nullConn discards what it is sent.
type nullConn struct{ sent int }

func (c *nullConn) Send([]byte) error { c.sent++; return nil }
func (c *nullConn) Recv([]byte) (int, netip.AddrPort, error) {
	return 0, netip.AddrPort{}, net.ErrClosed
}
func (c *nullConn) Close() error { return nil }

// nullPacketConn discards what it is sent.
type nullPacketConn struct{}

func (nullPacketConn) WriteTo([]byte, netip.AddrPort) error { return nil }
func (nullPacketConn) ReadFrom([]byte) (int, netip.AddrPort, error) {
	return 0, netip.AddrPort{}, net.ErrClosed
}
func (nullPacketConn) Close() error { return nil }

// FuzzRelayEnvelope feeds arbitrary envelopes from a peer relay (unauthenticated, so
// that framing and the inner datagram's decoding are reached) and arbitrary datagrams to
// Observe: nothing panics, and what is multicast is a valid datagram.
func FuzzRelayEnvelope(f *testing.F) {
	peer := netip.MustParseAddrPort("198.18.0.11:6082")
	hb := wire.Heartbeat{Host: 1, Incarnation: 1, Addr: netip.MustParseAddr("198.18.0.11"), MAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, Domain: "rack-a"}
	body := wire.AppendHeartbeat(nil, &hb)
	d := make(wire.Datagram, wire.Overhead+len(body))
	copy(d[wire.HeaderLen:], body)
	wire.NewSealer(nil).Seal(d, wire.Header{Type: wire.TypeHeartbeat, Sender: 1, Incarnation: 1, Seq: 1})
	env := make(wire.Datagram, wire.Overhead+len(d))
	copy(env[wire.HeaderLen:], d)
	wire.NewSealer(nil).Seal(env, wire.Header{Type: wire.TypeRelay, Sender: 1, Incarnation: 1, Seq: 1})
	f.Add([]byte(env))
	f.Add([]byte(d))
	f.Add([]byte("HG\x01\x06"))
	f.Fuzz(func(t *testing.T, b []byte) {
		local := &nullConn{}
		r, err := NewRelay(RelayConfig{HostID: 4, Domain: "rack-b", Insecure: true, Peers: []netip.AddrPort{peer},
			Unicast: nullPacketConn{}, Local: local})
		if err != nil {
			t.Fatal(err)
		}
		r.handle(b, peer)
		r.Observe(b)
		if st := r.Stats(); st.Relayed > 0 {
			inner := wire.Datagram(wire.Datagram(b).Body())
			if err := inner.Validate(0); err != nil {
				t.Fatalf("relayed an invalid datagram: %v", err)
			}
		}
	})
}
