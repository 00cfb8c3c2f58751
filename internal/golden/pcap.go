package golden

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
)

// File names WritePcaps uses in its directory.
const (
	NICInFile    = "nic-in.pcap"
	KernelInFile = "kernel-in.pcap"
)

// Snaplen is the snapshot length of the pcap files written here.
const Snaplen = 65535

// ReadPcap errors.
var (
	ErrLinkType = errors.New("pcap link type is not Ethernet")
	ErrSnaplen  = errors.New("beyond the pcap snaplen")
)

// maxSnaplen is the largest snaplen ReadPcap accepts (tcpdump's default).
const maxSnaplen = 262144

// pcapEpoch is the timestamp of the first frame: the files are byte-for-byte reproducible.
var pcapEpoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// WritePcaps writes the input frames of Cases to dir/nic-in.pcap and dir/kernel-in.pcap
// (Ethernet, snaplen 65535), each in the order of Cases, and returns the two paths.
func WritePcaps(dir string) (nicIn, kernelIn string, err error) {
	var nic, kernel [][]byte
	for _, c := range Cases() {
		if c.In == PortNIC {
			nic = append(nic, c.Frame)
		} else {
			kernel = append(kernel, c.Frame)
		}
	}
	nicIn, kernelIn = filepath.Join(dir, NICInFile), filepath.Join(dir, KernelInFile)
	if err := WritePcap(nicIn, nic); err != nil {
		return "", "", err
	}
	if err := WritePcap(kernelIn, kernel); err != nil {
		return "", "", err
	}
	return nicIn, kernelIn, nil
}

// WritePcap writes frames to a new pcap file at path (Ethernet, snaplen 65535,
// microsecond timestamps one microsecond apart). A frame longer than the snaplen is an
// error.
func WritePcap(path string, frames [][]byte) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("write pcap: %w", err)
	}
	if err := writePcap(f, frames); err != nil {
		f.Close()
		return fmt.Errorf("write pcap %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write pcap %s: %w", path, err)
	}
	return nil
}

func writePcap(w io.Writer, frames [][]byte) error {
	pw := pcapgo.NewWriter(w)
	if err := pw.WriteFileHeader(Snaplen, layers.LinkTypeEthernet); err != nil {
		return err
	}
	for i, fr := range frames {
		if len(fr) > Snaplen {
			return fmt.Errorf("%w: frame %d is %d bytes, snaplen %d", ErrSnaplen, i, len(fr), Snaplen)
		}
		ci := gopacket.CaptureInfo{
			Timestamp:     pcapEpoch.Add(time.Duration(i) * time.Microsecond),
			CaptureLength: len(fr),
			Length:        len(fr),
		}
		if err := pw.WritePacket(ci, fr); err != nil {
			return fmt.Errorf("frame %d: %w", i, err)
		}
	}
	return nil
}

// ReadPcap returns the frames of an Ethernet pcap file (micro- or nanosecond format, as
// DPDK's net_pcap writes it), in file order. A frame captured shorter than it was on the
// wire is an error: the comparison needs whole frames.
func ReadPcap(path string) ([][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read pcap: %w", err)
	}
	defer f.Close()
	frames, err := readPcap(f)
	if err != nil {
		return nil, fmt.Errorf("read pcap %s: %w", path, err)
	}
	return frames, nil
}

func readPcap(r io.Reader) ([][]byte, error) {
	pr, err := pcapgo.NewReader(r)
	if err != nil {
		return nil, err
	}
	if lt := pr.LinkType(); lt != layers.LinkTypeEthernet {
		return nil, fmt.Errorf("%w: %v", ErrLinkType, lt)
	}
	if sl := pr.Snaplen(); sl > maxSnaplen {
		// A frame is allocated at its captured length: refuse absurd bounds up front.
		return nil, fmt.Errorf("%w: snaplen %d > %d", ErrSnaplen, sl, maxSnaplen)
	}
	var frames [][]byte
	for {
		data, ci, err := pr.ReadPacketData()
		if errors.Is(err, io.EOF) {
			return frames, nil
		}
		if err != nil {
			return nil, fmt.Errorf("frame %d: %w", len(frames), err)
		}
		if ci.CaptureLength < ci.Length {
			return nil, fmt.Errorf("frame %d: captured %d of %d bytes", len(frames), ci.CaptureLength, ci.Length)
		}
		frames = append(frames, clone(data))
	}
}

// CheckPcaps reads the two output pcap files of a pipeline run and Checks them.
func CheckPcaps(nicOut, kernelOut string) error {
	nic, err := ReadPcap(nicOut)
	if err != nil {
		return err
	}
	kernel, err := ReadPcap(kernelOut)
	if err != nil {
		return err
	}
	return Check(nic, kernel)
}
