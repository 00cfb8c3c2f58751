package quiccid

import (
	"bytes"
	"encoding/hex"
	"testing"
)

// TestVectors: the layout byte for byte (docs/PROTOCOL.md repeats these vectors).
func TestVectors(t *testing.T) {
	for _, tc := range []struct {
		host uint16
		rnd  string // the random bytes before encoding
		want string
	}{
		{1, "0000000000000000", "4004000000000000"},
		{2, "ffffffffffffffff", "400bffffffffffff"},
		{4095, "0000000000000000", "7ffc000000000000"},
		{0x123, "a5a5a5a5a5a5a5a5a5a5", "448da5a5a5a5a5a5a5a5"},
	} {
		cid, _ := hex.DecodeString(tc.rnd)
		Encode(cid, tc.host)
		if got := hex.EncodeToString(cid); got != tc.want {
			t.Errorf("host %d over %s: %s, want %s", tc.host, tc.rnd, got, tc.want)
		}
		if h, ok := Host(cid); !ok || h != tc.host {
			t.Errorf("Host(%s) = %d, %v; want %d", tc.want, h, ok, tc.host)
		}
	}
}

// TestHost: every host id round-trips through New with any random bytes; other layout
// versions, short CIDs and host 0 carry no host.
func TestHost(t *testing.T) {
	for h := uint16(1); h <= MaxHost; h++ {
		for _, fill := range []byte{0, 0xff, 0x5a} {
			cid, err := New(h, Len, bytes.NewReader(bytes.Repeat([]byte{fill}, Len)))
			if err != nil {
				t.Fatal(err)
			}
			if got, ok := Host(cid); !ok || got != h {
				t.Fatalf("host %d fill %x: got %d, %v", h, fill, got, ok)
			}
			if !bytes.Equal(cid[2:], bytes.Repeat([]byte{fill}, Len-2)) || cid[1]&3 != fill&3 {
				t.Fatalf("host %d: random bits changed: %x", h, cid)
			}
		}
	}
	for _, cid := range []string{"0004000000000000", "8004000000000000", "c004000000000000", "40040000000000", "4000000000000000", ""} {
		b, _ := hex.DecodeString(cid)
		if h, ok := Host(b); ok {
			t.Errorf("Host(%s) = %d, want none", cid, h)
		}
	}
	if _, err := New(0, Len, nil); err == nil {
		t.Error("host 0 accepted")
	}
	if _, err := New(4096, Len, nil); err == nil {
		t.Error("host 4096 accepted")
	}
	if _, err := New(1, 7, nil); err == nil {
		t.Error("length 7 accepted")
	}
	if _, err := New(1, 21, nil); err == nil {
		t.Error("length 21 accepted")
	}
}

// TestGenerator: the quic-go generator issues distinct CIDs of its length with its host.
func TestGenerator(t *testing.T) {
	for _, g := range []Generator{{Host: 7}, {Host: 4095, Length: 20}} {
		seen := map[string]bool{}
		for range 1000 {
			c, err := g.GenerateConnectionID()
			if err != nil {
				t.Fatal(err)
			}
			if c.Len() != g.ConnectionIDLen() {
				t.Fatalf("length %d, want %d", c.Len(), g.ConnectionIDLen())
			}
			if h, ok := Host(c.Bytes()); !ok || h != g.Host {
				t.Fatalf("host %d, %v; want %d", h, ok, g.Host)
			}
			if seen[string(c.Bytes())] {
				t.Fatalf("repeated CID %x", c.Bytes())
			}
			seen[string(c.Bytes())] = true
		}
	}
	if _, err := (Generator{}).GenerateConnectionID(); err == nil {
		t.Error("host 0 generated")
	}
}

// FuzzHost: Host never panics, and what it accepts re-encodes to itself.
func FuzzHost(f *testing.F) {
	for _, s := range []string{"4004000000000000", "7ffc000000000000", "0004000000000000", "40", ""} {
		b, _ := hex.DecodeString(s)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, cid []byte) {
		h, ok := Host(cid)
		if !ok {
			return
		}
		c := bytes.Clone(cid)
		Encode(c, h)
		if !bytes.Equal(c, cid) {
			t.Fatalf("%x re-encodes to %x", cid, c)
		}
	})
}
