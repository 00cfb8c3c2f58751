package golden

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/ from Cases")

// casesTable is the human-readable list of the vectors, committed as testdata/cases.txt.
func casesTable() []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "# golden vectors of the homing data plane (go test ./internal/golden -update rewrites this file)\n")
	fmt.Fprintf(&b, "# %-30s %-6s %-3s %-9s %5s %5s  %s\n", "case", "in", "#", "want", "len", "out", "rule")
	n := map[Port]int{}
	for _, c := range Cases() {
		w := c.Want.Kind.String()
		if c.Want.Kind == Encap {
			w = fmt.Sprintf("encap->%d", c.Want.Owner)
		}
		fmt.Fprintf(&b, "%-32s %-6s %3d %-9s %5d %5d  %s\n", c.Name, c.In, n[c.In], w, len(c.Frame), len(c.Want.Frame), c.Why)
		n[c.In]++
	}
	return []byte(b.String())
}

// The committed inputs (testdata/nic-in.pcap, kernel-in.pcap, cases.txt), for tools
// outside Go, are what Cases builds.
func TestCommittedTestdata(t *testing.T) {
	dir := t.TempDir()
	if _, _, err := WritePcaps(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cases.txt"), casesTable(), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{NICInFile, KernelInFile, "cases.txt"} {
		want, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join("testdata", name)
		if *update {
			if err := os.WriteFile(path, want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s is out of date (%v): run go test ./internal/golden -run TestCommittedTestdata -update", path, err)
		}
	}
}
