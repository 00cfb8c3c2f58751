package lab

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// dpdkRunDir is where the EAL keeps its runtime files, one directory per file prefix.
const dpdkRunDir = "/var/run/dpdk"

// idPattern matches a lab id at the start of a name and captures the owning pid.
var idPattern = regexp.MustCompile(`^` + Prefix + `([0-9]+)x[0-9]+`)

// ownerPID is the pid in a lab name ("hlab123x1-rtr" → 123), or 0.
func ownerPID(name string) int {
	m := idPattern.FindStringSubmatch(name)
	if m == nil {
		return 0
	}
	pid, err := strconv.Atoi(m[1])
	if err != nil {
		return 0
	}
	return pid
}

// labID is the lab id a name starts with ("hlab123x1-rtr" → "hlab123x1"), or "".
func labID(name string) string { return idPattern.FindString(name) }

func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// CgroupRoot is the mount point of the cgroup v2 hierarchy (/sys/fs/cgroup/unified here,
// /sys/fs/cgroup on a pure v2 system).
func CgroupRoot() (string, error) {
	f, err := os.Open("/proc/self/mounts")
	if err != nil {
		return "", fmt.Errorf("lab: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) >= 3 && fs[2] == "cgroup2" {
			return fs[1], nil
		}
	}
	return "", errors.New("lab: no cgroup2 hierarchy mounted")
}

// Remains lists what is left of lab id: its namespaces, its cgroup, its DPDK runtime
// and temporary directories, and those of pids that still run. After Close it is empty.
func Remains(id string, pids []int) []string {
	var out []string
	root, _ := CgroupRoot()
	for _, dir := range []string{netnsDir, root, dpdkRunDir, os.TempDir()} {
		if dir == "" {
			continue
		}
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if labID(e.Name()) == id {
				out = append(out, filepath.Join(dir, e.Name()))
			}
		}
	}
	for _, p := range pids {
		if alive(p) {
			comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", p))
			out = append(out, fmt.Sprintf("process %d (%s)", p, strings.TrimSpace(string(comm))))
		}
	}
	return out
}

// Leftovers lists what labs of dead processes left: namespaces, cgroup directories,
// DPDK runtime directories and temporary directories.
func Leftovers() []string {
	var out []string
	for _, d := range leftoverDirs() {
		out = append(out, d.path)
	}
	return out
}

type leftover struct {
	id   string
	path string
	kind string // "netns", "cgroup", "dpdk", "tmp"
}

func leftoverDirs() []leftover {
	var out []leftover
	scan := func(dir, kind string) {
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			pid := ownerPID(e.Name())
			if pid == 0 || alive(pid) {
				continue
			}
			out = append(out, leftover{id: labID(e.Name()), path: filepath.Join(dir, e.Name()), kind: kind})
		}
	}
	scan(netnsDir, "netns")
	if root, err := CgroupRoot(); err == nil {
		scan(root, "cgroup")
	}
	scan(dpdkRunDir, "dpdk")
	scan(os.TempDir(), "tmp")
	return out
}

// Cleanup removes what labs of dead processes left behind (a crashed or killed run):
// it kills the processes in their namespaces and cgroups, deletes the namespaces and
// cgroups, and removes their DPDK runtime and temporary directories. Only names that
// start with "hlab<pid>x" of a pid that no longer runs are touched. It reports each
// removal to log (nil: none).
func Cleanup(log io.Writer) error {
	var errs []error
	ids := map[string]bool{}
	for _, d := range leftoverDirs() {
		ids[d.id] = true
	}
	root, _ := CgroupRoot()
	for id := range ids {
		if log != nil {
			fmt.Fprintf(log, "cleanup: removing lab %s (its process %d is gone)\n", id, ownerPID(id))
		}
		cg := ""
		if root != "" {
			cg = filepath.Join(root, id)
		}
		if err := removeLab(id, cg); err != nil {
			errs = append(errs, err)
		}
		if tmps, _ := filepath.Glob(filepath.Join(os.TempDir(), id+"-*")); len(tmps) > 0 {
			for _, t := range tmps {
				if err := os.RemoveAll(t); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	return errors.Join(errs...)
}

// removeLab kills every process in the lab's namespaces and cgroup (SIGTERM, then
// SIGKILL), deletes the namespaces and the cgroup directory, and removes the DPDK
// runtime directories of its hosts.
func removeLab(id, cgroup string) error {
	var errs []error
	var nss []string
	ents, _ := os.ReadDir(netnsDir)
	for _, e := range ents {
		if labID(e.Name()) == id {
			nss = append(nss, e.Name())
		}
	}
	pids := func() []int {
		var ps []int
		for _, ns := range nss {
			out, _ := exec.Command("ip", "netns", "pids", ns).Output()
			for _, f := range strings.Fields(string(out)) {
				if p, err := strconv.Atoi(f); err == nil && p != os.Getpid() {
					ps = append(ps, p)
				}
			}
		}
		if cgroup != "" {
			_ = filepath.WalkDir(cgroup, func(path string, d os.DirEntry, err error) error {
				if err != nil || d.IsDir() || d.Name() != "cgroup.procs" {
					return nil
				}
				b, _ := os.ReadFile(path)
				for _, f := range strings.Fields(string(b)) {
					if p, err := strconv.Atoi(f); err == nil && p != os.Getpid() {
						ps = append(ps, p)
					}
				}
				return nil
			})
		}
		return ps
	}
	if ps := pids(); len(ps) > 0 {
		for _, p := range ps {
			_ = syscall.Kill(p, syscall.SIGTERM)
		}
		deadline := time.Now().Add(10 * time.Second)
		for len(pids()) > 0 && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		for _, p := range pids() {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
		deadline = time.Now().Add(5 * time.Second)
		for len(pids()) > 0 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if ps := pids(); len(ps) > 0 {
			errs = append(errs, fmt.Errorf("lab %s: processes %v do not end", id, ps))
		}
	}
	// Hosts first: deleting a host's namespace deletes its veth (and the peer in rtr).
	for _, ns := range nss {
		if err := run("ip", "netns", "del", ns); err != nil {
			errs = append(errs, err)
		}
	}
	if cgroup != "" {
		subs, _ := os.ReadDir(cgroup)
		for _, s := range subs {
			if s.IsDir() {
				if err := rmdirRetry(filepath.Join(cgroup, s.Name())); err != nil {
					errs = append(errs, err)
				}
			}
		}
		if err := rmdirRetry(cgroup); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	runDirs, _ := filepath.Glob(filepath.Join(dpdkRunDir, id+"-*"))
	for _, d := range runDirs {
		if err := os.RemoveAll(d); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// rmdirRetry removes a cgroup directory; a cgroup whose last process just exited may
// still count it for a moment.
func rmdirRetry(dir string) error {
	var err error
	for range 50 {
		if err = os.Remove(dir); err == nil || errors.Is(err, os.ErrNotExist) {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("lab: remove cgroup: %w", err)
}
