//go:build harness

package lcore

/*
#include <stdlib.h>
#include "pipeline.h"
#include "udplearn.h"
#include "capture.h"
*/
import "C"

import (
	"unsafe"

	"github.com/homing-dev/homing/session"
)

// The runner's (Frames, frames.go) hooks into capture and UDP learning: test harness,
// built with the harness tag only.

// StartCapture arms a capture on the runner (tests: Run then goes through it).
func (f *Frames) StartCapture(d *DataPlane, cfg CaptureConfig) (*Capture, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.arm(cfg, []*C.struct_homing_lcore{f.lc}, false)
}

// SetLearn gives the runner a learning ring of ring records (a power of two), for
// RunKernel's UDP packets; call it once, before Run.
func (f *Frames) SetLearn(ring int) error {
	u, err := newUDPLcore(ring)
	if err != nil {
		return err
	}
	C.homing_udp_lcore_free(f.lc.udp)
	f.lc.udp = u
	return nil
}

// Learned drains the runner's learning ring.
func (f *Frames) Learned() []session.Key {
	buf := (*C.struct_homing_learn_rec)(C.calloc(drainBatch, C.sizeof_struct_homing_learn_rec))
	defer C.free(unsafe.Pointer(buf))
	return drain(f.lc.udp, buf, drainBatch, nil)
}

// LearnTick advances the runner's refresh tick.
func (f *Frames) LearnTick() { tick(f.lc.udp) }

// UDPStats returns the runner's learning and CID counters.
func (f *Frames) UDPStats() UDPStats { return udpStatsOf(f.lc.udp) }
