package ctl

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"time"
)

// Streamer is a result the server streams: the response line carries Head(), then
// Stream writes JSON lines on the connection until it returns (the capture). The
// context ends when the server closes or the client goes away.
type Streamer interface {
	Head() any
	Stream(ctx context.Context, enc *json.Encoder) error
}

// deadlineWriter gives each write of a stream IOTimeout: a client that stops reading
// ends the stream instead of holding the connection.
type deadlineWriter struct{ c net.Conn }

func (w deadlineWriter) Write(p []byte) (int, error) {
	_ = w.c.SetWriteDeadline(time.Now().Add(IOTimeout))
	return w.c.Write(p)
}

// stream writes the head and runs st on c.
func (s *Server) stream(c net.Conn, st Streamer) {
	head, err := json.Marshal(st.Head())
	if err != nil {
		writeResponse(c, Response{Error: err.Error()})
		return
	}
	_ = c.SetWriteDeadline(time.Now().Add(IOTimeout))
	writeResponse(c, Response{OK: true, Result: head})
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	// The client sends nothing more: a read returns when it closes the connection.
	_ = c.SetReadDeadline(time.Time{})
	go func() { // ctl stream watch
		var b [1]byte
		_, _ = c.Read(b[:])
		cancel()
	}()
	_ = st.Stream(ctx, json.NewEncoder(deadlineWriter{c}))
}

// CallStream sends one request whose answer is a stream: head receives the response's
// result, then each is called with every JSON line that follows until the daemon closes
// the stream (nil), each returns an error, or ctx ends.
func CallStream(ctx context.Context, path, cmd string, args, head any, each func(json.RawMessage) error) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return fmt.Errorf("%w (no socket at %s)", ErrNotRunning, path)
		}
		return fmt.Errorf("control socket %s: %w", path, err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
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
	dec := json.NewDecoder(bufio.NewReaderSize(c, 64<<10))
	dec.UseNumber()
	var resp Response
	if err := dec.Decode(&resp); err != nil {
		return fmt.Errorf("control socket %s: reading the response: %w", path, err)
	}
	if !resp.OK {
		return errors.New(resp.Error)
	}
	if head != nil {
		if err := json.Unmarshal(resp.Result, head); err != nil {
			return fmt.Errorf("%s: decoding the result: %w", cmd, err)
		}
	}
	for {
		var line json.RawMessage
		if err := dec.Decode(&line); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("control socket %s: reading the stream: %w", path, err)
		}
		if err := each(line); err != nil {
			return err
		}
	}
}
