//go:build linux

package probe

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The helper is this test binary run again (helperEnv set) inside the test's
// network namespace and cgroup. It reads one command a line on stdin and answers
// "ok ..." or "err ..." on stdout:
//
//	listen ADDR                  listen on ADDR and accept in the background
//	dial GROUP N LOCALIP REMOTE  open N connections from LOCALIP to REMOTE;
//	                             answers the client ends: "ok SRC>DST SRC>DST ..."
//	close GROUP MODE             close GROUP's connections, both ends, MODE being
//	                             client-first, server-first or rst (client resets)
const helperEnv = "HMG_PROBE_HELPER"

type helper struct {
	mu       sync.Mutex
	accepted map[string]net.Conn // by remote address (the client end's local one)
	groups   map[string][]net.Conn
}

func runHelper() {
	h := &helper{accepted: make(map[string]net.Conn), groups: make(map[string][]net.Conn)}
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		reply, err := h.do(strings.Fields(in.Text()))
		if err != nil {
			fmt.Printf("err %v\n", err)
			continue
		}
		fmt.Printf("ok %s\n", reply)
	}
}

func (h *helper) do(f []string) (string, error) {
	switch {
	case len(f) == 2 && f[0] == "listen":
		l, err := net.Listen("tcp", f[1])
		if err != nil {
			return "", err
		}
		go h.accept(l)
		return l.Addr().String(), nil
	case len(f) == 5 && f[0] == "dial":
		n, err := strconv.Atoi(f[2])
		if err != nil {
			return "", err
		}
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(f[3])}, Timeout: 5 * time.Second}
		var out []string
		for range n {
			c, err := d.Dial("tcp", f[4])
			if err != nil {
				return "", err
			}
			h.mu.Lock()
			h.groups[f[1]] = append(h.groups[f[1]], c)
			h.mu.Unlock()
			out = append(out, c.LocalAddr().String()+">"+c.RemoteAddr().String())
		}
		return strings.Join(out, " "), nil
	case len(f) == 3 && f[0] == "close":
		return "", h.close(f[1], f[2])
	}
	return "", fmt.Errorf("bad command %q", f)
}

func (h *helper) accept(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		h.mu.Lock()
		h.accepted[c.RemoteAddr().String()] = c
		h.mu.Unlock()
	}
}

// serverEnd waits for the accepted end of client connection c.
func (h *helper) serverEnd(c net.Conn) (net.Conn, error) {
	for start := time.Now(); time.Since(start) < 5*time.Second; time.Sleep(time.Millisecond) {
		h.mu.Lock()
		s, ok := h.accepted[c.LocalAddr().String()]
		h.mu.Unlock()
		if ok {
			return s, nil
		}
	}
	return nil, fmt.Errorf("connection from %s not accepted", c.LocalAddr())
}

func (h *helper) close(group, mode string) error {
	h.mu.Lock()
	conns := h.groups[group]
	delete(h.groups, group)
	h.mu.Unlock()
	for _, c := range conns {
		s, err := h.serverEnd(c)
		if err != nil {
			return err
		}
		switch mode {
		case "client-first":
			c.Close()
			s.Close()
		case "server-first":
			s.Close()
			c.Close()
		case "rst":
			if err := c.(*net.TCPConn).SetLinger(0); err != nil {
				return err
			}
			c.Close()
			s.Close()
		default:
			return fmt.Errorf("bad close mode %q", mode)
		}
	}
	return nil
}
