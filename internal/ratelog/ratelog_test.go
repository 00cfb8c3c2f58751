package ratelog

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestRateLimit(t *testing.T) {
	var buf bytes.Buffer
	h := New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}), 3, time.Second)
	now := time.Unix(1000, 0)
	h.(*limitHandler).st.now = func() time.Time { return now }
	log := slog.New(h).With("part", "gossip")
	for range 10 {
		log.Warn("gossip send", "err", "boom")
		log.Info("peer up") // never limited
	}
	log.Error("other message")
	if n := strings.Count(buf.String(), "gossip send"); n != 3 {
		t.Fatalf("%d of 10 repeats logged in a burst, want 3:\n%s", n, buf.String())
	}
	if n := strings.Count(buf.String(), "peer up"); n != 10 {
		t.Fatalf("info records limited: %d of 10", n)
	}
	if !strings.Contains(buf.String(), "other message") {
		t.Fatal("a different message was limited")
	}
	buf.Reset()
	now = now.Add(1500 * time.Millisecond) // one token back
	log.Warn("gossip send", "err", "boom")
	log.Warn("gossip send", "err", "boom")
	out := buf.String()
	if strings.Count(out, "gossip send") != 1 || !strings.Contains(out, "suppressed=7") || !strings.Contains(out, "part=gossip") {
		t.Fatalf("after a second: %q", out)
	}
	// Many distinct messages stay bounded.
	for i := range 3 * maxKeys {
		log.Debug("m" + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + time.Duration(i).String())
	}
	if n := len(h.(*limitHandler).st.m); n > maxKeys {
		t.Fatalf("limiter holds %d keys", n)
	}
}
