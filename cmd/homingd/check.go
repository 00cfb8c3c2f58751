package main

import (
	"fmt"
	"os"
	"syscall"

	"github.com/homing-dev/homing/config"
	"github.com/homing-dev/homing/gossip/wire"
)

// checkFiles checks what config.Load does not read: the gossip key file (it exists,
// parses as hex keys of at least 32 bytes, and neither group nor others may access it,
// but for the group read through which homingd itself may read it: allowedKeyMode).
// It returns warnings about a configuration that runs but should not in production
// (gossip.insecure). Both -check and the start run it.
func checkFiles(cfg *config.Config) (warnings []string, err error) {
	g := cfg.Gossip
	if !g.Enabled {
		return nil, nil
	}
	if g.Insecure {
		return []string{fmt.Sprintf("%s: gossip.insecure = true: gossip is not authenticated, "+
			"anyone on the POP LAN can claim sessions and forge membership (labs and tests only)", cfg.Source)}, nil
	}
	fail := func(format string, args ...any) error {
		return &config.FieldError{File: cfg.Source, Key: "gossip.key_file", Msg: fmt.Sprintf(format, args...), Kind: config.ErrInvalid}
	}
	fi, err := os.Stat(g.KeyFile)
	switch {
	case err != nil:
		return nil, fail("%v", err)
	case !fi.Mode().IsRegular():
		return nil, fail("%s is not a regular file (%s)", g.KeyFile, fi.Mode().Type())
	case fi.Mode().Perm()&^allowedKeyMode(fi) != 0:
		return nil, fail("%s has mode %04o: group or others may access the key (chmod 0600 %s)",
			g.KeyFile, fi.Mode().Perm(), g.KeyFile)
	}
	if _, err := wire.LoadKeyFile(g.KeyFile); err != nil {
		return nil, fail("%v", err)
	}
	return nil, nil
}

// allowedKeyMode is the most a key file's mode may allow: its owner's read and write;
// and group read only where that is how homingd reads it — the file belongs to another
// user and to homingd's own group (a key shared with a daemon that runs as its own user,
// as in docker/). Nobody else may read it, nobody but the owner write it.
func allowedKeyMode(fi os.FileInfo) os.FileMode {
	allowed := os.FileMode(0o600)
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() && int(st.Gid) == os.Getegid() {
		allowed |= 0o040
	}
	return allowed
}
