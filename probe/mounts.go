package probe

import (
	"strconv"
	"strings"
)

// cgroup2Mount finds the mount point of a cgroup2 file system in the text of
// /proc/self/mounts.
func cgroup2Mount(mounts string) (string, bool) {
	for _, line := range strings.Split(mounts, "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[2] == "cgroup2" {
			return unescapeMount(f[1]), true
		}
	}
	return "", false
}

// unescapeMount undoes the octal escapes (\040 for a space) of /proc/self/mounts.
func unescapeMount(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
