package lcore

import "github.com/homing-dev/homing/session"

// The template slots (HOMING_MAX_HOSTS in pipeline.h, MaxHosts here) are exactly the
// host ids the configuration and gossip accept (1..session.MaxHostID, slot 0 unused):
// either constant changed alone stops the build here (a negative constant does not
// convert to uint).
const (
	_ = uint(MaxHosts - session.MaxHostID - 1)
	_ = uint(session.MaxHostID + 1 - MaxHosts)
)
