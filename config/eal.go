package config

import "runtime"

// Mempool sizing. The default dpdk.mbufs covers every descriptor of both ports (the
// NIC and the kernel port, each with dpdk.workers rx and tx queues of nic.rx_desc and
// nic.tx_desc entries) plus a per-lcore mempool cache and burst for the workers and
// the main lcore, rounded up to 2^n-1 (the size rte_mempool stores best), at least
// MinMbufs.
const (
	MbufCache = 256 // per-lcore mempool cache
	MbufBurst = 32  // mbufs an lcore holds in flight per burst
	// MbufFootprint is the approximate memory of one mbuf with hugepages: the default
	// data room (RTE_MBUF_DEFAULT_BUF_SIZE, 2176) plus the mbuf header and mempool
	// overhead. Without hugepages one takes a 4 KiB page (MbufFootprintNoHuge).
	MbufFootprint = 2432
)

func computeMbufs(workers, rxDesc, txDesc int) int {
	need := 2*workers*(rxDesc+txDesc) + (workers+1)*(MbufCache+MbufBurst)
	n := MinMbufs
	for n < need {
		n = n*2 + 1
	}
	return n
}

func numCPU() int { return runtime.NumCPU() }

// VDevs returns the --vdev arguments for the EAL: nic.device (unless the NIC is a PCI
// device), then kernel.device.
func (c *Config) VDevs() []string {
	var v []string
	if c.NIC.Device != "" {
		v = append(v, c.NIC.Device)
	}
	return append(v, c.Kernel.Device)
}

// PCIDevices returns the -a arguments for the EAL: nic.pci, if set.
func (c *Config) PCIDevices() []string {
	if c.NIC.PCI == "" {
		return nil
	}
	return []string{c.NIC.PCI}
}

// CPUList returns dpdk.cpus in Linux list form ("0-1,4").
func (d DPDK) CPUList() string { return FormatCPUList(d.CPUs) }

// NICPortName is the name DPDK gives the NIC port: the vdev name
// ("net_af_packet0") or the PCI address.
func (c *Config) NICPortName() string {
	if c.NIC.PCI != "" {
		return vdevName(c.NIC.PCI)
	}
	return vdevName(c.NIC.Device)
}

// KernelPortName is the name DPDK gives the kernel port ("net_tap0").
func (c *Config) KernelPortName() string { return vdevName(c.Kernel.Device) }
