package config

import (
	"errors"
	"strings"
	"testing"
)

// TestMemoryModel holds the estimate to the smallest dpdk.memory_mb with which homingd
// started (--no-huge, net_null ports, one worker, 1024 descriptors; measured by bisection
// on the development machine, see memory.go): never below it, at most 2 MiB above.
func TestMemoryModel(t *testing.T) {
	for _, m := range []struct {
		mbufs, cap4, cap6 int
		startedMB         int64
	}{
		{16383, 1024, 64, 67},
		{65535, 1024, 64, 259},
		{4095, 1 << 20, 64, 46},
		{4095, 4 << 20, 64, 128},
		{4095, 64, 1 << 20, 80},
		{8191, 1 << 20, 1 << 18, 77},
	} {
		est := mib(memoryNeeded(false, m.mbufs, 1, 2048, m.cap4, m.cap6).Total())
		t.Logf("%d mbufs, %d+%d sessions: started with %d MiB, estimate %d MiB", m.mbufs, m.cap4, m.cap6, m.startedMB, est)
		if est < m.startedMB || est > m.startedMB+2 {
			t.Errorf("%d mbufs, %d+%d sessions: estimate %d MiB, homingd needed %d", m.mbufs, m.cap4, m.cap6, est, m.startedMB)
		}
	}
}

// TestMemoryCheck: a table far larger than dpdk.memory_mb is refused, naming the parts;
// the same table fits a larger memory_mb, and hugepages count 2.4 KiB a mbuf.
func TestMemoryCheck(t *testing.T) {
	big := minimal + "[dpdk]\nmemory_mb = 256\n[table]\ncapacity4 = 16777216\n"
	_, err := Parse([]byte(big), "t.toml")
	want := "t.toml: dpdk.memory_mb: 256 MiB cannot hold what homingd takes from DPDK memory, 490 MiB: 8191 mbufs 32 MiB (4 KiB each without hugepages), tables of 16777216 IPv4 + 262144 IPv6 sessions 455 MiB, EAL and queues 4 MiB"
	if err == nil || err.Error() != want || !errors.Is(err, ErrConflict) {
		t.Fatalf("got %v\nwant %s", err, want)
	}
	mustParse(t, strings.Replace(big, "memory_mb = 256", "memory_mb = 490", 1))
	if _, err := Parse([]byte(strings.Replace(big, "memory_mb = 256", "memory_mb = 489", 1)), "t.toml"); err == nil {
		t.Error("489 MiB accepted for 490 MiB of needs")
	}
	huge := minimal + "[dpdk]\nhugepages = true\nmemory_mb = 64\nmbufs = 16383\n[table]\ncapacity4 = 65536\ncapacity6 = 1024\n"
	c := mustParse(t, huge) // 38 MiB of mbufs, 2 MiB of tables, 3 of EAL
	if got := mib(c.MemoryNeeded().Total()); got != 43 {
		t.Errorf("hugepages: estimate %d MiB, want 43: %v", got, c.MemoryNeeded())
	}
	if _, err := Parse([]byte(strings.Replace(huge, "hugepages = true", "hugepages = false", 1)), "t.toml"); err == nil ||
		!strings.Contains(err.Error(), "16383 mbufs 64 MiB (4 KiB each without hugepages)") {
		t.Errorf("the same without hugepages: %v", err)
	}
}
