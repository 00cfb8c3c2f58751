package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/homing-dev/homing/internal/testenv"
)

// TestDebPackage builds the .deb (make deb), installs it with dpkg on this machine, runs
// the installed homingd -version and -check (the packaged configuration, given a key,
// and an example) and homingctl version, then purges it: nothing of it stays.
func TestDebPackage(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "dpkg")
	testenv.RequireCommand(t, "make")
	if exec.Command("dpkg", "-s", "homing").Run() == nil {
		t.Fatal("a homing package is installed already: this test would replace it")
	}
	run := func(name string, args ...string) string {
		t.Helper()
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	version := strings.TrimSpace(run("make", "-s", "--no-print-directory", "-C", "..", "version"))
	out := run("make", "-s", "--no-print-directory", "-C", "..", "deb")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	deb := filepath.Join("../tools/deb", lines[len(lines)-1])
	if !strings.HasSuffix(deb, "_amd64.deb") {
		t.Fatalf("make deb wrote no .deb:\n%s", out)
	}
	t.Cleanup(func() { os.Remove(deb) })
	t.Logf("%s (make version %s)", filepath.Base(deb), version)

	t.Cleanup(func() { _ = exec.Command("dpkg", "--purge", "homing").Run() })
	run("dpkg", "-i", deb)

	if out := run("/usr/sbin/homingd", "-version"); !strings.HasPrefix(out, "homingd, version "+version+" ") {
		t.Errorf("installed homingd -version:\n%s", out)
	}
	if out := run("/usr/sbin/homingd", "-check", "-config", "/usr/share/doc/homing/examples/af-packet.toml"); !strings.Contains(out, ": ok, DPDK memory") {
		t.Errorf("installed homingd -check on the lab example:\n%s", out)
	}
	// The packaged configuration is the POP host example: it wants its gossip key.
	out2, err := exec.Command("/usr/sbin/homingd", "-check", "-config", "/etc/homing/homingd.toml").CombinedOutput()
	if err == nil || !strings.Contains(string(out2), "gossip.key_file: stat /etc/homing/gossip.key: no such file or directory") {
		t.Errorf("-check without a key: %v\n%s", err, out2)
	}
	if err := os.WriteFile("/etc/homing/gossip.key", []byte(strings.Repeat("ab", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove("/etc/homing/gossip.key") })
	if out := run("/usr/sbin/homingd", "-check", "-config", "/etc/homing/homingd.toml"); !strings.HasPrefix(out, "/etc/homing/homingd.toml: ok") {
		t.Errorf("installed homingd -check on /etc/homing/homingd.toml:\n%s", out)
	}
	if fi, err := os.Stat("/etc/homing"); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("/etc/homing: %v %v", fi.Mode(), err)
	}
	ctlOut, _ := exec.Command("/usr/sbin/homingctl", "version").Output()
	if !strings.HasPrefix(string(ctlOut), "homingctl  "+version+" ") {
		t.Errorf("installed homingctl version: %q", ctlOut)
	}
	unit, err := os.ReadFile("/lib/systemd/system/homingd.service")
	if err != nil || !strings.Contains(string(unit), "ExecStart=/usr/sbin/homingd -config /etc/homing/homingd.toml") {
		t.Errorf("installed unit: %v\n%s", err, unit)
	}

	os.Remove("/etc/homing/gossip.key")
	run("dpkg", "--purge", "homing")
	for _, p := range []string{"/usr/sbin/homingd", "/usr/sbin/homingctl", "/etc/homing/homingd.toml", "/lib/systemd/system/homingd.service", "/usr/share/doc/homing"} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s left after purge: %v", p, err)
		}
	}
}
