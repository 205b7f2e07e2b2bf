# crowbar — the two commands a newcomer needs are `make run` and `make test`.
GO      ?= go
BIN     := bin/crowbar
DATA    ?= ./data
# -race needs cgo; use it wherever a C compiler is present.
RACE    := $(shell [ "$$($(GO) env CGO_ENABLED)" = 1 ] && command -v $$($(GO) env CC) >/dev/null 2>&1 && echo -race)
PKGS    := ./...

BARCLAMPS := $(patsubst barclamps/%/,%,$(sort $(dir $(wildcard barclamps/*/main.go))))
WASM      := $(patsubst %,barclamps/dist/%.wasm,$(BARCLAMPS))

.PHONY: all build barclamps run test test-tools vet fmt-check bench clean

all: build

## barclamps: compile the first-party barclamps to barclamps/dist/*.wasm (embedded by build)
barclamps: $(WASM)

barclamps/dist/%.wasm: barclamps/%/*.go $(wildcard sdk/*.go)
	GOOS=wasip1 GOARCH=wasm $(GO) build -buildmode=c-shared -o $@ ./barclamps/$*

build: barclamps
	$(GO) build -o $(BIN) ./cmd/crowbar
	./$(BIN) barclamp precompile

## run: build and start the server on SQLite in $(DATA), listening on 127.0.0.1:3000
run: build
	./$(BIN) server --data-dir $(DATA)

## test: vet, format check and the whole suite (PostgreSQL half when CROWBAR_TEST_POSTGRES is set)
test: barclamps test-tools vet fmt-check
	$(GO) test $(RACE) -count=1 $(PKGS)

## test-tools: system tools the tests use, installed when missing: dnsmasq and debconf (generated files),
## python3-redis and python3-yaml (the Zero-OS Python client's calls against the agent), python3-requests
## (the Zero-OS orchestrator client's calls against /zero-os/v2), busybox-static
## (the root filesystem of the agent's test containers)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
test-tools:
	@missing=""; \
	command -v dnsmasq >/dev/null 2>&1 || [ -x /usr/sbin/dnsmasq ] || missing="$$missing dnsmasq-base"; \
	command -v debconf-set-selections >/dev/null 2>&1 || missing="$$missing debconf"; \
	/usr/bin/python3 -c 'import redis' >/dev/null 2>&1 || missing="$$missing python3-redis"; \
	/usr/bin/python3 -c 'import yaml' >/dev/null 2>&1 || missing="$$missing python3-yaml"; \
	/usr/bin/python3 -c 'import requests' >/dev/null 2>&1 || missing="$$missing python3-requests"; \
	[ -x /bin/busybox ] || missing="$$missing busybox-static"; \
	if [ -n "$$missing" ]; then \
		echo "installing$$missing (tests use them: see make test-tools in the Makefile)"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

## vet: the host packages, then the guest side (SDK with its examples, barclamps, test guests) as wasip1
vet:
	$(GO) vet $(PKGS)
	GOOS=wasip1 GOARCH=wasm $(GO) vet ./sdk/ ./barclamps/... ./examples/... ./plugins/testdata/echo ./plugins/testdata/faulty ./plugins/testdata/graph ./plugins/testdata/chain ./plugins/testdata/scriptjig

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

## bench: every benchmark (PostgreSQL rows when CROWBAR_TEST_POSTGRES is set); figures in docs/benchmarks.md
bench: barclamps
	$(GO) test -run '^$$' -bench . -benchtime 3s ./...

clean:
	rm -rf bin barclamps/dist/*.wasm
