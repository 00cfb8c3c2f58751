package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestVersionFlag: homingd -version prints the version the Makefile stamps (make
// version: git describe, "dev" outside git), and "dev" for a plain go build.
func TestVersionFlag(t *testing.T) {
	mk := exec.Command("make", "-s", "--no-print-directory", "-C", "../..", "version")
	out, err := mk.Output()
	if err != nil {
		t.Fatalf("make version: %v", err)
	}
	stamped := strings.TrimSpace(string(out))
	if git, err := exec.Command("git", "describe", "--tags", "--always", "--dirty").Output(); err == nil && strings.TrimSpace(string(git)) != stamped {
		t.Errorf("make version %q, git describe %q", stamped, git)
	}
	// The Makefile outside a git checkout.
	dir := t.TempDir()
	src, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "Makefile"), src, 0o644); err != nil {
		t.Fatal(err)
	}
	mk = exec.Command("make", "-s", "--no-print-directory", "version")
	mk.Dir = dir
	mk.Env = append(os.Environ(), "GIT_CEILING_DIRECTORIES="+filepath.Dir(dir))
	if out, err := mk.Output(); err != nil || strings.TrimSpace(string(out)) != "dev" {
		t.Errorf("make version outside git: %q, %v", out, err)
	}

	bin := filepath.Join(t.TempDir(), "homingd")
	if out, err := exec.Command("go", "build", "-o", bin, "-ldflags",
		"-X github.com/prometheus/common/version.Version="+stamped+" -X github.com/prometheus/common/version.Branch=b1", ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err = exec.Command(bin, "-version").Output()
	if err != nil || !strings.HasPrefix(string(out), "homingd, version "+stamped+" (branch: b1, revision: ") || !strings.Contains(string(out), "go version:") {
		t.Errorf("stamped -version: %v\n%s", err, out)
	}
	out, err = exec.Command(buildHomingd(t), "-version").Output()
	if err != nil || !strings.HasPrefix(string(out), "homingd, version dev ") {
		t.Errorf("plain build -version: %v\n%s", err, out)
	}
}
