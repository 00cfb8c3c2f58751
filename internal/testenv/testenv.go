// Package testenv is the one place where tests declare what they need from the machine
// (root, network namespaces, DPDK, clang). Outside CI a missing prerequisite skips the
// test; with CI=true it fails it, so that CI never passes by skipping.
package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// InCI reports whether the tests run under CI (CI=true), where nothing may be skipped.
func InCI() bool { return os.Getenv("CI") == "true" }

// Missing skips the test (or fails it under CI) because what is missing.
func Missing(t testing.TB, what string) {
	t.Helper()
	if InCI() {
		t.Fatalf("prerequisite missing under CI=true: %s", what)
	}
	t.Skipf("prerequisite missing: %s (set CI=true to turn this into a failure)", what)
}

// RequireRoot needs uid 0 (netns, veth, cgroups, BPF, DPDK vdevs on interfaces).
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Missing(t, "root")
	}
}

// RequireCommand needs an executable on PATH.
func RequireCommand(t testing.TB, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		Missing(t, "command "+name)
	}
}

// Short reports whether go test -short was given; long tests may shrink under it but
// must still run.
func Short() bool { return testing.Short() }
