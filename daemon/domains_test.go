package daemon

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/homing-dev/homing/internal/testenv"
	"github.com/homing-dev/homing/lcore"
)

// fakeNeigh is a neighbour table of one address.
type fakeNeigh struct {
	mu       sync.Mutex
	mac      net.HardwareAddr
	resolves int
}

func (f *fakeNeigh) Lookup(netip.Addr) (net.HardwareAddr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.mac, nil
}

func (f *fakeNeigh) Resolve(netip.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.resolves++
	return nil
}

func (f *fakeNeigh) set(mac net.HardwareAddr) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mac = mac
}

// fakeSink records templates.
type fakeSink struct {
	mu sync.Mutex
	t  map[uint16]lcore.Template
}

func (s *fakeSink) SetTemplate(t lcore.Template) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.t[t.ID] = t
	return nil
}

func (s *fakeSink) ClearTemplate(id uint16) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.t, id)
}

func (s *fakeSink) get(id uint16) (lcore.Template, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.t[id]
	return t, ok
}

var (
	selfMAC = net.HardwareAddr{2, 0, 0, 0, 0, 1}
	gwMAC1  = net.HardwareAddr{2, 0, 0, 0, 0xee, 1}
	gwMAC2  = net.HardwareAddr{2, 0, 0, 0, 0xee, 2}
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil)) }

// TestDomainsTemplates: a peer of another domain gets a template only once the gateway's
// MAC is known, with the gateway's MAC and the peer's routed address; a new gateway MAC
// republishes it; a forgotten peer is not republished; without a gateway publish fails.
func TestDomainsTemplates(t *testing.T) {
	self, gw := netip.MustParseAddr("198.18.1.13"), netip.MustParseAddr("198.18.1.1")
	peer := netip.MustParseAddr("198.18.0.11")
	nb := &fakeNeigh{}
	sink := &fakeSink{t: map[uint16]lcore.Template{}}
	x := newDomains(self, selfMAC, gw, nb, sink, quiet())

	if err := x.publish(1, peer, netip.Addr{}, 6080); err != nil {
		t.Fatal(err)
	}
	if _, ok := sink.get(1); ok {
		t.Fatal("template published before the gateway's MAC is known")
	}
	if x.refresh() || nb.resolves != 1 {
		t.Fatalf("refresh without an entry: resolves %d, want 1 (and the MAC unknown)", nb.resolves)
	}
	nb.set(gwMAC1)
	if !x.refresh() {
		t.Fatal("refresh: MAC not learned")
	}
	want := lcore.Template{ID: 1, SrcMAC: selfMAC, DstMAC: gwMAC1, Src: self, Dst: peer, TunnelPort: 6080}
	if got, _ := sink.get(1); !sameTemplate(got, want) {
		t.Fatalf("template %+v, want %+v", got, want)
	}
	// A peer that comes up now is published at once.
	if err := x.publish(2, netip.MustParseAddr("198.18.0.12"), netip.Addr{}, 7000); err != nil {
		t.Fatal(err)
	}
	if got, ok := sink.get(2); !ok || got.DstMAC.String() != gwMAC1.String() || got.TunnelPort != 7000 {
		t.Fatalf("peer 2: %+v", got)
	}
	// The gateway changes its MAC: both templates follow; a forgotten peer does not come back.
	x.forget(2)
	sink.ClearTemplate(2)
	nb.set(gwMAC2)
	x.refresh()
	if got, _ := sink.get(1); got.DstMAC.String() != gwMAC2.String() {
		t.Errorf("after the gateway's MAC changed: %v, want %v", got.DstMAC, gwMAC2)
	}
	if _, ok := sink.get(2); ok {
		t.Error("a forgotten peer was republished")
	}
	if got := x.gatewayMAC(); got.String() != gwMAC2.String() {
		t.Errorf("gatewayMAC = %v", got)
	}

	none := newDomains(self, selfMAC, netip.Addr{}, nb, sink, quiet())
	if err := none.publish(3, peer, netip.Addr{}, 6080); !errors.Is(err, ErrNoGateway) {
		t.Errorf("without a gateway: %v, want ErrNoGateway", err)
	}
	var nilDom *domains
	nilDom.forget(1)
	if err := nilDom.publish(3, peer, netip.Addr{}, 6080); !errors.Is(err, ErrNoGateway) {
		t.Errorf("nil domains: %v", err)
	}
}

// TestDomainsWatcher: the watcher learns the MAC as soon as the entry appears (it retries
// quickly while unresolved) and stops with its context.
func TestDomainsWatcher(t *testing.T) {
	nb := &fakeNeigh{}
	sink := &fakeSink{t: map[uint16]lcore.Template{}}
	x := newDomains(netip.MustParseAddr("2001:2:0:1::13"), selfMAC, netip.MustParseAddr("2001:2:0:1::1"), nb, sink, quiet())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { x.run(ctx); close(done) }()
	if err := x.publish(1, netip.MustParseAddr("2001:2::11"), netip.Addr{}, 6080); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * gatewayRetry)
	nb.set(gwMAC1)
	deadline := time.Now().Add(2 * time.Second)
	for {
		if got, ok := sink.get(1); ok && got.DstMAC.String() == gwMAC1.String() && got.Dst.String() == "2001:2::11" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the watcher did not publish the remote peer")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("watcher did not stop")
	}
}

func sameTemplate(a, b lcore.Template) bool {
	return a.ID == b.ID && a.SrcMAC.String() == b.SrcMAC.String() && a.DstMAC.String() == b.DstMAC.String() &&
		a.Src == b.Src && a.Dst == b.Dst && a.TunnelPort == b.TunnelPort
}

// TestKernelNeighbours reads real neighbour tables in a network namespace: the gateway's
// entry is missing, Resolve makes the kernel resolve it (ARP, neighbour solicitation),
// Lookup returns the gateway's MAC; when the kernel learns another MAC for it, Lookup
// follows. IPv4 and IPv6.
func TestKernelNeighbours(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "ip")
	pfx := "hmg-daemon-" + strconv.Itoa(os.Getpid()) + "-"
	host, gw := pfx+"h", pfx+"g"
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	ip("netns", "add", host)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", host).Run() })
	ip("netns", "add", gw)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", gw).Run() })
	ip("-n", host, "link", "add", "homing0", "type", "veth", "peer", "name", "eth0", "netns", gw)
	ip("-n", gw, "link", "set", "eth0", "address", gwMAC1.String())
	ip("-n", host, "addr", "add", "198.18.0.11/24", "dev", "homing0")
	ip("-n", gw, "addr", "add", "198.18.0.1/24", "dev", "eth0")
	ip("-n", host, "addr", "add", "2001:2::11/64", "dev", "homing0", "nodad")
	ip("-n", gw, "addr", "add", "2001:2::1/64", "dev", "eth0", "nodad")
	ip("-n", host, "link", "set", "homing0", "up")
	ip("-n", gw, "link", "set", "eth0", "up")

	var k *kernelNeighbours
	err := inNetns(host, func() error {
		var err error
		k, err = newKernelNeighbours("homing0")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	for _, a := range []string{"198.18.0.1", "2001:2::1"} {
		addr := netip.MustParseAddr(a)
		if mac, err := k.Lookup(addr); err != nil || mac != nil {
			t.Fatalf("%s before resolution: %v, %v; want no entry", a, mac, err)
		}
		sink := &fakeSink{t: map[uint16]lcore.Template{}}
		x := newDomains(netip.MustParseAddr("198.18.0.11"), selfMAC, addr, k, sink, quiet())
		if addr.Is6() {
			x.self = netip.MustParseAddr("2001:2::11")
		}
		deadline := time.Now().Add(5 * time.Second)
		for !x.refresh() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not resolved", a)
			}
			time.Sleep(gatewayRetry)
		}
		if got := x.gatewayMAC(); got.String() != gwMAC1.String() {
			t.Fatalf("%s: learned %v, want %v", a, got, gwMAC1)
		}
		if err := x.publish(9, netip.MustParseAddr(map[bool]string{true: "2001:2:0:1::19", false: "198.18.1.19"}[addr.Is6()]), netip.Addr{}, 6080); err != nil {
			t.Fatal(err)
		}
		// The kernel learns a new MAC for the gateway (as from a gratuitous ARP or an
		// unsolicited advertisement): the template follows.
		ip("-n", host, "neigh", "replace", a, "lladdr", gwMAC2.String(), "dev", "homing0", "nud", "reachable")
		x.refresh()
		if got, _ := sink.get(9); got.DstMAC.String() != gwMAC2.String() {
			t.Errorf("%s: template MAC %v after the change, want %v", a, got.DstMAC, gwMAC2)
		}
	}
}

// inNetns runs f on a thread in namespace ns; what f opens stays in ns.
func inNetns(ns string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // the thread ends with the goroutine: never reused
		target, err := netns.GetFromName(ns)
		if err != nil {
			errc <- err
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			errc <- err
			return
		}
		errc <- f()
	}()
	return <-errc
}
