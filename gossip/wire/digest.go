package wire

import (
	"github.com/homing-dev/homing/session"
)

// Digest summarises a set of sessions owned by one host: their number and the sum
// (mod 2^64) of a 64-bit hash of each (key, epoch). Both ends of a heartbeat compute it
// the same way (the sender over the sessions it owns, a receiver over the sessions it
// believes the sender owns), so that silent divergence shows as a mismatch. A sum,
// unlike a sorted hash, is updated in O(1) per change; a sum, unlike an XOR, does not
// cancel a session added twice.
type Digest struct {
	Count uint32
	Sum   uint64
}

// DigestLen is the encoded size of a Digest (count, then sum).
const DigestLen = 4 + 8

// Add counts (k, epoch) into d.
func (d *Digest) Add(k session.Key, epoch uint64) {
	d.Count++
	d.Sum += sessionHash(k, epoch)
}

// Remove takes (k, epoch) out of d.
func (d *Digest) Remove(k session.Key, epoch uint64) {
	d.Count--
	d.Sum -= sessionHash(k, epoch)
}

// DigestOf returns the digest of the sessions of owner host in m (for tests and tools).
func DigestOf(m map[session.Key]session.Owner, host uint16) Digest {
	var d Digest
	for k, o := range m {
		if o.Host == host {
			d.Add(k, o.Epoch)
		}
	}
	return d
}

// sessionHash hashes the wire encoding of an add record of (k, epoch) (owner 0) with
// FNV-1a 64, then mixes the result (SplitMix64's finalizer) so that sums of hashes of
// similar keys spread over all 64 bits. It is part of the protocol: every host must
// compute the same value.
func sessionHash(k session.Key, epoch uint64) uint64 {
	var buf [RecordAdd6Len]byte
	b := AppendRecord(buf[:0], Record{Op: OpAdd, Key: k, Owner: session.Owner{Epoch: epoch & session.MaxEpoch}})
	h := uint64(14695981039346656037)
	for _, c := range b {
		h ^= uint64(c)
		h *= 1099511628211
	}
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}
