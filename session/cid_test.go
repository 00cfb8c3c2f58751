package session

import (
	"bytes"
	"net/netip"
	"testing"
)

func TestCIDKey(t *testing.T) {
	for n := 0; n <= 22; n++ {
		cid := make([]byte, n)
		for i := range cid {
			cid[i] = byte(0xa0 + i)
		}
		k, ok := CIDKey(cid, 443)
		if ok != (n >= MinCIDLen && n <= MaxCIDLen) {
			t.Fatalf("CIDKey(%d bytes) ok = %v", n, ok)
		}
		if !ok {
			continue
		}
		if !k.Valid() || k.Is4() || k.Proto != QUICCID || k.DstPort != 443 || k.SrcPort != 0 {
			t.Fatalf("CIDKey(%d bytes) = %+v", n, k)
		}
		got, ok := k.CID()
		if !ok || !bytes.Equal(got, cid) {
			t.Fatalf("CID of %d bytes: %x %v", n, got, ok)
		}
	}
	// The layout, byte for byte (docs/PROTOCOL.md).
	k, _ := CIDKey([]byte{0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 1, 2, 3, 4, 5, 6}, 4433)
	if k.Src != netip.MustParseAddr("::ffff:1.2.3.4") || k.Dst != netip.MustParseAddr("506::1200:0:0:0:0:0") {
		t.Fatalf("layout: %v %v", k.Src, k.Dst)
	}
	if !k.Valid() || k.String() != "quic-cid 00000000000000000000ffff010203040506 -> :4433" {
		t.Fatalf("valid %v, string %q", k.Valid(), k.String())
	}
	// Trailing zero bytes are part of the CID.
	a, _ := CIDKey([]byte{1, 2, 3, 4}, 443)
	b, _ := CIDKey([]byte{1, 2, 3, 4, 0}, 443)
	if a == b {
		t.Fatal("a CID and the same with a trailing zero share a key")
	}
	// Not CID keys: padding, length, port, family, proto.
	bad := []Key{}
	k1 := a
	k1.SrcPort = 1
	bad = append(bad, k1)
	k2 := a
	d := k2.Dst.As16()
	d[9] = 1
	k2.Dst = netip.AddrFrom16(d)
	bad = append(bad, k2)
	k3 := a
	s := k3.Src.As16()
	s[5] = 1 // beyond the length 4
	k3.Src = netip.AddrFrom16(s)
	bad = append(bad, k3)
	for _, l := range []byte{0, 3, 21, 255} {
		k4 := a
		d := k4.Dst.As16()
		d[4] = l
		k4.Dst = netip.AddrFrom16(d)
		bad = append(bad, k4)
	}
	bad = append(bad, Key{Src: netip.MustParseAddr("1.2.3.4"), Dst: netip.MustParseAddr("1.2.3.4"), Proto: QUICCID})
	k5 := a
	k5.Proto = UDP
	if !k5.Valid() {
		t.Fatal("the same addresses as UDP are a valid flow key")
	}
	for _, k := range bad {
		if _, ok := k.CID(); ok || k.Valid() {
			t.Errorf("%+v taken as a CID key", k)
		}
	}
}
