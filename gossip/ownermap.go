package gossip

import (
	"crypto/rand"
	"encoding/binary"
	"iter"
	"math/bits"
	"net/netip"

	"github.com/homing-dev/homing/session"
)

// ownerMap is the ownership map: session key → entry, with about 33 bytes per IPv4
// session and 58 per IPv6 session at the capacity it was sized for (a Go
// map[session.Key]entry took ~135: a session.Key is 56 bytes with two netip.Addr
// that hold a pointer, the entry 32, and the map's groups rounded to a power of two).
//
// Layout: one open-addressing table per address family, linear probing, with the key
// packed into whole words and the entry beside it in the same slot:
//
//	IPv4 slot (3 words, 24 B)              IPv6 slot (6 words, 48 B)
//	 w0 src<<32 | dst                       w0,w1 src   w2,w3 dst
//	 w1 sport<<48 | dport<<32 | proto<<24   w4 sport<<48 | dport<<32 | proto<<24
//	    | meta (24 bits)                       | meta (24 bits)
//	 w2 epoch<<16 | host                    w5 epoch<<16 | host
//
// meta is the entry's incarnation, interned (incTable: 23-bit ids, reference-counted,
// so that a peer's many sessions share its incarnation's 8 bytes) and the listed mark
// of a repair (repair.go). A byte per slot (tags) holds 0 for an empty slot or 0x80 |
// 7 bits of the key's hash: a probe reads the tags, a cache line covers 64 slots, and
// compares a key only when its tag matches, so that the insert of a new key (which
// probes to the end of its cluster) costs one or two cache lines. The slot count
// follows the capacity (index = multiply-high of the hash and the slot count, no
// power-of-two rounding); the table grows by doubling beyond its highest load.
//
// Deletes shift the following keys of the cluster back (no tombstones: a map that
// churns forever never fills with them). Iteration (all) starts after an empty slot
// and re-reads a slot whose key changed under the loop body, so that the body may
// delete or overwrite the key it was given; any other write during an iteration is
// not allowed.
//
// The hash is keyed with a random seed per map: clients choose their ports and
// addresses, and must not be able to build long probe chains.
type ownerMap struct {
	v4, v6 famTable
	seed   [6]uint64
	incs   incTable
}

// The highest load before a table grows, in percent: IPv4 75 % (its 25-byte slot and
// tag take 33 B a session then; at 85 %, 29 B, inserts probe 2.7 times as far and the
// apply cost 20 % more: BenchmarkCost/apply/v4 244 vs 197 ns), IPv6 85 % (58 B a
// session; 75 % would take 65 B, over issue 20's 64).
const (
	maxLoad4   = 75
	maxLoad6   = 85
	maxLoadDen = 100
)

// newOwnerMap returns a map sized for n4 IPv4 and n6 IPv6 sessions.
func newOwnerMap(n4, n6 int) *ownerMap {
	m := &ownerMap{}
	var b [48]byte
	_, _ = rand.Read(b[:])
	for i := range m.seed {
		m.seed[i] = binary.LittleEndian.Uint64(b[i*8:]) | 1
	}
	m.v4.load, m.v6.load = maxLoad4, maxLoad6
	m.v4.init(3, slotsFor(n4, maxLoad4))
	m.v6.init(6, slotsFor(n6, maxLoad6))
	m.incs.byVal = make(map[uint64]uint32)
	return m
}

// slotsFor is the slot count that holds n keys within load percent.
func slotsFor(n int, load uint64) uint64 {
	return max(16, (uint64(max(n, 0))*maxLoadDen+load-1)/load+1)
}

// famTable is one address family's table.
type famTable struct {
	load  uint64 // the highest load, percent (maxLoad4, maxLoad6)
	w     int    // words per slot (the key is the first w-1, the owner the last)
	n     uint64 // slots
	count int
	tags  []uint8
	data  []uint64
}

func (t *famTable) init(w int, n uint64) {
	t.w, t.n, t.count = w, n, 0
	t.tags = make([]uint8, n)
	t.data = make([]uint64, n*uint64(w))
}

// pkey is a packed key (the first w-1 words) with its meta bits zero.
type pkey [5]uint64

const metaMask = 1<<24 - 1

// pack returns k's family table and packed key.
func (m *ownerMap) pack(k session.Key) (*famTable, pkey) {
	var p pkey
	tail := uint64(k.SrcPort)<<48 | uint64(k.DstPort)<<32 | uint64(k.Proto)<<24
	if k.Src.Is4() {
		s, d := k.Src.As4(), k.Dst.As4()
		p[0] = uint64(binary.BigEndian.Uint32(s[:]))<<32 | uint64(binary.BigEndian.Uint32(d[:]))
		p[1] = tail
		return &m.v4, p
	}
	s, d := k.Src.As16(), k.Dst.As16()
	p[0], p[1] = binary.BigEndian.Uint64(s[:8]), binary.BigEndian.Uint64(s[8:])
	p[2], p[3] = binary.BigEndian.Uint64(d[:8]), binary.BigEndian.Uint64(d[8:])
	p[4] = tail
	return &m.v6, p
}

// unpack is pack's inverse for a slot's key words.
func unpack(w []uint64) session.Key {
	var k session.Key
	tail := w[len(w)-1]
	if len(w) == 2 {
		var s, d [4]byte
		binary.BigEndian.PutUint32(s[:], uint32(w[0]>>32))
		binary.BigEndian.PutUint32(d[:], uint32(w[0]))
		k.Src, k.Dst = netip.AddrFrom4(s), netip.AddrFrom4(d)
	} else {
		var s, d [16]byte
		binary.BigEndian.PutUint64(s[:8], w[0])
		binary.BigEndian.PutUint64(s[8:], w[1])
		binary.BigEndian.PutUint64(d[:8], w[2])
		binary.BigEndian.PutUint64(d[8:], w[3])
		k.Src, k.Dst = netip.AddrFrom16(s), netip.AddrFrom16(d)
	}
	k.SrcPort, k.DstPort, k.Proto = uint16(tail>>48), uint16(tail>>32), uint8(tail>>24)
	return k
}

func mum(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
}

// hash of the first kw words of p (meta bits zero).
func (m *ownerMap) hash(p *pkey, kw int) uint64 {
	if kw == 2 {
		return mum(mum(p[0]^m.seed[0], p[1]^m.seed[1])^m.seed[2], m.seed[3])
	}
	h := mum(p[0]^m.seed[0], p[1]^m.seed[1]) ^ mum(p[2]^m.seed[2], p[3]^m.seed[3])
	return mum(h^p[4]^m.seed[4], m.seed[5])
}

func tagOf(h uint64) uint8 { return uint8(h) | 0x80 }

// home is the first slot of hash h.
func (t *famTable) home(h uint64) uint64 {
	hi, _ := bits.Mul64(h, t.n)
	return hi
}

// keyAt reports whether slot i holds p.
func (t *famTable) keyAt(i uint64, p *pkey) bool {
	s := t.data[i*uint64(t.w):]
	kw := t.w - 1
	if kw == 2 {
		return s[0] == p[0] && s[1]&^metaMask == p[1]
	}
	return s[0] == p[0] && s[1] == p[1] && s[2] == p[2] && s[3] == p[3] && s[4]&^metaMask == p[4]
}

// find returns the slot of p and true, or the empty slot that ends p's probe and false.
func (m *ownerMap) find(t *famTable, p *pkey) (uint64, bool) {
	return t.findH(p, m.hash(p, t.w-1))
}

// findH is find with p's hash h.
func (t *famTable) findH(p *pkey, h uint64) (uint64, bool) {
	tag := tagOf(h)
	i := t.home(h)
	for {
		switch t.tags[i] {
		case 0:
			return i, false
		case tag:
			if t.keyAt(i, p) {
				return i, true
			}
		}
		if i++; i == t.n {
			i = 0
		}
	}
}

// mref is a key packed and hashed once, for the batched paths (applyRecords): ref
// all the keys of a datagram, touch them (their tag and slot lines load in parallel
// instead of one miss after the other), then work on each.
type mref struct {
	t *famTable
	h uint64
	p pkey
}

// ref packs and hashes k.
func (m *ownerMap) ref(k session.Key, r *mref) {
	r.t, r.p = m.pack(k)
	r.h = m.hash(&r.p, r.t.w-1)
}

// touch loads r's first tag: called for a batch of refs before their lookups, so that
// the cache misses overlap. It returns a value to keep the load.
func (r *mref) touch() uint64 {
	return uint64(r.t.tags[r.t.home(r.h)])
}

// touchSlot loads the slot r's probe ends at (its key's, or the empty one a new key
// takes: with linear probing that is often lines away from the first), after touch.
func (r *mref) touchSlot() uint64 {
	i, _ := r.t.findH(&r.p, r.h)
	w := uint64(r.t.w)
	return r.t.data[i*w] + r.t.data[i*w+w-1]
}

// getRef is get of a ref.
func (m *ownerMap) getRef(r *mref) (entry, bool) {
	i, ok := r.t.findH(&r.p, r.h)
	if !ok {
		return entry{}, false
	}
	return m.entryAt(r.t, i), true
}

// entryAt decodes slot i's entry.
func (m *ownerMap) entryAt(t *famTable, i uint64) entry {
	s := t.data[i*uint64(t.w) : (i+1)*uint64(t.w)]
	meta := uint32(s[t.w-2] & metaMask)
	own := s[t.w-1]
	return entry{owner: session.Owner{Host: uint16(own), Epoch: own >> 16}, inc: m.incs.vals[meta>>1], listed: meta&1 != 0}
}

// get returns k's entry.
func (m *ownerMap) get(k session.Key) (entry, bool) {
	t, p := m.pack(k)
	i, ok := m.find(t, &p)
	if !ok {
		return entry{}, false
	}
	return m.entryAt(t, i), true
}

// put sets k's entry and returns the one it replaced.
func (m *ownerMap) put(k session.Key, e entry) (old entry, existed bool) {
	var r mref
	m.ref(k, &r)
	return m.putRef(&r, e)
}

// putRef is put of a ref.
func (m *ownerMap) putRef(r *mref, e entry) (old entry, existed bool) {
	t, p := r.t, &r.p
	i, ok := t.findH(p, r.h)
	w := uint64(t.w)
	s := t.data[i*w : (i+1)*w]
	var id uint32
	if ok {
		old = m.entryAt(t, i)
		oid := uint32(s[t.w-2]&metaMask) >> 1
		if old.inc == e.inc {
			id = oid
		} else {
			m.incs.release(oid)
			id = m.incs.acquire(e.inc)
		}
	} else {
		if uint64(t.count+1)*maxLoadDen > t.n*t.load {
			m.grow(t)
			i, _ = t.findH(p, r.h)
			s = t.data[i*w : (i+1)*w]
		}
		id = m.incs.acquire(e.inc)
		t.count++
		t.tags[i] = tagOf(r.h)
	}
	meta := uint64(id) << 1
	if e.listed {
		meta |= 1
	}
	if t.w == 3 {
		s[0], s[1] = p[0], p[1]|meta
	} else {
		s[0], s[1], s[2], s[3], s[4] = p[0], p[1], p[2], p[3], p[4]|meta
	}
	s[t.w-1] = e.owner.Epoch<<16 | uint64(e.owner.Host)
	return old, ok
}

// del removes k and returns its entry.
func (m *ownerMap) del(k session.Key) (entry, bool) {
	var r mref
	m.ref(k, &r)
	return m.delRef(&r)
}

// delRef is del of a ref.
func (m *ownerMap) delRef(r *mref) (entry, bool) {
	t := r.t
	i, ok := t.findH(&r.p, r.h)
	if !ok {
		return entry{}, false
	}
	old := m.entryAt(t, i)
	m.incs.release(uint32(t.data[i*uint64(t.w)+uint64(t.w-2)]&metaMask) >> 1)
	m.removeAt(t, i)
	return old, true
}

// removeAt empties slot i and shifts the rest of its cluster back.
func (m *ownerMap) removeAt(t *famTable, i uint64) {
	w := uint64(t.w)
	t.count--
	j := i
	for {
		if j++; j == t.n {
			j = 0
		}
		if t.tags[j] == 0 {
			break
		}
		var p pkey
		copy(p[:], t.data[j*w:j*w+w-1])
		p[t.w-2] &^= metaMask
		h := t.home(m.hash(&p, t.w-1))
		// The key at j may move to i unless its home lies cyclically in (i, j].
		if i <= j {
			if i < h && h <= j {
				continue
			}
		} else if i < h || h <= j {
			continue
		}
		t.tags[i] = t.tags[j]
		copy(t.data[i*w:i*w+w], t.data[j*w:j*w+w])
		i = j
	}
	t.tags[i] = 0
	clear(t.data[i*w : i*w+w])
}

// grow doubles t's slots and re-inserts its keys.
func (m *ownerMap) grow(t *famTable) {
	old := *t
	t.init(old.w, old.n*2)
	t.count = old.count
	w := uint64(t.w)
	for i := range old.n {
		if old.tags[i] == 0 {
			continue
		}
		var p pkey
		copy(p[:], old.data[i*w:i*w+w-1])
		p[t.w-2] &^= metaMask
		j, _ := m.find(t, &p)
		t.tags[j] = old.tags[i]
		copy(t.data[j*w:j*w+w], old.data[i*w:i*w+w])
	}
}

// len is the number of sessions.
func (m *ownerMap) len() int { return m.v4.count + m.v6.count }

// all iterates over the sessions (see ownerMap for what the loop body may change).
func (m *ownerMap) all() iter.Seq2[session.Key, entry] {
	return func(yield func(session.Key, entry) bool) {
		for _, t := range []*famTable{&m.v4, &m.v6} {
			if t.count == 0 {
				continue
			}
			start := uint64(0)
			for t.tags[start] != 0 {
				start++
			}
			w := uint64(t.w)
			for n := uint64(1); n <= t.n; {
				i := start + n
				if i >= t.n {
					i -= t.n
				}
				if t.tags[i] == 0 {
					n++
					continue
				}
				var p pkey
				copy(p[:], t.data[i*w:i*w+w-1])
				p[t.w-2] &^= metaMask
				if !yield(unpack(p[:t.w-1]), m.entryAt(t, i)) {
					return
				}
				if t.tags[i] != 0 && t.keyAt(i, &p) {
					n++ // unchanged or overwritten in place; otherwise read slot i again
				}
			}
		}
	}
}

// sweepListed ends a repair's reconcile for host's entries: it clears the listed mark
// of those that have it and, for each of the others, calls drop, which removes the
// entry if it returns true (keys are unpacked for the unlisted entries only).
func (m *ownerMap) sweepListed(host uint16, drop func(session.Key, entry) bool) {
	for _, t := range []*famTable{&m.v4, &m.v6} {
		if t.count == 0 {
			continue
		}
		start := uint64(0)
		for t.tags[start] != 0 {
			start++
		}
		w := uint64(t.w)
		for n := uint64(1); n <= t.n; {
			i := start + n
			if i >= t.n {
				i -= t.n
			}
			s := t.data[i*w : i*w+w]
			if t.tags[i] == 0 || uint16(s[w-1]) != host {
				n++
				continue
			}
			if s[w-2]&1 != 0 {
				s[w-2] &^= 1
				n++
				continue
			}
			var p pkey
			copy(p[:], s[:w-1])
			p[t.w-2] &^= metaMask
			if !drop(unpack(p[:t.w-1]), m.entryAt(t, i)) {
				n++
				continue
			}
			m.incs.release(uint32(s[w-2]&metaMask) >> 1)
			m.removeAt(t, i) // slot i is read again: a key may have shifted into it
		}
	}
}

// memBytes is the memory the tables hold (the slots and tags).
func (m *ownerMap) memBytes() int {
	return len(m.v4.tags) + 8*len(m.v4.data) + len(m.v6.tags) + 8*len(m.v6.data)
}

// incTable interns incarnations: a slot holds a 23-bit id, reference-counted by the
// slots that hold it, instead of the 8-byte value.
type incTable struct {
	vals  []uint64
	refs  []uint32
	byVal map[uint64]uint32
	free  []uint32
	// The last id acquired (most puts are of the same incarnation as the last).
	lastVal uint64
	lastID  uint32
	lastOK  bool
}

// maxIncIDs bounds the ids (23 bits of meta). Live ids are the incarnations that
// still own sessions: a few per host at most (an old incarnation's sessions go after
// the grace).
const maxIncIDs = 1 << 23

func (c *incTable) acquire(v uint64) uint32 {
	if c.lastOK && c.lastVal == v {
		c.refs[c.lastID]++
		return c.lastID
	}
	if id, ok := c.byVal[v]; ok {
		c.refs[id]++
		c.lastVal, c.lastID, c.lastOK = v, id, true
		return id
	}
	var id uint32
	if n := len(c.free); n > 0 {
		id = c.free[n-1]
		c.free = c.free[:n-1]
		c.vals[id], c.refs[id] = v, 1
	} else {
		if len(c.vals) == maxIncIDs {
			panic("gossip: more than 2^23 incarnations own sessions")
		}
		id = uint32(len(c.vals))
		c.vals = append(c.vals, v)
		c.refs = append(c.refs, 1)
	}
	c.byVal[v] = id
	c.lastVal, c.lastID, c.lastOK = v, id, true
	return id
}

func (c *incTable) release(id uint32) {
	if c.refs[id]--; c.refs[id] == 0 {
		delete(c.byVal, c.vals[id])
		c.free = append(c.free, id)
		if c.lastID == id {
			c.lastOK = false
		}
	}
}
