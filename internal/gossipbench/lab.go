package gossipbench

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// lab is a bridge namespace and host namespaces, each with eth0 on the bridge, host i
// (from 1) at 198.18.50.i/24.
type lab struct {
	prefix string
	made   []string // namespaces created, bridge first
}

// labSeq makes the namespace names of successive labs of one process distinct.
var labSeq int

// newLab creates a lab of hosts namespaces named hmg-gb-<pid>-<n>-{br,h1..}; on error
// it deletes what it created.
func newLab(hosts int) (l *lab, err error) {
	labSeq++
	l = &lab{prefix: fmt.Sprintf("hmg-gb-%d-%d", os.Getpid(), labSeq)}
	defer func() {
		if err != nil {
			err = errors.Join(err, l.close())
		}
	}()
	br := l.prefix + "-br"
	if err := l.addNetns(br); err != nil {
		return nil, err
	}
	if err := ip("-n", br, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0"); err != nil {
		return nil, err
	}
	if err := ip("-n", br, "link", "set", "br0", "up"); err != nil {
		return nil, err
	}
	for i := 1; i <= hosts; i++ {
		ns := l.host(i)
		if err := l.addNetns(ns); err != nil {
			return nil, err
		}
		veth := fmt.Sprintf("v%d", i)
		for _, args := range [][]string{
			{"-n", br, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns},
			{"-n", br, "link", "set", veth, "master", "br0", "up"},
			{"-n", ns, "addr", "add", fmt.Sprintf("198.18.50.%d/24", i), "dev", "eth0"},
			{"-n", ns, "link", "set", "eth0", "up"},
			{"-n", ns, "link", "set", "lo", "up"},
		} {
			if err := ip(args...); err != nil {
				return nil, err
			}
		}
	}
	return l, nil
}

// host returns the name of host i's namespace.
func (l *lab) host(i int) string { return fmt.Sprintf("%s-h%d", l.prefix, i) }

func (l *lab) addNetns(name string) error {
	if err := ip("netns", "add", name); err != nil {
		return err
	}
	l.made = append(l.made, name)
	return nil
}

// close deletes the lab's namespaces (their veths go with them).
func (l *lab) close() error {
	var errs []error
	for i := len(l.made) - 1; i >= 0; i-- {
		errs = append(errs, ip("netns", "del", l.made[i]))
	}
	l.made = nil
	return errors.Join(errs...)
}

// removeStale deletes the namespaces of earlier runs whose process is gone (a parent
// killed by SIGKILL cannot delete its own): hmg-gb-<pid>-... with no process <pid>.
func removeStale() error {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return fmt.Errorf("ip netns list: %w", err)
	}
	var errs []error
	for _, line := range strings.Split(string(out), "\n") {
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		rest, ok := strings.CutPrefix(name, "hmg-gb-")
		if !ok {
			continue
		}
		pid, _, _ := strings.Cut(rest, "-")
		if _, err := strconv.Atoi(pid); err != nil {
			continue
		}
		if _, err := os.Stat("/proc/" + pid); err == nil {
			continue // still running
		}
		errs = append(errs, ip("netns", "del", name))
	}
	return errors.Join(errs...)
}

// ip runs ip(8).
func ip(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
