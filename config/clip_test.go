package config

import (
	"strings"
	"testing"
)

// TestErrorsClipValues: a value of 10 MB (a pasted file, a runaway line) is echoed in
// its error cut to 64 characters and "…"; so is one of 4 KB in every other kind of error
// that echoes a value or a key.
func TestErrorsClipValues(t *testing.T) {
	huge := strings.Repeat("x", 10<<20)
	long := strings.Repeat("x", 4096)
	for _, c := range []struct{ name, src, want string }{
		{"string value", strings.Replace(minimal, "[host]", "[host]\nname = \""+huge+"\"", 1),
			`t.toml: host.name: "` + strings.Repeat("x", 64) + `…" must be 1..63 characters of A-Z a-z 0-9 . _ -`},
		{"cpu list", minimal + "[dpdk]\ncpus = \"" + long + "\"\n",
			`t.toml: dpdk.cpus: "` + strings.Repeat("x", 64) + `…" is not a CPU list ("0-1", "0,2,4-7"; CPUs 0..1023)`},
		{"one of", minimal + "[log]\nlevel = \"" + long + "\"\n",
			`t.toml: log.level: must be one of debug|info|warn|error, got "` + strings.Repeat("x", 64) + `…"`},
		{"unknown key", minimal + "[log]\n" + long + " = 1\n",
			"t.toml: log." + strings.Repeat("x", 60) + "…: unknown key (see docs/CONFIG.md)"},
		{"multibyte", strings.Replace(minimal, "[host]", "[host]\nname = \""+strings.Repeat("é", 1000)+"\"", 1),
			`t.toml: host.name: "` + strings.Repeat("é", 64) + `…" must be 1..63 characters of A-Z a-z 0-9 . _ -`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(c.src), "t.toml")
			if err == nil || err.Error() != c.want {
				got := "<nil>"
				if err != nil {
					got = clipLen(err.Error(), 300)
				}
				t.Errorf("got  %s\nwant %s", got, c.want)
			}
		})
	}
	// The TOML decoder's own messages (syntax errors) are bounded as a whole.
	_, err := Parse([]byte(strings.Replace(minimal, "[host]", "[host]\nname = \""+long, 1)), "t.toml")
	if err == nil || len(err.Error()) > 600 {
		t.Errorf("syntax error of %d bytes", len(err.Error()))
	}
}
