# Blixard's build. `make test` is what CI runs (see .ci/run).

GO ?= go

# System packages the build and tests need, as Debian package names: QEMU runs
# the microVMs, busybox-static and a Debian kernel make the guest image, xz
# unpacks the kernel, cpio checks the initramfs in a test; `make test` adds
# chromium, the headless browser the dashboard's test drives. `make deps`
# installs only the missing ones (apt-get update once, then apt-get install)
# and skips apt entirely when none are.
APT_PACKAGES := qemu-system-x86 busybox-static linux-image-amd64 xz-utils cpio
TEST_APT_PACKAGES := chromium

# apt-get needs root; use sudo only when not already root.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

PROTOC_GEN_GO_VERSION := v1.36.11
PROTO_FILES := api/v1/types.proto api/v1/api.proto api/v1/command.proto
GRPC_PROTO_FILES := api/v1/apiv1grpc/services.proto internal/transport/transportpb/transport.proto
PROTOC_GEN_GO_GRPC_VERSION := v1.5.1
# Where `go install` puts binaries (GOBIN, else GOPATH/bin). Recursively
# expanded, so only `make proto` pays for the `go env` calls.
GO_BIN_DIR = $(or $(shell $(GO) env GOBIN),$(shell $(GO) env GOPATH)/bin)

.PHONY: deps test-deps build run lint test soak bench proto clean

deps:
ifneq ($(strip $(APT_PACKAGES)),)
	@missing=""; \
	for pkg in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}' "$$pkg" 2>/dev/null | grep -q 'install ok installed' \
			|| missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing system packages:$$missing"; \
		if [ "$$(id -u)" != 0 ] && ! command -v sudo >/dev/null; then \
			echo "not root and no sudo: install these Debian packages, then run make again:$$missing"; exit 1; \
		fi; \
		$(SUDO) apt-get update && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y --no-install-recommends $$missing; \
	fi
endif
	$(GO) mod download

test-deps:
	@$(MAKE) --no-print-directory deps APT_PACKAGES="$(APT_PACKAGES) $(TEST_APT_PACKAGES)"

# The guest agent is its own small static binary, beside blixard in bin/ where
# each node finds it to build the default guest image.
build:
	$(GO) build -o bin/blixard ./cmd/blixard
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w' -o bin/blixard-agent ./cmd/blixard-agent

# The main job: a local 3-node cluster on loopback (127.0.0.1:7001-7003), in
# the foreground, with one demo VM booted in it. It prints the export line for
# BLIXARD_ADDR, then the cluster's status and the VM list once the VM runs;
# Ctrl-C stops it.
run: deps build
	./bin/blixard dev --nodes 3

lint:
	@unformatted="$$(gofmt -l .)"; \
	if [ -n "$$unformatted" ]; then \
		echo "gofmt would reformat these files (run gofmt -w):"; \
		echo "$$unformatted"; \
		exit 1; \
	fi
	$(GO) vet ./...

# The simulator runs verbose so that every scenario prints its seed line
# ("sim: seed=… trace-hash=…"); BLIXARD_SIM_SEED=<n> replays one. Tests'
# artifacts (the dashboard's screenshots) are kept under test-output/.
# deps installed chromium, so the dashboard test must find it.
test: test-deps lint
	mkdir -p test-output
	BLIXARD_NEED_CHROMIUM=1 $(GO) test -count=1 -timeout 15m -artifacts -outputdir $(CURDIR)/test-output \
		$$($(GO) list ./... | grep -v '/sim$$')
	$(GO) test -count=1 -timeout 15m -v ./sim/

# A longer randomized soak of the simulator (SEEDS runs of 60 s virtual time).
SEEDS ?= 300
soak:
	$(GO) test -count=1 -timeout 60m -run 'TestRandomized$$' ./sim/ -sim.seeds=$(SEEDS)

bench:
	$(GO) test -run '^$$' -bench . -benchtime 2s ./internal/state ./internal/store
	$(GO) test -run '^$$' -bench SimSpeed -benchtime 5x ./sim/

# Regenerates the committed message code of api/v1. A plain build never needs this.
proto:
	@command -v protoc >/dev/null 2>&1 || { $(SUDO) apt-get update && $(SUDO) apt-get install -y protobuf-compiler; }
	$(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	$(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
	PATH="$(GO_BIN_DIR):$$PATH" protoc -I . --go_out=. --go_opt=paths=source_relative $(PROTO_FILES)
	PATH="$(GO_BIN_DIR):$$PATH" protoc -I . --go_out=. --go_opt=paths=source_relative \
		--go-grpc_out=. --go-grpc_opt=paths=source_relative $(GRPC_PROTO_FILES)

clean:
	rm -rf bin
