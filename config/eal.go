package config

import (
	"runtime"
	"strconv"
)

// Mempool sizing. The default dpdk.mbufs covers every descriptor of both ports (the
// NIC and the kernel port, each with dpdk.workers rx and tx queues of nic.rx_desc and
// nic.tx_desc entries) plus a per-lcore mempool cache and burst for the workers and
// the main lcore, rounded up to 2^n-1 (the size rte_mempool stores best), at least
// MinMbufs.
const (
	MbufCache = 256 // per-lcore mempool cache
	MbufBurst = 32  // mbufs an lcore holds in flight per burst
	// MbufFootprint is the approximate memory of one mbuf: the default data room
	// (RTE_MBUF_DEFAULT_BUF_SIZE, 2176) plus the mbuf header and mempool overhead.
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

// EALArgs returns the rte_eal_init arguments (argv[0] is "homingd") for c:
//
//   - --file-prefix, -m, --log-level from [dpdk];
//   - --no-huge --no-shconf without hugepages, --in-memory with them (no hugetlbfs
//     needs to be mounted);
//   - --lcores=(0-W)@(cpus): lcore 0 (main) and W workers, each allowed to float on
//     every CPU of dpdk.cpus, so several daemons can share a laptop's cores;
//   - the NIC: -a <pci>, or --no-pci --vdev=<nic.device>;
//   - the kernel port: --vdev=<kernel.device>;
//   - dpdk.extra_args last.
//
// Port ids depend on probe order; look ports up by name (the vdev name, or the PCI
// address) rather than by id.
func (c *Config) EALArgs() []string {
	d := c.DPDK
	args := []string{
		"homingd",
		"--file-prefix=" + d.FilePrefix,
		"-m", strconv.Itoa(d.MemoryMB),
		"--log-level=" + d.LogLevel,
		"--lcores=(0-" + strconv.Itoa(d.Workers) + ")@(" + FormatCPUList(d.CPUs) + ")",
	}
	if d.Hugepages {
		args = append(args, "--in-memory")
	} else {
		args = append(args, "--no-huge", "--no-shconf")
	}
	if c.NIC.PCI != "" {
		args = append(args, "-a", c.NIC.PCI)
	} else {
		args = append(args, "--no-pci", "--vdev="+c.NIC.Device)
	}
	args = append(args, "--vdev="+c.Kernel.Device)
	return append(args, d.ExtraArgs...)
}

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
