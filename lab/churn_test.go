package lab

import (
	"testing"

	"github.com/homing-dev/homing/config"
)

// TestRaceSwitches checks that Options.NoTentative and NoPark reach the host
// configuration, and that the zero Options keep homing's defaults (no root needed).
func TestRaceSwitches(t *testing.T) {
	for _, c := range []struct{ noTent, noPark bool }{{false, false}, {true, false}, {false, true}, {true, true}} {
		l := &Lab{ID: "hlab1x1", Dir: "/tmp/hlab1x1-1", keyFile: "/tmp/hlab1x1-1/gossip.key",
			opts: Options{Redirect: true, NoTentative: c.noTent, NoPark: c.noPark}}
		cfg, err := config.Parse([]byte(l.hostConfig(1, "/sys/fs/cgroup/unified/hlab1x1/h1")), "h1.toml")
		if err != nil {
			t.Fatalf("%+v: %v", c, err)
		}
		wantHold := config.DefaultParkHold
		if c.noPark {
			wantHold = 0
		}
		if cfg.Probe.Tentative == c.noTent || cfg.Tunnel.ParkHold != wantHold || !cfg.Tunnel.Redirect {
			t.Errorf("%+v: probe.tentative %v, tunnel.park_hold %v, redirect %v", c, cfg.Probe.Tentative,
				cfg.Tunnel.ParkHold, cfg.Tunnel.Redirect)
		}
		if cfg.Probe.TentativeLifetime != config.DefaultTentativeLifetime || cfg.Tunnel.ParkSize != config.DefaultParkSize {
			t.Errorf("%+v: tentative_lifetime %v, park_size %d", c, cfg.Probe.TentativeLifetime, cfg.Tunnel.ParkSize)
		}
	}
}
