package dpdk

/*
#include <stdlib.h>
int hdpdk_selftest_lcore(void *arg);
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
