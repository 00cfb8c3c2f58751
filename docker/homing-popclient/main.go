// Command homing-popclient is the compose POP's traffic: the echo service each host
// container runs on the VIP, and the client container's byte-checking connections (the
// lab's Fleet, package lab).
//
//	homing-popclient serve ADDR                  echo service on ADDR (VIP:port)
//	homing-popclient run [-addr A] [-conns N] [-status S]
//	                                             N long-lived connections to A, each sending a
//	                                             numbered chunk every 100-300 ms and checking
//	                                             its echo; their counts at http://S/counts
//	homing-popclient counts [-status S]          print those counts (JSON)
//
// serve binds with IP_FREEBIND: it starts before homingd has put the VIP on its TAP
// interface. The counts are lab.Counts plus the errors of up to 10 ended connections.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/homing-dev/homing/lab"
)

// DefaultStatus is where run serves its counts: the client container's loopback.
const DefaultStatus = "127.0.0.1:9380"

// Report is what /counts answers.
type Report struct {
	Conns int `json:"conns"`
	lab.Counts
	Ended []string `json:"ended,omitempty"`
	Bulk  *Bulk    `json:"bulk,omitempty"`
}

// Bulk are connections that send a block of full-size segments every second and check
// its echo: through a tunnel those exceed the LAN's MTU (see DESIGN.md, the lab).
type Bulk struct {
	Conns     int    `json:"conns"`
	Size      int    `json:"size"`
	Exchanges uint64 `json:"exchanges"`
	Ended     int    `json:"ended"`
	Corrupted uint64 `json:"corrupted"`
	mu        sync.Mutex
	Errors    []string `json:"errors,omitempty"`
}

// runBulk dials n connections to addr and keeps each sending b.Size bytes every second
// and reading them back, until ctx ends.
func (b *Bulk) run(ctx context.Context, addr string) error {
	var d net.Dialer
	for i := range b.Conns {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return fmt.Errorf("bulk connection %d: %w", i, err)
		}
		go b.loop(ctx, c.(*net.TCPConn), i)
	}
	return nil
}

func (b *Bulk) loop(ctx context.Context, c *net.TCPConn, id int) {
	defer c.Close()
	want, got := make([]byte, b.Size), make([]byte, b.Size)
	for seq := 0; ; seq++ {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
		for i := range want {
			want[i] = byte(id*131 + seq*7 + i)
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		errc := make(chan error, 1)
		go func() { _, err := c.Write(want); errc <- err }() // writer: the echo flows back meanwhile
		_, err := io.ReadFull(c, got)
		if werr := <-errc; err == nil {
			err = werr
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			b.mu.Lock()
			b.Ended++
			if len(b.Errors) < 10 {
				b.Errors = append(b.Errors, fmt.Sprintf("bulk connection %d from %s: %v", id, c.LocalAddr(), err))
			}
			b.mu.Unlock()
			return
		}
		bad := 0
		for i := range want {
			if want[i] != got[i] {
				bad++
			}
		}
		b.mu.Lock()
		b.Exchanges++
		b.Corrupted += uint64(bad)
		b.mu.Unlock()
	}
}

// snapshot copies the counters.
func (b *Bulk) snapshot() *Bulk {
	b.mu.Lock()
	defer b.mu.Unlock()
	return &Bulk{Conns: b.Conns, Size: b.Size, Exchanges: b.Exchanges, Ended: b.Ended, Corrupted: b.Corrupted,
		Errors: append([]string(nil), b.Errors...)}
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "serve":
		if len(os.Args) != 3 {
			usage()
		}
		err = serve(os.Args[2])
	case "run":
		err = run(os.Args[2:])
	case "counts":
		err = counts(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "homing-popclient:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: homing-popclient serve ADDR | run [-addr A] [-conns N] [-status S] | counts [-status S]")
	os.Exit(2)
}

// serve is lab.Serve with IP_FREEBIND.
func serve(addr string) error {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_IP, syscall.IP_FREEBIND, 1)
		})
		return errors.Join(err, serr)
	}}
	ln, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		return err
	}
	return lab.EchoTCP(ln, addr)
}

func run(args []string) error {
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	addr := fs.String("addr", "198.19.207.1:80", "the service (VIP:port)")
	conns := fs.Int("conns", 300, "connections")
	status := fs.String("status", DefaultStatus, "where to serve the counts")
	bulk := fs.Int("bulk", 0, "connections that also send -size bytes every second")
	size := fs.Int("size", 64<<10, "bytes per bulk exchange")
	_ = fs.Parse(args)
	ln, err := net.Listen("tcp", *status)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	t := time.Now()
	fleet, err := lab.Dial(ctx, "", *addr, *conns, 16)
	if err != nil {
		return err
	}
	fleet.Start()
	var bk *Bulk
	if *bulk > 0 {
		bk = &Bulk{Conns: *bulk, Size: *size}
		if err := bk.run(ctx, *addr); err != nil {
			return err
		}
	}
	fmt.Printf("%d connections to %s open (%.1fs); counts at http://%s/counts\n", *conns, *addr,
		time.Since(t).Seconds(), *status)
	mux := http.NewServeMux()
	mux.HandleFunc("/counts", func(w http.ResponseWriter, _ *http.Request) {
		rep := Report{Conns: *conns, Counts: fleet.Counts()}
		if bk != nil {
			rep.Bulk = bk.snapshot()
		}
		for i, c := range fleet.Ended() {
			if i == 10 {
				rep.Ended = append(rep.Ended, fmt.Sprintf("... %d more", len(fleet.Ended())-10))
				break
			}
			rep.Ended = append(rep.Ended, fmt.Sprintf("connection %d from %s: %v", c.ID, c.Local, c.Err()))
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(rep)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { // counts server
		_ = srv.Serve(ln)
	}()
	<-ctx.Done()
	_ = srv.Close()
	fleet.Stop()
	c := fleet.Counts()
	fmt.Printf("stopped: %d exchanges, %d reset, %d failed, %d bad bytes\n", c.Exchanges, c.Reset, c.Failed, c.Corrupted)
	return nil
}

func counts(args []string) error {
	fs := flag.NewFlagSet("counts", flag.ExitOnError)
	status := fs.String("status", DefaultStatus, "where run serves the counts")
	_ = fs.Parse(args)
	cl := http.Client{Timeout: 5 * time.Second}
	resp, err := cl.Get("http://" + *status + "/counts")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("counts: %s", resp.Status)
	}
	_, err = io.Copy(os.Stdout, resp.Body)
	return err
}
