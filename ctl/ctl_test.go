package ctl

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func echo() Handler {
	return HandlerFunc(func(_ context.Context, r Request) (any, error) {
		switch r.Cmd {
		case CmdLookup:
			var a LookupArgs
			if err := r.Decode(&a); err != nil {
				return nil, err
			}
			return Lookup{Session: a.Proto + " " + a.Client + " -> " + a.VIP, Found: true, Owner: 2}, nil
		case CmdStatus:
			return Status{HostID: 7, Name: "h7"}, nil
		}
		return nil, fmt.Errorf("%w %q", ErrUnknownCommand, r.Cmd)
	})
}

func TestRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "dir", "ctl.sock")
	s, err := Listen(path, echo())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 || fi.Mode().Type() != os.ModeSocket {
		t.Fatalf("socket mode %v, want socket 0600", fi.Mode())
	}
	if di, _ := os.Stat(filepath.Dir(path)); di.Mode().Perm() != 0o700 {
		t.Fatalf("created directory mode %v, want 0700", di.Mode().Perm())
	}
	ctx := context.Background()
	var st Status
	if err := Call(ctx, path, CmdStatus, nil, &st); err != nil || st.HostID != 7 || st.Name != "h7" {
		t.Fatalf("status: %+v %v", st, err)
	}
	var l Lookup
	if err := Call(ctx, path, CmdLookup, LookupArgs{Proto: "tcp", Client: "198.18.100.2:1000", VIP: "198.19.255.1:80"}, &l); err != nil {
		t.Fatal(err)
	}
	if l.Session != "tcp 198.18.100.2:1000 -> 198.19.255.1:80" || l.Owner != 2 {
		t.Fatalf("lookup: %+v", l)
	}
	err = Call(ctx, path, "bogus", nil, nil)
	if err == nil || !strings.Contains(err.Error(), `unknown command "bogus"`) {
		t.Fatalf("unknown command: %v", err)
	}
	err = Call(ctx, path, CmdLookup, map[string]int{"nope": 1}, nil)
	if err == nil || !strings.Contains(err.Error(), "unknown field") {
		t.Fatalf("unknown argument: %v", err)
	}
	// Concurrent clients.
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			var st Status
			if err := Call(ctx, path, CmdStatus, nil, &st); err != nil || st.HostID != 7 {
				t.Errorf("concurrent status: %+v %v", st, err)
			}
		})
	}
	wg.Wait()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("socket left after Close: %v", err)
	}
	err = Call(ctx, path, CmdStatus, nil, nil)
	if !errors.Is(err, ErrNotRunning) || !strings.Contains(err.Error(), "homingd is not running (no socket at "+path+")") {
		t.Fatalf("after close: %v", err)
	}
}

func TestStaleAndInUse(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ctl.sock")
	// A stale socket: bound, then its listener gone without unlinking.
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	err = Call(context.Background(), path, CmdStatus, nil, nil)
	if !errors.Is(err, ErrNotRunning) {
		t.Fatalf("stale socket: %v", err)
	}
	s, err := Listen(path, echo())
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	defer s.Close()
	if _, err := Listen(path, echo()); !errors.Is(err, ErrInUse) {
		t.Fatalf("second server on a live socket: %v", err)
	}
	// The first server still answers.
	if err := Call(context.Background(), path, CmdStatus, nil, nil); err != nil {
		t.Fatal(err)
	}
	// A regular file is never removed.
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, []byte("x"), 0o600)
	if _, err := Listen(file, echo()); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("listen over a regular file: %v", err)
	}
}

func TestBadRequests(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ctl.sock")
	s, err := Listen(path, echo())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, line := range []string{"not json\n", `{"cmd":""}` + "\n", `{"cmd":"status","x":1}` + "\n",
		`{"cmd":"status","args":[1]}` + "\n", strings.Repeat("x", MaxRequest+10) + "\n"} {
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.Write([]byte(line))
		buf := make([]byte, 4096)
		n, _ := c.Read(buf)
		c.Close()
		if !strings.Contains(string(buf[:n]), `"ok":false`) || !strings.Contains(string(buf[:n]), "bad control request") {
			t.Errorf("request %.40q: response %q", line, buf[:n])
		}
	}
}

func TestDecodeRequest(t *testing.T) {
	good := []string{`{"cmd":"status"}`, `{"cmd":"sessions","args":{"owner":2}}`, `{"cmd":"peers","args":null}`}
	for _, g := range good {
		if _, err := DecodeRequest([]byte(g)); err != nil {
			t.Errorf("%s: %v", g, err)
		}
	}
	bad := []string{``, `{}`, `{"cmd":1}`, `{"cmd":"a"} {"cmd":"b"}`, `{"cmd":"a","args":"x"}`, `[]`,
		`{"cmd":"` + strings.Repeat("a", 33) + `"}`}
	for _, b := range bad {
		if _, err := DecodeRequest([]byte(b)); !errors.Is(err, ErrRequest) {
			t.Errorf("%s: %v, want ErrRequest", b, err)
		}
	}
}

func FuzzDecodeRequest(f *testing.F) {
	f.Add([]byte(`{"cmd":"status"}`))
	f.Add([]byte(`{"cmd":"sessions","args":{"owner":2,"vip":"198.19.255.1:80","limit":-1}}`))
	f.Add([]byte(`{"cmd":"lookup","args":{"proto":"tcp","client":"198.18.100.2:1","vip":"[2001:db8::1]:80"}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeRequest(b)
		if err != nil {
			return
		}
		if r.Cmd == "" {
			t.Fatal("accepted an empty command")
		}
		var a SessionsArgs
		_ = r.Decode(&a)
	})
}
