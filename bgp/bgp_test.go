package bgp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/server"
)

// router is a GoBGP server standing for the POP router: it listens on 127.0.0.1:port,
// accepts the host's session from 127.0.0.2 and keeps the routes it learns.
type router struct {
	s    *server.BgpServer
	port int
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func newRouter(t *testing.T, hostAS uint32, password string) *router {
	t.Helper()
	r := &router{s: server.NewBgpServer(server.LoggerOption(&logAdapter{discard()})), port: freePort(t)}
	go r.s.Serve()
	ctx := context.Background()
	if err := r.s.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{Asn: 65000, RouterId: "198.18.0.1",
		ListenPort: int32(r.port), ListenAddresses: []string{"127.0.0.1"}}}); err != nil {
		t.Fatal(err)
	}
	if err := r.s.AddPeer(ctx, &api.AddPeerRequest{Peer: &api.Peer{
		Conf:      &api.PeerConf{NeighborAddress: "127.0.0.2", PeerAsn: hostAS, AuthPassword: password},
		Transport: &api.Transport{PassiveMode: true},
		AfiSafis: []*api.AfiSafi{{Config: &api.AfiSafiConfig{Family: family4, Enabled: true}},
			{Config: &api.AfiSafiConfig{Family: family6, Enabled: true}}},
	}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = r.s.StopBgp(context.Background(), &api.StopBgpRequest{})
		r.s.Stop()
	})
	return r
}

// routes are the router's best routes: prefix -> next hop and communities.
func (r *router) routes(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, fam := range []*api.Family{family4, family6} {
		err := r.s.ListPath(context.Background(), &api.ListPathRequest{TableType: api.TableType_GLOBAL, Family: fam},
			func(d *api.Destination) {
				for _, p := range d.Paths {
					if !p.Best {
						continue
					}
					nhop, comms := "", ""
					for _, a := range p.Pattrs {
						var nh api.NextHopAttribute
						var mp api.MpReachNLRIAttribute
						var cm api.CommunitiesAttribute
						switch {
						case a.MessageIs(&nh) && a.UnmarshalTo(&nh) == nil:
							nhop = nh.NextHop
						case a.MessageIs(&mp) && a.UnmarshalTo(&mp) == nil:
							nhop = mp.NextHops[0]
						case a.MessageIs(&cm) && a.UnmarshalTo(&cm) == nil:
							for _, c := range cm.Communities {
								comms += " " + communityString(c)
							}
						}
					}
					out[d.Prefix] = nhop + comms
				}
			})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func communityString(c uint32) string { return fmt.Sprintf("%d:%d", c>>16, c&0xffff) }

// waitFor polls cond until it holds or 20 s pass: the router learns routes and session
// states asynchronously.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(20 * time.Second); !cond(); {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func hostConfig(r *router, password string) Config {
	return Config{LocalAS: 65001, RouterID: netip.MustParseAddr("198.18.0.11"),
		NextHop4: netip.MustParseAddr("198.18.0.11"), NextHop6: netip.MustParseAddr("2001:2::11"),
		LocalAddress: netip.MustParseAddr("127.0.0.2"), HoldTime: 3 * time.Second, ConnectRetry: time.Second,
		Communities: []string{"65000:100"},
		Neighbors:   []Neighbor{{Address: netip.MustParseAddr("127.0.0.1"), AS: 65000, Port: uint16(r.port), Password: password}},
		Log:         discard()}
}

// TestAnnounceWithdraw: the host's speaker brings its session up, announces the VIPs
// of both families with its address as next hop and the configured community, and
// withdraws exactly what leaves the set; Stop withdraws the rest.
func TestAnnounceWithdraw(t *testing.T) {
	r := newRouter(t, 65001, "")
	ctx := context.Background()
	sp, err := Start(ctx, hostConfig(r, ""))
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Stop()
	waitFor(t, "session established", func() bool {
		ps, err := sp.Peers(ctx)
		return err == nil && len(ps) == 1 && ps[0].Established()
	})
	vip4, vip6 := netip.MustParsePrefix("198.19.255.1/32"), netip.MustParsePrefix("2001:2:ff::1/128")
	if err := sp.Announce(ctx, []netip.Prefix{vip4, vip6}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "both VIPs at the router", func() bool { return len(r.routes(t)) == 2 })
	got := r.routes(t)
	if got["198.19.255.1/32"] != "198.18.0.11 65000:100" || got["2001:2:ff::1/128"] != "2001:2::11 65000:100" {
		t.Fatalf("router's routes: %q", got)
	}
	if a := sp.Announced(); !slices.Equal(a, []netip.Prefix{vip4, vip6}) {
		t.Fatalf("announced %v", a)
	}
	// Announcing the same set again changes nothing; a smaller set withdraws the rest.
	if err := sp.Announce(ctx, []netip.Prefix{vip4, vip6}); err != nil {
		t.Fatal(err)
	}
	if err := sp.Announce(ctx, []netip.Prefix{vip6}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the IPv4 VIP withdrawn", func() bool { _, ok := r.routes(t)["198.19.255.1/32"]; return !ok })
	if got := r.routes(t); len(got) != 1 {
		t.Fatalf("after withdrawing one: %q", got)
	}
	sp.Stop()
	waitFor(t, "everything withdrawn at stop", func() bool { return len(r.routes(t)) == 0 })
	if err := sp.Announce(ctx, nil); !errors.Is(err, ErrStopped) {
		t.Fatalf("Announce after Stop: %v", err)
	}
}

// TestPassword: a host configured with a password its router does not have never
// brings the session up (its segments are signed, TCP MD5, and the router's kernel drops
// them), so nothing is announced: a password is never silently left out. (GoBGP cannot
// set a key on its own listening socket in this VM, so the router side of a signed
// session is FRR's, in the lab.)
func TestPassword(t *testing.T) {
	ctx := context.Background()
	r := newRouter(t, 65001, "")
	sp, err := Start(ctx, hostConfig(r, "only-the-host-has-it"))
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Stop()
	if err := sp.Announce(ctx, []netip.Prefix{netip.MustParsePrefix("198.19.255.1/32")}); err != nil {
		t.Fatal(err)
	}
	// Proving a session stays down takes time: three connect retries (one a second);
	// without the password the same session comes up in about one (TestSetNeighbors).
	time.Sleep(3 * time.Second)
	if ps, _ := sp.Peers(ctx); len(ps) != 1 || ps[0].Established() || len(r.routes(t)) != 0 {
		t.Fatalf("with a password the router does not know: peers %+v, routes %v", ps, r.routes(t))
	}
}

// TestSetNeighbors: a reload that changes the neighbour's port re-creates the session,
// which comes up again and carries the announced set.
func TestSetNeighbors(t *testing.T) {
	r1, r2 := newRouter(t, 65001, ""), newRouter(t, 65001, "")
	ctx := context.Background()
	c := hostConfig(r1, "")
	sp, err := Start(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Stop()
	vip := netip.MustParsePrefix("198.19.255.1/32")
	if err := sp.Announce(ctx, []netip.Prefix{vip}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "route at router 1", func() bool { return len(r1.routes(t)) == 1 })
	n := c.Neighbors[0]
	n.Port = uint16(r2.port)
	if err := sp.SetNeighbors(ctx, []Neighbor{n}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "route at router 2", func() bool { return len(r2.routes(t)) == 1 })
	waitFor(t, "route gone from router 1", func() bool { return len(r1.routes(t)) == 0 })
	if err := sp.SetNeighbors(ctx, []Neighbor{n, n}); !errors.Is(err, ErrConfig) {
		t.Fatalf("duplicate neighbour: %v", err)
	}
}

// TestConfigErrors: what Start refuses.
func TestConfigErrors(t *testing.T) {
	good := Config{LocalAS: 65001, RouterID: netip.MustParseAddr("198.18.0.11"), NextHop4: netip.MustParseAddr("198.18.0.11")}
	for name, edit := range map[string]func(*Config){
		"no AS":       func(c *Config) { c.LocalAS = 0 },
		"router id 6": func(c *Config) { c.RouterID = netip.MustParseAddr("2001:2::1") },
		"next hop":    func(c *Config) { c.NextHop4 = netip.MustParseAddr("2001:2::1") },
		"community":   func(c *Config) { c.Communities = []string{"65536:1"} },
		"neighbour":   func(c *Config) { c.Neighbors = []Neighbor{{Address: netip.MustParseAddr("198.18.0.1")}} },
	} {
		c := good
		edit(&c)
		if _, err := Start(context.Background(), c); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if v, err := ParseCommunity("65000:100"); err != nil || v != 65000<<16|100 {
		t.Errorf("ParseCommunity: %v %v", v, err)
	}
}
