# homing — build, test and benchmark.
#
#   make deps    install what the build and the tests need (Debian 12, root; idempotent)
#   make build   build bin/homingd and bin/homingctl
#   make test    deps + build + vet/staticcheck/gofmt + the whole test suite (root tests included)
#   make bench   one table: data plane (Mpps ratios measured side by side, the naive design's row), table writes and memory,
#                gossip convergence (homing, bare multicast, memberlist; root), see docs/PERFORMANCE.md
#   make bench-callgrind  the pipeline's instructions per packet (valgrind; BENCH_SESSIONS=1048576 for 1M)
#   make generate  rebuild the committed eBPF objects with Debian's clang

SHELL := /bin/bash
GO ?= go
export PATH := /usr/local/go/bin:$(PATH)
export CGO_ENABLED := 1
# The go command does not notice a change of a C header outside a package's own folder
# (lcore includes ../table/homing_table.h): a hash of every header in CGO_CFLAGS, which is
# part of the build cache key, rebuilds the cgo packages when any header changes.
HEADERS_HASH := $(shell cat $(sort $(wildcard */*.h)) | sha256sum | cut -c1-16)
export CGO_CFLAGS := -O2 -g -DHOMING_HEADERS_$(HEADERS_HASH)

APT_PKGS := build-essential pkg-config libdpdk-dev dpdk libpcap-dev libbsd-dev libnuma-dev \
	libelf-dev libbpf-dev clang llvm iproute2 nftables tcpdump valgrind procps kmod \
	iputils-ping

PKGS := ./...
# Go test timeout per package.
TEST_TIMEOUT ?= 15m

.PHONY: all deps build test check unit bench bench-callgrind bench-smoke generate fuzz clean demo

all: build

deps:
	@missing=""; for p in $(APT_PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "deps: installing$$missing"; \
	  if [ "$$(id -u)" != 0 ]; then echo "deps: need root to install$$missing" >&2; exit 1; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	else echo "deps: all Debian packages present"; fi
	@$(GO) version >/dev/null || { echo "deps: Go toolchain not found" >&2; exit 1; }
	@$(GO) mod download

build:
	@mkdir -p bin
	$(GO) build -o bin/ ./cmd/...

check:
	@bad=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$bad" ]; then echo "gofmt needed:"; echo "$$bad"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) tool staticcheck $(PKGS)

# The whole suite. Root-only tests (netns, DPDK vdevs on interfaces, BPF) run when root;
# with CI=true a missing prerequisite fails the test instead of skipping it.
unit:
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) -p 2 $(PKGS)
	$(GO) test -count=1 -race -timeout $(TEST_TIMEOUT) ./gossip/... ./config/... ./session/... ./internal/golden/... \
		./metrics/... ./ctl/... ./cmd/homingctl/... ./probe/... ./internal/gossipbench/...

test: deps build check unit fuzz-smoke bench-smoke

# Built, not `go run` (which strips the symbols): homing-bench counts its bare loops'
# instructions under callgrind for the table, which needs homing_bench_main's symbol.
bench: deps
	@mkdir -p bin
	$(GO) build -o bin/homing-bench ./cmd/homing-bench
	bin/homing-bench $(BENCH_ARGS)

BENCH_SESSIONS ?= 65536
# Built, not `go run`: go run strips the symbol table, and callgrind's --toggle-collect
# then finds no homing_bench_main (and counts nothing).
bench-callgrind: deps
	$(GO) build -o bin/homing-bench ./cmd/homing-bench
	bin/homing-bench -callgrind -sessions $(BENCH_SESSIONS)

bench-smoke:
	$(GO) run ./cmd/homing-bench -smoke

# Every Fuzz* target for a few seconds each (FUZZTIME, default 3s): under 3 minutes (23 targets: 172 s at 4s each on 2 loaded cores).
fuzz-smoke:
	.ci/fuzz-smoke

generate:
	$(GO) generate ./probe/...

# The POP demo (package lab, cmd/homing-lab): a router, a client and 3 hosts with homingd
# in network namespaces; 300 connections through a drain, a return, a new host and a
# router rehash, with homing and with plain ECMP. Root; under two minutes.
# DEMO_ARGS passes options, e.g. make demo DEMO_ARGS="-conns 1000".
demo: deps
	@mkdir -p bin
	$(GO) build -o bin/ ./cmd/homingd ./cmd/homing-lab
	bin/homing-lab demo $(DEMO_ARGS)

clean:
	rm -rf bin
