package main

import (
	"fmt"
	"net/netip"
	"strings"
)

// checkSession checks lookup's arguments as the daemon parses them (daemon.ParseSession),
// so that a malformed command line is a usage error (exit 2), not a daemon error (1).
func checkSession(proto, client, vip string) error {
	switch strings.ToLower(proto) {
	case "tcp", "udp":
	default:
		return fmt.Errorf("protocol %q: want tcp or udp", proto)
	}
	c, err := netip.ParseAddrPort(client)
	if err != nil {
		return fmt.Errorf("client %q: want address:port ([v6]:port for IPv6)", client)
	}
	v, err := netip.ParseAddrPort(vip)
	if err != nil {
		return fmt.Errorf("vip %q: want address:port ([v6]:port for IPv6)", vip)
	}
	if c.Addr().Unmap().Is4() != v.Addr().Unmap().Is4() {
		return fmt.Errorf("%s and %s are not of the same family", c.Addr(), v.Addr())
	}
	return nil
}

// checkSessionsArgs checks sessions' --vip (an address or address:port) and --limit
// (-1: all, 0: the default, or a positive number).
func checkSessionsArgs(vip string, limit int) error {
	if vip != "" {
		if _, err := netip.ParseAddrPort(vip); err != nil {
			if _, err := netip.ParseAddr(vip); err != nil {
				return fmt.Errorf("--vip %q: want an address or address:port", vip)
			}
		}
	}
	if limit < -1 {
		return fmt.Errorf("--limit %d: want -1 (all) or a positive number", limit)
	}
	return nil
}
