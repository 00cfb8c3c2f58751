package metrics

import (
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestServerTimeouts: the metrics server has every timeout, and a client that never
// finishes its request headers (slowloris) is cut off after ReadHeaderTimeout, while a
// scrape is answered.
func TestServerTimeouts(t *testing.T) {
	t.Parallel()
	srv := NewServer(New(SourceFunc(fakeSnapshot), Info{HostID: 1}).Handler(), nil)
	if srv.ReadHeaderTimeout != 5*time.Second || srv.ReadTimeout != 10*time.Second ||
		srv.WriteTimeout != 30*time.Second || srv.IdleTimeout != 60*time.Second {
		t.Fatalf("timeouts: header %v, read %v, write %v, idle %v", srv.ReadHeaderTimeout, srv.ReadTimeout, srv.WriteTimeout, srv.IdleTimeout)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })

	resp, err := http.Get("http://" + ln.Addr().String() + "/")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %v %v", resp, err)
	}
	resp.Body.Close()

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	if _, err := io.WriteString(c, "GET /metrics HTTP/1.1\r\nHost: x\r\n"); err != nil { // no final CRLF
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(15 * time.Second))
	_, err = io.ReadAll(c) // the server closes the connection (perhaps after a 408)
	took := time.Since(start)
	if err != nil || took < ReadHeaderTimeout-time.Second || took > ReadHeaderTimeout+3*time.Second {
		t.Errorf("half a request: connection closed after %v (err %v), want about %v", took, err, ReadHeaderTimeout)
	}
}
