#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for SECONDS each: scripts/fuzz.sh [SECONDS]
# (default $FUZZ_SECONDS, else 300; 0 only runs the seeds). Exits non-zero if a target crashes, panics, leaks
# or runs out of memory; the input that did it is in fuzz/artifacts/<target>/.
#
# Installs what it needs when missing (a nightly toolchain, cargo-fuzz). The seeds in
# fuzz/corpus/<target>/ are read but never added to: new inputs go to a scratch folder.
# Reproduce a crash:  cd fuzz && cargo +nightly fuzz run -O -a <target> artifacts/<target>/<file>
# Full log of the last run of each target: fuzz/target/logs/<target>.log.
set -euo pipefail

seconds=${1:-${FUZZ_SECONDS:-300}}
[[ $seconds =~ ^[0-9]+$ ]] || { echo "fuzz: seconds must be a number, got '$seconds'" >&2; exit 2; }
export PATH="$HOME/.cargo/bin:$PATH"
# Cargo reads its config from the current folder up: fuzz/.cargo/config.toml builds for the
# host (glibc), not the musl target of the main workspace.
cd "$(dirname "$0")/../fuzz"

if ! rustup toolchain list | grep -q '^nightly-'; then
  echo "fuzz: installing the nightly toolchain (cargo fuzz needs it)"
  rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

# Optimized, with debug assertions and overflow checks, and AddressSanitizer (the default).
build_flags=(--release --debug-assertions)
# A corrupt length may make the reader grow its buffer to 256 MiB (2 x 64 MiB, rounded up
# to a power of two) before it finds the input truncated. ASan keeps freed memory in
# quarantine (256 MiB by default), which would count against -rss_limit_mb: keep it small.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=16"
targets=$(cargo +nightly fuzz list)
cargo +nightly fuzz build "${build_flags[@]}"

scratch=$(mktemp -d "${TMPDIR:-/tmp}/mr-fuzz-corpus.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
mkdir -p target/logs
failed=()
for t in $targets; do
  mkdir -p "$scratch/$t" "corpus/$t"
  opts=(-max_total_time="$seconds" -rss_limit_mb=512 -max_len=4096 -print_final_stats=1)
  ((seconds > 0)) || opts+=(-runs=0)
  [[ -f $t.dict ]] && opts+=(-dict="$t.dict")
  log=target/logs/$t.log
  echo "fuzz: $t for ${seconds}s (log: fuzz/$log)"
  if cargo +nightly fuzz run "${build_flags[@]}" "$t" "$scratch/$t" "corpus/$t" -- "${opts[@]}" >"$log" 2>&1; then
    # The last status line (coverage, corpus size, exec/s) and the final stats.
    { grep -E '^#[0-9]+' "$log" | tail -n 1
      grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' "$log"
    } | sed 's/^/  /' || true
  else
    echo "fuzz: $t FAILED; end of its log:" >&2
    tail -n 60 "$log" >&2
    failed+=("$t")
  fi
done
if ((${#failed[@]})); then
  echo "fuzz: failing targets: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
  exit 1
fi
echo "fuzz: no target failed in ${seconds}s each"
