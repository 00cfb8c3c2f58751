package lab

// Faults and inspection for the reliability and security proofs (issue 6): loss of
// gossip datagrams on the POP LAN, a homingd killed and restarted, a host namespace
// destroyed, a namespace on the LAN that sends hostile datagrams, and the truth the
// hosts' tables are compared with.
//
// Loss is injected in the router, where the POP LAN is: an nftables table of the bridge
// family whose forward chain drops a random share of the UDP datagrams to the gossip
// group's port. The bridge runs the forward hook once per output port, so each host
// loses its own random share of each datagram, as receivers on a lossy LAN do. (A drop on
// a host's eth0 ingress would not do: DPDK's net_af_packet takes the frames before the
// netdev ingress hook.)

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/vishvananda/netns"

	"github.com/homing-dev/homing/ctl"
	"github.com/homing-dev/homing/gossip"
)

// GossipPort is the UDP port of the lab's gossip group (the default gossip.port).
const GossipPort = gossip.DefaultGossipPort

// lossTable is the name of the router's nftables table of DropGossip.
const lossTable = "hlabloss"

// DropGossip makes the router's bridges drop pct percent (0..100) of the gossip
// datagrams they forward, independently for each receiving host; 0 removes the rule.
func (l *Lab) DropGossip(pct int) error {
	if pct < 0 || pct > 100 {
		return fmt.Errorf("lab: gossip loss %d%%: want 0..100", pct)
	}
	rtr := l.NS("rtr")
	_ = run("ip", "netns", "exec", rtr, "nft", "delete", "table", "bridge", lossTable) // absent the first time
	if pct == 0 {
		return nil
	}
	daddr := "ip daddr"
	if l.opts.IPv6 {
		daddr = "ip6 daddr"
	}
	match := fmt.Sprintf("%s %s udp dport %d", daddr, l.group(), GossipPort)
	script := fmt.Sprintf(`add table bridge %[1]s
add chain bridge %[1]s lossy { type filter hook forward priority 0; policy accept; }
add rule bridge %[1]s lossy %[2]s counter
add rule bridge %[1]s lossy %[2]s numgen random mod 100 < %[3]d counter drop
`, lossTable, match, pct)
	return runIn(script, "ip", "netns", "exec", rtr, "nft", "-f", "-")
}

// GossipLoss reads DropGossip's counters: the gossip datagrams the router's bridges
// forwarded to a host (one per receiving host) and those they dropped.
func (l *Lab) GossipLoss() (forwarded, dropped uint64, err error) {
	out, err := exec.Command("ip", "netns", "exec", l.NS("rtr"), "nft", "-j", "list", "table", "bridge", lossTable).Output()
	if err != nil {
		return 0, 0, fmt.Errorf("lab: nft list %s: %w", lossTable, err)
	}
	var doc struct {
		Nftables []struct {
			Rule *struct {
				Expr []map[string]json.RawMessage `json:"expr"`
			} `json:"rule"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		return 0, 0, fmt.Errorf("lab: nft json: %w", err)
	}
	var counts []uint64
	for _, o := range doc.Nftables {
		if o.Rule == nil {
			continue
		}
		for _, e := range o.Rule.Expr {
			if c, ok := e["counter"]; ok {
				var v struct{ Packets uint64 }
				if err := json.Unmarshal(c, &v); err != nil {
					return 0, 0, fmt.Errorf("lab: nft counter: %w", err)
				}
				counts = append(counts, v.Packets)
			}
		}
	}
	if len(counts) != 2 {
		return 0, 0, fmt.Errorf("lab: %d counters in table %s, want 2", len(counts), lossTable)
	}
	return counts[0], counts[1], nil
}

// Truth is the sessions the hosts' kernels hold: for every established TCP socket on
// the VIP's service port in a host's namespace, the client's address:port and that
// host. A client address:port in two hosts at once is an error.
func (l *Lab) Truth() (map[string]uint16, error) {
	truth := map[string]uint16{}
	for _, n := range l.Hosts() {
		socks, err := l.Established(n)
		if err != nil {
			return nil, err
		}
		for _, c := range socks {
			if o, dup := truth[c]; dup {
				return nil, fmt.Errorf("lab: client %s established on h%d and h%d", c, o, n)
			}
			truth[c] = uint16(n)
		}
	}
	return truth, nil
}

// Established lists the clients (address:port) of the established TCP sockets on the
// VIP's service port in host n's namespace (ss).
func (l *Lab) Established(n int) ([]string, error) {
	h := l.hosts[n]
	if h == nil {
		return nil, fmt.Errorf("%w: h%d not started", ErrHost, n)
	}
	vip := l.Service()
	out, err := exec.Command("ip", "netns", "exec", h.NS, "ss", "-Htn", "state", "established",
		"src", vipFilter(vip)).Output()
	if err != nil {
		return nil, fmt.Errorf("lab: ss in %s: %w", h.NS, err)
	}
	var clients []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 { // Recv-Q Send-Q Local Peer
			continue
		}
		local, err1 := netip.ParseAddrPort(f[2])
		peer, err2 := netip.ParseAddrPort(f[3])
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("lab: ss line %q", sc.Text())
		}
		if local != vip {
			continue
		}
		clients = append(clients, netip.AddrPortFrom(peer.Addr().Unmap(), peer.Port()).String())
	}
	return clients, nil
}

func vipFilter(vip netip.AddrPort) string {
	if vip.Addr().Is6() {
		return "[" + vip.Addr().String() + "]:" + strconv.Itoa(int(vip.Port()))
	}
	return vip.String()
}

// Sessions lists host n's table (every entry) as client address:port → owner, for the
// sessions to the VIP's service port.
func (l *Lab) Sessions(ctx context.Context, n int) (map[string]uint16, error) {
	var res ctl.Sessions
	c, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := ctl.Call(c, l.socket(n), ctl.CmdSessions, ctl.SessionsArgs{Limit: -1}, &res); err != nil {
		return nil, fmt.Errorf("h%d: sessions: %w", n, err)
	}
	vip := l.Service().String()
	m := make(map[string]uint16, len(res.Sessions))
	for _, s := range res.Sessions {
		if s.Proto == "tcp" && s.VIP == vip {
			m[s.Client] = s.Owner
		}
	}
	return m, nil
}

// Stats asks host n's homingd for its counters.
func (l *Lab) Stats(ctx context.Context, n int) (ctl.Stats, error) {
	var st ctl.Stats
	c, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	err := ctl.Call(c, l.socket(n), ctl.CmdStats, nil, &st)
	if err != nil {
		err = fmt.Errorf("h%d: stats: %w", n, err)
	}
	return st, err
}

// Peers asks host n's homingd for its peers.
func (l *Lab) Peers(ctx context.Context, n int) ([]ctl.Peer, error) {
	var ps []ctl.Peer
	c, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	err := ctl.Call(c, l.socket(n), ctl.CmdPeers, nil, &ps)
	if err != nil {
		err = fmt.Errorf("h%d: peers: %w", n, err)
	}
	return ps, err
}

// TableDiff compares a host's table with the truth and describes the first
// differences (at most max); it returns how many there are in all.
func TableDiff(table, truth map[string]uint16, max int) (int, []string) {
	var diffs []string
	n := 0
	note := func(s string) {
		n++
		if len(diffs) < max {
			diffs = append(diffs, s)
		}
	}
	for _, c := range sortedKeys(truth) {
		o, ok := table[c]
		switch {
		case !ok:
			note(fmt.Sprintf("%s (h%d) missing", c, truth[c]))
		case o != truth[c]:
			note(fmt.Sprintf("%s owner h%d, truth h%d", c, o, truth[c]))
		}
	}
	for _, c := range sortedKeys(table) {
		if _, ok := truth[c]; !ok {
			note(fmt.Sprintf("%s (owner h%d) not established anywhere", c, table[c]))
		}
	}
	return n, diffs
}

func sortedKeys(m map[string]uint16) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// Kill sends SIGKILL to host n's homingd and waits until it has exited.
func (l *Lab) Kill(n int) error {
	h := l.hosts[n]
	if h == nil || h.homingd == nil {
		return fmt.Errorf("%w: h%d not started", ErrHost, n)
	}
	if h.homingd.exited() {
		return fmt.Errorf("h%d: homingd: %w: %v", n, ErrExited, h.homingd.err)
	}
	if err := h.homingd.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		return fmt.Errorf("h%d: kill homingd: %w", n, err)
	}
	<-h.homingd.done
	return nil
}

// Restart starts host n's homingd again after it exited (Kill), with the same
// configuration, and waits until it answers on its control socket (its kernel
// interface is configured and gossip and the probe run; it may not have heard its
// peers yet: WaitPeers).
func (l *Lab) Restart(ctx context.Context, n int) error {
	h := l.hosts[n]
	if h == nil || h.homingd == nil {
		return fmt.Errorf("%w: h%d not started", ErrHost, n)
	}
	if !h.homingd.exited() {
		return fmt.Errorf("%w: h%d's homingd still runs", ErrStarted, n)
	}
	var err error
	if h.homingd, err = l.start(fmt.Sprintf("h%d homingd", n), h.LogFile, h.NS, "", nil, l.opts.Homingd, "-config", h.Config); err != nil {
		return err
	}
	if err := l.waitStatus(ctx, h, 30*time.Second); err != nil {
		return fmt.Errorf("h%d: homingd: %w\n%s", n, err, Tail(h.LogFile, 20))
	}
	return nil
}

// WaitPeers waits until every running host's gossip sees every other host up.
func (l *Lab) WaitPeers(ctx context.Context, limit time.Duration) error {
	return l.waitPeers(ctx, limit)
}

// Destroy kills host n's processes (SIGKILL) and deletes its namespace, as a host that
// dies: its NIC (the veth) goes with it. The router's route still names it until
// SetRoute leaves it out. The host is no longer among Hosts.
func (l *Lab) Destroy(n int) error {
	h := l.hosts[n]
	if h == nil {
		return fmt.Errorf("%w: h%d not started", ErrHost, n)
	}
	var errs []error
	for _, p := range []*proc{h.serve, h.homingd} {
		if p != nil && !p.exited() {
			_ = p.cmd.Process.Signal(syscall.SIGKILL)
			<-p.done
		}
	}
	if err := run("ip", "netns", "delete", h.NS); err != nil {
		errs = append(errs, err)
	}
	delete(l.hosts, n)
	l.routed = slices.DeleteFunc(l.routed, func(m int) bool { return m == n })
	return errors.Join(errs...)
}

// AddSpy creates a namespace "<id>-spy" with an interface eth0 on rack 0's bridge and
// the address spy (of the lab's family, in rack 0's subnet) — a stranger on the POP
// LAN — and returns its name.
func (l *Lab) AddSpy(spy netip.Addr) (string, error) {
	ns, rtr := l.NS("spy"), l.NS("rtr")
	script := [][]string{
		{"ip", "netns", "add", ns},
		{"ip", "-n", ns, "link", "set", "lo", "up"},
		{"ip", "-n", rtr, "link", "add", "vspy", "type", "veth", "peer", "name", "eth0", "netns", ns},
		{"ip", "-n", rtr, "link", "set", "vspy", "master", bridge(0), "up"},
	}
	add := []string{"ip", "-n", ns, "addr", "add", netip.PrefixFrom(spy, l.bits()).String(), "dev", "eth0"}
	if l.opts.IPv6 {
		add = append(add, "nodad")
	}
	script = append(script, add, []string{"ip", "-n", ns, "link", "set", "eth0", "up"})
	for _, c := range script {
		if err := run(c...); err != nil {
			return ns, err
		}
	}
	// As the client's: a veth leaves UDP checksums to an offload that never happens, and
	// the hosts' kernels (behind DPDK) would drop the datagrams.
	return ns, txChecksumOff(ns, "eth0")
}

// Opener opens new client connections at a steady rate from the client namespace, as
// a POP's clients do: each does one checked exchange (ChunkLen bytes echoed), then a
// share of them (Keep) stays open and exchanges every MinGap..MaxGap like a Fleet's
// connections until Fleet().Stop, and the others exchange once more after a pause of up
// to Hold and close (a half close, then the server's end of stream).
type Opener struct {
	Rate int           // connections per second
	Keep float64       // share of the connections that stay open, 0..1
	Hold time.Duration // pause of a closing connection before its second exchange

	start   time.Time
	cancel  context.CancelFunc
	target  netns.NsHandle
	wg      sync.WaitGroup // dialers and closing connections
	fleet   *Fleet         // the connections that stay open
	fleetMu sync.Mutex     // protects fleet.Conns while opening

	Opened, Completed, Handshake, Reset, Failed atomic.Int64 // of the closing connections (Opened: all)
	errMu                                       sync.Mutex   // protects errs and broken
	errs                                        []string
	broken                                      []int // ids of the closing connections that failed
}

// KeptID is added to the id of an Opener's connection that stays open (its Conn.ID).
const KeptID = 1_000_000

// OpenedAt is when the Opener issued connection id (a kept one's Conn.ID - KeptID):
// connection ids are issued at the Opener's rate from its start.
func (o *Opener) OpenedAt(id int) time.Time {
	return o.start.Add(time.Duration(float64(id) / float64(o.Rate) * float64(time.Second)))
}

// Broken are the ids of the closing connections that failed (handshake included).
func (o *Opener) Broken() []int {
	o.errMu.Lock()
	defer o.errMu.Unlock()
	return slices.Clone(o.broken)
}

// openerDialers is the number of goroutines, each on a thread in the client namespace,
// that dial for an Opener.
const openerDialers = 16

// openerTimeout bounds each step of a closing connection.
const openerTimeout = 10 * time.Second

// StartOpener starts opening o.Rate connections per second to addr from namespace ns.
func StartOpener(ns, addr string, o *Opener) error {
	target, err := netns.GetFromName(ns)
	if err != nil {
		return fmt.Errorf("lab: netns %s: %w", ns, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	o.start, o.cancel, o.target = time.Now(), cancel, target
	keepCtx, keepCancel := context.WithCancel(context.Background())
	o.fleet = &Fleet{cancel: keepCancel}
	jobs := make(chan int)
	for range openerDialers {
		o.wg.Add(1)
		go func() { // dialer, locked in ns
			defer o.wg.Done()
			err := dialIn(ctx, target, func(d *net.Dialer) error {
				d.Timeout = openerTimeout
				for id := range jobs {
					o.Opened.Add(1)
					c, err := d.DialContext(ctx, "tcp", addr)
					if err != nil {
						if ctx.Err() == nil {
							o.Handshake.Add(1)
							o.note(id, "handshake", err)
						}
						continue
					}
					tc := c.(*net.TCPConn)
					_ = tc.SetNoDelay(true)
					if rand.Float64() < o.Keep {
						cn := &Conn{ID: KeptID + id, Local: c.LocalAddr().String(), c: tc}
						cn.lastOK.Store(time.Now().UnixNano())
						o.fleetMu.Lock()
						o.fleet.Conns = append(o.fleet.Conns, cn)
						o.fleet.wg.Add(1)
						o.fleetMu.Unlock()
						go func() { // kept connection loop
							defer o.fleet.wg.Done()
							cn.loop(keepCtx)
						}()
						continue
					}
					o.wg.Add(1)
					go func() { // closing connection
						defer o.wg.Done()
						o.closing(tc, id)
					}()
				}
				return nil
			})
			if err != nil {
				o.note(-1, "dialer", err)
			}
		}()
	}
	o.wg.Add(1)
	go func() {
		defer o.wg.Done()
		pace(ctx, o.start, o.Rate, jobs)
	}()
	return nil
}

// closing runs one closing connection.
func (o *Opener) closing(c *net.TCPConn, id int) {
	defer c.Close()
	want, got := make([]byte, ChunkLen), make([]byte, ChunkLen)
	echo := func(seq uint32) error {
		bad, err := echoChunk(c, want, got, id, seq, openerTimeout)
		if err != nil {
			return err
		}
		if bad != 0 {
			return errors.New("echo differs")
		}
		return nil
	}
	fail := func(step string, err error) {
		if IsReset(err) {
			o.Reset.Add(1)
		} else {
			o.Failed.Add(1)
		}
		o.note(id, step, err)
	}
	if err := echo(0); err != nil {
		fail("exchange 0", err)
		return
	}
	time.Sleep(rand.N(o.Hold + 1))
	if err := echo(1); err != nil {
		fail("exchange 1", err)
		return
	}
	if err := c.CloseWrite(); err != nil {
		fail("close", err)
		return
	}
	_ = c.SetDeadline(time.Now().Add(openerTimeout))
	if n, err := c.Read(got); n > 0 || !errors.Is(err, io.EOF) {
		fail("close", fmt.Errorf("%d bytes, %v", n, err))
		return
	}
	o.Completed.Add(1)
}

func (o *Opener) note(id int, step string, err error) {
	o.errMu.Lock()
	defer o.errMu.Unlock()
	if id >= 0 {
		o.broken = append(o.broken, id)
	}
	if len(o.errs) < 10 {
		o.errs = append(o.errs, fmt.Sprintf("%.3fs connection %d, %s: %v", time.Since(o.start).Seconds(), id, step, err))
	}
}

// Errors are the first errors of the closing connections and the dialers.
func (o *Opener) Errors() []string {
	o.errMu.Lock()
	defer o.errMu.Unlock()
	return slices.Clone(o.errs)
}

// Stop stops opening connections and waits until every closing connection has ended.
// It returns the connections that stay open, still running (stop them with Stop).
func (o *Opener) Stop() *Fleet {
	o.cancel()
	o.wg.Wait()
	o.target.Close()
	return o.fleet
}

// InNS runs fn on an OS thread that is in namespace ns; sockets fn creates stay in ns.
func InNS(ns string, fn func() error) error {
	target, err := netns.GetFromName(ns)
	if err != nil {
		return fmt.Errorf("lab: netns %s: %w", ns, err)
	}
	defer target.Close()
	errc := make(chan error, 1)
	go func() { // locked in ns
		errc <- dialIn(context.Background(), target, func(*net.Dialer) error { return fn() })
	}()
	return <-errc
}
