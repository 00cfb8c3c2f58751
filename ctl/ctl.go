// Package ctl is the local control protocol between homingd and homingctl: JSON lines
// over a Unix stream socket, one request and one response per connection (a capture's
// response is followed by a stream of JSON lines: stream.go).
//
//	client → server   {"cmd":"sessions","args":{"owner":2,"limit":100}}\n
//	server → client   {"ok":true,"result":{...}}\n
//	              or  {"ok":false,"error":"unknown command \"x\""}\n
//
// The socket is created with mode 0600 (bound under a temporary name, chmod-ed, then
// renamed into place, so it is never reachable with looser permissions) in a directory
// created 0700 if missing. A stale socket left by a crashed daemon is removed at start;
// a socket a live daemon answers on is not (ErrInUse). Close removes it.
//
// Goroutines: "ctl accept" (one per Server) and one short-lived "ctl conn" per
// connection, at most MaxConns at a time.
package ctl

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Protocol limits.
const (
	MaxRequest = 64 << 10         // bytes of one request line
	MaxConns   = 8                // connections served at once
	IOTimeout  = 10 * time.Second // to read a request, and to write a response
)

// Errors.
var (
	// ErrNotRunning: no daemon listens on the socket (missing or refused).
	ErrNotRunning = errors.New("homingd is not running")
	// ErrInUse: another daemon answers on the socket path.
	ErrInUse = errors.New("control socket in use by a running homingd")
	// ErrRequest: a request line that is not a valid request.
	ErrRequest = errors.New("bad control request")
	// ErrUnknownCommand: the daemon does not know the command.
	ErrUnknownCommand = errors.New("unknown command")
)

// Request is one request line.
type Request struct {
	Cmd  string          `json:"cmd"`
	Args json.RawMessage `json:"args,omitempty"`
}

// Response is one response line: Result when OK, Error otherwise.
type Response struct {
	OK     bool            `json:"ok"`
	Error  string          `json:"error,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
}

// DecodeRequest parses one request line (without its newline).
func DecodeRequest(line []byte) (Request, error) {
	var r Request
	if len(line) > MaxRequest {
		return r, fmt.Errorf("%w: %d bytes, at most %d", ErrRequest, len(line), MaxRequest)
	}
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return Request{}, fmt.Errorf("%w: %v", ErrRequest, err)
	}
	if dec.More() {
		return Request{}, fmt.Errorf("%w: trailing data", ErrRequest)
	}
	if r.Cmd == "" || len(r.Cmd) > 32 {
		return Request{}, fmt.Errorf("%w: missing or overlong cmd", ErrRequest)
	}
	if len(r.Args) > 0 && r.Args[0] != '{' && string(r.Args) != "null" {
		return Request{}, fmt.Errorf("%w: args must be an object", ErrRequest)
	}
	return r, nil
}

// Decode decodes a request's arguments into v (unknown fields are errors); no arguments
// leave v as it is.
func (r Request) Decode(v any) error {
	if len(r.Args) == 0 || string(r.Args) == "null" {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(r.Args))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%s: arguments: %v", r.Cmd, err)
	}
	return nil
}

// Handler answers requests. It is called from a connection's goroutine, possibly
// concurrently with itself. ctx ends when the server closes.
type Handler interface {
	Handle(ctx context.Context, r Request) (any, error)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, r Request) (any, error)

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context, r Request) (any, error) { return f(ctx, r) }

// Server serves a Handler on a Unix socket.
type Server struct {
	path   string
	ln     *net.UnixListener
	h      Handler
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	sem    chan struct{}
	once   sync.Once
}

// Listen creates the socket at path and starts serving h.
func Listen(path string, h Handler) (*Server, error) {
	if path == "" {
		return nil, errors.New("control socket: empty path")
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("control socket directory: %w", err)
	}
	if err := removeStale(path); err != nil {
		return nil, err
	}
	// Bind under a temporary name, restrict it, then rename it into place.
	tmp := filepath.Join(dir, "."+filepath.Base(path)+"."+strconv.Itoa(os.Getpid()))
	if len(tmp) > 107 {
		tmp = path // no room for a temporary name: chmod right after bind
	} else {
		_ = os.Remove(tmp)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	ln.SetUnlinkOnClose(false)
	fail := func(err error) (*Server, error) {
		ln.Close()
		_ = os.Remove(tmp)
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	if err := os.Chmod(tmp, 0o600); err != nil {
		return fail(err)
	}
	if tmp != path {
		if err := os.Rename(tmp, path); err != nil {
			return fail(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{path: path, ln: ln, h: h, ctx: ctx, cancel: cancel, sem: make(chan struct{}, MaxConns)}
	s.wg.Add(1)
	go s.accept() // ctl accept
	return s, nil
}

// removeStale removes a socket at path that nobody answers on.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("control socket %s: %w", path, err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("control socket %s: exists and is not a socket", path)
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("%s: %w", path, ErrInUse)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("control socket %s: remove stale: %w", path, err)
	}
	return nil
}

// Path returns the socket's path.
func (s *Server) Path() string { return s.path }

// Close stops accepting, waits for the connections being served and removes the socket.
func (s *Server) Close() error {
	var err error
	s.once.Do(func() {
		s.cancel()
		err = s.ln.Close()
		s.wg.Wait()
		if rerr := os.Remove(s.path); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) && err == nil {
			err = rerr
		}
	})
	return err
}

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if s.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		select {
		case s.sem <- struct{}{}:
		case <-s.ctx.Done():
			c.Close()
			return
		}
		s.wg.Add(1)
		go func() { // ctl conn
			defer s.wg.Done()
			defer func() { <-s.sem }()
			s.serve(c)
		}()
	}
}

func (s *Server) serve(c net.Conn) {
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(IOTimeout))
	line, err := bufio.NewReaderSize(io.LimitReader(c, MaxRequest+1), 4096).ReadBytes('\n')
	if err != nil && !(errors.Is(err, io.EOF) && len(line) > 0) {
		if len(line) > MaxRequest {
			writeResponse(c, Response{Error: fmt.Sprintf("%v: longer than %d bytes", ErrRequest, MaxRequest)})
		}
		return
	}
	resp := Response{}
	req, err := DecodeRequest(bytes.TrimRight(line, "\r\n"))
	if err == nil {
		var res any
		if res, err = s.h.Handle(s.ctx, req); err == nil {
			if st, ok := res.(Streamer); ok {
				s.stream(c, st)
				return
			}
			if resp.Result, err = json.Marshal(res); err == nil {
				resp.OK = true
			}
		}
	}
	if err != nil {
		resp.Error = err.Error()
	}
	_ = c.SetWriteDeadline(time.Now().Add(IOTimeout))
	writeResponse(c, resp)
}

func writeResponse(w io.Writer, r Response) {
	b, _ := json.Marshal(r)
	_, _ = w.Write(append(b, '\n'))
}

// Call sends one request to the daemon at path and decodes the result into result
// (which may be nil). A daemon that does not run gives an error wrapping ErrNotRunning;
// a daemon's refusal gives an error with its message.
func Call(ctx context.Context, path, cmd string, args, result any) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		switch {
		case errors.Is(err, syscall.ENOENT):
			return fmt.Errorf("%w (no socket at %s)", ErrNotRunning, path)
		case errors.Is(err, syscall.ECONNREFUSED):
			return fmt.Errorf("%w (no socket at %s: a stale socket nobody listens on)", ErrNotRunning, path)
		case errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM):
			return fmt.Errorf("control socket %s: permission denied (homingctl must run as the daemon's user, usually root)", path)
		}
		return fmt.Errorf("control socket %s: %w", path, err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	req := Request{Cmd: cmd}
	if args != nil {
		if req.Args, err = json.Marshal(args); err != nil {
			return err
		}
	}
	b, err := json.Marshal(req)
	if err != nil {
		return err
	}
	if _, err := c.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("control socket %s: %w", path, err)
	}
	var resp Response
	if err := json.NewDecoder(c).Decode(&resp); err != nil {
		return fmt.Errorf("control socket %s: reading the response: %w", path, err)
	}
	if !resp.OK {
		return errors.New(resp.Error)
	}
	if result != nil {
		if err := json.Unmarshal(resp.Result, result); err != nil {
			return fmt.Errorf("%s: decoding the result: %w", cmd, err)
		}
	}
	return nil
}
