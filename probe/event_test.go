package probe

import (
	"errors"
	"net/netip"
	"testing"
	"unsafe"

	"github.com/homing-dev/homing/session"
)

func key(src string, sport uint16, dst string, dport uint16) session.Key {
	return session.Key{
		Src: netip.MustParseAddr(src), SrcPort: sport,
		Dst: netip.MustParseAddr(dst), DstPort: dport,
		Proto: session.TCP,
	}
}

// The Go layout must match struct event of sockops.c, as bpf2go read it from BTF.
func TestEventLayout(t *testing.T) {
	var e sockopsEvent
	if unsafe.Sizeof(e) != eventSize {
		t.Fatalf("struct event is %d bytes, decoder expects %d", unsafe.Sizeof(e), eventSize)
	}
	offs := []struct {
		name     string
		got, off uintptr
	}{
		{"kind", unsafe.Offsetof(e.Kind), evKind},
		{"family", unsafe.Offsetof(e.Family), evFamily},
		{"proto", unsafe.Offsetof(e.Proto), evProto},
		{"src_port", unsafe.Offsetof(e.SrcPort), evSrcPort},
		{"dst_port", unsafe.Offsetof(e.DstPort), evDstPort},
		{"cookie", unsafe.Offsetof(e.Cookie), evCookie},
		{"src", unsafe.Offsetof(e.Src), evSrc},
		{"dst", unsafe.Offsetof(e.Dst), evDst},
	}
	for _, o := range offs {
		if o.got != o.off {
			t.Errorf("%s at offset %d in C, %d in the decoder", o.name, o.got, o.off)
		}
	}
}

func TestParseEvent(t *testing.T) {
	raw4 := []byte{
		1, 4, 6, 0, // add, IPv4, TCP
		0xc3, 0x50, 0x1f, 0x90, // 50000 -> 8080
		0x2a, 0, 0, 0, 0, 0, 0, 0, // cookie 42 (little-endian host)
		198, 18, 100, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
		198, 19, 255, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	}
	e, err := parseEvent(raw4)
	if err != nil {
		t.Fatal(err)
	}
	want := Event{Kind: Add, Cookie: 42, Key: key("198.18.100.2", 50000, "198.19.255.1", 8080)}
	if e != want {
		t.Fatalf("got %v, want %v", e, want)
	}

	for _, ev := range []Event{
		want,
		{Kind: Delete, Cookie: 1 << 40, Key: key("2001:2::100", 1, "2001:2::1", 443)},
		{Kind: Tentative, Key: key("198.18.0.1", 65535, "198.19.0.1", 0)},
	} {
		got, err := parseEvent(appendEvent(nil, ev))
		if err != nil || got != ev {
			t.Errorf("round trip of %v: %v, %v", ev, got, err)
		}
	}

	bad := map[string][]byte{
		"short":  raw4[:eventSize-1],
		"empty":  nil,
		"kind 0": append([]byte{0}, raw4[1:]...),
		"kind 9": append([]byte{9}, raw4[1:]...),
		"family": append([]byte{1, 5}, raw4[2:]...),
		"udp":    append([]byte{1, 4, 17}, raw4[3:]...),
		"mapped": appendEvent(nil, Event{Kind: Add, Key: key("::ffff:198.18.0.1", 1, "2001:2::1", 2)}),
	}
	for name, b := range bad {
		if _, err := parseEvent(b); !errors.Is(err, ErrBadEvent) {
			t.Errorf("%s: got %v, want ErrBadEvent", name, err)
		}
	}
}

// FuzzParseEvent: the decoder never panics, and what it accepts is a valid key
// that encodes back to an event that decodes the same.
func FuzzParseEvent(f *testing.F) {
	f.Add(appendEvent(nil, Event{Kind: Add, Cookie: 7, Key: key("198.18.100.2", 50000, "198.19.255.1", 80)}))
	f.Add(appendEvent(nil, Event{Kind: Delete, Cookie: 8, Key: key("2001:2::100", 40000, "2001:2::1", 443)}))
	f.Add([]byte{1, 4, 6})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := parseEvent(b)
		if err != nil {
			if !errors.Is(err, ErrBadEvent) {
				t.Fatalf("error %v is not ErrBadEvent", err)
			}
			return
		}
		if !e.Key.Valid() || e.Key.Proto != session.TCP {
			t.Fatalf("accepted an invalid key %v", e.Key)
		}
		again, err := parseEvent(appendEvent(nil, e))
		if err != nil || again != e {
			t.Fatalf("re-encoding %v gives %v, %v", e, again, err)
		}
	})
}

func TestKindString(t *testing.T) {
	for k, s := range map[Kind]string{Add: "add", Delete: "delete", Tentative: "tentative", 0: "kind0"} {
		if k.String() != s {
			t.Errorf("%d: %q, want %q", k, k.String(), s)
		}
	}
}

func BenchmarkParseEvent(b *testing.B) {
	raw := appendEvent(nil, Event{Kind: Add, Cookie: 7, Key: key("2001:2::100", 40000, "2001:2::1", 443)})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := parseEvent(raw); err != nil {
			b.Fatal(err)
		}
	}
}
