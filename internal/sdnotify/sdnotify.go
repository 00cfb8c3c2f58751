// Package sdnotify speaks systemd's notification protocol (sd_notify(3)): a unit of
// Type=notify tells systemd when it is ready, stopping, and alive (the watchdog).
package sdnotify

import (
	"net"
	"os"
	"strconv"
	"time"
)

// Notify sends state ("READY=1", "STOPPING=1", "WATCHDOG=1", "STATUS=...", several
// separated by newlines) to the socket in $NOTIFY_SOCKET. Without it (not started by
// systemd, or a unit of another type) it does nothing and returns false.
func Notify(state string) (bool, error) {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return false, nil
	}
	if path[0] == '@' { // abstract namespace
		path = "\x00" + path[1:]
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return false, err
	}
	defer c.Close()
	if _, err := c.Write([]byte(state)); err != nil {
		return false, err
	}
	return true, nil
}

// WatchdogInterval is the unit's WatchdogSec (from $WATCHDOG_USEC, when $WATCHDOG_PID is
// this process or unset); 0 when the watchdog is off. Send WATCHDOG=1 at half of it.
func WatchdogInterval() time.Duration {
	if pid := os.Getenv("WATCHDOG_PID"); pid != "" && pid != strconv.Itoa(os.Getpid()) {
		return 0
	}
	us, err := strconv.ParseUint(os.Getenv("WATCHDOG_USEC"), 10, 63)
	if err != nil || us == 0 {
		return 0
	}
	return time.Duration(us) * time.Microsecond
}
