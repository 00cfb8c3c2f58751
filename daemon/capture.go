package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/homing-dev/homing/ctl"
	"github.com/homing-dev/homing/lcore"
)

// The capture command (homingctl capture, homingctl trace): arms a capture on the
// lcores and streams its records until the count, the duration or the client ends it.

// capturePoll is how often the stream drains the lcores' rings.
const capturePoll = 5 * time.Millisecond

func (o *ops) capture(a ctl.CaptureArgs) (ctl.Streamer, error) {
	d := o.d
	if d.DP == nil || !d.DP.Running() {
		return nil, errors.New("capture: the data plane is not running")
	}
	points, err := lcore.Points(a.Port, a.Dir)
	if err != nil {
		return nil, fmt.Errorf("capture: %w", err)
	}
	f, err := lcore.ParseFilter(a.Filter)
	if err != nil {
		return nil, fmt.Errorf("capture: %w", err)
	}
	if a.Count < 1 || a.Count > ctl.MaxCaptureCount {
		return nil, fmt.Errorf("capture: count %d out of 1..%d", a.Count, ctl.MaxCaptureCount)
	}
	if a.DurationMS < 1 || a.DurationMS > ctl.MaxCaptureDuration {
		return nil, fmt.Errorf("capture: duration %d ms out of 1..%d", a.DurationMS, ctl.MaxCaptureDuration)
	}
	if a.Snaplen < 0 || a.Snaplen > lcore.MaxSnaplen || (a.Snaplen == 0 && !a.Trace) {
		return nil, fmt.Errorf("capture: snap length %d out of 1..%d", a.Snaplen, lcore.MaxSnaplen)
	}
	cp, err := d.DP.StartCapture(lcore.CaptureConfig{Filter: f, Points: points, Snaplen: a.Snaplen, Count: a.Count, Trace: a.Trace})
	if errors.Is(err, lcore.ErrCaptureBusy) {
		return nil, errors.New("capture: another capture or trace is running (one at a time)")
	}
	if err != nil {
		return nil, fmt.Errorf("capture: %w", err)
	}
	h := ctl.CaptureHead{Lcores: d.Config.DPDK.Workers, Filter: a.Filter, Snaplen: a.Snaplen,
		NICPort: d.nic.ID, TAPPort: d.tap.ID}
	for _, p := range []uint8{lcore.NICRx, lcore.NICTx, lcore.TAPRx, lcore.TAPTx} {
		if points&p != 0 {
			h.Points = append(h.Points, lcore.PointName(p))
		}
	}
	d.Log.Info("capture started", "points", h.Points, "filter", a.Filter, "count", a.Count,
		"duration", time.Duration(a.DurationMS)*time.Millisecond, "snaplen", a.Snaplen, "trace", a.Trace)
	return &captureStream{cp: cp, head: h, dur: time.Duration(a.DurationMS) * time.Millisecond, o: o}, nil
}

type captureStream struct {
	cp   *lcore.Capture
	head ctl.CaptureHead
	dur  time.Duration
	o    *ops
}

func (s *captureStream) Head() any { return s.head }

func (s *captureStream) Stream(ctx context.Context, enc *json.Encoder) error {
	defer s.cp.Close()
	timer := time.NewTimer(s.dur)
	defer timer.Stop()
	tick := time.NewTicker(capturePoll)
	defer tick.Stop()
	var werr error
	taken := 0
	drain := func() {
		s.cp.Drain(func(r lcore.Record) {
			taken++
			if werr != nil {
				return
			}
			werr = enc.Encode(ctl.CaptureLine{Rec: &ctl.CaptureRecord{TimeNS: r.Time.UnixNano(), Point: lcore.PointName(r.Point),
				Class: r.Class, Fate: r.Fate, Lcore: r.Lcore, PortID: r.PortID, Queue: r.Queue, Len: r.WireLen, Data: r.Data,
				Lookup: r.Lookup, Owner: r.Owner, Epoch: r.Epoch}})
		})
	}
	reason := ""
	for reason == "" {
		select {
		case <-tick.C:
			drain()
			if s.cp.Full() {
				reason = "count"
			}
		case <-timer.C:
			reason = "duration"
		case <-ctx.Done():
			reason = "cancelled"
		}
		if werr != nil && reason == "" {
			reason = "cancelled"
		}
	}
	s.cp.Stop()
	drain()
	end := ctl.CaptureEnd{Taken: taken, Lost: s.cp.Lost(), Reason: reason}
	s.o.d.Log.Info("capture ended", "taken", end.Taken, "lost", end.Lost, "reason", reason)
	if werr != nil {
		return werr
	}
	return enc.Encode(ctl.CaptureLine{End: &end})
}
