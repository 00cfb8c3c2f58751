package lab

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/vishvananda/netns"

	"github.com/homing-dev/homing/quiccid"
)

// QUIC in the lab: every host's echo service also runs a raw-QUIC echo server on the VIP
// (QUICPort) whose connection IDs carry the host's id (quiccid.Generator), when the lab
// is made with Options.QUIC; QUICFlows are long-lived QUIC connections from the client
// namespace, each exchanging numbered chunks on one stream, whose source port can be
// changed under them (Rebind: what a NAT rebinding does).

// QUICPort is the VIP's UDP port of the QUIC echo service.
const QUICPort = 443

// QUICRandomPort is the VIP's UDP port of a second QUIC echo service on every host whose
// connection IDs are quic-go's own, random, of QUICRandomCIDLen bytes (no host id in
// them: homing learns them, cid_len).
const QUICRandomPort = 8443

// QUICRandomCIDLen is quic-go's default connection ID length (protocol.
// DefaultConnectionIDLength in v0.65.0), that of QUICRandomPort's server.
const QUICRandomCIDLen = 4

// QUICEnv names the environment variable that carries the host id to the echo service:
// set, the service runs the QUIC echo server too.
const QUICEnv = "HOMING_LAB_QUIC_HOST"

// quicALPN is the QUIC echo service's application protocol.
const quicALPN = "homing-lab-echo"

// quicConfig is both ends' QUIC configuration. Path MTU discovery is off: its probes
// grow packets to the link's MTU, and the tunnel's overhead would make the redirected
// ones too big (a real deployment lowers the server's max_udp_payload_size instead).
// Keep-alives keep every connection's packets flowing between chunks.
func quicConfig() *quic.Config {
	return &quic.Config{MaxIdleTimeout: 5 * time.Second, KeepAlivePeriod: time.Second, DisablePathMTUDiscovery: true,
		HandshakeIdleTimeout: 5 * time.Second}
}

// selfSigned is a TLS certificate for the echo service (the clients do not verify it).
func selfSigned() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "homing-lab"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// ListenQUIC starts the QUIC echo server on addr for host id host (its CIDs carry it;
// 0: quic-go's random CIDs of QUICRandomCIDLen bytes): every stream of every connection
// is echoed back. It returns once it listens; the server runs until the process ends.
func ListenQUIC(addr netip.AddrPort, host uint16) error {
	cert, err := selfSigned()
	if err != nil {
		return err
	}
	uc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
	if err != nil {
		return err
	}
	tr := &quic.Transport{Conn: uc, ConnectionIDGenerator: quiccid.Generator{Host: host}}
	if host == 0 {
		tr = &quic.Transport{Conn: uc, ConnectionIDLength: QUICRandomCIDLen}
	}
	ln, err := tr.Listen(&tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{quicALPN}}, quicConfig())
	if err != nil {
		uc.Close()
		return err
	}
	go func() { // QUIC accept loop
		for {
			c, err := ln.Accept(context.Background())
			if err != nil {
				return
			}
			go func() { // one connection's streams
				for {
					s, err := c.AcceptStream(context.Background())
					if err != nil {
						return
					}
					go func() { // echo, one per stream
						defer s.Close()
						_, _ = io.Copy(s, s)
					}()
				}
			}()
		}
	}()
	return nil
}

// serveQUICFromEnv starts the QUIC echo servers on the echo service's VIP if QUICEnv
// names this host's id: host-id CIDs on QUICPort, random ones on QUICRandomPort.
func serveQUICFromEnv(addr string) error {
	v := os.Getenv(QUICEnv)
	if v == "" {
		return nil
	}
	id, err := strconv.ParseUint(v, 10, 16)
	if err != nil {
		return fmt.Errorf("%s=%q: %w", QUICEnv, v, err)
	}
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return err
	}
	if err := ListenQUIC(netip.AddrPortFrom(ap.Addr(), QUICPort), uint16(id)); err != nil {
		return err
	}
	return ListenQUIC(netip.AddrPortFrom(ap.Addr(), QUICRandomPort), 0)
}

// rebindConn is a UDP socket whose local port can be changed under the QUIC transport
// that uses it, as a NAT rebinding does: the server sees the connection's packets come
// from a new address.
type rebindConn struct {
	mu  sync.Mutex
	cur net.PacketConn
	old []net.PacketConn
}

func (r *rebindConn) conn() net.PacketConn {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cur
}

func (r *rebindConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		c := r.conn()
		n, a, err := c.ReadFrom(b)
		if err != nil && c != r.conn() {
			continue // rebound: read from the new socket
		}
		return n, a, err
	}
}

func (r *rebindConn) WriteTo(b []byte, a net.Addr) (int, error) { return r.conn().WriteTo(b, a) }
func (r *rebindConn) LocalAddr() net.Addr                       { return r.conn().LocalAddr() }
func (r *rebindConn) SetDeadline(t time.Time) error             { return r.conn().SetDeadline(t) }
func (r *rebindConn) SetReadDeadline(t time.Time) error         { return r.conn().SetReadDeadline(t) }
func (r *rebindConn) SetWriteDeadline(t time.Time) error        { return r.conn().SetWriteDeadline(t) }

func (r *rebindConn) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.old {
		c.Close()
	}
	return r.cur.Close()
}

// rebind swaps in c (a new socket: a new source port). The old socket is closed, which
// ends a read waiting on it.
func (r *rebindConn) rebind(c net.PacketConn) {
	r.mu.Lock()
	old := r.cur
	r.cur = c
	r.mu.Unlock()
	old.Close()
}

// QUICFlows are n long-lived QUIC connections to the lab's QUIC echo service, each
// sending a numbered chunk on its stream every gap and reading its echo.
type QUICFlows struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	target netns.NsHandle
	conns  []*quicFlow

	mu                  sync.Mutex // protects the counters below
	exchanged, failures int
}

type quicFlow struct {
	id     int
	sock   *rebindConn
	tr     *quic.Transport
	conn   *quic.Conn
	broken atomic.Pointer[string] // the first error that broke the connection
}

// quicChunkLen is the length of a chunk: connection id, sequence number, filler.
const quicChunkLen = 64

// StartQUICFlows opens n connections from namespace ns to addr, all at once, and starts
// their exchanges.
func StartQUICFlows(ctx context.Context, ns string, addr netip.AddrPort, n int, gap time.Duration) (*QUICFlows, error) {
	target, err := netns.GetFromName(ns)
	if err != nil {
		return nil, fmt.Errorf("lab: netns %s: %w", ns, err)
	}
	q := &QUICFlows{target: target}
	socks := make([]*rebindConn, 0, n)
	if err = dialIn(ctx, target, func(*net.Dialer) error {
		for range n {
			c, err := net.ListenPacket("udp", ":0")
			if err != nil {
				return err
			}
			socks = append(socks, &rebindConn{cur: c})
		}
		return nil
	}); err != nil {
		for _, s := range socks {
			s.Close()
		}
		target.Close()
		return nil, fmt.Errorf("lab: quic flows: %w", err)
	}
	tlsConf := &tls.Config{InsecureSkipVerify: true, NextProtos: []string{quicALPN}}
	to := net.UDPAddrFromAddrPort(addr)
	errs := make(chan error, n)
	var mu sync.Mutex
	for i, s := range socks {
		go func() { // one handshake
			f := &quicFlow{id: i, sock: s, tr: &quic.Transport{Conn: s}}
			dctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			defer cancel()
			c, err := f.tr.Dial(dctx, to, tlsConf, quicConfig())
			if err != nil {
				f.tr.Close()
				s.Close()
				errs <- fmt.Errorf("quic connection %d: %w", i, err)
				return
			}
			f.conn = c
			mu.Lock()
			q.conns = append(q.conns, f)
			mu.Unlock()
			errs <- nil
		}()
	}
	var first error
	for range n {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	if first != nil {
		q.close()
		return nil, fmt.Errorf("lab: %w", first)
	}
	fctx, cancel := context.WithCancel(context.Background())
	q.cancel = cancel
	for _, f := range q.conns {
		q.wg.Add(1)
		go func() { // one connection's exchanges
			defer q.wg.Done()
			q.run(fctx, f, gap)
		}()
	}
	return q, nil
}

func (q *QUICFlows) run(ctx context.Context, f *quicFlow, gap time.Duration) {
	fail := func(err error) {
		if ctx.Err() != nil {
			return
		}
		msg := fmt.Sprintf("connection %d: %v", f.id, err)
		f.broken.CompareAndSwap(nil, &msg)
		q.mu.Lock()
		q.failures++
		q.mu.Unlock()
	}
	s, err := f.conn.OpenStreamSync(ctx)
	if err != nil {
		fail(err)
		return
	}
	chunk, got := make([]byte, quicChunkLen), make([]byte, quicChunkLen)
	tick := time.NewTimer(time.Duration(f.id%97) * gap / 97)
	defer tick.Stop()
	for seq := uint32(0); ; seq++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		tick.Reset(gap)
		binary.BigEndian.PutUint32(chunk, uint32(f.id))
		binary.BigEndian.PutUint32(chunk[4:], seq)
		for i := 8; i < len(chunk); i++ {
			chunk[i] = byte(f.id + int(seq) + i)
		}
		_ = s.SetDeadline(time.Now().Add(4 * time.Second))
		if _, err := s.Write(chunk); err != nil {
			fail(err)
			return
		}
		if _, err := io.ReadFull(s, got); err != nil {
			fail(err)
			return
		}
		if string(got) != string(chunk) {
			fail(fmt.Errorf("chunk %d echoed wrong", seq))
			return
		}
		q.mu.Lock()
		q.exchanged++
		q.mu.Unlock()
	}
}

// Rebind moves every k-th connection (k >= 1) to a new source port, as a NAT rebinding
// would: its QUIC stack is not told. It returns how many moved.
func (q *QUICFlows) Rebind(ctx context.Context, k int) (int, error) {
	var moved []*quicFlow
	for i, f := range q.conns {
		if i%k == 0 && f.broken.Load() == nil {
			moved = append(moved, f)
		}
	}
	socks := make([]net.PacketConn, 0, len(moved))
	if err := dialIn(ctx, q.target, func(*net.Dialer) error {
		for range moved {
			c, err := net.ListenPacket("udp", ":0")
			if err != nil {
				return err
			}
			socks = append(socks, c)
		}
		return nil
	}); err != nil {
		for _, c := range socks {
			c.Close()
		}
		return 0, fmt.Errorf("lab: quic rebind: %w", err)
	}
	for i, f := range moved {
		f.sock.rebind(socks[i])
	}
	return len(moved), nil
}

// QUICCounts are the flows' figures so far.
type QUICCounts struct {
	Conns, Broken, Exchanged int
	Errors                   []string // the first error of each broken connection
}

// Counts returns the connections, the broken ones and the chunks exchanged so far.
func (q *QUICFlows) Counts() QUICCounts {
	c := QUICCounts{Conns: len(q.conns)}
	for _, f := range q.conns {
		if m := f.broken.Load(); m != nil {
			c.Broken++
			c.Errors = append(c.Errors, *m)
		}
	}
	q.mu.Lock()
	c.Exchanged = q.exchanged
	q.mu.Unlock()
	return c
}

// Stop ends every exchange and closes the connections.
func (q *QUICFlows) Stop() {
	if q.cancel != nil {
		q.cancel()
	}
	q.wg.Wait()
	q.close()
}

func (q *QUICFlows) close() {
	for _, f := range q.conns {
		if f.conn != nil {
			_ = f.conn.CloseWithError(0, "done")
		}
		f.tr.Close()
		f.sock.Close()
	}
	q.target.Close()
}
