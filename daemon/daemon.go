// Package daemon assembles homingd from its validated configuration: the EAL, the NIC
// and kernel ports, the ownership table, the data plane and its lcores, and the kernel
// interface. It is a package (not main) so that tests can run a whole daemon in-process.
//
// Start order: EAL → mempool → ports → kernel interface → table → data plane → static
// peers and sessions → lcores → operations state (Daemon.ops) → control plane (gossip,
// probe; control.go, domains.go) → operations (metrics, control socket; ops.go). Stop
// undoes it in reverse and leaves nothing behind: no TAP device, no EAL runtime
// directory, no hugepage file.
//
// Files: daemon.go start and stop; templates.go the header-template slots and their
// rules; control.go gossip and the probe, domains.go the peers of other domains;
// claims.go the local claims and the warm-up; ops.go the operations' state, start and
// stop, snapshot.go the counters, ctlserver.go homingctl's answers, reload.go reloads
// (the keys that need a restart are config.Diff's) and key rotation. The logger homingd
// builds is internal/ratelog's.
package daemon

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/homing-dev/homing/config"
	"github.com/homing-dev/homing/dpdk"
	"github.com/homing-dev/homing/gossip"
	"github.com/homing-dev/homing/kni"
	"github.com/homing-dev/homing/lcore"
	"github.com/homing-dev/homing/session"
	"github.com/homing-dev/homing/table"
)

// Daemon is one running homingd.
type Daemon struct {
	Config *config.Config
	Log    *slog.Logger

	pool  *dpdk.Mempool
	nic   dpdk.Port
	tap   dpdk.Port
	ports []dpdk.Port // started ports, for Stop
	iface *kni.Iface
	Table *table.Table
	DP    *lcore.DataPlane
	MAC   net.HardwareAddr // the NIC's MAC: the kernel interface's too
	ctl   *control
	// ops is the operations state (ops.go): set by Start before the control plane starts,
	// taken away by stopOps (nil before and after).
	ops atomic.Pointer[ops]
	// keyFile is the contents of gossip.key_file as the start read it (startControl).
	keyFile []byte
	// clock is the time of the claims, the warm-up and the gossip node (claims.go);
	// nil: the real clock.
	clock gossip.Clock
	// warming is set while the data plane warms up after the start (claims.go warmUp).
	warming atomic.Bool
	// warmDone is set when the warm-up is over (or there is none: no gossip), at warmAt
	// (Unix ns): from then on the host may announce its VIPs (serving.go).
	warmDone atomic.Bool
	warmAt   atomic.Int64
	// serving is the announcement state (serving.go): set by Start after the operations.
	serving atomic.Pointer[serving]
	closed  bool
}

// Start brings a daemon up. On error everything already set up is torn down again.
func Start(cfg *config.Config, log *slog.Logger) (d *Daemon, err error) {
	if log == nil {
		log = slog.Default()
	}
	d = &Daemon{Config: cfg, Log: log}
	defer func() {
		if err != nil {
			d.teardown()
			d = nil
		}
	}()

	eal := dpdk.EALConfig{
		FilePrefix: cfg.DPDK.FilePrefix,
		Hugepages:  cfg.DPDK.Hugepages,
		MemoryMB:   cfg.DPDK.MemoryMB,
		CPUs:       cfg.DPDK.CPUList(),
		Workers:    cfg.DPDK.Workers,
		VDevs:      cfg.VDevs(),
		PCI:        cfg.PCIDevices(),
		LogLevel:   cfg.DPDK.LogLevel,
		Extra:      cfg.DPDK.ExtraArgs,
	}
	if err = dpdk.Init(eal); err != nil {
		return d, fmt.Errorf("start EAL: %w", err)
	}
	workers := dpdk.Workers()
	if len(workers) != cfg.DPDK.Workers {
		return d, fmt.Errorf("EAL runs %d worker lcores, want %d", len(workers), cfg.DPDK.Workers)
	}
	if d.nic, err = dpdk.PortByName(cfg.NICPortName()); err != nil {
		return d, fmt.Errorf("NIC: %w", err)
	}
	// The mbufs and the tables on the NIC's NUMA socket (-1: any, when unknown).
	socket := d.nic.Socket()
	if d.pool, err = dpdk.NewMempool("homing_mbufs", cfg.DPDK.Mbufs, config.MbufCache, 0, socket); err != nil {
		return d, err
	}
	if d.tap, err = dpdk.PortByName(cfg.KernelPortName()); err != nil {
		return d, fmt.Errorf("kernel port: %w", err)
	}
	if d.MAC, err = d.nic.MAC(); err != nil {
		return d, err
	}
	if cfg.Host.MAC != nil {
		// host.mac overrides the NIC's own address. A PMD that cannot change it (net_pcap)
		// keeps its own; the data plane then uses host.mac in its templates and for the
		// kernel interface, and relies on the NIC being promiscuous.
		if err = d.nic.SetMAC(cfg.Host.MAC); err != nil && !errors.Is(err, unix.ENOTSUP) {
			return d, err
		}
		if err != nil && !cfg.NIC.Promiscuous {
			return d, fmt.Errorf("%s: host.mac: the NIC cannot take %s and nic.promiscuous is off", cfg.Source, cfg.Host.MAC)
		}
		d.MAC = cfg.Host.MAC
		err = nil
	}
	q := cfg.DPDK.Workers
	if err = d.nic.Start(dpdk.PortConfig{RxQueues: q, TxQueues: q, RxDesc: cfg.NIC.RxDesc, TxDesc: cfg.NIC.TxDesc,
		MTU: cfg.NIC.MTU, Promiscuous: cfg.NIC.Promiscuous, RSS: true}, d.pool); err != nil {
		return d, fmt.Errorf("NIC: %w", err)
	}
	d.ports = append(d.ports, d.nic)
	if cfg.Kernel.IsTAP() {
		// The kernel interface carries the NIC's MAC, so that frames to the NIC's MAC are
		// the kernel's and the kernel's frames leave with the NIC's MAC.
		if err = d.tap.SetMAC(d.MAC); err != nil {
			return d, fmt.Errorf("kernel port: %w", err)
		}
	}
	if err = d.tap.Start(dpdk.PortConfig{RxQueues: q, TxQueues: q, RxDesc: cfg.NIC.RxDesc, TxDesc: cfg.NIC.TxDesc}, d.pool); err != nil {
		return d, fmt.Errorf("kernel port: %w", err)
	}
	d.ports = append(d.ports, d.tap)
	if cfg.Kernel.IsTAP() {
		spec := kni.Spec{MAC: d.MAC, MTU: cfg.Kernel.MTU, Addresses: cfg.Kernel.Addresses, VIPs: cfg.Host.VIPAddrs()}
		for _, r := range cfg.Kernel.Routes {
			spec.Routes = append(spec.Routes, kni.Route{To: r.To, Via: r.Via})
		}
		if d.iface, err = kni.Configure(cfg.Kernel.Name, spec); err != nil {
			return d, err
		}
	}

	if d.Table, err = table.New("homing", uint32(cfg.Table.Capacity4), uint32(cfg.Table.Capacity6), socket); err != nil {
		return d, err
	}
	dc := lcore.Config{SelfID: cfg.Host.ID, TunnelPort: cfg.Tunnel.Port, VIPs: cfg.Host.VIPs, Table: d.Table.Ptr(),
		NoRedirect: !cfg.Tunnel.Redirect, Warming: cfg.Gossip.Enabled && cfg.Tunnel.Redirect && cfg.Tunnel.ParkHold > 0,
		UDPPorts: udpPorts(cfg.UDPSessions), MTU: cfg.NIC.MTU, ClampMSS: cfg.Tunnel.ClampMSS, ICMPRate: cfg.Tunnel.ICMPRate,
		ICMPBurst: cfg.Tunnel.ICMPBurst}
	d.warming.Store(dc.Warming)
	if cfg.Host.Address.Is4() {
		dc.Self4 = cfg.Host.Address
	} else {
		dc.Self6 = cfg.Host.Address
	}
	if d.DP, err = lcore.New(dc); err != nil {
		return d, err
	}
	if err = d.startStaticPeers(); err != nil {
		return d, err
	}
	if len(cfg.Sessions) > 0 {
		ups := make([]session.Update, 0, len(cfg.Sessions))
		for _, s := range cfg.Sessions {
			ups = append(ups, session.Update{Key: s.Key, Owner: session.Owner{Host: s.Owner, Epoch: 1}})
		}
		if err = d.Table.Apply(ups); err != nil {
			return d, fmt.Errorf("%s: sessions: %w", cfg.Source, err)
		}
	}
	ws := make([]lcore.Worker, len(workers))
	for i, l := range workers {
		ws[i] = lcore.Worker{Lcore: l, NIC: d.nic, TAP: d.tap, Queue: uint16(i)}
	}
	if err = d.DP.Start(ws, lcore.Options{IdleSleepMax: cfg.DPDK.IdleSleepMax,
		ParkHold: cfg.Tunnel.ParkHold, ParkSize: cfg.Tunnel.ParkSize, ParkUDP: cfg.Tunnel.ParkUDP, Pool: d.pool,
		LearnRing: learnRingFor(cfg)}); err != nil {
		return d, err
	}
	d.ops.Store(newOps(d))
	if err = d.startControl(); err != nil {
		return d, err
	}
	if err = d.startOps(); err != nil {
		return d, err
	}
	if err = d.startServing(); err != nil {
		return d, err
	}
	log.Info("data plane running", "host", cfg.Host.ID, "address", cfg.Host.Address,
		"mac", d.MAC.String(), "workers", len(ws), "nic", d.nic.Name, "kernel", d.tap.Name, "socket", socket)
	return d, nil
}

// NICStats and KernelStats read the ports' counters.
func (d *Daemon) NICStats() (dpdk.Stats, error)    { return d.nic.Stats() }
func (d *Daemon) KernelStats() (dpdk.Stats, error) { return d.tap.Stats() }

// SelfAddr is the host's address on the POP LAN.
func (d *Daemon) SelfAddr() netip.Addr { return d.Config.Host.Address }

// Stop stops the lcores and releases everything. It is idempotent.
func (d *Daemon) Stop() error {
	if d.closed {
		return nil
	}
	return d.teardown()
}

func (d *Daemon) teardown() error {
	d.closed = true
	if s := d.serving.Swap(nil); s != nil {
		s.stop() // withdraw first, and serve the linger with everything still up
	}
	d.stopOps()
	var errs []error
	if err := d.stopControl(); err != nil {
		errs = append(errs, err)
	}
	if d.DP != nil {
		d.DP.Close()
	}
	if d.iface != nil {
		if err := d.iface.Remove(); err != nil {
			errs = append(errs, err)
		}
	}
	for _, p := range d.ports {
		if err := p.Stop(); err != nil {
			errs = append(errs, err)
		}
	}
	// Close every probed port (started or not): a net_tap's interface goes with it.
	if dpdk.Initialized() {
		for _, name := range []string{d.Config.NICPortName(), d.Config.KernelPortName()} {
			if p, err := dpdk.PortByName(name); err == nil {
				if err := p.Close(); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	if d.Table != nil {
		d.Table.Close()
	}
	if d.pool != nil {
		d.pool.Free()
	}
	if dpdk.Initialized() {
		if err := dpdk.Cleanup(); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		d.Log.Warn("stop", "err", errors.Join(errs...))
	}
	return errors.Join(errs...)
}

// udpPorts are the data plane's UDP session ports.
func udpPorts(us []config.UDPSession) []lcore.UDPPort {
	out := make([]lcore.UDPPort, 0, len(us))
	for _, u := range us {
		out = append(out, lcore.UDPPort{Port: u.Port, QUIC: u.QUIC, CID: u.QUICCID, CIDLen: u.CIDLen})
	}
	return out
}

// learnRingFor is the lcores' learning ring: on with [[udp_sessions]] (udplearn.go).
func learnRingFor(cfg *config.Config) int {
	if len(cfg.UDPSessions) == 0 {
		return 0
	}
	return learnRing
}
