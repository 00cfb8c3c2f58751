package ctl

// CmdCapture takes packets (or, with Trace, metadata only) from the running data plane:
// CaptureArgs; the response is a CaptureHead, followed by CaptureLine lines until the
// count, the duration or the client ends it.
const CmdCapture = "capture"

// CaptureArgs are a capture's arguments.
type CaptureArgs struct {
	Port       string `json:"port,omitempty"` // nic, tap or all (default)
	Dir        string `json:"dir,omitempty"`  // rx, tx or both (default)
	Filter     string `json:"filter,omitempty"`
	Count      int    `json:"count"`
	DurationMS int64  `json:"duration_ms"`
	Snaplen    int    `json:"snaplen"`         // 0 with Trace: metadata only
	Trace      bool   `json:"trace,omitempty"` // look each packet's session up
}

// Capture limits (the daemon refuses more).
const (
	MaxCaptureCount    = 1000000
	MaxCaptureDuration = 3600 * 1000 // ms
)

// CaptureHead answers a capture request before the stream.
type CaptureHead struct {
	Lcores  int      `json:"lcores"`
	Points  []string `json:"points"`
	Filter  string   `json:"filter"`
	Snaplen int      `json:"snaplen"`
	NICPort uint16   `json:"nic_port"`
	TAPPort uint16   `json:"tap_port"`
}

// CaptureRecord is one packet taken.
type CaptureRecord struct {
	TimeNS int64  `json:"time_ns"` // Unix time
	Point  string `json:"point"`   // nic-rx, nic-tx, tap-rx, tap-tx
	Class  string `json:"class"`
	Fate   string `json:"fate"`
	Lcore  uint16 `json:"lcore"`
	PortID uint16 `json:"port_id"`
	Queue  uint16 `json:"queue"`
	Len    int    `json:"len"`
	Data   []byte `json:"data,omitempty"`
	Lookup string `json:"lookup,omitempty"` // trace: hit or miss
	Owner  uint16 `json:"owner,omitempty"`
	Epoch  uint64 `json:"epoch,omitempty"`
}

// CaptureEnd closes a capture's stream.
type CaptureEnd struct {
	Taken  int    `json:"taken"`
	Lost   uint64 `json:"lost"`   // matching packets an lcore's full ring could not hold
	Reason string `json:"reason"` // count, duration, cancelled or stopped
}

// CaptureLine is one line of a capture's stream: a record, or the end.
type CaptureLine struct {
	Rec *CaptureRecord `json:"rec,omitempty"`
	End *CaptureEnd    `json:"end,omitempty"`
}
