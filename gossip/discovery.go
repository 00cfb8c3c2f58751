package gossip

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"github.com/homing-dev/homing/gossip/wire"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"
)

// The discovery file lists the hosts of the POP, as a health-check service sees them.
// Text, one host per line, fields separated by blanks:
//
//	# id  address        [mac]
//	1     198.18.0.11    02:00:00:00:00:11
//	2     198.18.0.12
//	3     2001:db8::13
//
// Blank lines and lines starting with '#' are ignored. id is 1..65535; address is the
// host's primary or second address as its heartbeat announces it; mac, if given, must
// equal the announced MAC. A host that is not listed is ignored (its datagrams are
// dropped and counted as UnknownHost) and, if it was up, taken down. A heartbeat whose
// address or MAC disagrees with its line is dropped and counted as Mismatch.
//
// The node re-reads the file when its modification time or size changes (polled every
// DiscoveryPoll). A file that fails to parse is ignored (DiscoveryErrors counts it) and
// the previous list stays in force; at start it is an error.

// DiscoveryHost is one line of the discovery file.
type DiscoveryHost struct {
	ID   uint16
	Addr netip.Addr
	MAC  net.HardwareAddr // nil if not given
}

// ErrDiscovery wraps every discovery file parse error.
var ErrDiscovery = errors.New("discovery file")

type discoveryList map[uint16]DiscoveryHost

func (d DiscoveryHost) matches(hb *wire.Heartbeat) bool {
	if hb.Addr != d.Addr && hb.AltAddr != d.Addr {
		return false
	}
	return d.MAC == nil || bytes.Equal(d.MAC, hb.MAC)
}

// ReadDiscovery parses a discovery file.
func ReadDiscovery(r io.Reader) ([]DiscoveryHost, error) {
	var hosts []DiscoveryHost
	seen := map[uint16]bool{}
	sc := bufio.NewScanner(r)
	for line := 1; sc.Scan(); line++ {
		s := strings.TrimSpace(sc.Text())
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		bad := func(format string, a ...any) error {
			return fmt.Errorf("%w: line %d: %s", ErrDiscovery, line, fmt.Sprintf(format, a...))
		}
		f := strings.Fields(s)
		if len(f) < 2 || len(f) > 3 {
			return nil, bad("want \"id address [mac]\", got %d fields", len(f))
		}
		id, err := strconv.ParseUint(f[0], 10, 16)
		if err != nil || id == 0 {
			return nil, bad("host id %q", f[0])
		}
		if seen[uint16(id)] {
			return nil, bad("host id %d listed twice", id)
		}
		seen[uint16(id)] = true
		a, err := netip.ParseAddr(f[1])
		if err != nil || a.Zone() != "" || a.Is4In6() {
			return nil, bad("address %q", f[1])
		}
		h := DiscoveryHost{ID: uint16(id), Addr: a}
		if len(f) == 3 {
			h.MAC, err = net.ParseMAC(f[2])
			if err != nil || len(h.MAC) != 6 {
				return nil, bad("MAC %q", f[2])
			}
		}
		hosts = append(hosts, h)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDiscovery, err)
	}
	return hosts, nil
}

// pollDiscovery re-reads the discovery file if it changed. At start (initial) errors
// are returned; later they are counted and the previous list stays.
func (n *Node) pollDiscovery(now time.Time, initial bool) error {
	path := n.cfg.DiscoveryFile
	fail := func(err error) error {
		if initial {
			return err
		}
		inc(&n.stats.DiscoveryErrors)
		n.log.Error("gossip discovery file", "path", path, "err", err)
		return err
	}
	fi, err := os.Stat(path)
	if err != nil {
		return fail(fmt.Errorf("%w: %w", ErrDiscovery, err))
	}
	// discMod is written only here, from New or the housekeeper, never concurrently.
	if !initial && fi.ModTime().Equal(n.discMod) && fi.Size() == n.discSize {
		return nil
	}
	n.discMod, n.discSize = fi.ModTime(), fi.Size()
	f, err := os.Open(path)
	if err != nil {
		return fail(fmt.Errorf("%w: %w", ErrDiscovery, err))
	}
	hosts, err := ReadDiscovery(f)
	f.Close()
	if err != nil {
		return fail(fmt.Errorf("%s: %w", path, err))
	}
	list := make(discoveryList, len(hosts))
	for _, h := range hosts {
		list[h.ID] = h
	}
	n.peersMu.Lock()
	defer n.peersMu.Unlock()
	n.discovery = list
	for id, p := range n.peers {
		if _, ok := list[id]; !ok {
			n.downLocked(id, p, now, "not in discovery file")
		}
	}
	return nil
}
