#!/usr/bin/env bash
# Builds bench/python/wc_tuples.py (figure 12) into target/apps/bench/wc-tuples-py.wasm,
# with the same componentize-py and flags as apps-wasm/python/build.sh builds wc-py;
# skipped when its sources have not changed.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$(dirname "$here")")"
out="$root/target/apps/bench"
mkdir -p "$out"
stamp="$out/.wc-tuples.stamp"
want="$( (componentize-py --version; cat "$here"/*.py "$here"/../wit/tuples/*.wit "$root"/apps-wasm/python/mrapp.py) | sha256sum | cut -d' ' -f1)"
if [ -f "$out/wc-tuples-py.wasm" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    exit 0
fi
componentize-py -d "$here/../wit/tuples" -w app componentize --stub-wasi wc_tuples \
    -p "$here" -p "$root/apps-wasm/python" -o "$out/wc-tuples-py.wasm" >/dev/null
echo "$want" > "$stamp"
echo "bench app: $out/wc-tuples-py.wasm"
