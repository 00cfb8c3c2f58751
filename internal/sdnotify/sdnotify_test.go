package sdnotify

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// fakeSystemd listens where systemd would and returns what it receives.
func fakeSystemd(t *testing.T, name string) (*net.UnixConn, string) {
	t.Helper()
	addr := &net.UnixAddr{Name: name, Net: "unixgram"}
	c, err := net.ListenUnixgram("unixgram", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, name
}

func recv(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	buf := make([]byte, 4096)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	return string(buf[:n])
}

// TestNotify: the state reaches the socket of $NOTIFY_SOCKET, a path or an abstract
// name; without the variable nothing is sent.
func TestNotify(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	if sent, err := Notify("READY=1"); sent || err != nil {
		t.Fatalf("without NOTIFY_SOCKET: sent %v err %v", sent, err)
	}
	c, path := fakeSystemd(t, filepath.Join(t.TempDir(), "notify"))
	t.Setenv("NOTIFY_SOCKET", path)
	if sent, err := Notify("READY=1\nSTATUS=serving"); !sent || err != nil {
		t.Fatalf("sent %v err %v", sent, err)
	}
	if got := recv(t, c); got != "READY=1\nSTATUS=serving" {
		t.Fatalf("systemd got %q", got)
	}
	abstract := "homing-sdnotify-test-" + strconv.Itoa(os.Getpid())
	ca, _ := fakeSystemd(t, "\x00"+abstract)
	t.Setenv("NOTIFY_SOCKET", "@"+abstract)
	if sent, err := Notify("WATCHDOG=1"); !sent || err != nil {
		t.Fatalf("abstract: sent %v err %v", sent, err)
	}
	if got := recv(t, ca); got != "WATCHDOG=1" {
		t.Fatalf("systemd (abstract) got %q", got)
	}
	t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "nobody"))
	if _, err := Notify("READY=1"); err == nil {
		t.Fatal("no error for a socket nobody listens on")
	}
}

// TestWatchdogInterval: WATCHDOG_USEC for this process (or any when WATCHDOG_PID is
// unset); 0 for another process's watchdog or none.
func TestWatchdogInterval(t *testing.T) {
	for _, c := range []struct {
		usec, pid string
		want      time.Duration
	}{
		{"", "", 0},
		{"20000000", "", 20 * time.Second},
		{"20000000", strconv.Itoa(os.Getpid()), 20 * time.Second},
		{"20000000", "1", 0},
		{"garbage", "", 0},
		{"0", "", 0},
	} {
		t.Setenv("WATCHDOG_USEC", c.usec)
		t.Setenv("WATCHDOG_PID", c.pid)
		if got := WatchdogInterval(); got != c.want {
			t.Errorf("WATCHDOG_USEC=%q WATCHDOG_PID=%q: %v, want %v", c.usec, c.pid, got, c.want)
		}
	}
}
