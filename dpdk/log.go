package dpdk

/*
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <pthread.h>
#include <rte_log.h>

// DPDK's log stream, kept in a buffer that Go drains (ForwardLogs). DPDK writes through
// a FILE; fopencookie turns each write (one message: rte_vlog flushes after each) into a
// record of the message's level, its length and its text. Lcore threads may write, Go
// is never called from them. When the buffer is full, messages are counted and dropped.
#define HLOG_BUF (256 * 1024)

static char hlog_buf[HLOG_BUF];
static size_t hlog_len;
static uint64_t hlog_dropped;
static pthread_mutex_t hlog_mu = PTHREAD_MUTEX_INITIALIZER;
static FILE *hlog_stream;

static ssize_t hlog_write(void *cookie, const char *b, size_t n)
{
	uint8_t level = (uint8_t)rte_log_cur_msg_loglevel();
	uint32_t len = (uint32_t)n;

	(void)cookie;
	pthread_mutex_lock(&hlog_mu);
	if (hlog_len + 5 + n > HLOG_BUF) {
		hlog_dropped++;
	} else {
		hlog_buf[hlog_len] = (char)level;
		memcpy(hlog_buf + hlog_len + 1, &len, 4);
		memcpy(hlog_buf + hlog_len + 5, b, n);
		hlog_len += 5 + n;
	}
	pthread_mutex_unlock(&hlog_mu);
	return (ssize_t)n;
}

// hlog_open makes DPDK write to the buffer (before or after rte_eal_init).
static int hlog_open(void)
{
	if (hlog_stream == NULL) {
		cookie_io_functions_t io = {.write = hlog_write};
		hlog_stream = fopencookie(NULL, "w", io);
		if (hlog_stream == NULL)
			return -1;
	}
	return rte_openlog_stream(hlog_stream);
}

// hlog_close gives DPDK back its default stream. The FILE stays: a thread may hold it.
static void hlog_close(void) { rte_openlog_stream(NULL); }

// hlog_drain moves the buffered records to out (cap bytes; the buffer is never larger),
// returns their length and the messages dropped since the last drain.
static size_t hlog_drain(char *out, size_t cap, uint64_t *dropped)
{
	size_t n;

	pthread_mutex_lock(&hlog_mu);
	n = hlog_len <= cap ? hlog_len : 0;
	memcpy(out, hlog_buf, n);
	hlog_len -= n;
	*dropped = hlog_dropped;
	hlog_dropped = 0;
	pthread_mutex_unlock(&hlog_mu);
	return n;
}

// hlog_test logs msg as the EAL would.
static void hlog_test(uint32_t level, const char *msg) { rte_log(level, RTE_LOGTYPE_EAL, "%s", msg); }

// hlog_test_levels lets every level through (set) or puts back the levels it found,
// whatever an earlier rte_eal_init set.
static void hlog_test_levels(int set)
{
	static uint32_t global;
	static int eal;

	if (set) {
		global = rte_log_get_global_level();
		eal = rte_log_get_level(RTE_LOGTYPE_EAL);
		rte_log_set_global_level(RTE_LOG_DEBUG);
		rte_log_set_level(RTE_LOGTYPE_EAL, RTE_LOG_DEBUG);
		return;
	}
	rte_log_set_global_level(global);
	if (eal >= 0)
		rte_log_set_level(RTE_LOGTYPE_EAL, (uint32_t)eal);
}
*/
import "C"

import (
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"time"
	"unsafe"
)

// LogDrainInterval is how often ForwardLogs passes DPDK's messages to slog. DPDK logs
// at start, stop and on errors, never per packet: a few batches a second cost nothing.
const LogDrainInterval = 100 * time.Millisecond

// ForwardLogs routes DPDK's log stream (rte_openlog_stream) into log, with DPDK's levels
// (emergency..error → ERROR, warning → WARN, notice and info → INFO, debug → DEBUG) and
// source=dpdk, in batches every LogDrainInterval. Call it before Init to get the EAL's
// own start messages too; stop drains what is left and gives DPDK its default stream
// (stderr) back. One forwarding at a time.
func ForwardLogs(log *slog.Logger) (stop func(), err error) {
	if C.hlog_open() != 0 {
		return nil, errors.New("dpdk: cannot open a log stream (fopencookie)")
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // DPDK log forwarder
		defer wg.Done()
		t := time.NewTicker(LogDrainInterval)
		defer t.Stop()
		var pending strings.Builder
		var pendingLevel uint8
		for {
			select {
			case <-t.C:
				drainLogs(log, &pending, &pendingLevel, false)
			case <-done:
				drainLogs(log, &pending, &pendingLevel, true)
				return
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			C.hlog_close()
			close(done)
			wg.Wait()
		})
	}, nil
}

var logBuf = make([]byte, C.HLOG_BUF)

// drainLogs turns the buffered records into slog records, one per line; a line that
// has no newline yet waits for the next drain (unless final).
func drainLogs(log *slog.Logger, pending *strings.Builder, pendingLevel *uint8, final bool) {
	var dropped C.uint64_t
	n := int(C.hlog_drain((*C.char)(unsafe.Pointer(&logBuf[0])), C.size_t(len(logBuf)), &dropped))
	b := logBuf[:n]
	for len(b) >= 5 {
		level, l := b[0], int(binary.NativeEndian.Uint32(b[1:5]))
		text := string(b[5 : 5+l])
		b = b[5+l:]
		for text != "" {
			if pending.Len() == 0 {
				*pendingLevel = level
			}
			line, rest, complete := strings.Cut(text, "\n")
			pending.WriteString(line)
			text = rest
			if !complete {
				break
			}
			emitLog(log, *pendingLevel, pending.String())
			pending.Reset()
		}
	}
	if final && pending.Len() > 0 {
		emitLog(log, *pendingLevel, pending.String())
		pending.Reset()
	}
	if dropped > 0 {
		log.Warn("DPDK log messages dropped (buffer full)", "source", "dpdk", "dropped", uint64(dropped))
	}
}

func emitLog(log *slog.Logger, level uint8, line string) {
	line = strings.TrimSpace(line)
	if line == "" {
		return
	}
	lv := slog.LevelInfo
	switch {
	case level >= 1 && level <= C.RTE_LOG_ERR:
		lv = slog.LevelError
	case level == C.RTE_LOG_WARNING:
		lv = slog.LevelWarn
	case level >= C.RTE_LOG_DEBUG:
		lv = slog.LevelDebug
	}
	log.Log(context.Background(), lv, line, "source", "dpdk")
}

// allLogLevelsForTest lets every DPDK level through until the returned restore.
func allLogLevelsForTest() (restore func()) {
	C.hlog_test_levels(1)
	return func() { C.hlog_test_levels(0) }
}

// logForTest writes msg to DPDK's log at level (1..8) as the EAL would.
func logForTest(level int, msg string) {
	cs := C.CString(msg)
	defer C.free(unsafe.Pointer(cs))
	C.hlog_test(C.uint32_t(level), cs)
}
