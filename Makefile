# DR-Syncer front door. `make help` lists the targets.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
CARGO ?= cargo

.PHONY: help test fmt-check clippy unit crds crds-check e2e bench demo demo-down release-bins images

help: ## List the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

test: fmt-check clippy unit e2e ## Everything CI runs: format, lints, unit tests, e2e suite

fmt-check: ## cargo fmt --check
	$(CARGO) fmt --all -- --check

clippy: ## clippy on every target, warnings are errors
	$(CARGO) clippy --workspace --all-targets --all-features --locked -- -D warnings

unit: ## Unit and integration tests (no clusters needed)
	$(CARGO) test --workspace --locked --exclude dr-syncer-e2e

crds: ## Regenerate deploy/crds/*.yaml from the API types
	$(CARGO) run --locked -q -p dr-syncer-crds --features generator --bin crdgen -- deploy/crds docs/api.md
	cp deploy/crds/*.yaml deploy/helm/dr-syncer/crds/

e2e: ## End-to-end scenarios on the local multi-cluster test bed (root; builds the control plane)
	$(MAKE) images
	./scripts/build-controlplane.sh
	./scripts/build-helm.sh
	$(CARGO) build --locked -p dr-syncer-controller -p dr-syncer-agent -p dr-syncer-rsync-worker -p dr-syncer-e2e
	$(CARGO) test --locked -p dr-syncer-e2e -- --test-threads=2

bench: ## Data-plane and controller benchmarks against rsync -e ssh
	$(CARGO) build --release --locked -p dr-syncer-agent -p dr-syncer-rsync-worker
	$(CARGO) bench --locked -p dr-syncer-rsync-worker --bench dataplane -- \
	  --bin-dir $(abspath $(or $(CARGO_TARGET_DIR),target))/release --out $(CURDIR)/target/bench
	$(CARGO) build --release --locked -p dr-syncer-controller -p dr-syncer-e2e
	$(CARGO) test --release --locked -p dr-syncer-e2e --test controller_bench -- --ignored --nocapture
	$(CARGO) test --release --locked -p dr-syncer-e2e --test controller_pvc_bench -- --ignored --nocapture

release-bins: ## Release builds of the controller, agent and rsync-worker binaries
	$(CARGO) build --release --locked -p dr-syncer-controller -p dr-syncer-agent -p dr-syncer-rsync-worker

images: release-bins ## OCI archives of the three images in target/images/ (no Docker; umoci, skopeo)
	BIN_DIR=$(abspath $(or $(CARGO_TARGET_DIR),target))/release ./scripts/build-images.sh

demo: ## Start three local clusters in .demo/ and replicate a sample namespace with its PVC data (root)
	@CARGO="$(CARGO)" ./scripts/demo.sh up

demo-down: ## Stop the demo clusters and remove .demo/
	@CARGO="$(CARGO)" ./scripts/demo.sh down
