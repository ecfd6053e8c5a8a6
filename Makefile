# Strait's build, test and code generation. `make test` is what CI runs.
SHELL := /bin/bash
GO ?= go
BUF := $(GO) tool -modfile=tools/go.mod buf
# Packages whose tests exercise concurrency run under the race detector.
RACE_PKGS ?= ./federation/... ./trust/... ./gateway/... ./proxy/...

.PHONY: all build test unit race vet fmt-check proto proto-check lint-proto fuzz-smoke bench e2e clean

all: build

build:
	$(GO) build -o bin/strait ./cmd/strait

## test: everything CI runs: formatting, vet, generated code, unit and integration tests, race.
test: fmt-check vet proto-check unit race

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

unit:
	$(GO) test -count=1 -timeout 15m ./...

race:
	$(GO) test -race -count=1 -timeout 15m $(RACE_PKGS)

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

clean:
	rm -rf bin
