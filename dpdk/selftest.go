//go:build harness

package dpdk

/*
#include <stdlib.h>
#include <rte_lcore.h>

// Stores the lcore id it runs on into *(unsigned *)arg and returns 42 (for the
// package's tests: cgo is not allowed in _test.go files). Not static: Go takes its
// address. Defined in this one file's preamble only.
int
hdpdk_selftest_lcore(void *arg)
{
	*(volatile unsigned *)arg = rte_lcore_id();
	return 42;
}
*/
import "C"

import "unsafe"

// selftestLaunch runs a C function on lcore and returns what it reported (for tests).
func selftestLaunch(lcore uint) (ran uint, ret int, err error) {
	arg := C.calloc(1, 8)
	defer C.free(arg)
	if err := Launch(unsafe.Pointer(C.hdpdk_selftest_lcore), arg, lcore); err != nil {
		return 0, 0, err
	}
	ret = Wait(lcore)
	return uint(*(*C.uint)(arg)), ret, nil
}
