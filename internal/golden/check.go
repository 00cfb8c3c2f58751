package golden

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// ErrMismatch is wrapped by every error Check returns.
var ErrMismatch = errors.New("data-plane output does not match the golden vectors")

// Problem is one mismatch between the pipeline's output and the vectors.
type Problem struct {
	Case   string // the case it concerns; "" for an output frame no case accounts for
	Port   Port   // the output port
	Pos    int    // position of the frame in that port's output, -1 when there is none
	Field  string // what differs: "ipv4.checksum (offset 24)", "order", "missing", ...
	Want   string
	Got    string
	Detail string // hex dumps, one or more lines
}

func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.Port.String())
	if p.Pos >= 0 {
		fmt.Fprintf(&b, "[%d]", p.Pos)
	}
	name := p.Case
	if name == "" {
		name = "(no case)"
	}
	fmt.Fprintf(&b, " %s: %s: want %s, got %s", name, p.Field, p.Want, p.Got)
	if p.Detail != "" {
		for _, l := range strings.Split(strings.TrimRight(p.Detail, "\n"), "\n") {
			b.WriteString("\n    ")
			b.WriteString(l)
		}
	}
	return b.String()
}

// MismatchError lists every problem Check found. errors.Is(err, ErrMismatch) holds.
type MismatchError struct {
	Problems []Problem
}

func (e *MismatchError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%v: %d problem(s):", ErrMismatch, len(e.Problems))
	for _, p := range e.Problems {
		b.WriteString("\n  ")
		b.WriteString(strings.ReplaceAll(p.String(), "\n", "\n  "))
	}
	return b.String()
}

func (e *MismatchError) Unwrap() error { return ErrMismatch }

// Check compares what the pipeline emitted on each port (frames in emission order) with
// the expectations of Cases, and returns nil or a *MismatchError listing every problem by
// case name:
//
//   - every expected frame is there exactly once, and nothing else is (counts);
//   - unchanged frames are byte for byte the input; decapsulated frames are byte for byte
//     the expected Ethernet header plus inner packet;
//   - encapsulated frames are byte for byte the expected frame except the UDP source port;
//     in addition their outer IPv4 checksum is verified on the received header, they are
//     decapsulated (decapGUE) and the result compared with the original inner packet, and
//     gopacket must decode them;
//   - the UDP source port is in [SrcPortMin, SrcPortMax] and the same for every frame of
//     one session;
//   - frames from one input port keep their relative order on each output port (frames
//     from the two input ports may interleave on the NIC port);
//   - Drop cases leave nothing on either port (their input, seen on a port, is named as
//     such; the counters they move are the caller's to compare with WantCounters).
//
// A frame that differs from every expectation is paired, when it is close enough, with
// the expectation it resembles most, and the differences are reported field by field.
func Check(nicOut, kernelOut [][]byte) error {
	return check(Cases(), nicOut, kernelOut)
}

func check(cases []Case, nicOut, kernelOut [][]byte) error {
	var ps []Problem
	ps = append(ps, checkPort(cases, PortNIC, nicOut)...)
	ps = append(ps, checkPort(cases, PortKernel, kernelOut)...)
	if len(ps) == 0 {
		return nil
	}
	return &MismatchError{Problems: ps}
}

// slot is one expected output frame.
type slot struct {
	c     *Case
	idx   int  // index of the case: input order
	pos   int  // position of the output frame matched to it, -1 if none
	exact bool // matched byte for byte (modulo the UDP source port of Encap)
}

// matchKey is the identity of a frame for exact matching: Encap frames compare with the
// UDP source port masked.
func matchKey(k Kind, f []byte) string {
	if k != Encap {
		return "x" + string(f)
	}
	if len(f) < offUDPSport+2 {
		return "e" + string(f)
	}
	m := clone(f)
	m[offUDPSport], m[offUDPSport+1] = 0, 0
	return "e" + string(m)
}

func checkPort(cases []Case, port Port, out [][]byte) []Problem {
	var slots []*slot
	byKey := map[string][]*slot{}
	for i := range cases {
		w := cases[i].Want
		if w.Out() != port || w.Kind == Drop {
			continue
		}
		s := &slot{c: &cases[i], idx: i, pos: -1}
		slots = append(slots, s)
		k := matchKey(w.Kind, w.Frame)
		byKey[k] = append(byKey[k], s)
	}
	matched := make([]*slot, len(out))

	// 1. Exact matches, the first unmatched expectation of equal bytes.
	for j, f := range out {
		var best *slot
		for _, k := range []string{matchKey(ToKernel, f), matchKey(Encap, f)} {
			for _, s := range byKey[k] {
				if s.pos < 0 && (best == nil || s.idx < best.idx) {
					best = s
				}
				if s.pos < 0 {
					break
				}
			}
		}
		if best != nil {
			best.pos, best.exact, matched[j] = j, true, best
		}
	}

	// 2. Pair each remaining frame with the unmatched expectation it resembles most,
	// unless it is recognisably something else: some case's input that should have been
	// transformed, or some case's output (a duplicate, or meant for the other port).
	for j, f := range out {
		if matched[j] != nil {
			continue
		}
		if _, what := identify(cases, port, f); what != "" {
			continue
		}
		var best *slot
		bestD := -1
		for _, s := range slots {
			if s.pos >= 0 {
				continue
			}
			d := distance(s.c.Want, f)
			if bestD < 0 || d < bestD {
				best, bestD = s, d
			}
		}
		if best != nil && bestD*8 <= max(len(f), len(best.c.Want.Frame)) {
			best.pos, matched[j] = j, best
		}
	}

	var ps []Problem
	// 3. Each output frame.
	for j, f := range out {
		s := matched[j]
		switch {
		case s == nil:
			ps = append(ps, unexpected(cases, port, j, f))
		case s.c.Want.Kind == Encap:
			ps = append(ps, compareEncap(s.c, port, j, f)...)
		case !s.exact:
			ps = append(ps, compareBytes(s.c, port, j, f)...)
		}
	}
	// 4. Missing frames.
	for _, s := range slots {
		if s.pos < 0 {
			ps = append(ps, Problem{Case: s.c.Name, Port: port, Pos: -1, Field: "missing",
				Want: fmt.Sprintf("%s frame (%s, %d bytes in)", s.c.Want.Kind, s.c.Why, len(s.c.Frame)),
				Got:  "none that matches"})
		}
	}
	// 5. Order, per input port: the frames outside a longest run of increasing output
	// positions (in input order) are the ones out of order.
	for _, in := range []Port{PortNIC, PortKernel} {
		var seq []*slot
		for _, s := range slots {
			if s.c.In == in && s.pos >= 0 {
				seq = append(seq, s)
			}
		}
		inOrder := longestIncreasing(seq)
		for i, s := range seq {
			if inOrder[i] {
				continue
			}
			var want []string
			if i > 0 {
				want = append(want, fmt.Sprintf("after %s (at %d)", seq[i-1].c.Name, seq[i-1].pos))
			}
			if i+1 < len(seq) {
				want = append(want, fmt.Sprintf("before %s (at %d)", seq[i+1].c.Name, seq[i+1].pos))
			}
			ps = append(ps, Problem{Case: s.c.Name, Port: port, Pos: s.pos, Field: "order",
				Want: strings.Join(want, " and ") + ", their order on the " + in.String() + " input",
				Got:  fmt.Sprintf("position %d", s.pos)})
		}
	}
	// 6. UDP source ports of encapsulated frames.
	ps = append(ps, checkSourcePorts(slots, port, out)...)
	// 7. Count.
	if len(out) != len(slots) {
		ps = append(ps, Problem{Port: port, Pos: -1, Field: "frame count",
			Want: fmt.Sprint(len(slots)), Got: fmt.Sprint(len(out))})
	}
	return ps
}

// longestIncreasing marks a longest subsequence of seq whose output positions increase.
func longestIncreasing(seq []*slot) []bool {
	n := len(seq)
	length, prev := make([]int, n), make([]int, n)
	best := -1
	for i := range seq {
		length[i], prev[i] = 1, -1
		for j := 0; j < i; j++ {
			if seq[j].pos < seq[i].pos && length[j]+1 > length[i] {
				length[i], prev[i] = length[j]+1, j
			}
		}
		if best < 0 || length[i] > length[best] {
			best = i
		}
	}
	in := make([]bool, n)
	for i := best; i >= 0; i = prev[i] {
		in[i] = true
	}
	return in
}

// distance counts differing bytes (the UDP source port of Encap excluded) plus the
// difference in length.
func distance(w Want, f []byte) int {
	want := w.Frame
	n := min(len(want), len(f))
	d := max(len(want), len(f)) - n
	for i := 0; i < n; i++ {
		if w.Kind == Encap && (i == offUDPSport || i == offUDPSport+1) {
			continue
		}
		if want[i] != f[i] {
			d++
		}
	}
	return d
}

func unexpected(cases []Case, port Port, pos int, f []byte) Problem {
	p := Problem{Port: port, Pos: pos, Field: "unexpected frame", Want: "nothing", Got: summarize(f, layers.LayerTypeEthernet),
		Detail: hexdump(f, 64)}
	if c, what := identify(cases, port, f); c != nil {
		p.Case, p.Want = c.Name, "nothing: "+what
	}
	return p
}

// identify recognises a frame output on port as some case's input that should have been
// transformed, or as some case's expected output (a second copy, or for the other port).
func identify(cases []Case, port Port, f []byte) (*Case, string) {
	for i := range cases {
		c := &cases[i]
		switch {
		case bytes.Equal(f, c.Frame) && c.Want.Kind == Drop:
			return c, fmt.Sprintf("this is the unchanged input of case %s, which must be dropped (%s)", c.Name, c.Why)
		case bytes.Equal(f, c.Frame) && c.Want.Kind != ToKernel && c.Want.Kind != ToNIC:
			return c, fmt.Sprintf("this is the unchanged input of case %s, which wants %s on the %s port (%s)",
				c.Name, c.Want.Kind, c.Want.Out(), c.Why)
		case matchKey(c.Want.Kind, f) == matchKey(c.Want.Kind, c.Want.Frame):
			if c.Want.Out() != port {
				return c, fmt.Sprintf("this is case %s's output, expected on the %s port", c.Name, c.Want.Out())
			}
			return c, fmt.Sprintf("a second copy of case %s's output", c.Name)
		}
	}
	return nil, ""
}

// compareBytes reports how an output frame differs from an exact expectation.
func compareBytes(c *Case, port Port, pos int, f []byte) []Problem {
	return diffProblems(c.Name, port, pos, "", c.Want.Frame, f, layers.LayerTypeEthernet)
}

// encapField is a fixed field of the outer headers of an encapsulated frame.
type encapField struct {
	name   string
	off, n int
	format func([]byte) string
}

var encapFields = []encapField{
	{"ethernet.dst", 0, 6, fmtMAC},
	{"ethernet.src", 6, 6, fmtMAC},
	{"ethernet.type", 12, 2, fmtHex},
	{"ipv4.version_ihl", 14, 1, fmtHex},
	{"ipv4.tos", 15, 1, fmtHex},
	{"ipv4.total_length", 16, 2, fmtDec},
	{"ipv4.id", 18, 2, fmtHex},
	{"ipv4.flags_fragment", 20, 2, fmtHex},
	{"ipv4.ttl", 22, 1, fmtDec},
	{"ipv4.protocol", 23, 1, fmtDec},
	{"ipv4.src", 26, 4, fmtIP},
	{"ipv4.dst", 30, 4, fmtIP},
	{"udp.dst_port", 36, 2, fmtDec},
	{"udp.length", 38, 2, fmtDec},
	{"udp.checksum", 40, 2, fmtHex},
	{"gue", 42, 4, fmtBytes},
}

// compareEncap checks an output frame against an Encap expectation field by field,
// verifies its IPv4 checksum, decapsulates it and compares the inner packet.
func compareEncap(c *Case, port Port, pos int, f []byte) []Problem {
	w := c.Want
	var ps []Problem
	add := func(field, want, got, detail string) {
		ps = append(ps, Problem{Case: c.Name, Port: port, Pos: pos, Field: field, Want: want, Got: got, Detail: detail})
	}
	if len(f) < offInner {
		add("frame length", fmt.Sprintf("%d bytes (46 of outer headers + inner %d)", len(w.Frame), len(w.Inner)),
			fmt.Sprintf("%d bytes", len(f)), hexdump(f, 64))
		return ps
	}
	for _, fl := range encapFields {
		want, got := w.Frame[fl.off:fl.off+fl.n], f[fl.off:fl.off+fl.n]
		if bytes.Equal(want, got) {
			continue
		}
		ws := fl.format(want)
		switch fl.name {
		case "ipv4.total_length":
			ws += fmt.Sprintf(" (20+8+4+inner %d)", len(w.Inner))
		case "udp.length":
			ws += fmt.Sprintf(" (8+4+inner %d)", len(w.Inner))
		}
		add(fmt.Sprintf("%s (offset %d)", fl.name, fl.off), ws, fl.format(got), "")
	}
	if sum, have := ipv4Checksum(f[offIP:offIP+20]), binary.BigEndian.Uint16(f[offIPCsum:]); sum != have {
		add("ipv4.checksum (offset 24)", fmt.Sprintf("%#04x (computed over the received header)", sum),
			fmt.Sprintf("%#04x", have), "")
	}
	if len(f) != len(w.Frame) {
		add("frame length", fmt.Sprintf("%d bytes (46 of outer headers + inner %d)", len(w.Frame), len(w.Inner)),
			fmt.Sprintf("%d bytes", len(f)), "")
	}
	_, inner, err := decapGUE(f)
	if err != nil {
		add("decap", "the inner packet of "+c.Name, err.Error(), hexdump(f, 96))
	}
	if (err == nil || errors.Is(err, errBadInner)) && !bytes.Equal(inner, w.Inner) {
		first := layers.LayerTypeIPv4
		if len(w.Inner) > 0 && w.Inner[0]>>4 == 6 {
			first = layers.LayerTypeIPv6
		}
		ps = append(ps, diffProblems(c.Name, port, pos, "inner.", w.Inner, inner, first)...)
	}
	if el := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.NoCopy).ErrorLayer(); el != nil {
		add("gopacket decode", "no error", el.Error().Error(), "")
	}
	return ps
}

func checkSourcePorts(slots []*slot, port Port, out [][]byte) []Problem {
	var ps []Problem
	type use struct {
		name string
		pos  int
		sp   uint16
	}
	bySession := map[string][]use{}
	var order []string
	for _, s := range slots {
		if s.c.Want.Kind != Encap || s.pos < 0 || len(out[s.pos]) < offUDPSport+2 {
			continue
		}
		sp := binary.BigEndian.Uint16(out[s.pos][offUDPSport:])
		if sp < SrcPortMin {
			ps = append(ps, Problem{Case: s.c.Name, Port: port, Pos: s.pos, Field: "udp.src_port (offset 34)",
				Want: fmt.Sprintf("in [%d, %d]", SrcPortMin, SrcPortMax), Got: fmt.Sprint(sp)})
		}
		k := s.c.Want.Session.String()
		if _, ok := bySession[k]; !ok {
			order = append(order, k)
		}
		bySession[k] = append(bySession[k], use{s.c.Name, s.pos, sp})
	}
	for _, k := range order {
		us := bySession[k]
		distinct := map[uint16]bool{}
		for _, u := range us {
			distinct[u.sp] = true
		}
		if len(distinct) < 2 {
			continue
		}
		var names, got []string
		for _, u := range us {
			names = append(names, u.name)
			got = append(got, fmt.Sprintf("%s@%d=%d", u.name, u.pos, u.sp))
		}
		ps = append(ps, Problem{Case: strings.Join(names, ","), Port: port, Pos: -1, Field: "udp.src_port (offset 34)",
			Want: "one source port for session " + k, Got: strings.Join(got, " ")})
	}
	return ps
}

// diffProblems reports the differences between want and got, one problem per differing
// field (fields named from gopacket's decoding of want), the first with a hex dump.
func diffProblems(name string, port Port, pos int, prefix string, want, got []byte, first gopacket.LayerType) []Problem {
	const maxFields = 8
	fieldOf := annotator(want, first)
	var ps []Problem
	n := min(len(want), len(got))
	extra := 0
	for i := 0; i < n; {
		if want[i] == got[i] {
			i++
			continue
		}
		field := fieldOf(i)
		// The run of this field's bytes from i to its last difference, with gaps of
		// equal bytes shorter than 4, and 16 bytes at most.
		j := i + 1
		for k := i + 1; k < n && k-i < 16 && fieldOf(k) == field; k++ {
			if want[k] != got[k] {
				j = k + 1
			} else if k-j >= 3 {
				break
			}
		}
		if len(ps) < maxFields {
			ps = append(ps, Problem{Case: name, Port: port, Pos: pos,
				Field: fmt.Sprintf("%s%s (offset %d)", prefix, field, i),
				Want:  fmtBytes(want[i:j]), Got: fmtBytes(got[i:j])})
		} else {
			extra++
		}
		i = j
	}
	if extra > 0 {
		ps = append(ps, Problem{Case: name, Port: port, Pos: pos, Field: prefix + "more fields",
			Want: "equal", Got: fmt.Sprintf("%d more differing field(s)", extra)})
	}
	if len(want) != len(got) {
		p := Problem{Case: name, Port: port, Pos: pos, Field: prefix + "length",
			Want: fmt.Sprintf("%d bytes", len(want)), Got: fmt.Sprintf("%d bytes", len(got))}
		if len(got) > len(want) {
			p.Got += fmt.Sprintf(" (extra at %d: %s)", len(want), fmtBytes(got[len(want):min(len(got), len(want)+16)]))
		} else {
			p.Got += fmt.Sprintf(" (missing from %d, %s: %s)", len(got), fieldOf(len(got)), fmtBytes(want[len(got):min(len(want), len(got)+16)]))
		}
		ps = append(ps, p)
	}
	if len(ps) > 0 {
		ps[0].Detail = diffDump(want, got)
	}
	return ps
}

// annotator names the field of each byte offset of b, from gopacket's decoding of b.
func annotator(b []byte, first gopacket.LayerType) func(int) string {
	type span struct {
		start, end int
		lt         gopacket.LayerType
	}
	var spans []span
	off := 0
	for _, l := range gopacket.NewPacket(b, first, gopacket.NoCopy).Layers() {
		n := len(l.LayerContents())
		spans = append(spans, span{off, off + n, l.LayerType()})
		off += n
	}
	return func(o int) string {
		for _, s := range spans {
			if o >= s.start && o < s.end {
				return fieldName(s.lt, o-s.start)
			}
		}
		return "trailer"
	}
}

type fieldRange struct {
	end  int // exclusive
	name string
}

var fieldTables = map[gopacket.LayerType][]fieldRange{
	layers.LayerTypeEthernet: {{6, "dst"}, {12, "src"}, {14, "type"}},
	layers.LayerTypeDot1Q:    {{2, "tci"}, {4, "type"}},
	layers.LayerTypeIPv4: {{1, "version_ihl"}, {2, "tos"}, {4, "total_length"}, {6, "id"}, {8, "flags_fragment"},
		{9, "ttl"}, {10, "protocol"}, {12, "checksum"}, {16, "src"}, {20, "dst"}, {60, "options"}},
	layers.LayerTypeIPv6: {{4, "version_class_flow"}, {6, "payload_length"}, {7, "next_header"}, {8, "hop_limit"},
		{24, "src"}, {40, "dst"}},
	layers.LayerTypeTCP: {{2, "src_port"}, {4, "dst_port"}, {8, "seq"}, {12, "ack"}, {13, "data_offset"}, {14, "flags"},
		{16, "window"}, {18, "checksum"}, {20, "urgent"}, {60, "options"}},
	layers.LayerTypeUDP: {{2, "src_port"}, {4, "dst_port"}, {6, "length"}, {8, "checksum"}},
}

func fieldName(lt gopacket.LayerType, o int) string {
	layer := strings.ToLower(lt.String())
	for _, r := range fieldTables[lt] {
		if o < r.end {
			return layer + "." + r.name
		}
	}
	return layer
}

// summarize describes a frame on one line, from gopacket's decoding.
func summarize(f []byte, first gopacket.LayerType) string {
	pkt := gopacket.NewPacket(f, first, gopacket.NoCopy)
	var names []string
	for _, l := range pkt.Layers() {
		names = append(names, l.LayerType().String())
	}
	s := fmt.Sprintf("%d bytes %s", len(f), strings.Join(names, "/"))
	if nl := pkt.NetworkLayer(); nl != nil {
		s += " " + nl.NetworkFlow().String()
	}
	if tl := pkt.TransportLayer(); tl != nil {
		s += " " + tl.TransportFlow().String()
	}
	return s
}

// diffDump shows want and got row by row (16 bytes) around the differences, with the
// differing bytes marked, at most 6 rows.
func diffDump(want, got []byte) string {
	n := max(len(want), len(got))
	var rows []int
	for r := 0; r < n; r += 16 {
		if !bytes.Equal(window(want, r), window(got, r)) {
			rows = append(rows, r)
		}
	}
	var b strings.Builder
	for i, r := range rows {
		if i == 6 {
			fmt.Fprintf(&b, "... %d more differing row(s)\n", len(rows)-i)
			break
		}
		w, g := window(want, r), window(got, r)
		fmt.Fprintf(&b, "want %04x: %s\n", r, hexRow(w))
		fmt.Fprintf(&b, "got  %04x: %s\n", r, hexRow(g))
		var m strings.Builder
		for k := 0; k < 16; k++ {
			if k >= len(w) && k >= len(g) {
				break
			}
			if k < len(w) && k < len(g) && w[k] == g[k] {
				m.WriteString("   ")
			} else {
				m.WriteString("^^ ")
			}
		}
		fmt.Fprintf(&b, "           %s\n", strings.TrimRight(m.String(), " "))
	}
	return b.String()
}

func window(b []byte, r int) []byte {
	if r >= len(b) {
		return nil
	}
	return b[r:min(len(b), r+16)]
}

func hexRow(b []byte) string {
	var s strings.Builder
	for i := 0; i < 16; i++ {
		if i < len(b) {
			fmt.Fprintf(&s, "%02x ", b[i])
		} else {
			s.WriteString("   ")
		}
	}
	return strings.TrimRight(s.String(), " ")
}

// hexdump shows the first limit bytes of b.
func hexdump(b []byte, limit int) string {
	var s strings.Builder
	for r := 0; r < len(b) && r < limit; r += 16 {
		fmt.Fprintf(&s, "%04x: %s\n", r, hexRow(b[r:min(len(b), r+16, limit)]))
	}
	if len(b) > limit {
		fmt.Fprintf(&s, "... (%d bytes)\n", len(b))
	}
	return s.String()
}

func fmtMAC(b []byte) string   { return net.HardwareAddr(b).String() }
func fmtBytes(b []byte) string { return fmt.Sprintf("% x", b) }
func fmtIP(b []byte) string {
	a, _ := netip.AddrFromSlice(b)
	return a.String()
}

func fmtHex(b []byte) string {
	if len(b) == 1 {
		return fmt.Sprintf("%#02x", b[0])
	}
	return fmt.Sprintf("%#04x", binary.BigEndian.Uint16(b))
}

func fmtDec(b []byte) string {
	if len(b) == 1 {
		return fmt.Sprint(b[0])
	}
	return fmt.Sprint(binary.BigEndian.Uint16(b))
}
