package table

import "syscall"

const syscall_EINVAL = syscall.EINVAL
