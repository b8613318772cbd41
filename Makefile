# mr: a distributed MapReduce service. `make demo` runs the main job, `make test` runs every test.
SHELL := /bin/bash
.DEFAULT_GOAL := help
export PATH := $(HOME)/.cargo/bin:$(PATH)

TARGET   := x86_64-unknown-linux-musl
RELEASE  := target/$(TARGET)/release
BINS     := mr-coordinator mr-worker mr mr-s3-server

.PHONY: help setup build apps images test fuzz lint fmt demo demo-local down clean bench

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

setup: ## Install every tool the project needs (idempotent)
	@scripts/setup.sh

build: setup apps ## Build target/release/{mr-coordinator,mr-worker,mr} and target/apps/*.wasm
	cargo build --release --locked --bins
	@mkdir -p target/release
	@for b in $(BINS); do install -m 755 $(RELEASE)/$$b target/release/$$b; done
	@echo "built: $(addprefix target/release/,$(BINS)) and $$(ls target/apps | wc -l) apps in target/apps"

apps: setup ## Build the Wasm apps into target/apps
	@apps-wasm/build.sh

images: build ## Build the container image mr:latest (FROM scratch, the binaries, the apps)
	@deploy/build-images.sh

test: build ## Run every test (unit, end-to-end with real processes and containers, the k8s manifests offline)
	@deploy/build-images.sh --if-engine
	@# 4 test threads on 2 cores: most end-to-end tests wait on processes, sleeps and
	@# containers (the e2e run: 252 s with 2 threads, 180 s with 4, cold compile cache).
	cargo test --release --locked --workspace --lib --bins --tests --no-fail-fast -- --test-threads 4
	cargo test --release --manifest-path apps-wasm/Cargo.toml --target x86_64-unknown-linux-gnu -p mr-app-sdk
	deploy/k8s/validate.sh

fuzz: ## Fuzz each target for FUZZ_SECONDS (default 300); not part of `make test` (its build alone would take CI past 25 min)
	scripts/fuzz.sh $(FUZZ_SECONDS)

bench: build ## Run the benchmarks (figures and targets in BENCHMARKS.md; ~10 min; raw numbers in bench-out/)
	@bench/python/build.sh
	cargo build --release --locked --bins --features mr-bench/bench
	$(RELEASE)/mr-bench

lint: setup ## rustfmt and clippy, warnings are errors
	cargo fmt --all -- --check
	cargo clippy --release --locked --workspace --all-targets --features mr-bench/bench -- -D warnings
	cargo clippy --release --manifest-path apps-wasm/Cargo.toml --target wasm32-unknown-unknown -- -D warnings

fmt: ## Format all code
	cargo fmt --all
	cargo fmt --manifest-path apps-wasm/Cargo.toml --all

demo: images ## Bring up a compose cluster (4 workers), run wc over the lab texts, show the top words
	@scripts/demo.sh

demo-local: build ## The same job on a cluster of local processes (no containers)
	@scripts/demo-local.sh

down: ## Take the compose cluster of `make demo` away (the data folder stays)
	@scripts/compose.sh down --volumes --remove-orphans

clean: ## Remove build outputs and demo data
	cargo clean
	rm -rf apps-wasm/target data/jobs
