package probe

import (
	"strings"
	"testing"
)

func TestCgroup2Mount(t *testing.T) {
	hybrid := `tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0
cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0
`
	for text, want := range map[string]string{
		hybrid: "/sys/fs/cgroup/unified",
		"cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid 0 0\n": "/sys/fs/cgroup",
		"none /my\\040cgroups cgroup2 rw 0 0\n":          "/my cgroups",
		"none /bad\\9 cgroup2 rw 0 0\n":                  "/bad\\9",
	} {
		got, ok := cgroup2Mount(text)
		if !ok || got != want {
			t.Errorf("cgroup2Mount(%q) = %q, %v; want %q", text, got, ok, want)
		}
	}
	if got, ok := cgroup2Mount("cgroup /sys/fs/cgroup/cpu cgroup rw 0 0\n"); ok {
		t.Errorf("found %q in a v1-only table", got)
	}
}

// FuzzCgroup2Mount: never panics; a found path comes from a cgroup2 line and has
// no more bytes than its escaped form.
func FuzzCgroup2Mount(f *testing.F) {
	f.Add("cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0\n")
	f.Add("none /a\\040b cgroup2 rw 0 0\n")
	f.Add("none /a\\ cgroup2 rw 0 0\n")
	f.Fuzz(func(t *testing.T, text string) {
		p, ok := cgroup2Mount(text)
		if !ok {
			return
		}
		if !strings.Contains(text, "cgroup2") || len(p) > len(text) {
			t.Fatalf("found %q in %q", p, text)
		}
	})
}
