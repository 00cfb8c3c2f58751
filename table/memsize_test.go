package table

import (
	"testing"

	"github.com/homing-dev/homing/config"
)

// TestMemSizeConfig: config.TableMemory, which checks table.capacity* against
// dpdk.memory_mb without cgo, follows MemSize (the layout of homing_table.c) within the
// QSBR variable and the struct it leaves out.
func TestMemSizeConfig(t *testing.T) {
	for _, c := range [][2]uint32{{64, 64}, {1024, 64}, {7 << 10, 7<<10 + 1}, {1 << 20, 1 << 18}, {10_000_000, 3_000_000}, {1 << 30, 64}} {
		got, want := config.TableMemory(int(c[0]), int(c[1])), int64(MemSize(c[0], c[1]))
		if d := got - want; d < 0 || d > 32<<10 {
			t.Errorf("capacity %d+%d: config.TableMemory %d, MemSize %d", c[0], c[1], got, want)
		}
	}
}
