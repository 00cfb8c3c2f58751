package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/homing-dev/homing/gossip"
	"github.com/homing-dev/homing/gossip/wire"
	"github.com/homing-dev/homing/lcore"
)

// Domains (patent FIG. 2 and FIG. 7, claims 2–4). A peer in this host's L2 domain
// (host.domain) is reached straight at its MAC; a peer in another domain through the
// gateway (host.gateway): the template's outer destination is the peer's routed address
// and its destination MAC the gateway's. The gateway's MAC is learned, not configured:
// it is read from the kernel's neighbour table of the kernel interface (the TAP, whose
// kernel resolves it through the exception path as it does for its own traffic), and the
// resolution is triggered when the entry is missing. The goroutine "gateway watcher"
// re-reads the entry every gatewayPoll and republishes every remote peer's template when
// the MAC changes (a router replaced, a VRRP failover).
//
// templates.Publish (control.go) decides: a peer whose Domain differs from host.domain
// goes to domains.publish, any other to its own MAC (and domains.forget, in case it
// moved). domains.mu serialises the remote peers' templates, so that a republish never
// overtakes a forget: forget is called before the template is cleared or replaced.

// Intervals of the gateway watcher.
const (
	gatewayPoll  = time.Second            // re-read of a resolved entry
	gatewayRetry = 100 * time.Millisecond // re-read while unresolved
)

// ErrNoGateway is returned for a peer of another domain when host.gateway is not set.
var ErrNoGateway = errors.New("peer in another domain and no host.gateway")

// neighbours reads and resolves entries of the kernel's neighbour table.
type neighbours interface {
	// Lookup returns the MAC of a on the interface, or nil if the entry is missing or
	// not usable (incomplete, failed).
	Lookup(a netip.Addr) (net.HardwareAddr, error)
	// Resolve asks the kernel to resolve a (ARP or neighbour solicitation).
	Resolve(a netip.Addr) error
}

// templateSink is where templates go (*lcore.DataPlane).
type templateSink interface {
	SetTemplate(t lcore.Template) error
	ClearTemplate(id uint16)
}

// remotePeer is what a remote peer's template needs besides the gateway's MAC.
type remotePeer struct {
	dst, alt netip.Addr // alt: the peer's address of the other family (a GUE source)
	port     uint16
}

// domains keeps the templates of the peers of other domains.
type domains struct {
	self    netip.Addr       // outer source
	selfMAC net.HardwareAddr // the NIC's MAC
	gw      netip.Addr       // host.gateway (invalid: none)
	neigh   neighbours       // nil: no kernel interface to learn the gateway from
	sink    templateSink
	log     *slog.Logger
	wake    chan struct{}
	relay   *gossip.Relay // this host's gossip relay, if it is one (set before gossip runs)

	mu     sync.Mutex // protects mac and remote, and serialises their templates
	mac    net.HardwareAddr
	remote map[uint16]remotePeer // peers of other domains that are up
}

func newDomains(self netip.Addr, selfMAC net.HardwareAddr, gw netip.Addr, neigh neighbours, sink templateSink, log *slog.Logger) *domains {
	return &domains{self: self, selfMAC: selfMAC, gw: gw, neigh: neigh, sink: sink, log: log,
		wake: make(chan struct{}, 1), remote: make(map[uint16]remotePeer)}
}

// publish records a peer of another domain and publishes its template through the
// gateway, or waits for the gateway's MAC (the watcher publishes it then).
func (x *domains) publish(id uint16, dst, alt netip.Addr, port uint16) error {
	if x == nil || !x.gw.IsValid() {
		return fmt.Errorf("peer %d (%v): %w", id, dst, ErrNoGateway)
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	x.remote[id] = remotePeer{dst: dst, alt: alt, port: port}
	if x.mac == nil {
		x.log.Info("peer up in another domain: waiting for the gateway's MAC", "peer", id, "address", dst, "gateway", x.gw)
		select {
		case x.wake <- struct{}{}:
		default:
		}
		return nil
	}
	x.log.Info("peer up in another domain", "peer", id, "address", dst, "gateway", x.gw, "mac", x.mac.String())
	return x.setLocked(id, x.remote[id])
}

func (x *domains) setLocked(id uint16, p remotePeer) error {
	return x.sink.SetTemplate(lcore.Template{ID: id, SrcMAC: x.selfMAC, DstMAC: x.mac, Src: x.self, Dst: p.dst, Alt: p.alt, TunnelPort: p.port})
}

// forget drops a peer from the remote set (it went down or is in this domain now). The
// caller clears or replaces its template afterwards.
func (x *domains) forget(id uint16) {
	if x == nil {
		return
	}
	x.mu.Lock()
	delete(x.remote, id)
	x.mu.Unlock()
}

// gatewayMAC is the gateway's MAC as last learned (nil: not yet).
func (x *domains) gatewayMAC() net.HardwareAddr {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.mac
}

// refresh reads the gateway's entry once: it triggers a resolution if the entry is
// missing, and republishes the remote peers' templates if the MAC changed. It reports
// whether the gateway's MAC is known.
func (x *domains) refresh() bool {
	mac, err := x.neigh.Lookup(x.gw)
	if err != nil {
		x.log.Warn("gateway neighbour lookup", "gateway", x.gw, "err", err)
	}
	if mac == nil {
		if err := x.neigh.Resolve(x.gw); err != nil {
			x.log.Warn("gateway neighbour resolution", "gateway", x.gw, "err", err)
		}
		return x.gatewayMAC() != nil
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.mac.String() == mac.String() {
		return true
	}
	x.log.Info("gateway MAC learned", "gateway", x.gw, "mac", mac.String(), "was", x.mac.String(), "remote_peers", len(x.remote))
	x.mac = mac
	for id, p := range x.remote {
		if err := x.setLocked(id, p); err != nil {
			x.log.Error("remote peer template", "peer", id, "err", err)
		}
	}
	return true
}

// run is the gateway watcher: it learns the gateway's MAC and follows its changes until
// ctx is done. Without a gateway or a kernel interface it returns at once.
func (x *domains) run(ctx context.Context) {
	if !x.gw.IsValid() || x.neigh == nil {
		return
	}
	for {
		wait := gatewayPoll
		if !x.refresh() {
			wait = gatewayRetry
		}
		select {
		case <-ctx.Done():
			return
		case <-x.wake:
		case <-time.After(wait):
		}
	}
}

// kernelNeighbours reads the neighbour table of one kernel interface over netlink (in
// the network namespace of the calling thread when newKernelNeighbours ran).
type kernelNeighbours struct {
	h      *netlink.Handle
	ifname string
}

func newKernelNeighbours(ifname string) (*kernelNeighbours, error) {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink: %w", err)
	}
	return &kernelNeighbours{h: h, ifname: ifname}, nil
}

func family(a netip.Addr) int {
	if a.Is4() {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

// usable are the neighbour states whose MAC may be used.
const usable = netlink.NUD_REACHABLE | netlink.NUD_STALE | netlink.NUD_DELAY | netlink.NUD_PROBE |
	netlink.NUD_PERMANENT | netlink.NUD_NOARP

func (k *kernelNeighbours) Lookup(a netip.Addr) (net.HardwareAddr, error) {
	l, err := k.h.LinkByName(k.ifname)
	if err != nil {
		return nil, fmt.Errorf("interface %s: %w", k.ifname, err)
	}
	ns, err := k.h.NeighList(l.Attrs().Index, family(a))
	if err != nil {
		return nil, fmt.Errorf("neighbours of %s: %w", k.ifname, err)
	}
	for _, n := range ns {
		if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Unmap() == a && n.State&usable != 0 && len(n.HardwareAddr) == 6 {
			return append(net.HardwareAddr(nil), n.HardwareAddr...), nil
		}
	}
	return nil, nil
}

// Resolve creates the entry with NTF_USE, which makes the kernel solicit it at once
// (as a packet to the address would).
func (k *kernelNeighbours) Resolve(a netip.Addr) error {
	l, err := k.h.LinkByName(k.ifname)
	if err != nil {
		return fmt.Errorf("interface %s: %w", k.ifname, err)
	}
	return k.h.NeighSet(&netlink.Neigh{LinkIndex: l.Attrs().Index, Family: family(a), IP: a.AsSlice(), Flags: netlink.NTF_USE})
}

func (k *kernelNeighbours) Close() { k.h.Close() }

// startDomains creates c.dom and starts its gateway watcher (until ctx is done). The
// gateway's MAC is learned from the kernel interface's neighbour table; a kernel port
// that is not a TAP (net_pcap, offline tests) has none, and peers of other domains then
// get no template.
func (d *Daemon) startDomains(ctx context.Context, c *control) {
	cfg := d.Config
	log := d.Log.With("part", "domains")
	var neigh *kernelNeighbours
	if cfg.Host.Gateway.IsValid() && cfg.Kernel.IsTAP() {
		var err error
		if neigh, err = newKernelNeighbours(cfg.Kernel.Name); err != nil {
			log.Error("gateway MAC: no neighbour table", "err", err)
		}
	}
	c.dom = newDomains(cfg.Host.Address, d.MAC, cfg.Host.Gateway, nil, d.DP, log)
	if neigh == nil {
		return
	}
	c.dom.neigh = neigh
	c.wg.Add(1)
	go func() { // gateway watcher
		defer c.wg.Done()
		defer neigh.Close()
		c.dom.run(ctx)
	}()
}

// relayConn returns the Conn the gossip node runs on: c.conn, or, if this host is one of
// gossip.relays, c.conn teed into a relay (gossip.Relay) that forwards this domain's
// gossip to the relays of the other domains and multicasts theirs here; the relay's
// receiver runs until ctx is done.
// A key rotation (SIGHUP) reaches the relay with the node (rotateKeysWith).
func (d *Daemon) relayConn(ctx context.Context, c *control, keys *wire.KeyRing) (gossip.Conn, error) {
	cfg := d.Config
	if !cfg.IsRelay() {
		return c.conn, nil
	}
	uc, err := gossip.ListenRelay(netip.AddrPortFrom(cfg.Host.Address, cfg.Gossip.RelayPort))
	if err != nil {
		return nil, fmt.Errorf("%s: gossip.relay_port: %w", cfg.Source, err)
	}
	local, err := gossip.NewMulticastSender(gossip.MulticastConfig{Group: netip.AddrPortFrom(cfg.Gossip.Group, cfg.Gossip.Port),
		Interface: cfg.Gossip.Interface, TTL: cfg.Gossip.TTL})
	if err != nil {
		uc.Close()
		return nil, err
	}
	log := d.Log.With("part", "relay")
	r, err := gossip.NewRelay(gossip.RelayConfig{HostID: cfg.Host.ID, Domain: cfg.Host.Domain, Keys: keys, Insecure: cfg.Gossip.Insecure,
		MaxDatagram: cfg.Gossip.MaxDatagram, Peers: cfg.RelayPeers(), Unicast: uc, Local: local, Logger: log})
	if err != nil {
		uc.Close()
		local.Close()
		return nil, fmt.Errorf("%s: gossip.relays: %w", cfg.Source, err)
	}
	c.dom.relay = r
	log.Info("relaying gossip", "domain", cfg.Host.Domain, "to", cfg.RelayPeers())
	c.wg.Add(1)
	go func() { // relay receiver
		defer c.wg.Done()
		defer local.Close()
		if err := r.Run(ctx); err != nil {
			log.Error("relay stopped", "err", err)
		}
	}()
	return r.Tee(c.conn), nil
}
