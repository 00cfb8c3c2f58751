package daemon

import "github.com/homing-dev/homing/dpdk"

// Links returns the link states of the NIC port and of the kernel port (the TAP).
func (d *Daemon) Links() (nic, kernel dpdk.Link, err error) {
	if nic, err = d.nic.Link(); err != nil {
		return
	}
	kernel, err = d.tap.Link()
	return
}
