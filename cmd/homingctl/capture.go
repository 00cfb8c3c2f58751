package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/homing-dev/homing/ctl"
)

// captureOpts are capture's and trace's options.
type captureOpts struct {
	port, dir, filter, write string
	count, snaplen           int
	duration                 time.Duration
	set                      bool // any of them given
}

// capture runs homingctl capture: the packets of the data plane into a pcapng file (-w)
// or, without -w, one line per packet.
func capture(socket string, o opts, stdout, stderr io.Writer) int {
	if len(o.args) > 1 {
		return usageError(stderr, "capture takes options only, e.g. capture --port nic --dir rx --filter 'host 198.18.0.12 and port 80' --count 100 --duration 10s -w out.pcapng")
	}
	c := o.capture
	if c.count == 0 {
		c.count = 1000
	}
	if c.duration == 0 {
		c.duration = 10 * time.Second
	}
	if c.snaplen == 0 {
		c.snaplen = 2048
	}
	if err := checkCapture(c); err != nil {
		return usageError(stderr, "capture: "+err.Error())
	}
	args := ctl.CaptureArgs{Port: c.port, Dir: c.dir, Filter: c.filter, Count: c.count,
		DurationMS: c.duration.Milliseconds(), Snaplen: c.snaplen}
	var out io.Writer = stdout
	var pw *pcapngWriter
	if c.write != "" {
		if c.write != "-" {
			f, err := os.OpenFile(c.write, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
			if err != nil {
				fmt.Fprintln(stderr, "homingctl:", err)
				return 1
			}
			defer f.Close()
			out = f
		}
		pw = newPcapngWriter(out)
	}
	var head ctl.CaptureHead
	end, err := stream(socket, o, c, args, &head, func(r ctl.CaptureRecord) error {
		if pw != nil {
			return pw.write(r, head)
		}
		if o.json {
			return json.NewEncoder(stdout).Encode(r)
		}
		printRecord(stdout, r, false)
		return nil
	}, func() error {
		if pw != nil {
			return pw.header(head)
		}
		return nil
	})
	if err == nil && pw != nil {
		err = pw.flush()
	}
	return finish(stderr, end, err, c.write != "" && c.write != "-")
}

// trace runs homingctl trace PROTO CLIENT:PORT VIP:PORT: one line per packet of the
// flow (both directions) with its class, lookup, owner and fate.
func trace(socket string, o opts, stdout, stderr io.Writer) int {
	rest := o.args[1:]
	if len(rest) != 3 {
		return usageError(stderr, "trace needs PROTO CLIENT-IP:PORT VIP-IP:PORT, e.g. trace tcp 198.18.100.2:40000 198.19.255.1:80")
	}
	if err := checkSession(rest[0], rest[1], rest[2]); err != nil {
		return usageError(stderr, "trace: "+err.Error())
	}
	c := o.capture
	if c.filter != "" || c.write != "" || c.snaplen != 0 {
		return usageError(stderr, "trace takes --port, --dir, --count and --duration (the flow is its filter; use capture for bytes)")
	}
	if c.count == 0 {
		c.count = 100
	}
	if c.duration == 0 {
		c.duration = 60 * time.Second
	}
	c.filter = "flow " + strings.ToLower(rest[0]) + " " + rest[1] + " " + rest[2]
	if err := checkCapture(c); err != nil {
		return usageError(stderr, "trace: "+err.Error())
	}
	args := ctl.CaptureArgs{Port: c.port, Dir: c.dir, Filter: c.filter, Count: c.count,
		DurationMS: c.duration.Milliseconds(), Trace: true}
	var head ctl.CaptureHead
	first := true
	end, err := stream(socket, o, c, args, &head, func(r ctl.CaptureRecord) error {
		if o.json {
			return json.NewEncoder(stdout).Encode(r)
		}
		printRecord(stdout, r, first)
		first = false
		return nil
	}, nil)
	return finish(stderr, end, err, false)
}

func checkCapture(c captureOpts) error {
	switch c.port {
	case "", "nic", "tap", "all":
	default:
		return fmt.Errorf("--port %q: want nic, tap or all", c.port)
	}
	switch c.dir {
	case "", "rx", "tx", "both":
	default:
		return fmt.Errorf("--dir %q: want rx, tx or both", c.dir)
	}
	if c.count < 1 || c.count > ctl.MaxCaptureCount {
		return fmt.Errorf("--count %d: want 1..%d", c.count, ctl.MaxCaptureCount)
	}
	if c.duration <= 0 || c.duration.Milliseconds() > ctl.MaxCaptureDuration {
		return fmt.Errorf("--duration %s: want more than 0 and at most 1h", c.duration)
	}
	if c.snaplen < 0 || c.snaplen > 16384 {
		return fmt.Errorf("--snaplen %d: want 1..16384", c.snaplen)
	}
	return nil
}

// stream runs the capture request, calling each for every record; start runs after the
// daemon accepted the request.
func stream(socket string, o opts, c captureOpts, args ctl.CaptureArgs, head *ctl.CaptureHead,
	each func(ctl.CaptureRecord) error, start func() error) (*ctl.CaptureEnd, error) {
	ctx, cancel := context.WithTimeout(context.Background(), c.duration+o.timeout)
	defer cancel()
	var end *ctl.CaptureEnd
	started := false
	err := ctl.CallStream(ctx, socket, ctl.CmdCapture, args, head, func(raw json.RawMessage) error {
		if !started && start != nil {
			if err := start(); err != nil {
				return err
			}
		}
		started = true
		var l ctl.CaptureLine
		if err := json.Unmarshal(raw, &l); err != nil {
			return fmt.Errorf("capture: decoding the stream: %w", err)
		}
		if l.End != nil {
			end = l.End
			return nil
		}
		if l.Rec != nil {
			return each(*l.Rec)
		}
		return nil
	})
	if err == nil && !started && start != nil {
		err = start()
	}
	if err == nil && end == nil {
		err = errors.New("capture: the daemon closed the stream early")
	}
	return end, err
}

func finish(stderr io.Writer, end *ctl.CaptureEnd, err error, summary bool) int {
	if err != nil {
		fmt.Fprintln(stderr, "homingctl:", err)
		return 1
	}
	if summary || end.Lost != 0 || end.Taken == 0 {
		fmt.Fprintf(stderr, "%d packets taken (%s), %d lost (ring full)\n", end.Taken, endReason(end.Reason), end.Lost)
	}
	return 0
}

func endReason(r string) string {
	switch r {
	case "count":
		return "count reached"
	case "duration":
		return "duration over"
	}
	return r
}

// printRecord prints one record as a line (and the header first).
func printRecord(w io.Writer, r ctl.CaptureRecord, header bool) {
	if header {
		fmt.Fprintf(w, "%-15s %-6s %-12s %-7s %-6s %-5s %-16s %-5s %-5s %s\n", "TIME", "POINT", "CLASS", "FATE", "LOOKUP", "OWNER", "EPOCH", "LCORE", "QUEUE", "LEN")
	}
	lk, owner, epoch := "-", "-", "-"
	switch r.Lookup {
	case "hit":
		lk, owner, epoch = "hit", fmt.Sprint(r.Owner), fmt.Sprint(r.Epoch)
	case "miss":
		lk = "miss"
	}
	fmt.Fprintf(w, "%-15s %-6s %-12s %-7s %-6s %-5s %-16s %-5d %-5d %d\n", time.Unix(0, r.TimeNS).Format("15:04:05.000000"),
		r.Point, r.Class, r.Fate, lk, owner, epoch, r.Lcore, r.Queue, r.Len)
}

// set1 sets one capture option from the command line.
func (c *captureOpts) set1(name, v string) error {
	c.set = true
	var err error
	switch name {
	case "port":
		c.port = v
	case "dir":
		c.dir = v
	case "filter":
		c.filter = v
	case "w":
		c.write = v
	case "count":
		if _, err = fmt.Sscan(v, &c.count); err != nil || c.count < 1 {
			err = fmt.Errorf("--count %q: want a positive number", v)
		}
	case "snaplen":
		if _, err = fmt.Sscan(v, &c.snaplen); err != nil || c.snaplen < 1 {
			err = fmt.Errorf("--snaplen %q: want a positive number", v)
		}
	case "duration":
		if c.duration, err = time.ParseDuration(v); err != nil || c.duration <= 0 {
			err = fmt.Errorf("--duration %q: want a positive duration such as 10s", v)
		}
	}
	return err
}
