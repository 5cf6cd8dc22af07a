# make run   set up everything (services from Debian packages), build, run `flashsale all`
# make unit  every test that needs no service, nothing installed but Go (go test -short:
#            tests that need Redis, RabbitMQ, MySQL or a tool skip, e2e runs nothing)
# make test  make unit, then set up everything and run every test against the real services
# make bench the standard benchmark scenario against a local `flashsale all`
# make bench-segments  one hot sale's claims on a local Redis Cluster, one slot vs spread
# make vulncheck  govulncheck against a reachable vulnerability database, then the modules
#            with a newer patch release (needs the network; not part of make test)
# make soak  minutes of a steady crowd under random faults (e2e TestSoak; not part of make test);
#            FLASHSALE_SOAK_SECONDS (default 240) and FLASHSALE_SOAK_SEED are passed through
export PATH := /usr/local/go/bin:$(PATH)
GO ?= go
BIN := bin/flashsale

.PHONY: services build run unit test bench soak vulncheck

services:
	bash deploy/services.sh

build:
	$(GO) build -o $(BIN) ./cmd/flashsale

run: services build
	./$(BIN) all

# The unit tier: see internal/testenv for the rule (-short skips what needs a
# service or a tool; the full run below fails on it under CI instead).
unit:
	$(GO) test -short -count=1 ./...

test: unit build
	bash deploy/services.sh chromium
	$(GO) vet ./...
	$(GO) test -p 1 -count=1 -timeout 35m ./...
	# The same guarantees with each sale's stock in three Redis segments
	# (FLASHSALE_REDIS_SEGMENTS): exact stock for exactly as many buyers,
	# several processes per role, Redis back from an older snapshot.
	FLASHSALE_REDIS_SEGMENTS=3 $(GO) test -count=1 -timeout 10m ./e2e \
		-run 'TestPaymentConcurrentTriplicates|TestReservationCapacityExactUnderRace|TestTwoProcessesPerRole|TestStockCapRedisOlderSnapshot|TestFaultRedisKeysDeleted'

bench: services build
	bash deploy/bench.sh

vulncheck:
	bash deploy/vulncheck.sh

soak: services build
	FLASHSALE_SOAK=1 CI=true FLASHSALE_SOAK_SECONDS=$(FLASHSALE_SOAK_SECONDS) FLASHSALE_SOAK_SEED=$(FLASHSALE_SOAK_SEED) \
		$(GO) test -count=1 -run TestSoak -v -timeout 30m ./e2e/

# A local cluster topology (6-node Redis Cluster, 3-node RabbitMQ, two processes of
# each role): deploy/cluster.sh; FLASHSALE_CLUSTER_DIR picks its directory.
.PHONY: cluster-up cluster-down cluster-status
cluster-up: services build
	bash deploy/cluster.sh up

cluster-down:
	bash deploy/cluster.sh down

cluster-status:
	bash deploy/cluster.sh status

# One hot sale's claims on the local Redis Cluster, in one slot and in three
# segments (redisstore's BenchmarkClaimCapacity and BenchmarkClaimAndHold;
# see BENCHMARKS.md). Starts only the cluster's Redis nodes; make cluster-down
# stops them.
CLUSTER_REDIS := 127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003,127.0.0.1:7004,127.0.0.1:7005,127.0.0.1:7006
.PHONY: bench-segments
bench-segments: services
	bash deploy/cluster.sh redis-up
	FLASHSALE_BENCH_REDIS_ADDRS=$(CLUSTER_REDIS) CI=true $(GO) test ./redisstore -run - \
		-bench 'ClaimCapacity|ClaimAndHold' -benchtime 10s -count 3
