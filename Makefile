# homing — build, test and benchmark.
#
#   make deps    install what the build and the tests need (Debian 12, root; idempotent)
#   make build   build bin/homingd and bin/homingctl, stamped with the version (make version)
#   make deb     bin/homing_<version>_amd64.deb (tools/deb, nfpm)
#   make test    deps + build + vet/staticcheck/gofmt + the whole test suite (root tests included)
#   make bench   one table: data plane (Mpps ratios measured side by side, the naive design's row), table writes and memory,
#                gossip convergence (homing, bare multicast, memberlist; root), see docs/PERFORMANCE.md;
#                gossip at scale: apply and join rows, the 4-32 host growth sweep, per-record costs (docs/SCALING.md)
#   make bench-callgrind  the pipeline's instructions per packet (valgrind; BENCH_SESSIONS=1048576 for 1M)
#   make generate  rebuild the committed eBPF objects with Debian's clang, and lcore's copy of the table header
#   make generate-check  regenerate them and fail if they differ from what is committed
#   make image   the container image homing:dev on a private Docker engine (docker/README.md)

SHELL := /bin/bash
GO ?= go
export PATH := /usr/local/go/bin:$(PATH)
export CGO_ENABLED := 1

# systemd: systemd-analyze (the unit's test); prometheus: promtool (the rules' and the
# metrics' tests; on a machine run by systemd, apt also starts a Prometheus server).
APT_PKGS := build-essential pkg-config libdpdk-dev dpdk libpcap-dev libbsd-dev libnuma-dev \
	libelf-dev libbpf-dev clang llvm iproute2 nftables tcpdump valgrind procps kmod \
	iputils-ping systemd prometheus frr

# The version stamped into homingd and homingctl (-version, homingctl version, the
# homing_build_info metric) through github.com/prometheus/common/version: git describe,
# "dev" outside a git checkout. No build date or user: the same tree links the same binary.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
BRANCH ?= $(shell git rev-parse --abbrev-ref HEAD 2>/dev/null)
VERSION_PKG := github.com/prometheus/common/version
LDFLAGS := -X $(VERSION_PKG).Version=$(VERSION) -X $(VERSION_PKG).Revision=$(REVISION) -X $(VERSION_PKG).Branch=$(BRANCH)

PKGS := ./...
# The test harnesses of the cgo packages (lcore's frame runner and benchmark loops,
# table's and dpdk's self-tests) and homing-bench build only with this tag: homingd and
# homingctl do not carry them. Their packages' tests fail without it (TestHarnessTag).
HARNESS := -tags harness
# Go test timeout per package.
TEST_TIMEOUT ?= 15m

.PHONY: all deps build version deb test check unit bench bench-callgrind bench-smoke memberlist-node generate generate-check fuzz clean demo

all: build

# docker.io's postinst would start a dockerd with Docker's default bridge (172.17.0.0/16,
# outside this project's range) where no policy-rc.d forbids it: one does during the install.
deps:
	@missing=""; for p in $(APT_PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "deps: installing$$missing"; \
	  if [ "$$(id -u)" != 0 ]; then echo "deps: need root to install$$missing" >&2; exit 1; fi; \
	  if [ ! -e /usr/sbin/policy-rc.d ]; then \
	    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod 0755 /usr/sbin/policy-rc.d; \
	    trap 'rm -f /usr/sbin/policy-rc.d' EXIT; \
	  fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  for svc in frr prometheus; do case " $$missing " in *" $$svc "*) \
	    if [ -d /run/systemd/system ]; then systemctl disable --now $$svc >/dev/null 2>&1 || true; \
	      echo "deps: $$svc installed for the tests (lab router, promtool); its system service is disabled"; fi;; esac; done; \
	else echo "deps: all Debian packages present"; fi
	@$(GO) version >/dev/null || { echo "deps: Go toolchain not found" >&2; exit 1; }
	@$(GO) mod download
	@cd tools/deb && $(GO) mod download

build:
	@mkdir -p bin
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/ ./cmd/...

# The version make build stamps.
version:
	@echo $(VERSION)

# bin/homing_<version>_amd64.deb: homingd, homingctl, the unit, /etc/homing/homingd.toml,
# docs, rules and dashboard (tools/deb, a Go module of its own around nfpm).
deb: build
	cd tools/deb && $(GO) run . -root ../.. -version "$(VERSION)"

check:
	@bad=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$bad" ]; then echo "gofmt needed:"; echo "$$bad"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) vet $(HARNESS) $(PKGS)
	$(GO) tool staticcheck $(HARNESS) $(PKGS)
	cd internal/gossipbench/memberlist && $(GO) vet ./...

# The whole suite. Root-only tests (netns, DPDK vdevs on interfaces, BPF) run when root;
# with CI=true a missing prerequisite fails the test instead of skipping it.
unit:
	$(GO) test $(HARNESS) -count=1 -timeout $(TEST_TIMEOUT) -p 2 $(PKGS)
	$(GO) test $(HARNESS) -count=1 -race -timeout $(TEST_TIMEOUT) ./gossip/... ./config/... ./session/... ./internal/golden/... \
		./metrics/... ./ctl/... ./cmd/homingctl/... ./probe/... ./internal/gossipbench/...

test: deps build check generate-check unit fuzz-smoke bench-smoke

# Built, not `go run` (which strips the symbols): homing-bench counts its bare loops'
# instructions under callgrind for the table, which needs homing_bench_main's symbol.
bench: deps memberlist-node
	@mkdir -p bin
	$(GO) build $(HARNESS) -o bin/homing-bench ./cmd/homing-bench
	bin/homing-bench $(BENCH_ARGS)
	@# Per-record costs of gossip (docs/SCALING.md): process/thread CPU time.
	$(GO) test $(HARNESS) -run '^$$' -bench 'BenchmarkCost' -benchtime 5x -count 3 ./gossip/
	CI=true $(GO) test $(HARNESS) -run '^$$' -bench 'BenchmarkWriteCPU' -benchtime 4000x -count 3 ./table/

BENCH_SESSIONS ?= 65536
# Built, not `go run`: go run strips the symbol table, and callgrind's --toggle-collect
# then finds no homing_bench_main (and counts nothing).
bench-callgrind: deps
	$(GO) build $(HARNESS) -o bin/homing-bench ./cmd/homing-bench
	bin/homing-bench -callgrind -sessions $(BENCH_SESSIONS)

bench-smoke: memberlist-node
	$(GO) run $(HARNESS) ./cmd/homing-bench -smoke

# The gossip benchmark's memberlist node: a module of its own, so that hashicorp/memberlist
# stays out of homing's go.mod (homing-bench runs it as bin/homing-bench-memberlist).
memberlist-node:
	@mkdir -p bin
	cd internal/gossipbench/memberlist && $(GO) build -o ../../../bin/homing-bench-memberlist .

# Every Fuzz* target for a few seconds each (FUZZTIME, default 3s): under 3 minutes (23 targets: 172 s at 4s each on 2 loaded cores).
fuzz-smoke:
	.ci/fuzz-smoke

generate:
	$(GO) generate ./probe/... ./lcore/...

# The committed bpf2go output must be what `make generate` makes from the C source with
# this machine's clang (Debian 12's clang 14 regenerates it byte for byte), and lcore's
# homing_table.h a copy of table's (lcore/generate.go says why).
generate-check: generate
	@if ! git diff --exit-code --stat -- probe/ lcore/homing_table.h || [ -n "$$(git status --porcelain -- probe/ lcore/homing_table.h)" ]; then \
	  echo "generate-check: the committed generated files (bpf2go output, lcore's copy of the table header) differ from make generate's: commit the regenerated files" >&2; \
	  git status --short -- probe/ lcore/homing_table.h >&2; exit 1; fi

# The POP demo (package lab, cmd/homing-lab): a router, a client and 3 hosts with homingd
# in network namespaces; 300 connections through a drain, a return, a new host and a
# router rehash, with homing and with plain ECMP. Root; under two minutes.
# DEMO_ARGS passes options, e.g. make demo DEMO_ARGS="-conns 1000".
demo: deps
	@mkdir -p bin
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/ ./cmd/homingd ./cmd/homing-lab
	bin/homing-lab demo $(DEMO_ARGS)

# The container test's engine, compose and base image (docker/README.md).
APT_PKGS += docker.io docker-compose mmdebstrap

.PHONY: image
# The container image: make build's binaries and the compose POP's client on Debian 12
# with DPDK 22.11's runtime, built on the private engine of docker/engine.sh (started if
# need be, left running; docker/engine.sh stop ends it). See docker/README.md.
image: build
	$(GO) build -o bin/ ./docker/homing-popclient
	docker/engine.sh start
	eval "$$(docker/engine.sh env)" && docker/image.sh

clean:
	rm -rf bin
