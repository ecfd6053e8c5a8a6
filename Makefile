# Strait's build, test and code generation. `make test` is what CI runs.
SHELL := /bin/bash
GO ?= go
BUF := $(GO) tool -modfile=tools/go.mod buf
# Packages whose tests exercise concurrency also run under the race detector.
RACE_PKGS ?= ./federation/... ./trust/... ./gateway/... ./proxy/... ./internal/...
# The end-to-end suites (network namespaces, real SPIRE and processes under
# their own uids, all as root; the benchmark harness's smoke). `make test` runs
# them after everything else and one package at a time, so that their timing
# bounds compete neither with the other packages (the 1 GiB transfer, the
# handshake flood) nor with each other.
E2E_PKGS ?= ./e2e/...
# The failover scenarios print their table from this file.
E2E_REPORT ?= $(CURDIR)/.cache/e2e-report.jsonl
# Every fuzz target, as Name:package. `make fuzz` runs each; fuzz-check (part
# of `make test`) fails when the tree has one this list lacks, or the other
# way round. `go test` runs each target's seed corpus (f.Add and
# testdata/fuzz/<Name>) in the package's own tests.
FUZZ_TARGETS := FuzzReadHeader:./gateway/tunnel FuzzReadReply:./gateway/tunnel FuzzParseRefusal:./gateway/tunnel \
	FuzzParseClientHello:./gateway/sni FuzzReadClientHello:./gateway/sni FuzzDecodeRecord:./federation FuzzParseServiceName:./federation FuzzWorkloadParts:./federation \
	FuzzUnmarshalBundle:./trust FuzzReadHeader:./proxy/proxyproto FuzzHandle:./proxy/dns FuzzReadSigned:./gateway/probe \
	FuzzDecode:./internal/etcdlite

.PHONY: all build test unit race e2e-all vet fmt-check fuzz-check proto proto-check lint-proto tools e2e bench bench-micro bench-peers fuzz clean

all: build

## build: bin/strait, bin/strait-proxy, the per-pod proxy alone, built with
## the flags of cmd/strait-proxy/build.flags (the tag grpcnotrace leaves
## grpc's x/net/trace out: 3.5 MB less to map; the tag straitetcdlite puts
## federation over internal/etcdlite instead of clientv3: 1.35 MB less; no
## inlining in the control plane: 0.9 MB less), and bin/strait-init, its
## init container (the capture rules' nftables code, which the proxy then
## does not carry).
PROXY_BUILD_FLAGS := $(shell sed -e '/^[[:space:]]*\#/d' cmd/strait-proxy/build.flags)
build:
	$(GO) build -o bin/strait ./cmd/strait
	$(GO) build $(PROXY_BUILD_FLAGS) -o bin/strait-proxy ./cmd/strait-proxy
	$(GO) build -o bin/strait-init ./cmd/strait-init

## test: everything CI runs: formatting, vet, generated code, the list of
## fuzz targets, the pinned test tools; every test outside e2e/ (unit,
## integration, real kube-apiserver; each fuzz target's seed corpus), the race
## detector on the concurrent packages, and last the end-to-end suites of
## e2e/ one package at a time (network namespaces, real SPIRE, the benchmark
## harness's smoke: root), with the failover scenarios' table; then
## e2e-kube, Strait on three real Kubernetes clusters, with its table.
test: fmt-check vet proto-check fuzz-check tools unit race e2e-all e2e-kube

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

## unit: every package outside e2e/, several at a time.
unit:
	$(GO) test -count=1 -timeout 20m $$($(GO) list ./... | grep -v '^github.com/strait-mesh/strait/e2e/')

race:
	$(GO) test -race -count=1 -short -timeout 15m $(RACE_PKGS)

## e2e-all: every package of e2e/ (root), one at a time (-p 1), then the
## failover scenarios again with every proxy in session mode (issue 16, at
## its defaults: sessionPipeline off; about 3.5 minutes), then the failover
## scenarios' table of both modes (printed when a test failed too).
e2e-all:
	@mkdir -p $(dir $(E2E_REPORT)) && rm -f $(E2E_REPORT)
	@echo "STRAIT_E2E_REPORT=$(E2E_REPORT) $(GO) test -p 1 -count=1 -timeout 25m $(E2E_PKGS)"; \
	STRAIT_E2E_REPORT=$(E2E_REPORT) $(GO) test -p 1 -count=1 -timeout 25m $(E2E_PKGS); status=$$?; \
	echo "STRAIT_E2E_SESSIONS=on STRAIT_E2E_REPORT=$(E2E_REPORT) $(GO) test -count=1 -timeout 15m ./e2e/failover/"; \
	STRAIT_E2E_SESSIONS=on STRAIT_E2E_REPORT=$(E2E_REPORT) $(GO) test -count=1 -timeout 15m ./e2e/failover/ || status=1; \
	if [ -s $(E2E_REPORT) ]; then $(GO) run ./e2e/load/cmd/e2e-table $(E2E_REPORT); fi; exit $$status

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
	status=$${PIPESTATUS[0]}; $(GO) run ./e2e/load/cmd/e2e-table $(E2E_REPORT); \
	$(MAKE) --no-print-directory e2e-sessions || status=1; exit $$status

## e2e-sessions: the failover scenarios with every proxy in session mode
## (issue 16: sessions on, sessionPipeline at the proxy's default, off;
## SESSION_PIPELINE=on pipelines, and then streams opened just after a
## gateway's SIGKILL fail by design, see proxy.PipelineOn), with their
## table; e2e runs it after the default mode (about 3.5 minutes more);
## e2e-all (make test) runs it too.
.PHONY: e2e-sessions
E2E_SESSIONS_REPORT ?= $(CURDIR)/.cache/e2e-sessions-report.jsonl
SESSION_PIPELINE ?=
e2e-sessions: tools
	@mkdir -p $(dir $(E2E_SESSIONS_REPORT)) && rm -f $(E2E_SESSIONS_REPORT)
	STRAIT_E2E_SESSIONS=on STRAIT_E2E_SESSION_PIPELINE=$(SESSION_PIPELINE) STRAIT_E2E_REPORT=$(E2E_SESSIONS_REPORT) $(GO) test -count=1 -timeout 20m -v ./e2e/failover/ | grep -E '^(=== RUN|--- |PASS|FAIL|ok)'; \
	status=$${PIPESTATUS[0]}; $(GO) run ./e2e/load/cmd/e2e-table $(E2E_SESSIONS_REPORT); exit $$status

## bench: Go micro-benchmarks (header codec, SNI parse, relay, snapshot
## reads, the 1 MiB full-path transfer) with benchstat, then the side-by-side
## harness against direct TCP, stunnel4 and haproxy pairs (mutual TLS),
## haproxy's SNI-gateway chain, a raw quic-go relay with 2 and 4 hops.
## Results: .cache/bench-micro.txt, .cache/bench.jsonl (one JSON per row),
## .cache/bench.md (the table) and .cache/bench-profiles/ (Go CPU profiles
## of Strait's four processes at 1000 rps: go tool pprof -top FILE).
bench: bench-micro bench-peers

bench-micro:
	@mkdir -p .cache
	$(GO) test -run '^$$' -bench 'Header|Reply|ClientHello|Relay|SnapshotRead|Transfer1MiB|Encode|Decode' -benchtime 1s -count 3 \
		./gateway/... ./federation/ ./proxy/... ./internal/devcluster/ | tee .cache/bench-micro.txt
	$(GO) tool -modfile=tools/go.mod benchstat .cache/bench-micro.txt

bench-peers: tools
	@mkdir -p .cache
	$(GO) run ./e2e/bench/cmd/straitbench -json .cache/bench.jsonl -markdown .cache/bench.md -profile .cache/bench-profiles

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

## fuzz: run every fuzz target of FUZZ_TARGETS for FUZZTIME each (default 30s).
FUZZTIME ?= 30s
fuzz:
	@for t in $(FUZZ_TARGETS); do name=$${t%%:*}; pkg=$${t#*:}; echo "== $$name $$pkg"; \
		$(GO) test -run '^$$' -fuzz "^$$name$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; done

## fuzz-check: FUZZ_TARGETS names exactly the fuzz targets of the tree's test
## files (tracked or new, not ignored).
fuzz-check:
	@have=$$(for f in $$(git ls-files -co --exclude-standard '*_test.go'); do [ -f "$$f" ] || continue; \
		sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' "$$f" | sed "s|\$$|:./$$(dirname "$$f")|"; done | sort); \
	want=$$(printf '%s\n' $(FUZZ_TARGETS) | sort); \
	if [ "$$have" != "$$want" ]; then echo "FUZZ_TARGETS in the Makefile differs from the fuzz targets of the tree (< listed, > in the tree):"; \
		diff <(echo "$$want") <(echo "$$have"); exit 1; fi

clean:
	rm -rf bin .cache

## image: Strait's container image (the static binaries of cmd/ in
## /usr/local/bin, strait-proxy built as make build builds it, strait the
## entrypoint, run as the non-root user 65532) as
## an OCI image layout tarball, bin/strait-image.tar, written without Docker
## or a registry; load it with `ctr images import` or `docker load`.
## deploy/Dockerfile builds the same image with Docker. IMAGE and IMAGE_TAR
## change the name and the file.
IMAGE ?= strait:dev
IMAGE_TAR ?= bin/strait-image.tar
.PHONY: image kube-tools e2e-kube
image:
	@rm -rf bin/linux && mkdir -p bin/linux
	CGO_ENABLED=0 GOOS=linux $(GO) build -trimpath -ldflags "-s -w" -o bin/linux/ ./cmd/...
	CGO_ENABLED=0 GOOS=linux $(GO) build $(PROXY_BUILD_FLAGS) -trimpath -ldflags "-s -w" -o bin/linux/ ./cmd/strait-proxy
	$(GO) run ./internal/ociimage/cmd/ociimage -ref $(IMAGE) -o $(IMAGE_TAR) -user 65532:65532 \
		-entrypoint /usr/local/bin/strait $$(for f in bin/linux/*; do echo "$$f=/usr/local/bin/$${f##*/}"; done)

## etcd-image: the federation's etcd image for deploy/etcd (the etcd
## pinned in e2e/tools/go.mod, static, non-root) as bin/strait-etcd-image.tar,
## so that nodes need no registry; deploy/etcd/Dockerfile builds the same
## image with Docker.
ETCD_VERSION = $(shell cd e2e/tools && $(GO) list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)
ETCD_IMAGE_TAR ?= bin/strait-etcd-image.tar
.PHONY: etcd-image
etcd-image:
	@mkdir -p bin/linux-etcd
	cd e2e/tools && CGO_ENABLED=0 GOOS=linux $(GO) build -trimpath -ldflags "-s -w" -o ../../bin/linux-etcd/etcd go.etcd.io/etcd/server/v3
	$(GO) run ./internal/ociimage/cmd/ociimage -ref strait-etcd:$(ETCD_VERSION) -o $(ETCD_IMAGE_TAR) -user 65532:65532 \
		-entrypoint /usr/local/bin/etcd bin/linux-etcd/etcd=/usr/local/bin/etcd

## kube-tools: the pinned Kubernetes binaries and CoreDNS of real nodes
## (e2e/kubetools/build.sh node; about 12 minutes of CPU when cold).
kube-tools:
	e2e/kubetools/build.sh node >/dev/null

## e2e-kube: Strait on three real Kubernetes clusters (root; e2e/kubenode):
## east, west and central, each a node with kubelet, containerd, kube-proxy,
## CoreDNS and its control plane in its own network namespace, joined only
## by WAN links; Strait installed with deploy/install.sh (as deploy/README.md
## says) from `make image` tarballs; TestFederation's scenarios a-h of issue
## 14 in sequence, with their table; and the single-node tests (pods, DNS,
## volumes, host left clean, the sweep after a crash). The full log is
## .cache/e2e-kube.log. The tests build the pinned etcd themselves when it
## is missing.
E2E_KUBE_REPORT ?= $(CURDIR)/.cache/e2e-kube-report.jsonl
E2E_KUBE_LOG ?= $(CURDIR)/.cache/e2e-kube.log
e2e-kube: kube-tools
	@mkdir -p $(dir $(E2E_KUBE_REPORT)) && rm -f $(E2E_KUBE_REPORT)
	@echo "STRAIT_E2E_REPORT=$(E2E_KUBE_REPORT) $(GO) test -tags kubenode -count=1 -timeout 30m -v ./e2e/kubenode/ > $(E2E_KUBE_LOG)"; \
	STRAIT_E2E_REPORT=$(E2E_KUBE_REPORT) $(GO) test -tags kubenode -count=1 -timeout 30m -v ./e2e/kubenode/ > $(E2E_KUBE_LOG) 2>&1; status=$$?; \
	$(GO) test -tags kubenode -count=1 -timeout 10m -v -run 'TestCaptureOnRealNode$$' ./deploy/ >> $(E2E_KUBE_LOG) 2>&1 || status=1; \
	grep -E '^(=== RUN|\s*--- |PASS|FAIL|ok)|clusters Ready|installed in the three|peak memory' $(E2E_KUBE_LOG); \
	if [ $$status -ne 0 ]; then echo "== failures (full log: $(E2E_KUBE_LOG))"; grep -E '^\s+[a-z_]+_test\.go:[0-9]+: ' $(E2E_KUBE_LOG) | grep -v 'e2e row' | tail -60; fi; \
	if [ -s $(E2E_KUBE_REPORT) ]; then $(GO) run ./e2e/load/cmd/e2e-table $(E2E_KUBE_REPORT); fi; exit $$status

## scale: what a large federation costs (docs/scale.md): the benchmarks of
## one change's publish, of a cache's heap and of the snapshot file at
## 1k-100k exports, then e2e/scale's harness: a 3-member etcd, 1,000
## simulated clusters (2 gateways with live leases, 100 exports of 3
## endpoints each), 10 real caches, two real clusters (gateway and proxy
## each) routing a connection through both gateways, and churn phases of
## 0.1, 0.3 and 1 % of the endpoints per second; it prints the table. Not
## part of `make test` (TestSmoke in e2e/scale is). SCALE_FLAGS passes
## flags to strait-scale, e.g. SCALE_FLAGS='-clusters 300 -duration 30s'.
SCALE_FLAGS ?=
.PHONY: scale
scale:
	e2e/tools/build.sh >/dev/null
	$(GO) test -run '^$$' -bench 'BenchmarkPublishOneChange' -benchtime 500x -timeout 30m ./federation/
	$(GO) test -run '^$$' -bench 'BenchmarkCacheHeap' -benchtime 1x -timeout 30m ./federation/
	$(GO) test -run '^$$' -bench 'BenchmarkWriteDisk' -benchtime 3x -timeout 30m ./federation/
	$(GO) run ./e2e/scale/cmd/strait-scale $(SCALE_FLAGS)
