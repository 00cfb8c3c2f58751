package config

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestUDPSessions: [[udp_sessions]] declares the VIPs' UDP session ports (the only UDP
// that may wait in the park), and tunnel.park_udp their share of the park.
func TestUDPSessions(t *testing.T) {
	c := mustParse(t, minimal)
	if len(c.UDPSessions) != 0 || c.Tunnel.ParkUDP != 0 {
		t.Fatalf("without [[udp_sessions]]: %+v, park_udp %d", c.UDPSessions, c.Tunnel.ParkUDP)
	}
	c = mustParse(t, minimal+"\n[[udp_sessions]]\nport = 443\nquic = true\n\n[[udp_sessions]]\nport = 4500\n")
	want := []UDPSession{{Port: 443, QUIC: true, IdleTimeout: DefaultUDPIdleTimeout}, {Port: 4500, IdleTimeout: DefaultUDPIdleTimeout}}
	if !reflect.DeepEqual(c.UDPSessions, want) || c.Tunnel.ParkUDP != DefaultParkSize/4 {
		t.Fatalf("udp_sessions %+v park_udp %d, want %+v and %d", c.UDPSessions, c.Tunnel.ParkUDP, want, DefaultParkSize/4)
	}
	c = mustParse(t, minimal+"\n[tunnel]\npark_size = 100\npark_udp = 0\n\n[[udp_sessions]]\nport = 443\n")
	if c.Tunnel.ParkUDP != 0 {
		t.Fatalf("explicit park_udp = 0: got %d", c.Tunnel.ParkUDP)
	}
	c = mustParse(t, minimal+"\n[[udp_sessions]]\nport = 443\nquic = true\nquic_cid = true\nidle_timeout = \"2m\"\n")
	if want := []UDPSession{{Port: 443, QUIC: true, QUICCID: true, IdleTimeout: 2 * time.Minute}}; !reflect.DeepEqual(c.UDPSessions, want) {
		t.Fatalf("udp_sessions %+v, want %+v", c.UDPSessions, want)
	}
	c = mustParse(t, minimal+"\n[[udp_sessions]]\nport = 8443\nquic = true\ncid_len = 4\n")
	if want := []UDPSession{{Port: 8443, QUIC: true, CIDLen: 4, IdleTimeout: DefaultUDPIdleTimeout}}; !reflect.DeepEqual(c.UDPSessions, want) {
		t.Fatalf("udp_sessions %+v, want %+v", c.UDPSessions, want)
	}
	many := ""
	for p := 1; p <= MaxCIDLenPorts+1; p++ {
		many += fmt.Sprintf("\n[[udp_sessions]]\nport = %d\nquic = true\ncid_len = 20\n", p)
	}
	for _, tc := range []struct{ src, want string }{
		{"\n[[udp_sessions]]\nport = 443\ncid_len = 4\n", "t.toml: udp_sessions[0].cid_len: needs quic = true (connection IDs are QUIC's)"},
		{"\n[[udp_sessions]]\nport = 443\nquic = true\ncid_len = 3\n", "t.toml: udp_sessions[0].cid_len: must be 0 (off) or 4..20, got 3"},
		{"\n[[udp_sessions]]\nport = 443\nquic = true\ncid_len = 21\n", "t.toml: udp_sessions[0].cid_len: must be 0 (off) or 4..20, got 21"},
		{"\n[[udp_sessions]]\nport = 443\nquic = true\ncid_len = -1\n", "t.toml: udp_sessions[0].cid_len: must be 0 (off) or 4..20, got -1"},
		{many, "t.toml: udp_sessions[16].cid_len: at most 16 udp_sessions may have a cid_len"},
	} {
		_, err := Parse([]byte(minimal+tc.src), "t.toml")
		if err == nil || !containsLine(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.src, err, tc.want)
		}
	}
	for _, tc := range []struct{ src, want string }{
		{"\n[[udp_sessions]]\nport = 443\nquic_cid = true\n", "t.toml: udp_sessions[0].quic_cid: needs quic = true (connection IDs are QUIC's)"},
		{"\n[[udp_sessions]]\nport = 443\nidle_timeout = \"500ms\"\n", "t.toml: udp_sessions[0].idle_timeout: must be 1s..24h0m0s, got 500ms"},
		{"\n[[udp_sessions]]\nport = 443\nidle_timeout = \"soon\"\n", "t.toml: udp_sessions[0].idle_timeout: \"soon\" is not a duration (e.g. \"200us\", \"5s\")"},
		{"\n[[udp_sessions]]\nquic = true\n", "t.toml: udp_sessions[0].port: required (the VIPs' UDP port whose flows are sessions)"},
		{"\n[[udp_sessions]]\nport = 70000\n", "t.toml: udp_sessions[0].port: must be 1..65535, got 70000"},
		{"\n[[udp_sessions]]\nport = 53\n[[udp_sessions]]\nport = 53\n", "t.toml: udp_sessions[1].port: duplicate port 53 (also udp_sessions[0])"},
		{"\n[[udp_sessions]]\nport = 53\nidle = 1\n", "t.toml: udp_sessions.idle: unknown key (see docs/CONFIG.md)"},
		{"\n[tunnel]\npark_size = 8\npark_udp = 8\n", "t.toml: tunnel.park_udp: must be 0..7, got 8"},
		{"\n[tunnel]\npark_udp = -1\n", "t.toml: tunnel.park_udp: must be 0..1023, got -1"},
	} {
		_, err := Parse([]byte(minimal+tc.src), "t.toml")
		if err == nil || !containsLine(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.src, err, tc.want)
		}
		if err != nil && errors.Is(err, ErrSyntax) {
			t.Errorf("%q: a syntax error", tc.src)
		}
	}
}

func containsLine(s, line string) bool {
	return slices.Contains(strings.Split(s, "\n"), line)
}
