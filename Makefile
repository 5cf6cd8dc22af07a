# make run   set up everything (services from Debian packages), build, run `flashsale all`
# make test  set up everything, then run every test against the real services
# make bench the standard benchmark scenario against a local `flashsale all`
export PATH := /usr/local/go/bin:$(PATH)
GO ?= go
BIN := bin/flashsale

.PHONY: services build run test bench

services:
	bash deploy/services.sh

build:
	$(GO) build -o $(BIN) ./cmd/flashsale

run: services build
	./$(BIN) all

test: build
	bash deploy/services.sh chromium
	$(GO) vet ./...
	$(GO) test -p 1 -count=1 -timeout 20m ./...

bench: services build
	bash deploy/bench.sh
