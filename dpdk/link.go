package dpdk

/*
#include <rte_ethdev.h>

// hdpdk_link reads a port's link without waiting (rte_eth_link's fields are bit-fields,
// which cgo cannot read).
static int hdpdk_link(uint16_t port, uint32_t *speed, int *up, int *full_duplex, int *autoneg)
{
	struct rte_eth_link l;
	int ret = rte_eth_link_get_nowait(port, &l);

	if (ret != 0)
		return ret;
	*speed = l.link_speed;
	*up = l.link_status == RTE_ETH_LINK_UP;
	*full_duplex = l.link_duplex == RTE_ETH_LINK_FULL_DUPLEX;
	*autoneg = l.link_autoneg == RTE_ETH_LINK_AUTONEG;
	return 0;
}
*/
import "C"

import "fmt"

// Link is a port's link state.
type Link struct {
	Up         bool
	SpeedMbps  uint32 // 0: unknown
	FullDuplex bool
	Autoneg    bool
}

// String reads "up 10000 Mb/s full-duplex" or "down".
func (l Link) String() string {
	if !l.Up {
		return "down"
	}
	duplex := "half-duplex"
	if l.FullDuplex {
		duplex = "full-duplex"
	}
	speed := "unknown speed"
	if l.SpeedMbps != 0 && l.SpeedMbps != C.RTE_ETH_SPEED_NUM_UNKNOWN {
		speed = fmt.Sprintf("%d Mb/s", l.SpeedMbps)
	}
	return "up " + speed + " " + duplex
}

// Link returns the port's link state, without waiting for a link to come up.
func (p Port) Link() (Link, error) {
	var speed C.uint32_t
	var up, full, auto C.int
	if ret := C.hdpdk_link(C.uint16_t(p.ID), &speed, &up, &full, &auto); ret != 0 {
		return Link{}, errorf(ret, "link of port %s", p.Name)
	}
	return Link{Up: up != 0, SpeedMbps: uint32(speed), FullDuplex: full != 0, Autoneg: auto != 0}, nil
}

// Args returns the EAL arguments Init started the EAL with (nil before).
func Args() []string {
	eal.Lock()
	defer eal.Unlock()
	return append([]string(nil), eal.args...)
}
