package gossip

import (
	"testing"
	"time"
)

func TestTokenBucket(t *testing.T) {
	b := newTokenBucket(100, 2)
	takes := func(at time.Time) int {
		n := 0
		for b.take(at) {
			n++
		}
		return n
	}
	now := testTime
	if n := takes(now); n != 2 {
		t.Fatalf("%d tokens at start, want the burst of 2", n)
	}
	if w := b.wait(now); w < 9*time.Millisecond || w > 11*time.Millisecond {
		t.Errorf("wait %v, want 10ms", w)
	}
	if n := takes(now.Add(10 * time.Millisecond)); n != 1 {
		t.Errorf("%d tokens after 10ms at 100/s, want 1", n)
	}
	if n := takes(now.Add(time.Second)); n != 2 {
		t.Errorf("%d tokens after 1s, want the burst of 2", n)
	}
}
