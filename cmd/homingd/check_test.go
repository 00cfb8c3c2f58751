package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/homing-dev/homing/config"
	"github.com/homing-dev/homing/internal/testenv"
)

const checkBase = `
[host]
id = 1
address = "198.18.0.11"
vips = ["198.19.255.1"]
[nic]
device = "net_null0"
[kernel]
device = "net_null1"
[probe]
enabled = false
[metrics]
listen = ""
`

const goodKey = "# test key\n00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n"

// writeKeyConfig writes a key file (contents, mode) and a configuration that names it.
func writeKeyConfig(t *testing.T, key string, mode os.FileMode) (cfgPath, keyPath string) {
	t.Helper()
	dir := t.TempDir()
	keyPath = filepath.Join(dir, "gossip.key")
	if key != "" {
		if err := os.WriteFile(keyPath, []byte(key), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(keyPath, mode); err != nil { // not masked by the umask
			t.Fatal(err)
		}
	}
	cfgPath = filepath.Join(dir, "h.toml")
	if err := os.WriteFile(cfgPath, []byte(checkBase+"[gossip]\nkey_file = \""+keyPath+"\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return cfgPath, keyPath
}

// TestCheckKeyFile: the key file must exist, hold hex keys of at least 32 bytes and be
// closed to group and others; each problem names the file and gossip.key_file.
func TestCheckKeyFile(t *testing.T) {
	for _, c := range []struct {
		name string
		key  string
		mode os.FileMode
		want string // "" for ok
	}{
		{"ok", goodKey, 0o600, ""},
		{"ok read-only", goodKey, 0o400, ""},
		{"missing", "", 0, "no such file or directory"},
		{"not hex", "this is not a key\n", 0o600, "line 1: not hex"},
		{"short", "00112233445566778899aabbccddeeff\n", 0o600, "shorter than 32 bytes"},
		{"empty", "# nothing\n", 0o600, "no gossip key"},
		{"world readable", goodKey, 0o644, "has mode 0644: group or others may access the key (chmod 0600 "},
		{"group readable", goodKey, 0o640, "has mode 0640: group or others may access the key"},
		{"others writable", goodKey, 0o602, "has mode 0602"},
	} {
		t.Run(c.name, func(t *testing.T) {
			path, _ := writeKeyConfig(t, c.key, c.mode)
			cfg, err := config.Load(path)
			if err != nil {
				t.Fatal(err)
			}
			warnings, err := checkFiles(cfg)
			if len(warnings) != 0 {
				t.Errorf("warnings %q", warnings)
			}
			if c.want == "" {
				if err != nil {
					t.Errorf("refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) ||
				!strings.HasPrefix(err.Error(), path+": gossip.key_file: ") || !errors.Is(err, config.ErrInvalid) {
				t.Errorf("got %v, want %q", err, c.want)
			}
			if err != nil && strings.Contains(err.Error(), "0011223344") {
				t.Errorf("the error shows the key: %v", err)
			}
		})
	}
	// A key of another user shared with homingd's group, as docker/ runs it (root's
	// file, the daemon user's group, 0640): the group read is how homingd reads it.
	t.Run("shared with the daemon's group", func(t *testing.T) {
		testenv.RequireRoot(t)
		for _, c := range []struct {
			uid, gid int
			mode     os.FileMode
			ok       bool
		}{
			{65534, os.Getegid(), 0o640, true},  // another user's, our group: read through the group
			{65534, os.Getegid(), 0o660, false}, // ... but not written through it
			{65534, 65534, 0o640, false},        // another group may not read it
			{os.Geteuid(), os.Getegid(), 0o640, false},
		} {
			path, keyPath := writeKeyConfig(t, goodKey, c.mode)
			if err := os.Chown(keyPath, c.uid, c.gid); err != nil {
				t.Fatal(err)
			}
			cfg, err := config.Load(path)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := checkFiles(cfg); (err == nil) != c.ok {
				t.Errorf("owner %d, group %d, mode %04o: %v, want ok %v", c.uid, c.gid, c.mode, err, c.ok)
			}
		}
	})
	t.Run("directory", func(t *testing.T) {
		path, keyPath := writeKeyConfig(t, "", 0)
		if err := os.Mkdir(keyPath, 0o700); err != nil {
			t.Fatal(err)
		}
		cfg, _ := config.Load(path)
		if _, err := checkFiles(cfg); err == nil || !strings.Contains(err.Error(), "is not a regular file") {
			t.Errorf("got %v", err)
		}
	})
}

// TestCheckInsecure: gossip.insecure is a warning, not an error; without gossip there is
// nothing to warn about.
func TestCheckInsecure(t *testing.T) {
	cfg, err := config.Parse([]byte(checkBase+"[gossip]\ninsecure = true\n"), "i.toml")
	if err != nil {
		t.Fatal(err)
	}
	w, err := checkFiles(cfg)
	if err != nil || len(w) != 1 || !strings.HasPrefix(w[0], "i.toml: gossip.insecure = true: gossip is not authenticated") {
		t.Errorf("warnings %q, err %v", w, err)
	}
	cfg, err = config.Parse([]byte(checkBase+"[gossip]\nenabled = false\ninsecure = true\n"), "i.toml")
	if err != nil {
		t.Fatal(err)
	}
	if w, err := checkFiles(cfg); err != nil || len(w) != 0 {
		t.Errorf("gossip off: warnings %q, err %v", w, err)
	}
}

// TestCheckCommand runs homingd -check: ok with the memory estimate, exit 2 and the
// problem for a world-readable key, a warning for insecure gossip (also logged at WARN
// when the daemon starts, before anything else can fail), and a config error that
// echoes a value of 10 MB in one line of under 300 bytes.
func TestCheckCommand(t *testing.T) {
	bin := buildHomingd(t)
	run := func(args ...string) (stdout, stderr string, code int) {
		cmd := exec.Command(bin, args...)
		var o, e strings.Builder
		cmd.Stdout, cmd.Stderr = &o, &e
		err := cmd.Run()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return o.String(), e.String(), code
	}
	good, _ := writeKeyConfig(t, goodKey, 0o600)
	out, errOut, code := run("-check", "-config", good)
	if code != 0 || out != good+": ok, DPDK memory 78 of 256 MiB (mempool 32 MiB, tables 43 MiB, EAL and queues 4 MiB)\n" || errOut != "" {
		t.Errorf("good: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	open, key := writeKeyConfig(t, goodKey, 0o644)
	out, errOut, code = run("-check", "-config", open)
	if code != 2 || out != "" || errOut != "homingd: "+open+": gossip.key_file: "+key+" has mode 0644: group or others may access the key (chmod 0600 "+key+")\n" {
		t.Errorf("world-readable key: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	dir := t.TempDir()
	insecure := filepath.Join(dir, "i.toml")
	if err := os.WriteFile(insecure, []byte(checkBase+"[dpdk]\nfile_prefix = \"hmg-check-nostart\"\nextra_args = [\"--no-such-eal-option\"]\n[gossip]\ninsecure = true\n[control]\nsocket = \""+filepath.Join(dir, "s")+"\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut, code = run("-check", "-config", insecure)
	if code != 0 || !strings.HasPrefix(out, insecure+": ok") ||
		errOut != "homingd: warning: "+insecure+": gossip.insecure = true: gossip is not authenticated, anyone on the POP LAN can claim sessions and forge membership (labs and tests only)\n" {
		t.Errorf("insecure: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	// The start logs it at WARN first; an EAL option that does not exist stops it there.
	_, errOut, code = run("-config", insecure)
	first, _, _ := strings.Cut(errOut, "\n")
	if code == 0 || !strings.Contains(first, "level=WARN") || !strings.Contains(first, "gossip.insecure = true") {
		t.Errorf("start with insecure gossip: exit %d, log:\n%s", code, errOut)
	}
	huge := filepath.Join(dir, "huge.toml")
	if err := os.WriteFile(huge, []byte(strings.Replace(checkBase, "[host]", "[host]\nname = \""+strings.Repeat("n", 10<<20)+"\"", 1)+"[gossip]\nenabled = false\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, errOut, code = run("-check", "-config", huge)
	if code != 2 || len(errOut) > 300 || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, "host.name: \""+strings.Repeat("n", 64)+"…\"") {
		t.Errorf("10 MB value: exit %d, %d bytes of stderr: %.300s", code, len(errOut), errOut)
	}
}

// TestMemoryEstimateStarts starts homingd without hugepages (net_null ports, where
// dpdk.memory_mb is a hard limit) with dpdk.memory_mb at the -check estimate, for a
// large table and for a large mempool: the estimate is never short.
func TestMemoryEstimateStarts(t *testing.T) {
	testenv.RequireRoot(t)
	bin := buildHomingd(t)
	for i, c := range []struct{ mbufs, cap4, cap6 int }{{4095, 1 << 21, 64}, {32767, 1024, 1 << 16}} {
		dir := t.TempDir()
		sock := filepath.Join(dir, "ctl.sock")
		src := fmt.Sprintf(checkBase+`[dpdk]
file_prefix = "hmg-mem-%d-%d"
mbufs = %d
memory_mb = %%d
log_level = "error"
[table]
capacity4 = %d
capacity6 = %d
[gossip]
enabled = false
[control]
socket = %q
`, os.Getpid(), i, c.mbufs, c.cap4, c.cap6, sock)
		cfg, err := config.Parse([]byte(fmt.Sprintf(src, 1<<20)), "m.toml")
		if err != nil {
			t.Fatal(err)
		}
		need := cfg.MemoryNeeded().TotalMiB()
		path := filepath.Join(dir, "m.toml")
		if err := os.WriteFile(path, []byte(fmt.Sprintf(src, need-1)), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(bin, "-check", "-config", path).CombinedOutput(); err == nil {
			t.Errorf("%+v: -check accepted memory_mb = %d below the estimate %d: %s", c, need-1, need, out)
		}
		if err := os.WriteFile(path, []byte(fmt.Sprintf(src, need)), 0o644); err != nil {
			t.Fatal(err)
		}
		var logs strings.Builder
		cmd := exec.Command(bin, "-config", path)
		cmd.Stdout, cmd.Stderr = &logs, &logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		deadline := time.After(20 * time.Second)
	wait:
		for {
			select {
			case err := <-exited:
				t.Fatalf("%+v: homingd with memory_mb = %d (the estimate) exited: %v\n%s", c, need, err, logs.String())
			case <-deadline:
				_ = cmd.Process.Kill()
				t.Fatalf("%+v: no control socket after 20 s\n%s", c, logs.String())
			case <-time.After(50 * time.Millisecond):
				if _, err := os.Stat(sock); err == nil {
					break wait
				}
			}
		}
		t.Logf("%d mbufs, %d+%d sessions: started with memory_mb = %d", c.mbufs, c.cap4, c.cap6, need)
		_ = cmd.Process.Signal(os.Interrupt)
		if err := <-exited; err != nil {
			t.Errorf("%+v: stop: %v\n%s", c, err, logs.String())
		}
	}
}
