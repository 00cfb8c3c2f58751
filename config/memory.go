package config

import "fmt"

// DPDK memory model: what homingd allocates from the EAL's memory (dpdk.memory_mb), as
// measured with homingd itself (net_null ports, the smallest dpdk.memory_mb that starts;
// docs/CONFIG.md):
//
//	mbufs 16383 → 65535, tables small:          67 → 259 MiB: 4096 bytes a mbuf (--no-huge)
//	4095 mbufs, IPv4 table 1 Mi → 4 Mi:          46 → 128 MiB: 27 bytes an IPv4 session
//	4095 mbufs, IPv6 table 1 Mi:                 80 MiB:       61 bytes an IPv6 session
//	8191 mbufs, 1 Mi + 256 Ki (the defaults):    77 MiB;  4095 mbufs, tiny tables: 19 MiB
//
// Without hugepages EAL's memory is 4 KiB pages and a mempool object does not cross a
// page: one mbuf (2432 bytes) takes a whole page. With 2 MB hugepages it takes 2432.
// What is left, about 3 MiB, is EAL's own (memzones, rings, the lcores' state).
const (
	// MbufFootprintNoHuge is the memory of one mbuf without hugepages: a 4 KiB page.
	MbufFootprintNoHuge = 4096
	// EALOverhead is the DPDK memory homingd takes besides the mempool and the tables,
	// 2 to 3 MiB measured.
	EALOverhead = 3 << 20
	// queueFootprint allows per descriptor of a NIC queue for its hardware ring and its
	// software ring (PCI drivers take them from DPDK memory; the vdevs mostly do not).
	queueFootprint = 32

	// The table's layout (table/homing_table.h). IPv6: 8-entry buckets of 64 bytes
	// filled to 7 entries; a key slot of key + 8-byte value; a free list of 4 bytes a
	// slot; 1024 deferred groups of 16 bytes. IPv4: below. The QSBR variable.
	tableBucketBytes = 64
	tableBucketFill  = 7
	tableKey6Bytes   = 40
	tableFixedBytes  = 1024*16 + 32<<10
)

// TableMemory is the DPDK memory a table of cap4 IPv4 and cap6 IPv6 sessions takes: about
// 27 bytes an IPv4 session (one 64-byte bucket and 32 bytes of values per 3.5 sessions)
// and 61 an IPv6 one (one 64-byte bucket per 7 sessions). It
// follows table.MemSize, which a test in package table compares.
func TableMemory(cap4, cap6 int) int64 {
	family := func(capacity, klen int) int64 {
		nb := max((int64(capacity)+tableBucketFill-1)/tableBucketFill, 2)
		return nb*tableBucketBytes + int64(capacity+1)*int64(klen+8) + int64(capacity)*4
	}
	// IPv4: keys and owners in 64-byte buckets of 4, sized for 3.5 keys, and an 8-byte
	// value per entry.
	nb4 := max((2*int64(cap4)+6)/7, 2)
	return nb4*(tableBucketBytes+4*8) + family(cap6, tableKey6Bytes) + tableFixedBytes
}

// Memory is the DPDK memory homingd needs for c, by part.
type Memory struct {
	Mempool int64 // dpdk.mbufs × the footprint of one mbuf
	Tables  int64 // TableMemory(table.capacity4, table.capacity6)
	Other   int64 // EAL itself and the NIC queues' rings
}

// Total is the sum of the parts.
func (m Memory) Total() int64 { return m.Mempool + m.Tables + m.Other }

// TotalMiB is Total in MiB, rounded up.
func (m Memory) TotalMiB() int64 { return mib(m.Total()) }

// String lists the parts: "mempool 32 MiB, tables 43 MiB, EAL and queues 4 MiB".
func (m Memory) String() string {
	return fmt.Sprintf("mempool %d MiB, tables %d MiB, EAL and queues %d MiB", mib(m.Mempool), mib(m.Tables), mib(m.Other))
}

// mib rounds bytes up to MiB.
func mib(b int64) int64 { return (b + 1<<20 - 1) >> 20 }

// MemoryNeeded estimates the DPDK memory homingd takes with configuration c.
func (c *Config) MemoryNeeded() Memory {
	return memoryNeeded(c.DPDK.Hugepages, c.DPDK.Mbufs, c.DPDK.Workers, c.NIC.RxDesc+c.NIC.TxDesc,
		c.Table.Capacity4, c.Table.Capacity6)
}

func memoryNeeded(huge bool, mbufs, workers, desc, cap4, cap6 int) Memory {
	per := int64(MbufFootprintNoHuge)
	if huge {
		per = MbufFootprint
	}
	return Memory{
		Mempool: int64(mbufs) * per,
		Tables:  TableMemory(cap4, cap6),
		Other:   EALOverhead + int64(workers)*int64(desc)*queueFootprint,
	}
}

// memory checks that dpdk.memory_mb holds what homingd allocates in DPDK memory. Without
// hugepages EAL cannot take more than dpdk.memory_mb and the start fails; with hugepages
// it takes more pages than reserved for it, where there are any.
func (c *checker) memory(cfg *Config) {
	d := cfg.DPDK
	in := func(v, lo, hi int) bool { return v >= lo && v <= hi }
	if !in(d.MemoryMB, 32, 1<<20) || d.Mbufs <= 0 || !in(d.Workers, 1, MaxWorkers) ||
		!in(cfg.Table.Capacity4, 64, 1<<30) || !in(cfg.Table.Capacity6, 64, 1<<30) {
		return // out of range: reported already
	}
	m := cfg.MemoryNeeded()
	if m.Total() > int64(d.MemoryMB)<<20 {
		each := "4 KiB each without hugepages"
		if d.Hugepages {
			each = "2.4 KiB each with hugepages"
		}
		c.fail(ErrConflict, "dpdk.memory_mb", "%d MiB cannot hold what homingd takes from DPDK memory, %d MiB: %d mbufs %d MiB (%s), tables of %d IPv4 + %d IPv6 sessions %d MiB, EAL and queues %d MiB",
			d.MemoryMB, mib(m.Total()), d.Mbufs, mib(m.Mempool), each, cfg.Table.Capacity4, cfg.Table.Capacity6, mib(m.Tables), mib(m.Other))
	}
}
