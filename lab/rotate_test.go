package lab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestKeyRotationLive: the three-step gossip key rotation of docs/OPERATIONS.md on a
// running POP — the key file rewritten, then SIGHUP to each homingd in turn, so that
// hosts at different steps gossip with each other — with traffic and a router rehash
// after every step. No datagram is refused at any step (auth failures, gossip and
// relay-free), no connection is reset, and a host restarted after the last step (it
// holds only the new key) gets every session back by repair.
func TestKeyRotationLive(t *testing.T) {
	requireFaultLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	l := faultLab(t, ctx, 3, nil)
	hosts := l.Hosts()
	const conns = 300
	fleet := openFleet(t, ctx, l, conns, true)
	b, err := os.ReadFile(l.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	var old string
	for _, line := range strings.Split(string(b), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			old = line
		}
	}
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	next := hex.EncodeToString(k)
	auth0 := gossipSum(t, ctx, l, hosts, "auth_failures")["auth_failures"]

	for i, keys := range [][]string{{old, next}, {next, old}, {next}} {
		if err := os.WriteFile(l.keyFile, []byte(strings.Join(keys, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		for _, n := range hosts {
			st0, err := l.Status(ctx, n)
			if err != nil {
				t.Fatal(err)
			}
			if err := l.Host(n).homingd.cmd.Process.Signal(syscall.SIGHUP); err != nil {
				t.Fatal(err)
			}
			for {
				st, err := l.Status(ctx, n)
				if err != nil {
					t.Fatal(err)
				}
				if st.LastReload.After(st0.LastReload) {
					if st.LastReloadErr != "" || st.KeyRotation != (len(keys) == 2) {
						t.Fatalf("step %d, h%d: reload %q, key rotation %v", i+1, n, st.LastReloadErr, st.KeyRotation)
					}
					break
				}
				if err := sleep(ctx, 20*time.Millisecond); err != nil {
					t.Fatal(err)
				}
			}
			// New sessions while the hosts are at different steps.
			if err := sleep(ctx, 300*time.Millisecond); err != nil {
				t.Fatal(err)
			}
		}
		if err := l.Rehash(uint32(1000 + i)); err != nil {
			t.Fatal(err)
		}
		if err := sleep(ctx, 2*time.Second); err != nil {
			t.Fatal(err)
		}
		if c := fleet.Counts(); c.Reset != 0 || c.Failed != 0 || c.Corrupted != 0 {
			t.Fatalf("after step %d: %+v", i+1, c)
		}
	}
	if auth := gossipSum(t, ctx, l, hosts, "auth_failures")["auth_failures"]; auth != auth0 {
		t.Errorf("%d datagrams refused during the rotation", auth-auth0)
	}

	// A host restarted now knows only the new key: it gets its peers' sessions back by
	// repair, and serves its own.
	if err := l.Kill(3); err != nil {
		t.Fatal(err)
	}
	if err := l.Restart(ctx, 3); err != nil {
		t.Fatal(err)
	}
	if err := l.WaitPeers(ctx, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	took, diffs, err := waitTruth(ctx, l, 15*time.Second)
	if err != nil {
		for n, d := range diffs {
			t.Logf("h%d: %s", n, strings.Join(d, "\n  "))
		}
		t.Fatalf("after %v the tables differ from the truth: %v", took.Round(time.Millisecond), err)
	}
	for deadline := time.Now().Add(6 * time.Second); ; {
		st, err := l.Status(ctx, 3)
		if err != nil {
			t.Fatal(err)
		}
		if !st.Warming {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("h3 still warming up 6 s after its restart")
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Rehash(2000); err != nil {
		t.Fatal(err)
	}
	if err := sleep(ctx, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	if st, err := l.Stats(ctx, 3); err == nil && len(st.Lcores) > 0 {
		t.Logf("h3 classes after its restart: %v", st.Lcores[0].Classes)
	}
	c := fleet.Counts()
	if c.Reset != 0 || c.Failed != 0 || c.Corrupted != 0 || c.Alive+c.Stalled != conns {
		t.Errorf("at the end: %+v", c)
	}
	t.Logf("rotated in 3 steps host by host with %d connections: 0 refused datagrams, 0 resets; h3 restarted with the new key only matched the truth %v after its restart",
		conns, took.Round(time.Millisecond))
}
