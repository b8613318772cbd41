# mr: a distributed MapReduce service. `make demo` runs the main job, `make test` runs every test.
SHELL := /bin/bash
.DEFAULT_GOAL := help
export PATH := $(HOME)/.cargo/bin:$(PATH)

TARGET   := x86_64-unknown-linux-musl
RELEASE  := target/$(TARGET)/release
BINS     := mr-coordinator mr-worker

.PHONY: help setup build apps test lint fmt demo down clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

setup: ## Install every tool the project needs (idempotent)
	@scripts/setup.sh

build: setup apps ## Build target/release/{mr-coordinator,mr-worker} and target/apps/*.wasm
	cargo build --release --locked --bins
	@mkdir -p target/release
	@for b in $(BINS); do install -m 755 $(RELEASE)/$$b target/release/$$b; done
	@echo "built: $(addprefix target/release/,$(BINS)) and $$(ls target/apps | wc -l) apps in target/apps"

apps: setup ## Build the Wasm apps into target/apps
	@apps-wasm/build.sh

test: build ## Run every test (unit, end-to-end with real processes)
	cargo test --release --locked --workspace --no-fail-fast
	cargo test --release --manifest-path apps-wasm/Cargo.toml --target x86_64-unknown-linux-gnu -p mr-app-sdk

lint: setup ## rustfmt and clippy, warnings are errors
	cargo fmt --all -- --check
	cargo clippy --release --locked --workspace --all-targets -- -D warnings
	cargo clippy --release --manifest-path apps-wasm/Cargo.toml --target wasm32-unknown-unknown -- -D warnings

fmt: ## Format all code
	cargo fmt --all
	cargo fmt --manifest-path apps-wasm/Cargo.toml --all

demo: build ## Run wc over the lab texts on a local cluster and show the top words
	@scripts/demo-local.sh

clean: ## Remove build outputs and demo data
	cargo clean
	rm -rf apps-wasm/target data/jobs
