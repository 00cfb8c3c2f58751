package config

import "reflect"

// Diff names the keys whose values differ between old and new, as docs/CONFIG.md names
// them, in the order of Config's fields; the static peers and sessions are "peers" and
// "sessions" as a whole. Source (the file name) is not a key. A key added to Config must be added here
// (TestDiffCoversEveryField fails until it is).
func Diff(old, new *Config) []string {
	var keys []string
	key := func(name string, a, b any) {
		if !reflect.DeepEqual(a, b) {
			keys = append(keys, name)
		}
	}
	a, b := old, new

	key("host.id", a.Host.ID, b.Host.ID)
	key("host.name", a.Host.Name, b.Host.Name)
	key("host.address", a.Host.Address, b.Host.Address)
	key("host.mac", a.Host.MAC, b.Host.MAC)
	key("host.domain", a.Host.Domain, b.Host.Domain)
	key("host.gateway", a.Host.Gateway, b.Host.Gateway)
	key("host.vips", a.Host.VIPs, b.Host.VIPs)

	key("dpdk.file_prefix", a.DPDK.FilePrefix, b.DPDK.FilePrefix)
	key("dpdk.hugepages", a.DPDK.Hugepages, b.DPDK.Hugepages)
	key("dpdk.memory_mb", a.DPDK.MemoryMB, b.DPDK.MemoryMB)
	key("dpdk.cpus", a.DPDK.CPUs, b.DPDK.CPUs)
	key("dpdk.workers", a.DPDK.Workers, b.DPDK.Workers)
	key("dpdk.mbufs", a.DPDK.Mbufs, b.DPDK.Mbufs)
	key("dpdk.idle_sleep_max_us", a.DPDK.IdleSleepMax, b.DPDK.IdleSleepMax)
	key("dpdk.log_level", a.DPDK.LogLevel, b.DPDK.LogLevel)
	key("dpdk.extra_args", a.DPDK.ExtraArgs, b.DPDK.ExtraArgs)

	key("nic.device", a.NIC.Device, b.NIC.Device)
	key("nic.pci", a.NIC.PCI, b.NIC.PCI)
	key("nic.mtu", a.NIC.MTU, b.NIC.MTU)
	key("nic.promiscuous", a.NIC.Promiscuous, b.NIC.Promiscuous)
	key("nic.rx_desc", a.NIC.RxDesc, b.NIC.RxDesc)
	key("nic.tx_desc", a.NIC.TxDesc, b.NIC.TxDesc)

	key("kernel.device", a.Kernel.Device, b.Kernel.Device)
	key("kernel.name", a.Kernel.Name, b.Kernel.Name)
	key("kernel.addresses", a.Kernel.Addresses, b.Kernel.Addresses)
	key("kernel.routes", a.Kernel.Routes, b.Kernel.Routes)
	key("kernel.mtu", a.Kernel.MTU, b.Kernel.MTU)

	key("tunnel.port", a.Tunnel.Port, b.Tunnel.Port)
	key("tunnel.redirect", a.Tunnel.Redirect, b.Tunnel.Redirect)
	key("tunnel.park_hold", a.Tunnel.ParkHold, b.Tunnel.ParkHold)
	key("tunnel.park_size", a.Tunnel.ParkSize, b.Tunnel.ParkSize)
	key("tunnel.park_udp", a.Tunnel.ParkUDP, b.Tunnel.ParkUDP)
	key("tunnel.clamp_mss", a.Tunnel.ClampMSS, b.Tunnel.ClampMSS)
	key("tunnel.icmp_rate", a.Tunnel.ICMPRate, b.Tunnel.ICMPRate)
	key("tunnel.icmp_burst", a.Tunnel.ICMPBurst, b.Tunnel.ICMPBurst)

	key("table.capacity4", a.Table.Capacity4, b.Table.Capacity4)
	key("table.capacity6", a.Table.Capacity6, b.Table.Capacity6)

	key("peers", a.Peers, b.Peers)
	key("sessions", a.Sessions, b.Sessions)
	key("udp_sessions", a.UDPSessions, b.UDPSessions)

	key("gossip.enabled", a.Gossip.Enabled, b.Gossip.Enabled)
	key("gossip.group", a.Gossip.Group, b.Gossip.Group)
	key("gossip.port", a.Gossip.Port, b.Gossip.Port)
	key("gossip.interface", a.Gossip.Interface, b.Gossip.Interface)
	key("gossip.ttl", a.Gossip.TTL, b.Gossip.TTL)
	key("gossip.key_file", a.Gossip.KeyFile, b.Gossip.KeyFile)
	key("gossip.insecure", a.Gossip.Insecure, b.Gossip.Insecure)
	key("gossip.max_datagram", a.Gossip.MaxDatagram, b.Gossip.MaxDatagram)
	key("gossip.flush_delay", a.Gossip.FlushDelay, b.Gossip.FlushDelay)
	key("gossip.flush", a.Gossip.Flush, b.Gossip.Flush)
	key("gossip.max_rate", a.Gossip.MaxRate, b.Gossip.MaxRate)
	key("gossip.heartbeat_interval", a.Gossip.HeartbeatInterval, b.Gossip.HeartbeatInterval)
	key("gossip.down_after", a.Gossip.DownAfter, b.Gossip.DownAfter)
	key("gossip.grace", a.Gossip.Grace, b.Gossip.Grace)
	key("gossip.linger", a.Gossip.Linger, b.Gossip.Linger)
	key("gossip.discovery_file", a.Gossip.DiscoveryFile, b.Gossip.DiscoveryFile)
	key("gossip.repair", a.Gossip.Repair, b.Gossip.Repair)
	key("gossip.repair_port", a.Gossip.RepairPort, b.Gossip.RepairPort)
	key("gossip.repair_interval", a.Gossip.RepairInterval, b.Gossip.RepairInterval)
	key("gossip.repair_timeout", a.Gossip.RepairTimeout, b.Gossip.RepairTimeout)
	key("gossip.repair_max_records", a.Gossip.RepairMaxRecords, b.Gossip.RepairMaxRecords)
	key("gossip.repair_auth_timeout", a.Gossip.RepairAuthTimeout, b.Gossip.RepairAuthTimeout)
	key("gossip.repair_per_source", a.Gossip.RepairPerSource, b.Gossip.RepairPerSource)
	key("gossip.max_clock_skew", a.Gossip.MaxClockSkew, b.Gossip.MaxClockSkew)
	key("gossip.replay_window", a.Gossip.ReplayWindow, b.Gossip.ReplayWindow)
	key("gossip.max_queue", a.Gossip.MaxQueue, b.Gossip.MaxQueue)
	key("gossip.nack_ring", a.Gossip.NackRing, b.Gossip.NackRing)
	key("gossip.digest", a.Gossip.Digest, b.Gossip.Digest)
	key("gossip.relays", a.Gossip.Relays, b.Gossip.Relays)
	key("gossip.relay_port", a.Gossip.RelayPort, b.Gossip.RelayPort)

	key("probe.enabled", a.Probe.Enabled, b.Probe.Enabled)
	key("probe.cgroup", a.Probe.Cgroup, b.Probe.Cgroup)
	key("probe.tentative", a.Probe.Tentative, b.Probe.Tentative)
	key("probe.tentative_lifetime", a.Probe.TentativeLifetime, b.Probe.TentativeLifetime)
	key("probe.ring_bytes", a.Probe.RingBytes, b.Probe.RingBytes)

	key("bgp.local_as", a.BGP.LocalAS, b.BGP.LocalAS)
	key("bgp.router_id", a.BGP.RouterID, b.BGP.RouterID)
	key("bgp.hold_time", a.BGP.HoldTime, b.BGP.HoldTime)
	key("bgp.communities", a.BGP.Communities, b.BGP.Communities)
	key("bgp.stop_linger", a.BGP.StopLinger, b.BGP.StopLinger)
	key("bgp.neighbors", a.BGP.Neighbors, b.BGP.Neighbors)

	key("metrics.listen", a.Metrics.Listen, b.Metrics.Listen)
	key("control.socket", a.Control.Socket, b.Control.Socket)
	key("log.level", a.Log.Level, b.Log.Level)
	key("log.format", a.Log.Format, b.Log.Format)
	return keys
}
