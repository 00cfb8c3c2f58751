package lcore

/*
#include "pipeline.h"
*/
import "C"

import (
	"reflect"
	"unsafe"

	"github.com/homing-dev/homing/internal/counters"
)

// Stats are one lcore's counters, declared with their tags in internal/counters (pure
// Go, for the metrics package); statsOf copies them from struct homing_lcore_stats
// (pipeline.h) by the fields' c tags.
type Stats = counters.Lcore

// fromC is the copy; it panics at start if a C counter has no field in Stats.
var fromC = counters.NewFromC(reflect.TypeFor[C.struct_homing_lcore_stats](), reflect.TypeFor[Stats]())

func statsOf(lcore uint, p *C.struct_homing_lcore_stats) Stats {
	// Copy first: each field is an aligned 64-bit word written by one lcore.
	c := *(*C.struct_homing_lcore_stats)(unsafe.Pointer(p))
	s := Stats{Lcore: lcore}
	fromC.Copy(&s, c)
	return s
}

// Stats returns the counters of every lcore of the last Start (still readable after Stop).
func (d *DataPlane) Stats() []Stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]Stats, 0, len(d.lcores))
	for i, lc := range d.lcores {
		out = append(out, statsOf(d.workers[i].Lcore, &lc.stats))
	}
	return out
}
