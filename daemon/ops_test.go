package daemon

import (
	"context"
	"crypto/rand"
	"net"
	"net/netip"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/homing-dev/homing/config"
	"github.com/homing-dev/homing/gossip"
	"github.com/homing-dev/homing/gossip/gossiptest"
	"github.com/homing-dev/homing/gossip/wire"
	"github.com/homing-dev/homing/session"
)

const baseConfig = `
[host]
id = 1
address = "198.18.0.11"
vips = ["198.19.255.1"]
[nic]
device = "net_af_packet0,iface=eth0"
[gossip]
insecure = true
[[peers]]
id = 2
address = "198.18.0.12"
mac = "02:00:00:00:00:12"
[[sessions]]
client = "198.18.100.2:40000"
vip = "198.19.255.1:80"
owner = 2
`

func mustParse(t *testing.T, text string) *config.Config {
	t.Helper()
	c, err := config.Parse([]byte(text), "t.toml")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestRestartKeys(t *testing.T) {
	old := mustParse(t, baseConfig)
	live := mustParse(t, baseConfig+`
[[peers]]
id = 3
address = "198.18.0.13"
[[sessions]]
client = "198.18.100.3:40000"
vip = "198.19.255.1:80"
owner = 3
[log]
level = "debug"
`)
	if keys := RestartKeys(old, live); len(keys) != 0 {
		t.Fatalf("live changes need a restart: %v", keys)
	}
	restart := mustParse(t, strings.NewReplacer(`address = "198.18.0.11"`, `address = "198.18.0.21"`,
		`device = "net_af_packet0,iface=eth0"`, "device = \"net_af_packet0,iface=eth1\"\n[dpdk]\nworkers = 2\nidle_sleep_max_us = 7",
		`insecure = true`, "insecure = true\nport = 7000\n[log]\nformat = \"json\"").Replace(baseConfig))
	got := RestartKeys(old, restart)
	want := []string{"host.address", "dpdk.workers", "dpdk.mbufs", "dpdk.idle_sleep_max_us", "nic.device",
		"kernel.addresses", "gossip.port", "log.format"}
	for _, k := range want {
		if !slices.Contains(got, k) {
			t.Errorf("restart keys %v lack %s", got, k)
		}
	}
	for _, k := range got {
		if slices.Contains(liveKeys, k) || strings.HasPrefix(k, "peers") || strings.HasPrefix(k, "sessions") {
			t.Errorf("restart keys %v name the live key %s", got, k)
		}
	}
}

// TestKeyNamesDocumented checks that every key RestartKeys can name is a key of
// docs/CONFIG.md, so that the refusal names keys an operator can find.
func TestKeyNamesDocumented(t *testing.T) {
	b, err := os.ReadFile("../docs/CONFIG.md")
	if err != nil {
		t.Fatal(err)
	}
	var doc []string
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z0-9_.\\[\\]]+)` \\|").FindAllStringSubmatch(string(b), -1) {
		doc = append(doc, m[1])
	}
	ct := reflect.TypeOf(config.Config{})
	n := 0
	for i := range ct.NumField() {
		f := ct.Field(i)
		if f.Name == "Source" {
			continue
		}
		sec := KeyName(f.Name)
		if f.Type.Kind() != reflect.Struct {
			if !slices.ContainsFunc(doc, func(k string) bool { return strings.HasPrefix(k, sec+"[].") }) {
				t.Errorf("%s (%s) is not in docs/CONFIG.md", sec, f.Name)
			}
			continue
		}
		for j := range f.Type.NumField() {
			key := sec + "." + KeyName(f.Type.Field(j).Name)
			n++
			arrayOfTables := f.Type.Field(j).Type.Kind() == reflect.Slice &&
				slices.ContainsFunc(doc, func(k string) bool { return strings.HasPrefix(k, key+"[].") })
			if !slices.Contains(doc, key) && !arrayOfTables {
				t.Errorf("%s (%s.%s) is not in docs/CONFIG.md", key, f.Name, f.Type.Field(j).Name)
			}
		}
	}
	if n < 50 {
		t.Fatalf("only %d keys walked", n)
	}
}

func randomKey(t *testing.T) []byte {
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

func mustRing(t *testing.T, cur, acc []byte) *wire.KeyRing {
	r, err := wire.NewKeyRing(cur, acc)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestKeyRotation runs two gossip nodes that started with key K1 through the rotation
// of docs/OPERATIONS.md (add K2 as accepted, sign with K2, drop K1) host by host, and
// checks that ownership keeps flowing both ways at every step, and that a host with an
// unrelated key is refused.
func TestKeyRotation(t *testing.T) {
	k1, k2, k3 := randomKey(t), randomKey(t), randomKey(t)
	start := mustRing(t, k1, nil)
	hub := gossiptest.NewHub()
	type host struct {
		d     *Daemon
		node  *gossip.Node
		table *gossiptest.Table
	}
	var hosts []*host
	for id := uint16(1); id <= 2; id++ {
		cfg := config.Default()
		cfg.Host.ID = id
		d := &Daemon{Config: cfg}
		d.ops.Store(newOps(d))
		h := &host{d: d, table: gossiptest.NewTable()}
		var err error
		h.node, err = gossip.New(gossip.Config{HostID: id, Addr: netip.AddrFrom4([4]byte{198, 18, 50, byte(id)}),
			MAC: net.HardwareAddr{2, 0, 0, 0, 0, byte(id)}, Domain: "lab", Keys: start,
			HeartbeatInterval: 20 * time.Millisecond, FlushDelay: time.Millisecond, Linger: -1},
			hub.Conn(), h.table, gossiptest.NewTemplates())
		if err != nil {
			t.Fatal(err)
		}
		d.rotateKeysWith(h.node, nil)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = h.node.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done; d.stopOps() })
		hosts = append(hosts, h)
	}
	a, b := hosts[0], hosts[1]
	setKeys := func(h *host, r *wire.KeyRing) {
		t.Helper()
		if err := h.d.ops.Load().setKeys(r); err != nil {
			t.Fatal(err)
		}
	}
	step := 0
	exchange := func(what string) {
		t.Helper()
		step++
		ka := session.Key{Src: netip.AddrFrom4([4]byte{198, 18, 100, byte(step)}), Dst: netip.MustParseAddr("198.19.255.1"), SrcPort: 1000, DstPort: 443, Proto: session.TCP}
		kb := ka
		kb.SrcPort = 2000
		if err := a.node.LocalAdd(ka); err != nil {
			t.Fatal(err)
		}
		if err := b.node.LocalAdd(kb); err != nil {
			t.Fatal(err)
		}
		gossiptest.WaitFor(t, 5*time.Second, what+": b learns a's session", func() bool { o, ok := b.table.Get(ka); return ok && o.Host == 1 })
		gossiptest.WaitFor(t, 5*time.Second, what+": a learns b's session", func() bool { o, ok := a.table.Get(kb); return ok && o.Host == 2 })
	}
	exchange("start, both K1")
	setKeys(a, mustRing(t, k1, k2))
	exchange("a signs K1 and accepts K2")
	setKeys(b, mustRing(t, k1, k2))
	exchange("both sign K1 and accept K2")
	setKeys(a, mustRing(t, k2, k1))
	exchange("a signs K2, b accepts it")
	setKeys(b, mustRing(t, k2, k1))
	exchange("both sign K2 and accept K1")
	setKeys(a, mustRing(t, k2, nil))
	setKeys(b, mustRing(t, k2, nil))
	exchange("both K2 only")

	// A host on another key is refused, and counted.
	before := b.node.Stats().AuthFailures
	setKeys(a, mustRing(t, k3, nil))
	k := session.Key{Src: netip.MustParseAddr("198.18.100.250"), Dst: netip.MustParseAddr("198.19.255.1"), SrcPort: 9, DstPort: 443, Proto: session.TCP}
	if err := a.node.LocalAdd(k); err != nil {
		t.Fatal(err)
	}
	gossiptest.WaitFor(t, 5*time.Second, "b counts auth failures", func() bool { return b.node.Stats().AuthFailures > before })
	time.Sleep(50 * time.Millisecond)
	if _, ok := b.table.Get(k); ok {
		t.Fatal("b applied a record signed with a key it does not hold")
	}
}

func TestParseSession(t *testing.T) {
	k, err := ParseSession("UDP", "198.18.0.1:40000", "198.19.255.1:53")
	if err != nil || k.Proto != session.UDP || k.SrcPort != 40000 || k.Dst != netip.MustParseAddr("198.19.255.1") {
		t.Fatalf("%v %v", k, err)
	}
	if _, err := ParseSession("tcp", "[2001:db8::1]:1", "[2001:db8::2]:443"); err != nil {
		t.Fatal(err)
	}
	for _, bad := range [][3]string{{"icmp", "1.2.3.4:1", "1.2.3.5:2"}, {"tcp", "1.2.3.4", "1.2.3.5:2"},
		{"tcp", "1.2.3.4:1", "[2001:db8::2]:443"}} {
		if _, err := ParseSession(bad[0], bad[1], bad[2]); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

func TestCountKeys(t *testing.T) {
	if n := countKeys([]byte("# comment\n\n" + strings.Repeat("ab", 32) + "\n  " + strings.Repeat("cd", 32) + "  \n")); n != 2 {
		t.Fatalf("%d keys", n)
	}
}

func FuzzParseSession(f *testing.F) {
	f.Add("tcp", "198.18.100.2:40000", "198.19.255.1:443")
	f.Add("UDP", "[2001:db8::1]:53", "[2001:db8::2]:53")
	f.Add("tcp", "[::ffff:198.18.0.1]:1", "198.19.255.1:80")
	f.Fuzz(func(t *testing.T, proto, client, vip string) {
		k, err := ParseSession(proto, client, vip)
		if err != nil {
			return
		}
		if !k.Valid() {
			t.Fatalf("accepted an invalid key %v", k)
		}
		k2, err := ParseSession(proto, netip.AddrPortFrom(k.Src, k.SrcPort).String(), netip.AddrPortFrom(k.Dst, k.DstPort).String())
		if err != nil || k2 != k {
			t.Fatalf("round trip of %v: %v %v", k, k2, err)
		}
	})
}
