#!/usr/bin/env bash
# Builds the Wasm apps and copies them to <repo>/target/apps/<name>.wasm, where the
# worker's tests and the local cluster look for them: the Rust apps (<name>.wasm), the C
# apps (<name>-c.wasm) and the Python apps (<name>-py.wasm). Works from any directory.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    rustup target add wasm32-unknown-unknown
fi

# --target and --target-dir are explicit: the repo's .cargo/config.toml (musl) or a
# CARGO_TARGET_DIR in the environment would otherwise send the build elsewhere.
cargo build --release \
    --manifest-path "$here/Cargo.toml" \
    --target wasm32-unknown-unknown \
    --target-dir "$here/target"

mkdir -p "$root/target/apps"
cp "$here"/target/wasm32-unknown-unknown/release/*.wasm "$root/target/apps/"

# The C apps (clang-19, core modules) and the Python apps (componentize-py, components).
"$here/c/build.sh"
"$here/python/build.sh"
ls "$root/target/apps"
