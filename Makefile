# Strait's build, test and code generation. `make test` is what CI runs.
SHELL := /bin/bash
GO ?= go
BUF := $(GO) tool -modfile=tools/go.mod buf
# Packages whose tests exercise concurrency also run under the race detector.
RACE_PKGS ?= ./federation/... ./trust/... ./gateway/... ./proxy/... ./internal/...
# The failover scenarios print their table from this file.
E2E_REPORT ?= $(CURDIR)/.cache/e2e-report.jsonl

.PHONY: all build test unit race vet fmt-check proto proto-check lint-proto tools e2e bench bench-micro bench-peers fuzz clean

all: build

build:
	$(GO) build -o bin/strait ./cmd/strait

## test: everything CI runs: formatting, vet, generated code, the pinned test
## tools, every test (unit, integration, real SPIRE, real kube-apiserver, and
## the network-namespace end-to-end suites, which need root), then the race
## detector on the concurrent packages.
test: fmt-check vet proto-check tools unit race

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

unit:
	@mkdir -p $(dir $(E2E_REPORT)) && rm -f $(E2E_REPORT)
	STRAIT_E2E_REPORT=$(E2E_REPORT) $(GO) test -count=1 -timeout 25m ./...
	@if [ -s $(E2E_REPORT) ]; then $(GO) run ./e2e/load/cmd/e2e-table $(E2E_REPORT); fi

race:
	$(GO) test -race -count=1 -short -timeout 15m $(RACE_PKGS)

## tools: build the pinned test tools once (etcd, etcdctl, fortio, SPIRE,
## kube-apiserver) into gitignored bin directories; later runs reuse them.
tools:
	e2e/tools/build.sh >/dev/null
	e2e/tools/build-spire.sh >/dev/null
	e2e/kubetools/build.sh >/dev/null

## e2e: the multi-cluster failover scenarios on network namespaces (root),
## with their table of requests, failures, reroute and return times.
e2e: tools
	@mkdir -p $(dir $(E2E_REPORT)) && rm -f $(E2E_REPORT)
	STRAIT_E2E_REPORT=$(E2E_REPORT) $(GO) test -count=1 -timeout 20m -v ./e2e/failover/... ./e2e/smoke/... | grep -E '^(=== RUN|--- |PASS|FAIL|ok)'; \
	status=$${PIPESTATUS[0]}; $(GO) run ./e2e/load/cmd/e2e-table $(E2E_REPORT); exit $$status

## bench: Go micro-benchmarks (header codec, SNI parse, relay, snapshot
## reads, the 1 MiB full-path transfer) with benchstat, then the side-by-side
## harness against direct TCP, stunnel4, haproxy and a raw quic-go relay.
## Results: .cache/bench-micro.txt and .cache/bench.jsonl (one JSON per row).
bench: bench-micro bench-peers

bench-micro:
	@mkdir -p .cache
	$(GO) test -run '^$$' -bench 'Header|Reply|ClientHello|Relay|SnapshotRead|Transfer1MiB|Encode|Decode' -benchtime 1s -count 3 \
		./gateway/... ./federation/ ./proxy/... ./internal/devcluster/ | tee .cache/bench-micro.txt
	$(GO) tool -modfile=tools/go.mod benchstat .cache/bench-micro.txt

bench-peers: tools
	@mkdir -p .cache
	$(GO) run ./e2e/bench/cmd/straitbench -json .cache/bench.jsonl

## proto: regenerate the Go code from proto/ with pinned tools.
proto: lint-proto
	$(BUF) generate

lint-proto:
	$(BUF) lint

## proto-check: fail when the committed generated code is stale.
proto-check: proto
	@if [ -n "$$(git status --porcelain -- proto)" ]; then \
		echo "generated code in proto/ is stale: run 'make proto' and commit"; \
		git status --porcelain -- proto; git diff --stat -- proto; exit 1; fi

## fuzz: run every fuzz target for FUZZTIME each (default 30s).
FUZZTIME ?= 30s
fuzz:
	@for t in "FuzzReadHeader ./gateway/tunnel" "FuzzReadReply ./gateway/tunnel" "FuzzParseRefusal ./gateway/tunnel" "FuzzParseClientHello ./gateway/sni" \
		"FuzzDecodeRecord ./federation" "FuzzUnmarshalBundle ./trust" "FuzzReadHeader ./proxy/proxyproto" "FuzzHandle ./proxy/dns"; do \
		set -- $$t; echo "== $$1 $$2"; $(GO) test -run '^$$' -fuzz "^$$1$$" -fuzztime $(FUZZTIME) $$2 || exit 1; done

clean:
	rm -rf bin .cache
