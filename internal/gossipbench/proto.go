package gossipbench

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// The parent drives each child over its stdin and stdout, one line per message.
//
// Parent → child (commands):
//
//	wait <peers> <timeout-ns>          wait until the node sees that many peers   → ok
//	await <base> <count> <timeout-ns>  count applies of sessions base..base+count-1 → armed, later done <got>
//	run <rate> <count> <base>          announce sessions base.. at rate per second → ran <count> <errors> <late-p99-ns>
//	times                              the recorded (session, CLOCK_MONOTONIC ns)  → times <n>, n lines "<index> <ns>", end
//	stats                              the node's counters                          → stats <JSON of gossip.Stats>
//	quit                               exit                                         → bye
//
// Child → parent: "ready" once the node runs (and, for a memberlist peer, has joined),
// the replies above, or "error <message>" for a command that failed.

// command is one parsed command line.
type command struct {
	op   string
	args []int64
}

// arity is the number of arguments of each command.
var arity = map[string]int{"wait": 2, "await": 3, "run": 3, "times": 0, "stats": 0, "quit": 0}

// errProtocol is the error of a line that does not follow the protocol.
var errProtocol = errors.New("gossipbench protocol")

// maxArg bounds every numeric argument (no count, rate, index or timeout is near it).
const maxArg = 1 << 50

// parseCommand parses a command line: an op and its non-negative decimal arguments,
// separated by single spaces.
func parseCommand(line string) (command, error) {
	f := strings.Split(line, " ")
	n, ok := arity[f[0]]
	if !ok {
		return command{}, fmt.Errorf("unknown command %.20q: %w", f[0], errProtocol)
	}
	if len(f)-1 != n {
		return command{}, fmt.Errorf("%s takes %d arguments, got %d: %w", f[0], n, len(f)-1, errProtocol)
	}
	c := command{op: f[0], args: make([]int64, n)}
	for i, s := range f[1:] {
		v, err := parseUint(s)
		if err != nil {
			return command{}, fmt.Errorf("%s argument %d: %w", f[0], i+1, err)
		}
		c.args[i] = v
	}
	return c, nil
}

// String formats c as parseCommand reads it.
func (c command) String() string {
	b := []byte(c.op)
	for _, a := range c.args {
		b = append(b, ' ')
		b = strconv.AppendInt(b, a, 10)
	}
	return string(b)
}

// parseUint parses a plain decimal number in 0..maxArg (no sign, no leading zeros).
func parseUint(s string) (int64, error) {
	if s == "" || len(s) > 16 || (len(s) > 1 && s[0] == '0') {
		return 0, fmt.Errorf("number %.20q: %w", s, errProtocol)
	}
	var v int64
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("number %.20q: %w", s, errProtocol)
		}
		v = v*10 + int64(s[i]-'0')
	}
	if v > maxArg {
		return 0, fmt.Errorf("number %s out of range: %w", s, errProtocol)
	}
	return v, nil
}

// Sample is one event: session Index announced, or applied, at At, CLOCK_MONOTONIC
// nanoseconds (one clock for every process of the machine).
type Sample struct {
	Index int
	At    int64
}

// appendSample appends s's line (without the newline).
func appendSample(b []byte, s Sample) []byte {
	b = strconv.AppendInt(b, int64(s.Index), 10)
	b = append(b, ' ')
	return strconv.AppendInt(b, s.At, 10)
}

// parseSample parses a sample line, "<index> <ns>".
func parseSample(line string) (Sample, error) {
	a, b, ok := strings.Cut(line, " ")
	if !ok {
		return Sample{}, fmt.Errorf("sample %.40q: %w", line, errProtocol)
	}
	i, err := parseUint(a)
	if err != nil || i > maxIndex {
		return Sample{}, fmt.Errorf("sample index %.20q: %w", a, errProtocol)
	}
	at, err := parseUint(b)
	if err != nil {
		return Sample{}, fmt.Errorf("sample time: %w", err)
	}
	return Sample{Index: int(i), At: at}, nil
}

// reply splits a child's line into its first word and the rest, and turns "error
// <message>" into an error.
func reply(line string) (word, rest string, err error) {
	word, rest, _ = strings.Cut(line, " ")
	if word == "error" {
		return word, rest, errors.New(rest)
	}
	return word, rest, nil
}

// replyInts parses rest as n space-separated non-negative numbers.
func replyInts(rest string, n int) ([]int64, error) {
	f := strings.Fields(rest)
	if len(f) != n {
		return nil, fmt.Errorf("want %d numbers in %.40q: %w", n, rest, errProtocol)
	}
	out := make([]int64, n)
	for i, s := range f {
		v, err := parseUint(s)
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}
