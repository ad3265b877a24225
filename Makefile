# Gatehouse — build, run, test, benchmark.
# `make run` and `make test` are all a fresh machine needs; tools are
# installed with apt when missing.

SHELL      := /bin/bash
GO         ?= go
# The Go release that builds and tests: go.mod's toolchain line, the newest
# patch release (the standard library's security fixes reach the binary
# only through it). A Go older than that fetches it once through the
# module proxy (GOTOOLCHAIN=auto); where it cannot be had, the Go at hand
# builds, with a warning, and the binary carries that release's flaws.
export GOTOOLCHAIN := $(shell GOTOOLCHAIN=auto $(GO) version >/dev/null 2>&1 && echo auto || echo local)
ifeq ($(GOTOOLCHAIN),local)
$(warning the Go release go.mod names ($(shell sed -n 's/^toolchain //p' go.mod)) could not be fetched; building with $(shell GOTOOLCHAIN=local $(GO) env GOVERSION), which lacks its security fixes)
endif
BIN        := bin/caddy
GO_SOURCES := $(shell find . -name '*.go' -not -path './bench/out/*' 2>/dev/null) go.mod go.sum
TEST_TIMEOUT ?= 12m
FUZZTIME   ?= 10s
FUZZJOBS   ?= 1

.PHONY: all build run test vet lint fuzz bench bench-redis xcaddy tools docs-check test-samba clean

all: build

build: $(BIN)

# The binary is a real file target: it is rebuilt only when a Go file changed.
$(BIN): $(GO_SOURCES)
	@mkdir -p bin
	$(GO) build -o $(BIN) ./cmd/caddy

run: $(BIN)
	@mkdir -p data
	./$(BIN) run --config Caddyfile.example --adapter caddyfile

# Tools the tests drive as real, independent clients and servers, and the
# libraries the assertion snippets of docs/upstreams.md run with: Debian's
# python3-jwt (for /usr/bin/python3) and npm's jose (in tools/jsverify).
APT_TOOLS := redis-server:redis-server oathtool:oathtool curl:curl openssl:openssl chromium:chromium node:nodejs npm:npm jq:jq slapd:slapd ldapmodify:ldap-utils
tools:
	@missing=""; for pair in $(APT_TOOLS); do cmd=$${pair%%:*}; pkg=$${pair##*:}; \
	  command -v $$cmd >/dev/null 2>&1 || missing="$$missing $$pkg"; done; \
	/usr/bin/python3 -c 'import jwt, cryptography' >/dev/null 2>&1 || missing="$$missing python3-jwt python3-cryptography"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
	@[ -d tools/jsverify/node_modules/jose ] || npm ci --prefix tools/jsverify --no-audit --no-fund --silent

vet:
	$(GO) vet ./...

# golangci-lint with the linters of .golangci.yml, pinned in its own module
# (tools/lint/go.mod) so the product's go.mod does not carry it. The first
# run builds it (minutes); later runs reuse Go's build cache and the
# linter's own cache. --allow-parallel-runners: a second checkout's lint
# (another clone's make test on the same machine) runs beside this one
# rather than failing the run ("parallel golangci-lint is running").
GOLANGCI_LINT := $(GO) tool -modfile=tools/lint/go.mod golangci-lint
lint:
	$(GOLANGCI_LINT) run --allow-parallel-runners ./...

# Every test under the race detector, against bin/caddy; then every
# benchmark once (-benchtime 1x; those that fill a store or a cache with
# up to a million keys take 20 000: internal/benchscale), so that none
# breaks unseen; then the byte cache's own tests once more without the
# detector: race builds keep its chunks on the Go heap (the detector
# watches only the heap), others map them. The benchmarks run apart, in
# the packages that have some: given -bench, go test runs its packages
# one at a time, and only once every one is built (the tests took 12 of
# make test's 14 minutes that way, 7 when packages run two at a time).
#
# TEST_PARALLEL is how many of a package's parallel tests run at a time
# (go test -parallel, whose default is GOMAXPROCS). The integration tests
# that own everything they start call t.Parallel
# (integration/parallel_test.go); they spend most of their time waiting
# on bin/caddy, Redis, slapd and their polls, so four overlap well even
# on two cores (on a loaded 2-core machine the package took 212 s with
# four at a time, 272 s with two, 292-312 s before its tests ran in
# parallel). Those that assert a duration run first, alone. The tests
# of audit and storage/redis that own their state call t.Parallel too
# (each package's parallel_test.go): Redis servers, clusters and the
# audit writer's ticks are waits as well (storage/redis took 37-57 s
# instead of 63-78 s beside audit and plugin/basic on the loaded 2-core
# machine); audit's duration-bound tests, serial, are most of its time.
# plugin/basic's tests stay serial: they hold or share the process's
# argon2 slots and are CPU-bound (four at a time took as long in all).
TEST_PARALLEL ?= 4
#
# TEST_PROCS is how many packages' test binaries run at a time (go test
# -p, whose default is the number of CPUs): at least three, since most
# packages' tests wait (on servers they start, on polls) more than they
# compute. With two, the integration package held one slot for its
# ~200 s while every other package ran one after another in the other;
# with three, on the quiet 2-core machine, the tests took 256 s instead
# of 430 s (each package within a few seconds of its time with two).
TEST_PROCS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); [ $$n -lt 3 ] && n=3; echo $$n)
TEST_ENV   := GATEHOUSE_CADDY_BIN=$(abspath $(BIN)) GATEHOUSE_REQUIRE_REDIS=1 GATEHOUSE_REQUIRE_TOOLS=1 GATEHOUSE_BENCH_KEYS=20000
BENCH_PKGS  = $(sort $(dir $(shell grep -rl --include='*_test.go' '^func Benchmark' . | grep -v '^./bench/out/')))
test: tools $(BIN) vet lint docs-check
	$(TEST_ENV) $(GO) test -race -count=1 -p $(TEST_PROCS) -parallel $(TEST_PARALLEL) -timeout $(TEST_TIMEOUT) ./...
	$(TEST_ENV) $(GO) test -race -count=1 -run '^$$' -bench . -benchtime 1x -timeout $(TEST_TIMEOUT) $(BENCH_PKGS)
	$(GO) test -count=1 ./internal/bytecache

# The Active Directory test against a Samba AD DC it provisions (root,
# ports 389/636 free; installs samba and winbind, whose winbindd the DC
# starts, when missing). Not part of make test:
# docs/operators/directory.md says why.
test-samba: tools
	command -v samba-tool >/dev/null && command -v winbindd >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q samba winbind
	GATEHOUSE_TEST_SAMBA=1 $(GO) test -count=1 -run TestDirectoryAgainstSambaAD -v ./directory/

# Runs the documentation's shell blocks marked runnable (```sh runnable)
# against bin/caddy with Caddyfile.example, as `make run` runs it, on the
# same fixed ports (2019, 8443, 8001, 9080).
docs-check: tools $(BIN)
	tools/docs-check.sh $(abspath $(BIN))

# Every fuzz target for FUZZTIME each (the seeds also run in `make test`),
# FUZZJOBS targets at a time (each with its own fuzzing workers); stops at
# the first crasher, which Go keeps under the package's testdata/fuzz as a
# seed (tools/fuzz-one.sh).
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for target in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz'); do \
	    echo "$$pkg $$target"; \
	  done; \
	done | xargs -P $(FUZZJOBS) -L 1 sh -c 'tools/fuzz-one.sh "$$0" "$$1" $(FUZZTIME)'

# The side-by-side benchmark: plain reverse_proxy vs each credential kind
# and the peers (docs/benchmarks.md). SCALE=1000000 seeds that many app keys
# and connector token pairs and draws them at random; BENCH_PIN=1 puts
# Caddy, the backends and the load generator on disjoint CPUs (>= 8);
# BENCH_FLAGS passes more flags (bin/bench -h). bin/bench and bin/caddy
# together run the bench on a machine without Go.
BENCH_BIN := bin/bench
$(BENCH_BIN): $(GO_SOURCES)
	@mkdir -p bin
	$(GO) build -o $(BENCH_BIN) ./bench

bench: tools $(BIN) $(BENCH_BIN)
	./$(BENCH_BIN) -caddy $(abspath $(BIN)) $(if $(SCALE),-scale $(SCALE)) $(if $(ROUNDS),-rounds $(ROUNDS)) $(if $(DURATION),-duration $(DURATION)) $(BENCH_FLAGS)

# Gatehouse on a Redis Cluster of three primaries (redis-cli --cluster
# create) behind bin/caddy: Redis commands per request of each kind,
# cache-hot and cache-miss, their spread over the primaries, the writes of
# a minute of steady traffic, and the ceiling of Gatehouse's one hash slot
# (docs/operators/clusters.md, "Why one slot"). About 3 minutes; results
# also in bench/out/redis-cluster.json. BENCH_FLAGS as for bench.
bench-redis: tools $(BIN) $(BENCH_BIN)
	./$(BENCH_BIN) -caddy $(abspath $(BIN)) -redis-cluster $(if $(DURATION),-duration $(DURATION)) $(BENCH_FLAGS)

# Prints (and with XCADDY_RUN=1 runs) the xcaddy command line of xcaddy.json.
xcaddy:
	@$(GO) run ./tools/xcaddycmd $(if $(XCADDY_RUN),-run) xcaddy.json

clean:
	rm -rf bin bench/out
