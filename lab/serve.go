package lab

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
)

// ServeEnv names the environment variable that carries the echo service's listen address
// ("198.19.255.1:80") to the process the lab starts in a host (Options.Serve).
const ServeEnv = "HOMING_LAB_SERVE"

// ServeReady is the line the echo service prints once it listens.
const ServeReady = "echo service ready"

// ServeFromEnv runs the echo service if ServeEnv is set, and then exits the process; it
// returns at once otherwise. A program that is the lab's Options.Serve (homing-lab's
// "serve", a test binary's TestMain) calls it first.
func ServeFromEnv() {
	addr := os.Getenv(ServeEnv)
	if addr == "" {
		return
	}
	if err := serveQUICFromEnv(addr); err != nil {
		fmt.Fprintln(os.Stderr, "QUIC echo service:", err)
		os.Exit(1)
	}
	if err := Serve(addr); err != nil {
		fmt.Fprintln(os.Stderr, "echo service:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// Serve listens on addr (TCP) and echoes every byte of every connection back, and
// echoes every UDP datagram to addr (a DNS-like request/response service), until
// SIGTERM or SIGINT. It prints ServeReady to stdout once it listens.
func Serve(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		ln.Close()
		return err
	}
	defer pc.Close()
	go func() { // UDP echo
		buf := make([]byte, 65536)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo(buf[:n], from)
		}
	}()
	return EchoTCP(ln, addr)
}

// EchoTCP echoes every byte of every connection of ln back until SIGTERM or SIGINT,
// and then closes ln. It prints ServeReady with addr to stdout first.
func EchoTCP(ln net.Listener, addr string) error {
	fmt.Printf("%s on %s (pid %d)\n", ServeReady, addr, os.Getpid())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() { // signal watcher
		<-sig
		ln.Close()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		go func() { // echo, one per connection
			defer c.Close()
			_, _ = io.Copy(c, c)
		}()
	}
}
