package lab

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/vishvananda/netns"
)

// UDPFlows are request/response flows over UDP, as a DNS client makes them: each flow
// is a connected socket (its own source port, so ECMP places each flow on its own),
// sends a numbered request every Gap and waits up to a second for its echo.
type UDPFlows struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu              sync.Mutex      // protects the fields below
	rtts            []time.Duration // round trips since the last Take
	sent, lost, bad int
}

// udpRequestLen is the length of a UDP request: flow id, sequence number, filler.
const udpRequestLen = 64

// StartUDPFlows starts n flows from namespace ns to addr, each sending a request every
// gap (the first after a random part of gap, so that the flows spread out).
func StartUDPFlows(ns, addr string, n int, gap time.Duration) (*UDPFlows, error) {
	target, err := netns.GetFromName(ns)
	if err != nil {
		return nil, fmt.Errorf("lab: netns %s: %w", ns, err)
	}
	defer target.Close()
	conns := make([]net.Conn, 0, n)
	err = dialIn(context.Background(), target, func(d *net.Dialer) error {
		for range n {
			c, err := d.Dial("udp", addr)
			if err != nil {
				return err
			}
			conns = append(conns, c)
		}
		return nil
	})
	if err != nil {
		for _, c := range conns {
			c.Close()
		}
		return nil, fmt.Errorf("lab: udp flows: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	u := &UDPFlows{cancel: cancel}
	for id, c := range conns {
		u.wg.Add(1)
		go func() { // one flow
			defer u.wg.Done()
			defer c.Close()
			u.flow(ctx, c, id, gap)
		}()
	}
	return u, nil
}

func (u *UDPFlows) flow(ctx context.Context, c net.Conn, id int, gap time.Duration) {
	req, got := make([]byte, udpRequestLen), make([]byte, 2*udpRequestLen)
	tick := time.NewTimer(time.Duration(rand.Int64N(int64(gap))))
	defer tick.Stop()
	for seq := uint32(0); ; seq++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		tick.Reset(gap)
		binary.BigEndian.PutUint32(req, uint32(id))
		binary.BigEndian.PutUint32(req[4:], seq)
		for i := 8; i < len(req); i++ {
			req[i] = byte(id + int(seq) + i)
		}
		t0 := time.Now()
		_ = c.SetDeadline(t0.Add(time.Second))
		if _, err := c.Write(req); err != nil {
			u.note(0, false, true)
			continue
		}
		// Echoes of earlier, timed-out requests are skipped.
		for {
			n, err := c.Read(got)
			if err != nil {
				u.note(0, false, true)
				break
			}
			if n >= 8 && binary.BigEndian.Uint32(got[4:]) != seq {
				continue
			}
			u.note(time.Since(t0), !bytes.Equal(got[:n], req), false)
			break
		}
	}
}

func (u *UDPFlows) note(rtt time.Duration, bad, lost bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.sent++
	switch {
	case lost:
		u.lost++
	case bad:
		u.bad++
	default:
		u.rtts = append(u.rtts, rtt)
	}
}

// UDPStep is what the flows measured over one step.
type UDPStep struct {
	Name            string
	Sent, Lost, Bad int
	RTTs            []time.Duration // sorted
}

// Take returns what was measured since the last Take, as step name.
func (u *UDPFlows) Take(name string) UDPStep {
	u.mu.Lock()
	defer u.mu.Unlock()
	s := UDPStep{Name: name, Sent: u.sent, Lost: u.lost, Bad: u.bad, RTTs: u.rtts}
	u.rtts, u.sent, u.lost, u.bad = nil, 0, 0, 0
	slices.Sort(s.RTTs)
	return s
}

// Stop ends every flow.
func (u *UDPFlows) Stop() {
	u.cancel()
	u.wg.Wait()
}

// Quantile is the q-quantile (0..1) of sorted round trips, 0 if there are none.
func Quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(q*float64(len(sorted))))]
}

// UDPBurst sends count datagrams of size bytes from namespace ns to addr, from socks
// unconnected sockets (source ports) in turn, at rate datagrams a second, and returns
// how many it sent. Nothing needs to answer them: they load the data planes.
func UDPBurst(ctx context.Context, ns string, addr netip.AddrPort, socks, count, rate, size int) (int, error) {
	target, err := netns.GetFromName(ns)
	if err != nil {
		return 0, fmt.Errorf("lab: netns %s: %w", ns, err)
	}
	defer target.Close()
	var conns []net.PacketConn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	err = dialIn(ctx, target, func(*net.Dialer) error {
		for range socks {
			c, err := net.ListenPacket("udp", ":0")
			if err != nil {
				return err
			}
			conns = append(conns, c)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("lab: udp burst: %w", err)
	}
	to := net.UDPAddrFromAddrPort(addr)
	buf := make([]byte, size)
	start, i, sent := time.Now(), 0, 0
	for i < count {
		if ctx.Err() != nil {
			return sent, ctx.Err()
		}
		// Send what the rate allows by now, then sleep a millisecond.
		for due := min(count, int(time.Since(start).Seconds()*float64(rate))+1); i < due; i++ {
			if _, err := conns[i%len(conns)].WriteTo(buf, to); err == nil {
				sent++
			}
		}
		time.Sleep(time.Millisecond)
	}
	return sent, nil
}
