package docker_test

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/homing-dev/homing/internal/testenv"
	"github.com/homing-dev/homing/lab"
)

// The compose POP of compose.yaml.
const (
	project = "homing-pop-test"
	conns   = 300
	vip     = "198.19.207.1/32"
	// A step lasts long enough for every connection to exchange several chunks
	// (one every 100-300 ms) on its new path.
	stepTime = 6 * time.Second
)

var hostAddr = map[int]string{1: "198.19.200.11", 2: "198.19.200.12", 3: "198.19.200.13"}

// ourAddr matches the addresses of the private engine (docker/daemon.json) and of the
// compose networks: 198.19.192.0/20.
var ourAddr = regexp.MustCompile(`inet 198\.19\.(19[2-9]|20[0-7])\.`)

// pop drives the compose POP: docker and docker-compose on the private engine.
type pop struct {
	t    *testing.T
	env  []string
	root string            // repository
	ids  map[string]string // service: container id
}

func (p *pop) run(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = p.root
	cmd.Env = p.env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("%s %s: %w\n%s%s", name, strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.String(), nil
}

func (p *pop) must(ctx context.Context, name string, args ...string) string {
	p.t.Helper()
	out, err := p.run(ctx, name, args...)
	if err != nil {
		p.t.Fatal(err)
	}
	return out
}

func (p *pop) compose(ctx context.Context, args ...string) (string, error) {
	return p.run(ctx, "docker-compose", append([]string{"-p", project, "-f", "docker/compose.yaml"}, args...)...)
}

// container is the id of service svc's container (compose ps -q: v1 and v2 name them
// differently).
func (p *pop) container(ctx context.Context, svc string) string {
	p.t.Helper()
	if id, ok := p.ids[svc]; ok {
		return id
	}
	out, err := p.compose(ctx, "ps", "-q", svc)
	id := strings.TrimSpace(out)
	if err != nil || id == "" || strings.Contains(id, "\n") {
		p.t.Fatalf("container of %s: %q %v", svc, out, err)
	}
	p.ids[svc] = id
	return id
}

// counts asks the client container for its connections' counts.
func (p *pop) counts(ctx context.Context) (c struct {
	lab.Counts
	Ended []string `json:"ended"`
}, err error) {
	out, err := p.run(ctx, "/usr/bin/docker", "exec", p.container(ctx, "client"), "homing-popclient", "counts")
	if err == nil {
		err = json.Unmarshal([]byte(out), &c)
	}
	return c, err
}

// homingctl runs homingctl --json in host n's container and decodes its answer.
func (p *pop) homingctl(ctx context.Context, n int, v any, args ...string) error {
	out, err := p.run(ctx, "/usr/bin/docker", append([]string{"exec", p.container(ctx, fmt.Sprint("h", n)), "homingctl", "--json"}, args...)...)
	if err != nil {
		return err
	}
	return json.Unmarshal([]byte(out), v)
}

// tunnelled sums the packets the hosts' data planes sent to a session's owner.
func (p *pop) tunnelled(ctx context.Context) (sum uint64) {
	p.t.Helper()
	for n := 1; n <= 3; n++ {
		var st struct {
			Lcores []struct {
				Redirected uint64 `json:"redirected"`
			} `json:"lcores"`
		}
		if err := p.homingctl(ctx, n, &st, "stats"); err != nil {
			p.t.Fatal(err)
		}
		for _, l := range st.Lcores {
			sum += l.Redirected
		}
	}
	return sum
}

func (p *pop) route(ctx context.Context, hosts ...int) {
	p.t.Helper()
	args := []string{"exec", p.container(ctx, "router"), "ip", "route", "replace", vip}
	for _, n := range hosts {
		args = append(args, "nexthop", "via", hostAddr[n])
	}
	p.must(ctx, "/usr/bin/docker", args...)
}

// rehash gives the router a new hash seed, as after a router restart. /proc/sys is
// read-only in the container: the seed is set from the machine in its network namespace.
func (p *pop) rehash(ctx context.Context, seed uint32) {
	p.t.Helper()
	pid := strings.TrimSpace(p.must(ctx, "/usr/bin/docker", "inspect", "-f", "{{.State.Pid}}", p.container(ctx, "router")))
	p.must(ctx, "nsenter", "-t", pid, "-n", "sysctl", "-qw", "net.ipv4.fib_multipath_hash_seed="+strconv.FormatUint(uint64(seed), 10))
}

// links are the names of the machine's interfaces of the kinds Docker makes (bridges,
// veths; other tests on the machine make theirs in namespaces).
func links(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("ip", "-o", "link", "show").Output()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if f := strings.Fields(l); len(f) > 1 {
			name := strings.SplitN(strings.TrimSuffix(f[1], ":"), "@", 2)[0]
			for _, p := range []string{"veth", "docker", "br-", "hpop-"} {
				if strings.HasPrefix(name, p) {
					names = append(names, name)
				}
			}
		}
	}
	slices.Sort(names)
	return names
}

// TestComposePOP builds the image (make image) on the private engine of engine.sh,
// brings the compose POP up, runs 300 client connections through a drain of h1, its
// return and a router rehash, and takes the POP and the engine down: no connection may
// reset or fail, no echoed byte may differ, the hosts must tunnel packets in the drain and
// the rehash, and nothing the POP or the engine made may remain.
func TestComposePOP(t *testing.T) {
	testenv.RequireRoot(t)
	for _, c := range []string{"dockerd", "/usr/bin/docker", "docker-compose", "mmdebstrap", "nsenter", "make"} {
		testenv.RequireCommand(t, c)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	before := links(t)
	p := &pop{t: t, root: root, ids: map[string]string{}}

	// The engine: started here unless it runs, and then left running, except under CI,
	// which never leaves it (a killed run's engine included).
	out, err := exec.Command(filepath.Join(root, "docker/engine.sh"), "start").CombinedOutput()
	if err != nil {
		t.Fatalf("engine: %v\n%s", err, out)
	}
	startedHere := bytes.Contains(out, []byte("dockerd up"))
	if startedHere || testenv.InCI() {
		t.Cleanup(func() {
			if out, err := exec.Command(filepath.Join(root, "docker/engine.sh"), "stop").CombinedOutput(); err != nil {
				t.Errorf("engine stop: %v\n%s", err, out)
			}
			after := links(t)
			if startedHere && !slices.Equal(before, after) {
				t.Errorf("interfaces after the engine stopped: %v, before it started: %v", after, before)
			}
			if addrs, _ := exec.Command("ip", "-4", "-o", "addr").Output(); ourAddr.Match(addrs) {
				t.Errorf("an address of the engine's range remains:\n%s", addrs)
			}
			if mounts, _ := os.ReadFile("/proc/self/mountinfo"); bytes.Contains(mounts, []byte(" /run/homing-docker/")) {
				t.Errorf("a mount of the engine remains:\n%s", mounts)
			}
		})
	} else {
		t.Log("engine already running: left running")
	}
	env, err := exec.Command(filepath.Join(root, "docker/engine.sh"), "env").Output()
	if err != nil {
		t.Fatal(err)
	}
	host := strings.TrimPrefix(strings.TrimSpace(string(env)), "export ")
	// Authenticated gossip: a key readable by the group homing (gid 970) of the image.
	key := filepath.Join(t.TempDir(), "gossip.key")
	secret := make([]byte, 32)
	_, _ = crand.Read(secret)
	if err := os.WriteFile(key, []byte("# compose test\n"+hex.EncodeToString(secret)+"\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(key, 0, 970); err != nil {
		t.Fatal(err)
	}
	p.env = append(os.Environ(), host, "HOMING_GOSSIP_KEY="+key)

	// The image.
	t0 := time.Now()
	p.must(ctx, "make", "-s", "image")
	build := time.Since(t0)
	size := p.must(ctx, "/usr/bin/docker", "image", "inspect", "-f", "{{.Size}}", "homing:dev")
	labels := p.must(ctx, "/usr/bin/docker", "image", "inspect", "-f", `{{index .Config.Labels "org.opencontainers.image.version"}} {{json .Config.Healthcheck.Test}} {{.Config.User}}`, "homing:dev")
	t.Logf("make image: %.0f s, homing:dev %s bytes; version label, healthcheck: %s", build.Seconds(), strings.TrimSpace(size), strings.TrimSpace(labels))

	// The POP.
	if _, err := p.compose(ctx, "down", "--remove-orphans"); err != nil { // a killed run's
		t.Fatal(err)
	}
	t0 = time.Now()
	if _, err := p.compose(ctx, "up", "-d"); err != nil {
		logs, _ := p.compose(ctx, "logs", "--tail", "30")
		t.Fatalf("%v\n%s", err, logs)
	}
	downed := false
	down := func() {
		if downed {
			return
		}
		downed = true
		if t.Failed() {
			logs, _ := p.compose(context.Background(), "logs", "--no-color", "--tail", "60")
			t.Logf("compose logs:\n%s", logs)
		}
		if _, err := p.compose(context.Background(), "down", "--remove-orphans", "--timeout", "10"); err != nil {
			t.Error(err)
			return
		}
		label := "label=com.docker.compose.project=" + project
		left, _ := p.run(context.Background(), "/usr/bin/docker", "ps", "-aq", "--filter", label)
		nets, _ := p.run(context.Background(), "/usr/bin/docker", "network", "ls", "-q", "--filter", label)
		if strings.TrimSpace(left+nets) != "" {
			t.Errorf("compose down left containers %q, networks %q", left, nets)
		}
		if addrs, _ := exec.Command("ip", "-4", "-o", "addr").Output(); regexp.MustCompile(`inet 198\.19\.20[01]\.`).Match(addrs) {
			t.Errorf("compose down left a network's address:\n%s", addrs)
		}
	}
	t.Cleanup(down)

	// Up: every host sees its two peers and holds every connection's session.
	var st struct {
		PeersUp   int `json:"peers_up"`
		Sessions4 int `json:"sessions_ipv4"`
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		ok := true
		for n := 1; n <= 3 && ok; n++ {
			ok = p.homingctl(ctx, n, &st, "status") == nil && st.PeersUp == 2 && st.Sessions4 >= conns
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("POP not up after 30 s: last status %+v", st)
		}
		time.Sleep(200 * time.Millisecond)
	}
	up := time.Since(t0)

	c0, err := p.counts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	type step struct {
		name                          string
		alive, reset, failed, stalled int
		bad, exchanges, tunnelled     uint64
	}
	var steps []step
	prev, prevTun := c0, p.tunnelled(ctx)
	measure := func(name string) step {
		time.Sleep(stepTime)
		c, err := p.counts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		tun := p.tunnelled(ctx)
		s := step{name: name, alive: c.Alive, stalled: c.Stalled, reset: c.Reset - prev.Reset, failed: c.Failed - prev.Failed,
			bad: c.Corrupted - prev.Corrupted, exchanges: c.Exchanges - prev.Exchanges, tunnelled: tun - prevTun}
		steps = append(steps, s)
		prev, prevTun = c, tun
		return s
	}
	measure("steady")
	p.route(ctx, 2, 3)
	drain := measure("drain h1")
	p.route(ctx, 1, 2, 3)
	measure("restore h1")
	p.rehash(ctx, rand.Uint32()|1)
	rehash := measure("rehash router")

	for n := 1; n <= 3; n++ {
		logs, _ := p.run(ctx, "/usr/bin/docker", "logs", p.container(ctx, fmt.Sprint("h", n)))
		if strings.Contains(logs, "unauthenticated") {
			t.Errorf("h%d runs unauthenticated gossip despite the key", n)
		}
	}
	// A host that stalls past gossip.down_after (a loaded machine) is taken down by its
	// peers, which then hand its sessions to their kernels: say so next to the figures.
	for n := 1; n <= 3; n++ {
		logs, _ := p.run(ctx, "/usr/bin/docker", "logs", p.container(ctx, fmt.Sprint("h", n)))
		for _, l := range strings.Split(logs, "\n") {
			if strings.Contains(l, "peer down") {
				t.Logf("h%d: %s", n, l)
			}
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "compose POP up in %.1f s; %d connections\n", up.Seconds(), conns)
	fmt.Fprintf(&b, "%-14s | %5s %5s %6s %7s %9s %9s %9s\n", "step", "alive", "reset", "failed", "stalled", "bad bytes", "exchanges", "tunnelled")
	for _, s := range steps {
		fmt.Fprintf(&b, "%-14s | %5d %5d %6d %7d %9d %9d %9d\n", s.name, s.alive, s.reset, s.failed, s.stalled, s.bad, s.exchanges, s.tunnelled)
	}
	t.Log(b.String())
	for _, s := range steps {
		if s.reset != 0 || s.failed != 0 || s.bad != 0 || s.stalled != 0 || s.alive != conns || s.exchanges == 0 {
			t.Errorf("%s: %d alive, %d reset, %d failed, %d stalled, %d bad bytes, %d exchanges; want %d alive, no loss",
				s.name, s.alive, s.reset, s.failed, s.stalled, s.bad, s.exchanges, conns)
		}
	}
	if len(prev.Ended) > 0 {
		t.Errorf("ended connections: %v", prev.Ended)
	}
	if drain.tunnelled == 0 || rehash.tunnelled == 0 {
		t.Errorf("no packet tunnelled in the drain (%d) or the rehash (%d): the steps moved no session", drain.tunnelled, rehash.tunnelled)
	}

	// Operations: every host container healthy (HEALTHCHECK homingctl status), homingd
	// running as the user homing, a SIGHUP reload taken, metrics on the loopback only.
	for n := 1; n <= 3; n++ {
		name := p.container(ctx, fmt.Sprint("h", n))
		health := strings.TrimSpace(p.must(ctx, "/usr/bin/docker", "inspect", "-f", "{{.State.Health.Status}}", name))
		users := p.must(ctx, "/usr/bin/docker", "top", name, "-eo", "user,pid,comm") // docker top needs the pid
		if health != "healthy" || !regexp.MustCompile(`(?m)^970 +[0-9]+ +homingd$`).MatchString(users) {
			t.Errorf("h%d: health %q; processes:\n%s", n, health, users)
		}
	}
	// Containers reach nothing outside the POP: no route through the machine's bridge
	// gateways (.254, internal networks), only the POP's own prefixes.
	for _, svc := range []string{"router", "h1", "client"} {
		routes := p.must(ctx, "/usr/bin/docker", "exec", p.container(ctx, svc), "ip", "-4", "route", "show", "table", "all")
		for _, r := range strings.Split(strings.TrimSpace(routes), "\n") {
			if strings.Contains(r, ".254") || (strings.HasPrefix(r, "default") && !strings.Contains(r, "via 198.19.200.1 ")) {
				t.Errorf("%s: route %q leads out of the POP", svc, r)
			}
		}
	}
	p.must(ctx, "/usr/bin/docker", "kill", "-s", "HUP", p.container(ctx, "h2"))
	var rl struct {
		LastReload    time.Time `json:"last_reload"`
		LastReloadErr string    `json:"last_reload_error"`
		Metrics       string    `json:"metrics"`
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		if err := p.homingctl(ctx, 2, &rl, "status"); err != nil {
			t.Fatal(err)
		}
		if !rl.LastReload.IsZero() || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if rl.LastReload.IsZero() || rl.LastReloadErr != "" || rl.Metrics != "127.0.0.1:9370" {
		t.Errorf("h2 after SIGHUP: %+v; want a reload without error, metrics on 127.0.0.1:9370", rl)
	}

	t0 = time.Now()
	down()
	t.Logf("compose down: %.1f s", time.Since(t0).Seconds())
}
