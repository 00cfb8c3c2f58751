//go:build harness

package table

import (
	"runtime"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/homing-dev/homing/session"
)

// threadCPU is the calling thread's CPU time (the caller is locked to its thread).
func threadCPU() time.Duration {
	var ts syscall.Timespec
	_, _, _ = syscall.Syscall(syscall.SYS_CLOCK_GETTIME, 3 /* CLOCK_THREAD_CPUTIME_ID */, uintptr(unsafe.Pointer(&ts)), 0)
	return time.Duration(ts.Nano())
}

// BenchmarkWriteCPU measures batched writes as BenchmarkApply does (batches of 1024
// new sessions, then their deletes, on a table of 1M sessions) without the reader, and
// reports the writer thread's CPU time per update besides the wall time: the figure
// issue 20's model of the apply side uses, and the one a loaded machine distorts
// least.
func BenchmarkWriteCPU(b *testing.B) {
	for _, fam := range []string{"v4", "v6"} {
		b.Run(fam, func(b *testing.B) {
			const batch = 1024
			tab, _ := filled(b, fam == "v6", 1<<20)
			churn := keysN(fam == "v6", 1<<22, batch*64)
			ins := make([][]session.Update, 64)
			dels := make([][]session.Update, 64)
			for j := range ins {
				for _, k := range churn[j*batch : (j+1)*batch] {
					ins[j] = append(ins[j], session.Update{Key: k, Owner: selftestOwner(k, 1)})
					dels[j] = append(dels[j], session.Update{Key: k, Delete: true})
				}
			}
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			b.ResetTimer()
			c0 := threadCPU()
			for i := 0; i < b.N; i++ {
				j := (i / 2) % len(ins)
				ups := ins[j]
				if i%2 == 1 {
					ups = dels[j]
				}
				if res, err := tab.ApplyBatch(ups); err != nil || res.Added+res.Deleted != batch {
					b.Fatalf("batch %d: %+v %v", i, res, err)
				}
			}
			cpu := threadCPU() - c0
			b.StopTimer()
			if b.N%2 == 1 {
				_, _ = tab.ApplyBatch(dels[(b.N/2)%len(ins)])
			}
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N*batch), "cpu-ns/update")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/update")
			b.ReportMetric(float64(b.N*batch)/cpu.Seconds(), "updates/cpu-s")
		})
	}
}
