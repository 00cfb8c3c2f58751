//go:build harness

package table

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/homing-dev/homing/session"
)

func TestKeyLayout(t *testing.T) {
	k := session.Key{
		Src: netip.MustParseAddr("198.18.1.2"), Dst: netip.MustParseAddr("198.19.255.1"),
		SrcPort: 0x1234, DstPort: 443, Proto: session.UDP,
	}
	var b [keyLen4]byte
	putKey4(b[:], k)
	want := []byte{198, 18, 1, 2, 198, 19, 255, 1, 0x12, 0x34, 0x01, 0xbb, 17, 0, 0, 0}
	if !bytes.Equal(b[:], want) {
		t.Fatalf("key4 % x, want % x", b, want)
	}
	if key4(b[:]) != k {
		t.Fatalf("decode %v", key4(b[:]))
	}
	k6 := session.Key{
		Src: netip.MustParseAddr("2001:db8::1"), Dst: netip.MustParseAddr("2001:db8:ffff::2"),
		SrcPort: 0xabcd, DstPort: 80, Proto: session.TCP,
	}
	var b6 [keyLen6]byte
	putKey6(b6[:], k6)
	if b6[15] != 1 || b6[31] != 2 || b6[32] != 0xab || b6[33] != 0xcd || b6[35] != 80 || b6[36] != 6 {
		t.Fatalf("key6 % x", b6)
	}
	if key6(b6[:]) != k6 {
		t.Fatalf("decode %v", key6(b6[:]))
	}
	o := session.Owner{Host: 0xfffe, Epoch: session.MaxEpoch}
	if v := packVal(o); v != 0xfffffffffffffffe || unpackVal(v) != o {
		t.Fatalf("val %#x", v)
	}
}

// FuzzKeyCodec checks that decoding any C key and encoding it back is the identity
// (but for the padding, which decoding ignores and encoding zeroes), and that encoding
// then decoding a valid session key is the identity.
func FuzzKeyCodec(f *testing.F) {
	var b [keyLen6]byte
	putKey6(b[:], key6n(7))
	f.Add(b[:])
	putKey4(b[:], key4n(7))
	f.Add(b[:keyLen4])
	f.Add(make([]byte, keyLen6))
	f.Add(bytes.Repeat([]byte{0xff}, keyLen6))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) >= keyLen4 {
			in := append([]byte(nil), data[:keyLen4]...)
			k := key4(in)
			if !k.Is4() || !k.Dst.Is4() {
				t.Fatalf("key4 decoded %v", k)
			}
			var out [keyLen4]byte
			putKey4(out[:], k)
			in[13], in[14], in[15] = 0, 0, 0
			if !bytes.Equal(out[:], in) {
				t.Fatalf("key4 round trip % x -> %v -> % x", in, k, out)
			}
		}
		if len(data) >= keyLen6 {
			in := append([]byte(nil), data[:keyLen6]...)
			k := key6(in)
			if k.Is4() {
				t.Fatalf("key6 decoded %v", k)
			}
			var out [keyLen6]byte
			putKey6(out[:], k)
			in[37], in[38], in[39] = 0, 0, 0
			if !bytes.Equal(out[:], in) {
				t.Fatalf("key6 round trip % x -> %v -> % x", in, k, out)
			}
			if k.Valid() && key6(out[:]) != k {
				t.Fatalf("key6 %v -> %v", k, key6(out[:]))
			}
		}
	})
}
