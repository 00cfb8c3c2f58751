// Command deb packages homing for Debian 12 (make deb): homingd, homingctl, the systemd
// unit, a configuration under /etc/homing and the docs, in one .deb written with nfpm.
// It is a Go module of its own so that nfpm and its dependencies stay out of homing's
// module graph.
//
//	go run . -root ../.. -version 0.3.0 -out ../../bin/homing_0.3.0_amd64.deb
//
// The binaries must be built first (bin/homingd, bin/homingctl: make build). The
// package depends on the Debian packages of the shared libraries homingd links (found
// with ldd and dpkg -S on the build machine) and on the DPDK drivers it always loads.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/deb" // registers the deb packager
	"github.com/goreleaser/nfpm/v2/files"
)

// alwaysLoaded are DPDK drivers homingd loads at run time (dlopen, not linked): the
// mempool ring driver and the kernel port's net_tap.
var alwaysLoaded = []string{"librte-mempool-ring23", "librte-net-tap23"}

func main() {
	root := flag.String("root", ".", "the repository (bin/, deploy/, configs/, docs/)")
	ver := flag.String("version", "dev", "the version (make version: git describe)")
	out := flag.String("out", "", "the .deb to write (default: bin/homing_<version>_amd64.deb under -root)")
	flag.Parse()
	if err := run(*root, *ver, *out); err != nil {
		fmt.Fprintln(os.Stderr, "deb:", err)
		os.Exit(1)
	}
}

func run(root, ver, out string) error {
	v := DebianVersion(ver)
	if out == "" {
		out = filepath.Join(root, "bin", "homing_"+v+"_amd64.deb")
	}
	depends, err := sharedLibPackages(filepath.Join(root, "bin", "homingd"))
	if err != nil {
		return err
	}
	depends = sortedUnique(append(depends, alwaysLoaded...))

	// The unit names /usr/local/sbin, where a manual install puts the binaries; the
	// package puts them in /usr/sbin.
	unit, err := os.ReadFile(filepath.Join(root, "deploy", "homingd.service"))
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "homing-deb")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	unitPath := filepath.Join(tmp, "homingd.service")
	unitText := strings.ReplaceAll(string(unit), "/usr/local/sbin/", "/usr/sbin/")
	if err := os.WriteFile(unitPath, []byte(unitText), 0o644); err != nil {
		return err
	}

	file := func(src, dst string, mode os.FileMode, typ string) *files.Content {
		return &files.Content{Source: filepath.Join(root, src), Destination: dst, Type: typ,
			FileInfo: &files.ContentFileInfo{Mode: mode}}
	}
	contents := files.Contents{
		file("bin/homingd", "/usr/sbin/homingd", 0o755, ""),
		file("bin/homingctl", "/usr/sbin/homingctl", 0o755, ""),
		{Source: unitPath, Destination: "/lib/systemd/system/homingd.service", FileInfo: &files.ContentFileInfo{Mode: 0o644}},
		// The POP host example as the configuration in force (kept on upgrades); it
		// needs a gossip key (docs/OPERATIONS.md, "Gossip keys") and the host's values.
		file("configs/pop-host.toml", "/etc/homing/homingd.toml", 0o644, "config|noreplace"),
		{Destination: "/etc/homing", Type: "dir", FileInfo: &files.ContentFileInfo{Mode: 0o700}},
		file("deploy/prometheus/homing.rules.yml", "/usr/share/homing/prometheus/homing.rules.yml", 0o644, ""),
		file("deploy/grafana/homing.json", "/usr/share/homing/grafana/homing.json", 0o644, ""),
	}
	for _, d := range []string{"README.md", "docs/OPERATIONS.md", "docs/CONFIG.md", "docs/PROTOCOL.md", "docs/PERFORMANCE.md"} {
		contents = append(contents, file(d, "/usr/share/doc/homing/"+filepath.Base(d), 0o644, ""))
	}
	examples, err := filepath.Glob(filepath.Join(root, "configs", "*.toml"))
	if err != nil {
		return err
	}
	for _, e := range examples {
		contents = append(contents, &files.Content{Source: e, Destination: "/usr/share/doc/homing/examples/" + filepath.Base(e),
			FileInfo: &files.ContentFileInfo{Mode: 0o644}})
	}

	info := nfpm.WithDefaults(&nfpm.Info{
		Name: "homing", Arch: "amd64", Platform: "linux", Version: v, VersionSchema: "none",
		Section: "net", Priority: "optional", Maintainer: "homing developers <homing@example.invalid>",
		Description: "keep TCP sessions on their owner host across ECMP changes\n" +
			"homingd forwards packets of sessions another host of the POP owns to that host\n" +
			"in a GUE tunnel (DPDK data plane, eBPF sock_ops probe, authenticated gossip);\n" +
			"homingctl asks a running homingd about its state.",
		License: "proprietary",
		MTime:   time.Unix(0, 0).UTC(),
		Overridables: nfpm.Overridables{
			Depends:    depends,
			Recommends: []string{"dpdk"},
			Contents:   contents,
		},
	})
	if err := nfpm.PrepareForPackager(info, "deb"); err != nil {
		return err
	}
	pkg, err := nfpm.Get("deb")
	if err != nil {
		return err
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	if err := pkg.Package(info, f); err != nil {
		f.Close()
		os.Remove(out)
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Println(out)
	return nil
}

// DebianVersion makes a Debian version of a git describe: without a leading "v", "0~git"
// in front when it is no version tag (no tag yet, "46c8f15" or "dev": "0~git46c8f15"),
// and "+" for "-" (the part after a hyphen would be a Debian revision):
// v0.3.0-12-g46c8f15-dirty → 0.3.0+12+g46c8f15+dirty.
func DebianVersion(v string) string {
	v = strings.TrimSpace(v)
	if regexp.MustCompile(`^v?[0-9]+\.`).MatchString(v) {
		v = strings.TrimPrefix(v, "v")
	} else {
		v = "0~git" + v
	}
	v = strings.ReplaceAll(v, "-", "+")
	return regexp.MustCompile(`[^A-Za-z0-9.+~]`).ReplaceAllString(v, ".")
}

// sharedLibPackages returns the Debian packages of the shared libraries bin links.
func sharedLibPackages(bin string) ([]string, error) {
	out, err := exec.Command("ldd", bin).Output()
	if err != nil {
		return nil, fmt.Errorf("ldd %s: %w", bin, err)
	}
	var pkgs []string
	for _, line := range strings.Split(string(out), "\n") {
		_, after, ok := strings.Cut(line, "=> ")
		if !ok {
			continue
		}
		lib := strings.Fields(after)[0]
		if !filepath.IsAbs(lib) {
			continue
		}
		pkg, err := packageOf(lib)
		if err != nil {
			return nil, err
		}
		pkgs = append(pkgs, pkg)
	}
	return pkgs, nil
}

// packageOf asks dpkg which package holds a file, under its path or its real path (on a
// merged /usr the two differ).
func packageOf(path string) (string, error) {
	cands := []string{path}
	if real, err := filepath.EvalSymlinks(path); err == nil {
		cands = append(cands, real, strings.TrimPrefix(real, "/usr"))
	}
	if strings.HasPrefix(path, "/lib") {
		cands = append(cands, "/usr"+path)
	}
	for _, c := range cands {
		out, err := exec.Command("dpkg", "-S", c).Output()
		if err == nil {
			pkg, _, _ := strings.Cut(strings.TrimSpace(string(out)), ":")
			return strings.TrimSpace(strings.Split(pkg, ",")[0]), nil
		}
	}
	return "", fmt.Errorf("no Debian package holds %s", path)
}

func sortedUnique(s []string) []string {
	sort.Strings(s)
	out := s[:0]
	for i, x := range s {
		if i == 0 || x != s[i-1] {
			out = append(out, x)
		}
	}
	return out
}
