# crowbar — the two commands a newcomer needs are `make run` and `make test`.
GO      ?= go
BIN     := bin/crowbar
DATA    ?= ./data
# -race needs cgo; use it wherever a C compiler is present.
RACE    := $(shell [ "$$($(GO) env CGO_ENABLED)" = 1 ] && command -v $$($(GO) env CC) >/dev/null 2>&1 && echo -race)
PKGS    := ./...

BARCLAMPS := $(patsubst barclamps/%/,%,$(sort $(dir $(wildcard barclamps/*/main.go))))
WASM      := $(patsubst %,barclamps/dist/%.wasm,$(BARCLAMPS))

.PHONY: all build barclamps run test test-tools vet fmt-check bench clean agent discovery-image e2e e2e-tools fuzz faults soak ui-screenshots

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

## agent: the agent alone (crowbar agent, no server or barclamps), static, for the discovery image
agent:
	CGO_ENABLED=0 $(GO) build -tags agentonly -ldflags="-s -w" -o bin/crowbar-agent ./cmd/crowbar

## discovery-image: sledgehammer, the discovery image (Debian's kernel, busybox, the agent) in
## $(FILES)/sledgehammer/{vmlinuz0,initrd0.img}; serve it with crowbar server --files-dir $(FILES)
FILES ?= bin/files
discovery-image: agent e2e-tools
	$(GO) run ./cmd/discovery-image --agent bin/crowbar-agent --out $(FILES)

## e2e: a qemu VM PXE-boots from crowbar into the discovery image, joins and converges,
## inside a network namespace the test makes (root); figures in the test's log
e2e: build discovery-image
	CROWBAR_E2E=1 $(GO) test -count=1 -v -timeout 15m -run . ./api/e2etest

## e2e-tools: what the discovery image and the end-to-end test need, installed when missing:
## qemu-system-x86 and ipxe-qemu (the VM and its PXE ROM), ipxe (undionly.kpxe and ipxe.efi for
## TFTP), busybox-static (the image's userland); apt-get update so the kernel package can be fetched
e2e-tools:
	@missing=""; \
	[ -x /usr/bin/qemu-system-x86_64 ] || missing="$$missing qemu-system-x86"; \
	[ -f /usr/lib/ipxe/qemu/efi-virtio.rom ] || missing="$$missing ipxe-qemu"; \
	[ -f /usr/lib/ipxe/undionly.kpxe ] || missing="$$missing ipxe"; \
	[ -x /bin/busybox ] || missing="$$missing busybox-static"; \
	if [ -n "$$missing" ]; then \
		echo "installing$$missing (make e2e-tools in the Makefile says why)"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	elif [ -z "$$(apt-cache depends linux-image-amd64 2>/dev/null | grep Depends)" ]; then \
		$(SUDO) apt-get update -qq; \
	fi

## test: vet, format check and the whole suite (PostgreSQL half when CROWBAR_TEST_POSTGRES is set).
## The test packages share one compilation cache; filling it first with the plain binary spares
## every package compiling the same changed barclamps with the race detector's instrumented
## compiler at once (minutes on 2 cores). Test binaries lack wazero's version in their build info
## and would file the cache under "dev": the linker flag gives them the binary's.
WAZERO    = $(shell $(GO) list -m -f '{{.Version}}' github.com/tetratelabs/wazero)
TESTFLAGS = -ldflags=-X=github.com/tetratelabs/wazero/internal/version.version=$(WAZERO)
test: build test-tools vet fmt-check
	./$(BIN) barclamp precompile --wasm-cache $${TMPDIR:-/tmp}/crowbar-test-wasm-cache
	CROWBAR_AXE=$(AXE) $(GO) test $(RACE) $(TESTFLAGS) -count=1 $(PKGS)
	$(MAKE) --no-print-directory fuzz FUZZTIME=300x

## ui-screenshots: refresh docs/ui/*.png, the web UI's pages as its browser test leaves them
ui-screenshots: test-tools
	mkdir -p docs/ui
	CROWBAR_UI_SCREENSHOTS=$(CURDIR)/docs/ui CROWBAR_AXE=$(AXE) $(GO) test -count=1 -run 'TestWebUI/sqlite' ./api/uitest

## faults: the fault campaign at full size (docs/reliability.md): 20 kill -9 of a 10,000 node-role
## converge through a counting wasm hook on SQLite and PostgreSQL, a replica killed mid-converge,
## and PostgreSQL restarted under load. make test runs the first two short (1,000 node-roles, 3 kills).
faults: build
	./$(BIN) barclamp precompile --wasm-cache $${TMPDIR:-/tmp}/crowbar-test-wasm-cache
	CROWBAR_FAULTS=1 $(GO) test $(TESTFLAGS) -count=1 -timeout 60m -v -run 'TestKill9Campaign|TestReplicaKilledMidConverge|TestPostgresRestartUnderLoad' ./cmd/crowbar

## soak: 16 clients of mixed reads and writes against the real binary for $(SOAK) on both databases
## (make test runs it for 10 s); figures: requests/s, p50/p99, RSS and goroutines over time
SOAK ?= 5m
soak: build
	./$(BIN) barclamp precompile --wasm-cache $${TMPDIR:-/tmp}/crowbar-test-wasm-cache
	CROWBAR_SOAK=$(SOAK) $(GO) test $(TESTFLAGS) -count=1 -timeout 60m -v -run 'TestSoak' ./cmd/crowbar

## fuzz: each fuzz target for $(FUZZTIME) (make test runs 300 inputs each: a count, not a time, since a
## 3 s deadline could end a slow target mid-input and fail it; corpora in testdata/fuzz)
FUZZTIME ?= 2m
FUZZ     := core/model:FuzzValidFQDN core/model:FuzzValidName core/auth:FuzzParseDigest core/boot:FuzzDHCPHandle api:FuzzNodeBodies core/anneal:FuzzAttribMerge core/anneal:FuzzHookResult core/barclamp:FuzzManifest core/agent:FuzzReadCommand sdk:FuzzHTTPFrame sdk:FuzzAppendJSON
fuzz:
	@for t in $(FUZZ); do \
		echo "fuzz $$t for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$${t#*:}\$$" -fuzztime $(FUZZTIME) ./$${t%%:*} || exit 1; \
	done

## test-tools: system tools the tests use, installed when missing: dnsmasq and debconf (generated files),
## python3-redis and python3-yaml (the Zero-OS Python client's calls against the agent), python3-requests
## (the Zero-OS orchestrator client's calls against /zero-os/v2), busybox-static
## (the root filesystem of the agent's test containers), chromium (the web UI's browser tests) and
## axe-core (the accessibility checker those tests run in each page; one file from npm, cached)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
AXE_VERSION := 4.11.0
AXE := $(HOME)/.cache/crowbar/axe-core-$(AXE_VERSION).min.js
test-tools:
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	[ -s "$(AXE)" ] || command -v npm >/dev/null 2>&1 || missing="$$missing npm"; \
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
	@if [ ! -s "$(AXE)" ]; then \
		echo "fetching axe-core $(AXE_VERSION) (the web UI tests' accessibility checker) from npm"; \
		d=$$(mktemp -d) && (cd $$d && npm pack --silent axe-core@$(AXE_VERSION) >/dev/null && \
			tar -xzf axe-core-$(AXE_VERSION).tgz package/axe.min.js) && \
		mkdir -p $(dir $(AXE)) && mv $$d/package/axe.min.js $(AXE); rc=$$?; rm -rf $$d; exit $$rc; \
	fi

## vet: the host packages, then the guest side (SDK with its examples, barclamps, test guests) as wasip1
vet:
	$(GO) vet $(PKGS)
	CGO_ENABLED=0 $(GO) build -tags agentonly -o /dev/null ./cmd/crowbar
	GOOS=wasip1 GOARCH=wasm $(GO) vet ./sdk/ ./barclamps/... ./examples/... ./plugins/testdata/echo ./plugins/testdata/faulty ./plugins/testdata/graph ./plugins/testdata/chain ./plugins/testdata/counter ./plugins/testdata/scriptjig

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

## bench: every benchmark (PostgreSQL rows when CROWBAR_TEST_POSTGRES is set); figures in docs/benchmarks.md
bench: barclamps
	$(GO) test -run '^$$' -bench . -benchtime 3s ./...

clean:
	rm -rf bin barclamps/dist/*.wasm
