package main

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/homing-dev/homing/ctl"
)

// pcapngWriter writes a capture as pcapng (https://www.ietf.org/archive/id/draft-ietf-opsawg-pcapng):
// one section, one Ethernet interface per capture point (nic-rx, nic-tx, tap-rx, tap-tx,
// nanosecond timestamps), and one enhanced packet block per record whose comment holds
// the class, the fate, the lcore and the queue. tcpdump, tshark and Wireshark read it
// (tshark shows the comments as frame.comment).
type pcapngWriter struct {
	w   *bufio.Writer
	err error
}

// pcapngPoints are the interfaces, in their order (the interface id is the index).
var pcapngPoints = []string{"nic-rx", "nic-tx", "tap-rx", "tap-tx"}

func newPcapngWriter(w io.Writer) *pcapngWriter {
	return &pcapngWriter{w: bufio.NewWriterSize(w, 256<<10)}
}

var le = binary.LittleEndian

// option appends a pcapng option (code, value padded to 4 bytes).
func option(b []byte, code uint16, v []byte) []byte {
	b = le.AppendUint16(b, code)
	b = le.AppendUint16(b, uint16(len(v)))
	b = append(b, v...)
	for len(v)%4 != 0 {
		b = append(b, 0)
		v = append(v, 0)
	}
	return b
}

// block writes one block: type, total length, body, total length.
func (p *pcapngWriter) block(typ uint32, body []byte) error {
	if p.err != nil {
		return p.err
	}
	n := uint32(12 + len(body))
	b := make([]byte, 0, n)
	b = le.AppendUint32(b, typ)
	b = le.AppendUint32(b, n)
	b = append(b, body...)
	b = le.AppendUint32(b, n)
	_, p.err = p.w.Write(b)
	return p.err
}

// header writes the section header and the four interfaces.
func (p *pcapngWriter) header(h ctl.CaptureHead) error {
	var shb []byte
	shb = le.AppendUint32(shb, 0x1a2b3c4d)
	shb = le.AppendUint16(shb, 1)
	shb = le.AppendUint16(shb, 0)
	shb = le.AppendUint64(shb, ^uint64(0)) // section length unknown
	shb = option(shb, 4, []byte("homingctl capture"))
	shb = option(shb, 1, []byte(fmt.Sprintf("filter %q, %d lcores", h.Filter, h.Lcores)))
	shb = le.AppendUint32(shb, 0) // opt_endofopt
	if err := p.block(0x0a0d0d0a, shb); err != nil {
		return err
	}
	for _, name := range pcapngPoints {
		port := h.NICPort
		if name[:3] == "tap" {
			port = h.TAPPort
		}
		snap := h.Snaplen
		if snap == 0 {
			snap = 65535
		}
		var idb []byte
		idb = le.AppendUint16(idb, 1) // LINKTYPE_ETHERNET
		idb = le.AppendUint16(idb, 0)
		idb = le.AppendUint32(idb, uint32(snap))
		idb = option(idb, 2, []byte(name))                                               // if_name
		idb = option(idb, 3, []byte(fmt.Sprintf("homing %s, DPDK port %d", name, port))) // if_description
		idb = option(idb, 9, []byte{9})                                                  // if_tsresol: nanoseconds
		idb = le.AppendUint32(idb, 0)
		if err := p.block(1, idb); err != nil {
			return err
		}
	}
	return nil
}

// write writes one record as an enhanced packet block.
func (p *pcapngWriter) write(r ctl.CaptureRecord, _ ctl.CaptureHead) error {
	id := -1
	for i, n := range pcapngPoints {
		if n == r.Point {
			id = i
		}
	}
	if id < 0 {
		return fmt.Errorf("capture: record of unknown point %q", r.Point)
	}
	ts := uint64(r.TimeNS)
	var epb []byte
	epb = le.AppendUint32(epb, uint32(id))
	epb = le.AppendUint32(epb, uint32(ts>>32))
	epb = le.AppendUint32(epb, uint32(ts))
	epb = le.AppendUint32(epb, uint32(len(r.Data)))
	epb = le.AppendUint32(epb, uint32(r.Len))
	epb = append(epb, r.Data...)
	for len(epb)%4 != 0 {
		epb = append(epb, 0)
	}
	comment := fmt.Sprintf("class=%s fate=%s lcore=%d queue=%d", r.Class, r.Fate, r.Lcore, r.Queue)
	if r.Lookup != "" {
		comment += fmt.Sprintf(" lookup=%s owner=%d epoch=%d", r.Lookup, r.Owner, r.Epoch)
	}
	epb = option(epb, 1, []byte(comment))
	epb = le.AppendUint32(epb, 0)
	return p.block(6, epb)
}

func (p *pcapngWriter) flush() error {
	if p.err != nil {
		return p.err
	}
	return p.w.Flush()
}
