package dpdk

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
)

// syncBuffer is a bytes.Buffer safe for the forwarder goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestForwardLogs: DPDK's messages (written as rte_log writes them, no EAL needed) reach
// slog with their level mapped and source=dpdk, one record per line, a line written in
// two pieces as one record; after stop, DPDK writes to its default stream again.
func TestForwardLogs(t *testing.T) {
	var out syncBuffer
	log := slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug,
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		}}))
	defer allLogLevelsForTest()() // (TestEAL may have run with --log-level=error)
	stop, err := ForwardLogs(log)
	if err != nil {
		t.Fatal(err)
	}
	logForTest(4, "EAL: cannot do it\n")
	logForTest(5, "EAL: careful\nEAL: second line\n")
	logForTest(6, "EAL: notice in ")
	logForTest(6, "two pieces\n")
	logForTest(1, "EAL: the end, no newline")
	stop()
	logForTest(4, "EAL: after stop, to stderr\n")
	want := `level=ERROR msg="EAL: cannot do it" source=dpdk
level=WARN msg="EAL: careful" source=dpdk
level=WARN msg="EAL: second line" source=dpdk
level=INFO msg="EAL: notice in two pieces" source=dpdk
level=ERROR msg="EAL: the end, no newline" source=dpdk
`
	if got := out.String(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	if strings.Contains(out.String(), "after stop") {
		t.Error("forwarded after stop")
	}
}
