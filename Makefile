# Tollgate's build. `make help` lists the targets.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := build

GO       ?= go
BIN      := $(CURDIR)/bin
TOOLS    := -modfile=tools/go.mod
DATA_DIR ?=
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X github.com/tollgate-dev/tollgate/cmd/internal/tollgatecmd.Version=$(VERSION) -X github.com/tollgate-dev/tollgate/cmd/internal/ctl.Version=$(VERSION)
# Test timeout for the whole run; store tests on PostgreSQL are the slowest.
TEST_TIMEOUT ?= 20m

.PHONY: help build test e2e e2e-envoy check run lint generate tools fmt vet helm web-vendor screenshots

help: ## show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-z0-9-]+:.*## / {printf "  %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## build bin/tollgate and bin/tollgatectl
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/tollgate ./cmd/tollgatectl

test: $(BIN)/helm ## run every test (PostgreSQL too when TOLLGATE_TEST_POSTGRES_DSN is set; .ci/run sets it)
	TOLLGATE_HELM=$(BIN)/helm $(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...

e2e: ## run the end-to-end suite (SDKs → test data plane → ext_proc → fake providers); make test includes it
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./test/e2e/...

e2e-envoy: ## run the end-to-end suite against real Envoy (needs ENVOY_BIN or envoy on PATH)
	@if [ -z "$${ENVOY_BIN:-}" ] && ! command -v envoy >/dev/null; then echo "e2e-envoy needs ENVOY_BIN=/path/to/envoy or envoy on PATH"; exit 2; fi
	TOLLGATE_E2E_ENVOY=1 $(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./test/e2e/...

# Records for bench-usage: docs/benchmarks.md reports 10 million.
BENCH_USAGE_RECORDS ?= 10000000

.PHONY: bench-usage
bench-usage: ## load BENCH_USAGE_RECORDS usage records into PostgreSQL and time analytics queries (needs TOLLGATE_TEST_POSTGRES_DSN; not part of make test)
	@if [ -z "$${TOLLGATE_TEST_POSTGRES_DSN:-}" ]; then echo 'bench-usage needs PostgreSQL: eval "export $$(.ci/postgres.sh)"'; exit 2; fi
	TOLLGATE_BENCH_USAGE_RECORDS=$(BENCH_USAGE_RECORDS) $(GO) test -run XXX -bench UsageAnalytics -benchtime 5x -timeout 90m -v ./controlplane/rollup/

run: build ## run Tollgate on this machine (SQLite; traffic on 127.0.0.1:10000, admin API on 127.0.0.1:7070)
	$(BIN)/tollgate dev $(if $(DATA_DIR),--data-dir $(DATA_DIR)) $(RUN_FLAGS)

tools: $(BIN)/buf $(BIN)/protoc-gen-go $(BIN)/protoc-gen-go-grpc ## build the pinned code generators into bin/

$(BIN)/buf $(BIN)/protoc-gen-go $(BIN)/protoc-gen-go-grpc: tools/go.mod tools/go.sum
	$(GO) build $(TOOLS) -o $(BIN)/ github.com/bufbuild/buf/cmd/buf google.golang.org/protobuf/cmd/protoc-gen-go google.golang.org/grpc/cmd/protoc-gen-go-grpc

# Helm, pinned in tools/go.mod. The ldflags are those of Helm's own build: its
# version, and the Kubernetes version it assumes without a cluster (that of
# its client-go), which `helm template` checks the chart's kubeVersion against.
HELM_VERSION = $(shell $(GO) list $(TOOLS) -m -f '{{.Version}}' helm.sh/helm/v3 2>/dev/null)
HELM_K8S_MINOR = $(shell $(GO) list $(TOOLS) -m -f '{{.Version}}' k8s.io/client-go 2>/dev/null | cut -d. -f2)
helm: $(BIN)/helm ## build the pinned helm into bin/ (make test does; test/helm uses it)

$(BIN)/helm: tools/go.mod tools/go.sum
	$(GO) build $(TOOLS) -ldflags '-X helm.sh/helm/v3/internal/version.version=$(HELM_VERSION) -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$(HELM_K8S_MINOR) -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$(HELM_K8S_MINOR)' -o $(BIN)/ helm.sh/helm/v3/cmd/helm

$(BIN)/golangci-lint: tools/go.mod tools/go.sum
	$(GO) build $(TOOLS) -o $(BIN)/ github.com/golangci/golangci-lint/v2/cmd/golangci-lint

generate: tools ## regenerate ent and protobuf code and the chart's README
	cd ent && $(GO) generate ./...
	$(BIN)/buf lint
	PATH="$(BIN):$$PATH" $(BIN)/buf generate
	cp envoy/bootstrap.yaml.tmpl charts/tollgate/files/envoy-bootstrap.yaml.tmpl
	$(GO) run ./test/helm/valuesdoc/chart-readme charts/tollgate

# The web console's browser libraries come from the npm registry, pinned by
# controlplane/web/npm/package-lock.json (npm ci checks each package against
# the lockfile's integrity hash). Their dist files are committed under
# controlplane/web/static/vendor so that building Tollgate needs no npm.
WEB_NPM    := controlplane/web/npm
WEB_VENDOR := controlplane/web/static/vendor

web-vendor: ## reinstall the web console's chart library from its lockfile and copy its dist files into the embedded assets
	cd $(WEB_NPM) && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	cp $(WEB_NPM)/node_modules/uplot/dist/uPlot.iife.min.js $(WEB_NPM)/node_modules/uplot/dist/uPlot.min.css $(WEB_VENDOR)/
	cp $(WEB_NPM)/node_modules/uplot/LICENSE $(WEB_VENDOR)/uPlot.LICENSE

screenshots: ## retake the web console's screenshots in docs/img (needs Chromium)
	TOLLGATE_SCREENSHOTS=$(CURDIR)/docs/img $(GO) test -count=1 -run TestConsoleInABrowser ./cmd/internal/tollgatecmd/

fmt: ## format the Go code
	gofmt -w $$(git ls-files '*.go')

vet:
	$(GO) vet ./...

lint: $(BIN)/golangci-lint ## run golangci-lint
	$(BIN)/golangci-lint run ./...

check: generate vet web-vendor ## regenerate everything (web-vendor included) and fail if anything differs from what is committed
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt would change:"; echo "$$unformatted"; exit 1; fi
	@if [ -n "$$(git status --porcelain)" ]; then \
		echo "generated files differ from the committed ones (run make generate and commit):"; \
		git status --porcelain; git diff --stat; exit 1; fi
