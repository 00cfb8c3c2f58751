package gossip

// Owned is the number of sessions the ownership map gives to host (this host's own:
// HostID()); a draining host is empty when its own count reaches 0.
func (n *Node) Owned(host uint16) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if d := n.digests[host]; d != nil {
		return int(d.Count)
	}
	return 0
}
