package golden

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

// FuzzDecapGUE: the checker's decapsulator never panics, returns a slice of its input
// whose length agrees with the outer and inner headers, and what it accepts survives a
// re-encapsulation.
func FuzzDecapGUE(f *testing.F) {
	for _, c := range Cases() {
		if c.Want.Kind == Encap {
			f.Add(c.Want.Frame)
		}
		f.Add(c.Frame)
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		proto, inner, err := decapGUE(frame)
		if err != nil {
			if !errors.Is(err, errNotEncap) && !errors.Is(err, errBadInner) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		total := int(binary.BigEndian.Uint16(frame[offIPLen:]))
		if len(inner) != total-(offInner-offIP) || !bytes.Equal(inner, frame[offInner:offIP+total]) {
			t.Fatalf("inner %d bytes, IPv4 total length %d", len(inner), total)
		}
		if (proto == gueProtoIPv4) != (inner[0]>>4 == 4) {
			t.Fatalf("proto %d, inner version %d", proto, inner[0]>>4)
		}
		re := encapFrame(peer2(), inner)
		p2, inner2, err := decapGUE(re)
		if err != nil || p2 != proto || !bytes.Equal(inner2, inner) {
			t.Fatalf("re-encapsulation: %v", err)
		}
	})
}

// FuzzCheck: Check never panics on arbitrary output, and accepts a changed output only
// when the change is confined to the UDP source port of an encapsulated frame.
func FuzzCheck(f *testing.F) {
	nicIn, kernelIn := refInputs()
	nic, kernel := newRefPipeline().run(nicIn, kernelIn, false)
	for i, fr := range FuzzSeeds() {
		f.Add(fr, uint8(i), i%2 == 0, false)
	}
	f.Add(nic[0], uint8(0), true, true)
	f.Add(nic[1][:40], uint8(1), true, false)
	f.Add([]byte{}, uint8(3), false, true)
	f.Fuzz(func(t *testing.T, frame []byte, at uint8, onNIC, insert bool) {
		out := [][][]byte{copyFrames(kernel), copyFrames(nic)}
		k := 0
		if onNIC {
			k = 1
		}
		i := int(at) % len(out[k])
		var old []byte
		if insert {
			out[k] = append(out[k][:i:i], append([][]byte{frame}, out[k][i:]...)...)
		} else {
			old = out[k][i]
			out[k][i] = frame
		}
		err := Check(out[1], out[0])
		if err != nil {
			var me *MismatchError
			if !errors.As(err, &me) || len(me.Problems) == 0 || !errors.Is(err, ErrMismatch) {
				t.Fatalf("error %v", err)
			}
			_ = err.Error()
			return
		}
		if insert || len(old) != len(frame) {
			t.Fatal("Check accepted an inserted or resized frame")
		}
		for j := range old {
			if old[j] != frame[j] && (!onNIC || (j != offUDPSport && j != offUDPSport+1)) {
				t.Fatalf("Check accepted a change at byte %d", j)
			}
		}
	})
}

// FuzzReadPcap: the reader never panics, and what it reads writes back to the same frames.
func FuzzReadPcap(f *testing.F) {
	var buf bytes.Buffer
	if err := writePcap(&buf, FuzzSeeds()[:4]); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Add(buf.Bytes()[:24])
	f.Fuzz(func(t *testing.T, data []byte) {
		frames, err := readPcap(bytes.NewReader(data))
		if err != nil {
			return
		}
		var b bytes.Buffer
		if err := writePcap(&b, frames); err != nil {
			for _, fr := range frames {
				if len(fr) > Snaplen && errors.Is(err, ErrSnaplen) {
					return
				}
			}
			t.Fatal(err)
		}
		again, err := readPcap(&b)
		if err != nil || len(again) != len(frames) {
			t.Fatalf("round trip: %d frames, %v", len(again), err)
		}
		for i := range frames {
			if !bytes.Equal(frames[i], again[i]) {
				t.Fatalf("frame %d differs", i)
			}
		}
	})
}
