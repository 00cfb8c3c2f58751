package gossipbench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is a child process running one node in a host namespace, seen from the parent.
type proc struct {
	name  string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string // stdout, line by line; closed at its end
	errb  *tail       // the end of stderr, for error messages
	exit  chan struct{}
	err   error // of Wait, once exit is closed

	stopped bool
}

// errChild is the error of a child that misbehaved: exited, timed out, or answered
// out of protocol.
var errChild = errors.New("gossip node")

// startProc starts argv in namespace ns with ip netns exec (which execs argv: the
// child's pid is the started process's), with env added to the environment. The
// child gets SIGKILL if the parent dies.
func startProc(name, ns string, argv, env []string) (*proc, error) {
	p := &proc{name: name, lines: make(chan string, 4096), errb: &tail{max: 4096}, exit: make(chan struct{})}
	p.cmd = exec.Command("ip", append([]string{"netns", "exec", ns}, argv...)...)
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p.cmd.Stderr = p.errb
	if len(env) > 0 {
		p.cmd.Env = append(os.Environ(), env...)
	}
	var err error
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<16), 1<<20)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
		p.err = p.cmd.Wait()
		close(p.exit)
	}()
	return p, nil
}

// send writes a command line.
func (p *proc) send(c command) error {
	if _, err := io.WriteString(p.stdin, c.String()+"\n"); err != nil {
		return fmt.Errorf("%s: %s: %w", p.name, c, errors.Join(err, errChild))
	}
	return nil
}

// next returns the next line, failing after timeout, when ctx ends, or when the child
// has exited.
func (p *proc) next(ctx context.Context, timeout time.Duration) (string, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case l, ok := <-p.lines:
		if !ok {
			<-p.exit
			return "", fmt.Errorf("%s exited (%v): %s: %w", p.name, p.err, p.errb, errChild)
		}
		return l, nil
	case <-t.C:
		return "", fmt.Errorf("%s: no answer within %v: %w", p.name, timeout, errChild)
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// expect reads the next line, which must start with word, and returns the rest.
func (p *proc) expect(ctx context.Context, timeout time.Duration, word string) (string, error) {
	l, err := p.next(ctx, timeout)
	if err != nil {
		return "", err
	}
	w, rest, err := reply(l)
	if err != nil {
		return "", fmt.Errorf("%s: %w", p.name, err)
	}
	if w != word {
		return "", fmt.Errorf("%s: got %.60q, want %s: %w", p.name, l, word, errChild)
	}
	return rest, nil
}

// call sends c and expects word.
func (p *proc) call(ctx context.Context, timeout time.Duration, c command, word string) (string, error) {
	if err := p.send(c); err != nil {
		return "", err
	}
	return p.expect(ctx, timeout, word)
}

// ints is call with a reply of n numbers.
func (p *proc) ints(ctx context.Context, timeout time.Duration, c command, word string, n int) ([]int64, error) {
	rest, err := p.call(ctx, timeout, c, word)
	if err != nil {
		return nil, err
	}
	v, err := replyInts(rest, n)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p.name, err)
	}
	return v, nil
}

// samples asks for the recorded times.
func (p *proc) samples(ctx context.Context, timeout time.Duration) ([]Sample, error) {
	v, err := p.ints(ctx, timeout, command{op: "times"}, "times", 1)
	if err != nil {
		return nil, err
	}
	out := make([]Sample, 0, v[0])
	for range v[0] {
		l, err := p.next(ctx, timeout)
		if err != nil {
			return nil, err
		}
		s, err := parseSample(l)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p.name, err)
		}
		out = append(out, s)
	}
	if _, err := p.expect(ctx, timeout, "end"); err != nil {
		return nil, err
	}
	return out, nil
}

// stop asks the child to quit, kills it (by its pid) if it has not exited within a
// second, and returns the CPU time it used. Only the first call acts.
func (p *proc) stop() time.Duration {
	if !p.stopped {
		p.stopped = true
		_ = p.send(command{op: "quit"})
		_ = p.stdin.Close()
		go func() {
			for range p.lines { // drain, so that the reader reaches Wait
			}
		}()
		select {
		case <-p.exit:
		case <-time.After(time.Second):
			_ = p.cmd.Process.Kill()
			<-p.exit
		}
	}
	if st := p.cmd.ProcessState; st != nil {
		return st.UserTime() + st.SystemTime()
	}
	return 0
}

// tail keeps the last max bytes written to it.
type tail struct {
	mu  sync.Mutex // protects b
	b   []byte
	max int
}

func (t *tail) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, b...)
	if len(t.b) > t.max {
		t.b = t.b[len(t.b)-t.max:]
	}
	return len(b), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := strings.TrimSpace(string(bytes.ToValidUTF8(t.b, nil)))
	if s == "" {
		return "no stderr"
	}
	return s
}
