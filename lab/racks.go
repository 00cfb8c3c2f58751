package lab

// relayConfig is the [gossip] lines that name the lab's relays (none: "").
func (l *Lab) relayConfig() string {
	return ""
}
