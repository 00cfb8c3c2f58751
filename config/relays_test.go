package config

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

const relayBase = `
[host]
id = 3
address = "198.18.1.13"
domain = "rack-b"
gateway = "198.18.1.1"
vips = ["198.19.255.1"]
[nic]
device = "net_af_packet0,iface=eth0"
[gossip]
insecure = true
`

func TestRelays(t *testing.T) {
	cfg, err := Parse([]byte(relayBase+`relay_port = 7082
relays = [{ domain = "rack-a", address = "198.18.0.11" }, { domain = "rack-a", address = "198.18.0.12" },
          { domain = "rack-b", address = "198.18.1.13" }, { domain = "rack-b", address = "198.18.1.14" }]
`), "t.toml")
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Gossip.Relays) != 4 || cfg.Gossip.RelayPort != 7082 || !cfg.IsRelay() {
		t.Fatalf("relays %+v, port %d, is relay %v", cfg.Gossip.Relays, cfg.Gossip.RelayPort, cfg.IsRelay())
	}
	want := []netip.AddrPort{netip.MustParseAddrPort("198.18.0.11:7082"), netip.MustParseAddrPort("198.18.0.12:7082")}
	if got := cfg.RelayPeers(); len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("relay peers %v, want %v", got, want)
	}
	def, err := Parse([]byte(relayBase), "t.toml")
	if err != nil {
		t.Fatal(err)
	}
	if def.Gossip.RelayPort != DefaultRelayPort || def.IsRelay() || len(def.RelayPeers()) != 0 {
		t.Errorf("defaults: port %d, relay %v, peers %v", def.Gossip.RelayPort, def.IsRelay(), def.RelayPeers())
	}
	for _, c := range []struct{ toml, msg string }{
		{`relays = [{ address = "198.18.0.11" }]`, "gossip.relays[0].domain: required"},
		{`relays = [{ domain = "rack-a" }]`, "gossip.relays[0].address: required"},
		{`relays = [{ domain = "rack-a", address = "2001:2::11" }]`, "gossip.relays[0].address: 2001:2::11 is not of host.address's family"},
		{`relays = [{ domain = "rack-a", address = "198.18.0.11" }, { domain = "rack-b", address = "198.18.0.11" }]`, "gossip.relays[1].address: 198.18.0.11 is listed twice"},
		{`relays = [{ domain = "rack-a", address = "198.18.1.13" }]`, `gossip.relays[0].domain: "rack-a" is not host.domain`},
		{`relays = [{ domain = "a b", address = "198.18.0.11" }]`, "gossip.relays[0].domain"},
		{`relay_port = 6081`, "gossip.relay_port: 6081 is also gossip.port or tunnel.port"},
	} {
		_, err := Parse([]byte(relayBase+c.toml+"\n"), "t.toml")
		if err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: %v, want %q", c.toml, err, c.msg)
		}
		var fe *FieldError
		if err != nil && !errors.As(err, &fe) {
			t.Errorf("%s: %T is not a *FieldError", c.toml, err)
		}
	}
}
