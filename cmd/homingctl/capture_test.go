package main

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket/pcapgo"

	"github.com/homing-dev/homing/ctl"
)

// fakeStream is a capture stream of fixed records.
type fakeStream struct {
	head ctl.CaptureHead
	recs []ctl.CaptureRecord
}

func (s fakeStream) Head() any { return s.head }

func (s fakeStream) Stream(_ context.Context, enc *json.Encoder) error {
	for i := range s.recs {
		if err := enc.Encode(ctl.CaptureLine{Rec: &s.recs[i]}); err != nil {
			return err
		}
	}
	return enc.Encode(ctl.CaptureLine{End: &ctl.CaptureEnd{Taken: len(s.recs), Lost: 2, Reason: "count"}})
}

var captureT0 = time.Date(2026, 12, 4, 23, 0, 0, 123456789, time.UTC)

func captureDaemon(t *testing.T, got *ctl.CaptureArgs) string {
	path := filepath.Join(t.TempDir(), "ctl.sock")
	s, err := ctl.Listen(path, ctl.HandlerFunc(func(_ context.Context, r ctl.Request) (any, error) {
		if err := r.Decode(got); err != nil {
			return nil, err
		}
		recs := []ctl.CaptureRecord{
			{TimeNS: captureT0.UnixNano(), Point: "nic-rx", Class: "redirected", Fate: "nic", Lcore: 1, Len: 70, Data: []byte("frame one, as received")},
			{TimeNS: captureT0.UnixNano() + 1, Point: "nic-tx", Class: "redirected", Fate: "nic", Lcore: 1, Len: 102, Data: []byte("frame one, encapsulated")},
			{TimeNS: captureT0.UnixNano() + 2, Point: "tap-tx", Class: "decap", Fate: "kernel", Lcore: 2, Queue: 1, Len: 60, Data: []byte("x")},
		}
		if got.Trace {
			for i := range recs {
				recs[i].Data, recs[i].Lookup, recs[i].Owner, recs[i].Epoch = nil, "hit", 2, 7
			}
		}
		return fakeStream{head: ctl.CaptureHead{Lcores: 2, Filter: got.Filter, Snaplen: got.Snaplen, NICPort: 0, TAPPort: 1}, recs: recs}, nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return path
}

// TestCapturePcapng: homingctl capture -w writes what the daemon streams as pcapng that
// gopacket reads back: one interface per capture point, nanosecond timestamps, the
// bytes and the original lengths.
func TestCapturePcapng(t *testing.T) {
	var args ctl.CaptureArgs
	sock := captureDaemon(t, &args)
	file := filepath.Join(t.TempDir(), "c.pcapng")
	_, errOut, code := ctlRun("--socket", sock, "capture", "--port", "nic", "--dir", "both", "--filter", "class redirected",
		"--count", "3", "--duration", "2s", "--snaplen", "128", "-w", file)
	if code != 0 || !strings.Contains(errOut, "3 packets taken (count reached), 2 lost (ring full)") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if args != (ctl.CaptureArgs{Port: "nic", Dir: "both", Filter: "class redirected", Count: 3, DurationMS: 2000, Snaplen: 128}) {
		t.Errorf("daemon got %+v", args)
	}
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewNgReader(f, pcapgo.DefaultNgReaderOptions)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		iface, data string
		len         int
	}{{"nic-rx", "frame one, as received", 70}, {"nic-tx", "frame one, encapsulated", 102}, {"tap-tx", "x", 60}}
	for i, w := range want {
		data, ci, err := r.ReadPacketData()
		if err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		in, _ := r.Interface(ci.InterfaceIndex)
		if in.Name != w.iface || string(data) != w.data || ci.Length != w.len || !ci.Timestamp.Equal(captureT0.Add(time.Duration(i))) {
			t.Errorf("packet %d: %s %q len %d at %v, want %s %q len %d at %v", i, in.Name, data, ci.Length, ci.Timestamp,
				w.iface, w.data, w.len, captureT0.Add(time.Duration(i)))
		}
	}
	if _, _, err := r.ReadPacketData(); err != io.EOF {
		t.Errorf("after 3 packets: %v", err)
	}
}

// TestTrace: homingctl trace sends the flow as its filter and prints a line per record.
func TestTrace(t *testing.T) {
	var args ctl.CaptureArgs
	sock := captureDaemon(t, &args)
	out, errOut, code := ctlRun("--socket", sock, "trace", "tcp", "198.18.100.2:40000", "198.19.255.1:80", "--count", "3")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if !args.Trace || args.Filter != "flow tcp 198.18.100.2:40000 198.19.255.1:80" || args.Count != 3 || args.Snaplen != 0 {
		t.Errorf("daemon got %+v", args)
	}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "TIME") {
		t.Fatalf("output:\n%s", out)
	}
	if f := strings.Fields(lines[1]); strings.Join(f[1:], " ") != "nic-rx redirected nic hit 2 7 1 0 70" {
		t.Errorf("line %q", lines[1])
	}
	if f := strings.Fields(lines[3]); strings.Join(f[1:], " ") != "tap-tx decap kernel hit 2 7 2 1 60" {
		t.Errorf("line %q", lines[3])
	}
	for _, bad := range [][]string{{"trace", "tcp", "198.18.100.2:1"}, {"trace", "icmp", "198.18.100.2:1", "198.19.255.1:80"},
		{"trace", "tcp", "198.18.100.2:1", "198.19.255.1:80", "--filter", "udp"}, {"capture", "--port", "eth0"},
		{"capture", "--dir", "up"}, {"capture", "--count", "0"}, {"capture", "--duration", "-1s"}, {"capture", "extra"},
		{"capture", "--snaplen", "70000"}, {"status", "--count", "3"}} {
		if _, e, code := ctlRun(append([]string{"--socket", sock}, bad...)...); code != 2 {
			t.Errorf("%v: exit %d, %s", bad, code, e)
		}
	}
}
