# callreport — `make help` lists the targets.

SQLC_VERSION        := v1.31.1
STATICCHECK_VERSION := v0.8.2
BIN                 := $(CURDIR)/bin
SQLC                := $(BIN)/sqlc
STATICCHECK         := $(BIN)/staticcheck
NATS_URL            ?= nats://127.0.0.1:4222

.DEFAULT_GOAL := help
.PHONY: help run build test test-nats test-race verify generate fuzz tools

help: ## show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

run: ## run the whole service locally with the example data (reportctl dev)
	bash .ci/services postgres
	go run ./cmd/reportctl dev

build: ## build the three binaries into bin/
	go build -o $(BIN)/ ./cmd/...

test: ## run every test (starts the local Postgres and NATS if they are down)
	bash .ci/services
	go test -race -count=1 ./...

test-nats: ## run the JetStream tests again against the machine's nats-server ($(NATS_URL))
	CALLREPORT_TEST_NATS_URL=$(NATS_URL) go test -count=1 ./projector/... ./cmd/... ./internal/systest ./internal/stream

generate: $(SQLC) ## regenerate the sqlc code
	$(SQLC) generate

verify: $(SQLC) $(STATICCHECK) ## check formatting, vet, staticcheck and that the sqlc code is current
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); echo "gofmt: files above need formatting"; exit 1)
	go vet ./...
	$(STATICCHECK) ./...
	$(SQLC) diff

FUZZTIME ?= 30s

fuzz: ## run each fuzz test for FUZZTIME (30s) in turn
	@for pkg in ./schema ./projector/fold; do \
	  for f in $$(go test $$pkg -list '^Fuzz' | grep '^Fuzz'); do \
	    echo "fuzz $$pkg $$f"; \
	    go test $$pkg -run '^$$' -fuzz "^$$f\$$" -fuzztime $(FUZZTIME) || exit 1; \
	  done; \
	done

tools: $(SQLC) $(STATICCHECK) ## install the pinned sqlc and staticcheck into bin/

$(SQLC):
	GOBIN=$(BIN) GOFLAGS= go install github.com/sqlc-dev/sqlc/cmd/sqlc@$(SQLC_VERSION)

$(STATICCHECK):
	GOBIN=$(BIN) GOFLAGS= go install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

# The benchmark (reportctl bench): a fresh database and stream per run, the
# results in bench/results/. BENCH_FLAGS passes more flags, e.g.
# BENCH_FLAGS='--calls 2000 --embedded-nats --profile-dir bench/profiles',
# or '--order shuffled' for the adversarial order. docs/performance.md.
BENCH_FLAGS ?=
.PHONY: bench bench-linear

bench: ## measure the service beside this machine's own limits (100k calls; BENCH_FLAGS=...)
	bash .ci/services
	go build -o $(BIN)/reportctl ./cmd/reportctl
	$(BIN)/reportctl bench $(BENCH_FLAGS)

# bench-linear runs on the embedded nats-server of go.mod (2.15): the
# machine's 2.9.10 stalls on the 300,000-call stream (docs/performance.md,
# "Linearity"). BENCH_LINEAR_FLAGS= runs it on NATS_URL's server instead.
BENCH_LINEAR_FLAGS ?= --embedded-nats

bench-linear: ## catch-up at 10k, 100k and 300k calls (three results), and events/s at 300k ÷ at 10k
	bash .ci/services
	go build -o $(BIN)/reportctl ./cmd/reportctl
	set -e; stamp=$$(date -u +%Y%m%d-%H%M%S); \
	for n in 10000 100000 300000; do \
		$(BIN)/reportctl bench $(BENCH_LINEAR_FLAGS) $(BENCH_FLAGS) --calls $$n --skip rebuild,lag,fat,memory,query --label linear-$$stamp; \
	done; \
	$(BIN)/reportctl bench --compare bench/results/*-linear-$$stamp.json

# The soak test (cmd/reportctl/soak_test.go): CALLREPORT_SOAK_DURATION (60s)
# and CALLREPORT_SOAK_RATE (1000 events/s) tune it; docs/reliability.md has a run.
.PHONY: soak
soak: ## publish at a steady rate for a minute while dashboards poll: no error, no lost event, flat heap
	bash .ci/services
	CALLREPORT_SOAK=1 go test -count=1 -run TestSoak -v -timeout 10m ./cmd/reportctl/
