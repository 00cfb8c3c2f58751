// Package wire is the gossip protocol's formats, and nothing else: it holds no state,
// starts no goroutine and does no I/O but ReadFrame's read from a stream and
// LoadKeyFile's read of a file.
//
//   - datagram.go: the datagram (header, body, tag) every message shares, its types and
//     the reject reasons every decoder wraps;
//   - record.go: ownership records, full and compact (RecordWriter), and epochs;
//   - heartbeat.go: the heartbeat body (a host's announcement), digest.go its digest of
//     a host's sessions;
//   - repair.go, nack.go: the frames of the unicast repair and NACK exchanges;
//   - key.go: the key file, the key ring, and sealing (Sealer) and checking (Opener)
//     of datagrams and frames.
//
// Types are byte slices with accessors or plain structs with Append and Parse functions
// (gVisor's header package style); every decoder has a fuzz test (fuzz_test.go).
// docs/PROTOCOL.md describes the protocol as a whole; package gossip runs it.
package wire
