package dpdk

/*
#include <stdlib.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// DefaultDataRoom is the mbuf data room: 2048 bytes of frame plus the standard headroom.
const DefaultDataRoom = C.RTE_MBUF_DEFAULT_BUF_SIZE

// Mempool is a pool of packet buffers (rte_pktmbuf_pool_create).
type Mempool struct {
	p    *C.struct_rte_mempool
	name string
}

// NewMempool creates a packet mbuf pool of n buffers with a per-lcore cache.
// dataRoom 0 means DefaultDataRoom. socket < 0 means any socket.
func NewMempool(name string, n, cache, dataRoom, socket int) (*Mempool, error) {
	if dataRoom == 0 {
		dataRoom = DefaultDataRoom
	}
	if socket < 0 {
		socket = C.SOCKET_ID_ANY
	}
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	p := C.rte_pktmbuf_pool_create(cname, C.uint(n), C.uint(cache), 0, C.uint16_t(dataRoom), C.int(socket))
	if p == nil {
		return nil, rteErrno("mempool %s (%d mbufs)", name, n)
	}
	return &Mempool{p: p, name: name}, nil
}

// Ptr is the struct rte_mempool * for C code.
func (m *Mempool) Ptr() unsafe.Pointer { return unsafe.Pointer(m.p) }

// Available is the number of free mbufs (including per-lcore caches).
func (m *Mempool) Available() int { return int(C.rte_mempool_avail_count(m.p)) }

// InUse is the number of mbufs handed out.
func (m *Mempool) InUse() int { return int(C.rte_mempool_in_use_count(m.p)) }

// Free releases the pool. Every mbuf must have been returned.
func (m *Mempool) Free() {
	if m.p != nil {
		C.rte_mempool_free(m.p)
		m.p = nil
	}
}

func (m *Mempool) String() string { return fmt.Sprintf("mempool %s", m.name) }
