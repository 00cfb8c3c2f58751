package config

import (
	"net/netip"
	"reflect"
	"testing"
	"time"
)

// TestBGP: [bgp] with neighbours turns BGP on, with the router id and next hop from
// host.address; every error names its key.
func TestBGP(t *testing.T) {
	c := mustParse(t, minimal)
	if c.BGP.Enabled() || c.BGP.HoldTime != DefaultBGPHoldTime || c.BGP.StopLinger != DefaultBGPStopLinger {
		t.Fatalf("without [bgp]: %+v", c.BGP)
	}
	c = mustParse(t, minimal+`
[bgp]
local_as = 65001
hold_time = "3s"
communities = ["65000:100"]
stop_linger = "1s"

[[bgp.neighbors]]
address = "198.18.0.1"
as = 65000

[[bgp.neighbors]]
address = "198.18.0.2"
as = 4200000000
password = "s3cret"
port = 1179
`)
	want := BGP{LocalAS: 65001, RouterID: netip.MustParseAddr("198.18.0.17"), HoldTime: 3 * time.Second,
		Communities: []string{"65000:100"}, StopLinger: time.Second, Neighbors: []BGPNeighbor{
			{Address: netip.MustParseAddr("198.18.0.1"), AS: 65000, Port: 179},
			{Address: netip.MustParseAddr("198.18.0.2"), AS: 4200000000, Password: "s3cret", Port: 1179}}}
	if !c.BGP.Enabled() || !reflect.DeepEqual(c.BGP, want) {
		t.Fatalf("bgp = %+v\nwant %+v", c.BGP, want)
	}
	n := "\n[[bgp.neighbors]]\naddress = \"198.18.0.1\"\nas = 65000\n"
	for _, tc := range []struct{ src, want string }{
		{"\n[bgp]\nlocal_as = 65001\n", "t.toml: bgp.neighbors: bgp.local_as or bgp.router_id is set but no [[bgp.neighbors]]: nothing to announce to"},
		{"\n[bgp]\n" + n, "t.toml: bgp.local_as: must be 1..4294967295, got 0"},
		{"\n[bgp]\nlocal_as = 1\nrouter_id = \"2001:2::1\"\n" + n, "t.toml: bgp.router_id: 2001:2::1 is not an IPv4 address (a BGP identifier is 32 bits)"},
		{"\n[bgp]\nlocal_as = 1\nhold_time = \"2s\"\n" + n, "t.toml: bgp.hold_time: must be whole seconds from 3s to 65535s (RFC 4271), got 2s"},
		{"\n[bgp]\nlocal_as = 1\ncommunities = [\"65536:1\"]\n" + n, "t.toml: bgp.communities[0]: \"65536:1\" is not AS:value (each 0..65535)"},
		{"\n[bgp]\nlocal_as = 1\n" + n + n, "t.toml: bgp.neighbors[1].address: duplicate neighbour 198.18.0.1 (also bgp.neighbors[0])"},
		{"\n[bgp]\nlocal_as = 1\n\n[[bgp.neighbors]]\naddress = \"198.18.0.1\"\n", "t.toml: bgp.neighbors[0].as: must be 1..4294967295, got 0"},
		{"\n[bgp]\nlocal_as = 1\n\n[[bgp.neighbors]]\naddress = \"198.18.0.1\"\nas = 2\nport = 0\n", "t.toml: bgp.neighbors[0].port: must be 1..65535, got 0"},
		{"\n[bgp]\nlocal_as = 1\n\n[[bgp.neighbors]]\naddress = \"router\"\nas = 2\n", "t.toml: bgp.neighbors[0].address: \"router\" is not an IP address"},
	} {
		_, err := Parse([]byte(minimal+tc.src), "t.toml")
		if err == nil || !containsLine(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.src, err, tc.want)
		}
	}
	// A VIP of the other family has no next hop.
	src := replace(t, `vips = ["198.19.255.1"]`, `vips = ["198.19.255.1", "2001:2:ff::1"]`) + "\n[bgp]\nlocal_as = 1\n" + n
	if _, err := Parse([]byte(src), "t.toml"); err == nil || !containsLine(err.Error(), "t.toml: bgp: VIP 2001:2:ff::1/128 is not of host.address's family: its next hop would be 198.18.0.17") {
		t.Errorf("VIP of the other family: %v", err)
	}
}
