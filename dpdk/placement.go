package dpdk

import (
	"fmt"
	"strconv"
	"strings"
)

// Lcore placement: where EAL runs the main lcore (0, the Go process's EAL thread) and
// the workers (1..Workers).
//
//   - The CPU set has room for every worker on a CPU of its own (at least Workers CPUs):
//     worker i is pinned to one CPU, the last Workers CPUs of the set in order (CPU 0,
//     where the kernel's housekeeping and most interrupts land, is the last one taken),
//     and the main lcore runs on the CPUs left, or shares the whole set when none is.
//   - Fewer CPUs than workers: every lcore floats over the whole set, as several daemons
//     sharing a small machine need.
//
// For example "0-3" with 2 workers gives --lcores=0@(0-1),1@2,2@3, "2,3" with 2 workers
// --lcores=0@(2-3),1@2,2@3, and "0" with 2 workers --lcores=(0-2)@(0).

// ParseCPUList parses a CPU list as Linux and DPDK write it ("0-3,6,8-9") into CPU ids
// in ascending order, each once.
func ParseCPUList(s string) ([]int, error) {
	seen := map[int]bool{}
	var out []int
	if strings.TrimSpace(s) == "" {
		return nil, fmt.Errorf("dpdk: empty CPU list")
	}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil || a < 0 {
			return nil, fmt.Errorf("dpdk: CPU list %q: %q is not a CPU number", s, lo)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return nil, fmt.Errorf("dpdk: CPU list %q: bad range %q", s, part)
			}
		}
		if b >= 1024 {
			return nil, fmt.Errorf("dpdk: CPU list %q: CPU %d beyond 1023", s, b)
		}
		for c := a; c <= b; c++ {
			if !seen[c] {
				seen[c] = true
				out = append(out, c)
			}
		}
	}
	for i := 1; i < len(out); i++ { // insertion sort: lists are short
		for j := i; j > 0 && out[j] < out[j-1]; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out, nil
}

// Placement is where the lcores run.
type Placement struct {
	Main    []int // the main lcore's CPUs
	Workers []int // worker i's CPU (pinned), or nil: the workers float over Shared
	Shared  []int // the CPU set every lcore floats over when the workers are not pinned
}

// Place computes the placement of workers lcores on the CPU set cpus.
func Place(cpus []int, workers int) Placement {
	if workers == 0 || len(cpus) < workers {
		return Placement{Main: cpus, Shared: cpus}
	}
	w := cpus[len(cpus)-workers:]
	main := cpus[:len(cpus)-workers]
	if len(main) == 0 {
		main = cpus
	}
	return Placement{Main: main, Workers: w}
}

// Arg is EAL's --lcores value for p.
func (p Placement) Arg(workers int) string {
	if p.Workers == nil {
		lcores := "0"
		if workers > 0 {
			lcores = "0-" + strconv.Itoa(workers)
		}
		return "(" + lcores + ")@(" + cpuList(p.Shared) + ")"
	}
	parts := []string{"0@(" + cpuList(p.Main) + ")"}
	for i, c := range p.Workers {
		parts = append(parts, strconv.Itoa(i+1)+"@"+strconv.Itoa(c))
	}
	return strings.Join(parts, ",")
}

// cpuList writes ascending CPU ids as a list with ranges: 0,1,2,5 -> "0-2,5".
func cpuList(cpus []int) string {
	var parts []string
	for i := 0; i < len(cpus); {
		j := i
		for j+1 < len(cpus) && cpus[j+1] == cpus[j]+1 {
			j++
		}
		if j == i {
			parts = append(parts, strconv.Itoa(cpus[i]))
		} else {
			parts = append(parts, strconv.Itoa(cpus[i])+"-"+strconv.Itoa(cpus[j]))
		}
		i = j + 1
	}
	return strings.Join(parts, ",")
}
