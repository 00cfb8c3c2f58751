package metrics

import (
	"log"
	"net/http"
	"time"
)

// Timeouts of the /metrics HTTP server. A scrape is one small GET answered from memory
// (a few hundred KB at most): a client that holds a connection without finishing its
// request, or without reading the answer, is cut off instead of holding a goroutine
// and a descriptor for ever.
const (
	ReadHeaderTimeout = 5 * time.Second  // the request line and headers
	ReadTimeout       = 10 * time.Second // the whole request
	WriteTimeout      = 30 * time.Second // from the request read to the answer written
	IdleTimeout       = 60 * time.Second // a kept-alive connection between scrapes (Prometheus scrapes every 15-60 s)
)

// NewServer returns the HTTP server of the metrics endpoint with the timeouts above.
func NewServer(h http.Handler, errorLog *log.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: ReadHeaderTimeout,
		ReadTimeout:       ReadTimeout,
		WriteTimeout:      WriteTimeout,
		IdleTimeout:       IdleTimeout,
		ErrorLog:          errorLog,
	}
}
