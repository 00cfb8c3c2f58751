package config

import (
	"errors"
	"testing"
)

// FuzzParse checks that Parse never panics, that every failure is made of
// *FieldErrors naming the file, and that every success honours the invariants the rest
// of homingd relies on. The seed corpus is in testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	f.Add([]byte(minimal))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data, "fuzz.toml")
		if err != nil {
			if c != nil {
				t.Fatal("config and error")
			}
			probs := Problems(err)
			if len(probs) == 0 {
				t.Fatalf("error without FieldError: %v", err)
			}
			for _, p := range probs {
				if p.File != "fuzz.toml" || p.Kind == nil || !errors.Is(err, p.Kind) {
					t.Fatalf("bad problem %#v", p)
				}
			}
			return
		}
		h := c.Host
		if h.ID < 1 || h.ID > MaxHostID || !h.Address.IsValid() || len(h.VIPs) == 0 {
			t.Fatalf("bad host %+v", h)
		}
		if (c.NIC.Device == "") == (c.NIC.PCI == "") {
			t.Fatalf("nic %+v", c.NIC)
		}
		if c.DPDK.Workers < 1 || c.DPDK.Workers > MaxWorkers || c.DPDK.Mbufs < 1023 || len(c.DPDK.CPUs) == 0 {
			t.Fatalf("dpdk %+v", c.DPDK)
		}
		ids := map[uint16]bool{h.ID: true}
		for _, p := range c.Peers {
			if ids[p.ID] || p.ID == 0 || p.ID > MaxHostID || p.Address.Is4() != h.Address.Is4() || p.TunnelPort == 0 {
				t.Fatalf("bad peer %+v", p)
			}
			ids[p.ID] = true
		}
		for _, s := range c.Sessions {
			if !s.Key.Valid() || !h.IsVIP(s.Key.Dst) || !ids[s.Owner] || s.Key.SrcPort == 0 || s.Key.DstPort == 0 {
				t.Fatalf("bad session %+v", s)
			}
		}
		for _, r := range c.Kernel.Routes {
			if r.Via.IsValid() && r.Via.Is4() != r.To.Addr().Is4() {
				t.Fatalf("bad route %+v", r)
			}
		}
		g := c.Gossip
		if !g.Group.IsMulticast() || g.FlushDelay <= 0 || g.HeartbeatInterval <= 0 || g.Grace <= 0 || g.Linger <= 0 {
			t.Fatalf("bad gossip %+v", g)
		}
		if g.Enabled && !g.Insecure && g.KeyFile == "" {
			t.Fatal("gossip without key")
		}
	})
}
