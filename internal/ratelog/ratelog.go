// Package ratelog is homingd's logger: a slog handler that rate-limits repeated
// messages (New), and the logger built on it (NewLogger). Logging must not cost a
// packet rate: a message that repeats per packet or per datagram is cut to a burst,
// then one a second, with the number suppressed on the next one logged.
package ratelog

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"time"
)

// New wraps h so that each message (keyed by level and message text) is logged
// at most burst times in a row, then at most once per every; the next record logged
// after some were suppressed carries suppressed=N. Info records pass untouched: they
// are reserved for events that are rare by nature (start, stop, peers up and down);
// Debug, Warn and Error can repeat per packet or per datagram.
func New(h slog.Handler, burst int, every time.Duration) slog.Handler {
	return &limitHandler{h: h, st: &limitState{burst: float64(burst), every: every, m: map[string]*bucket{}, now: time.Now}}
}

type limitHandler struct {
	h  slog.Handler
	st *limitState
}

type limitState struct {
	burst float64
	every time.Duration
	now   func() time.Time
	mu    sync.Mutex // protects m
	m     map[string]*bucket
}

type bucket struct {
	tokens     float64
	last       time.Time
	suppressed int
}

// maxKeys bounds the limiter's memory; beyond it idle keys are forgotten.
const maxKeys = 4096

func (l *limitHandler) Enabled(ctx context.Context, lv slog.Level) bool { return l.h.Enabled(ctx, lv) }

func (l *limitHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level == slog.LevelInfo {
		return l.h.Handle(ctx, r)
	}
	n, ok := l.st.take(r.Level.String() + " " + r.Message)
	if !ok {
		return nil
	}
	if n > 0 {
		r = r.Clone()
		r.AddAttrs(slog.Int("suppressed", n))
	}
	return l.h.Handle(ctx, r)
}

// take reports whether a record of key may be logged, and how many were suppressed
// before it.
func (s *limitState) take(key string) (int, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	b := s.m[key]
	if b == nil {
		if len(s.m) >= maxKeys {
			for k, v := range s.m {
				if now.Sub(v.last) > s.every*time.Duration(s.burst) {
					delete(s.m, k)
				}
			}
			if len(s.m) >= maxKeys {
				clear(s.m)
			}
		}
		b = &bucket{tokens: s.burst, last: now}
		s.m[key] = b
	}
	if s.every > 0 {
		b.tokens = min(s.burst, b.tokens+float64(now.Sub(b.last))/float64(s.every))
	}
	b.last = now
	if b.tokens < 1 {
		b.suppressed++
		return 0, false
	}
	b.tokens--
	n := b.suppressed
	b.suppressed = 0
	return n, true
}

func (l *limitHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &limitHandler{h: l.h.WithAttrs(as), st: l.st}
}

func (l *limitHandler) WithGroup(name string) slog.Handler {
	return &limitHandler{h: l.h.WithGroup(name), st: l.st}
}

// NewLogger builds homingd's logger: text or JSON on w at the level of lv, rate-limited
// (New with a burst of 10 and one per second after it).
func NewLogger(w io.Writer, format string, lv *slog.LevelVar) *slog.Logger {
	opts := &slog.HandlerOptions{Level: lv}
	var h slog.Handler = slog.NewTextHandler(w, opts)
	if format == "json" {
		h = slog.NewJSONHandler(w, opts)
	}
	return slog.New(New(h, 10, time.Second))
}
