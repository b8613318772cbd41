#!/usr/bin/env bash
# Builds the Python apps (apps-wasm/python/*.py but the SDK, mrapp.py) into Wasm
# components with componentize-py, as <repo>/target/apps/<name>-py.wasm. A build takes
# ~10 s (componentize-py links CPython and pre-initializes the app), so it is skipped
# when the sources, the WIT world and componentize-py's version are those of the last build.
#
# The apps are built with stubbed WASI (no imports but the world's `host`), except
# hostile.py: it imports WASI 0.2, so the tests also cover the worker's empty WASI.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$(dirname "$here")")"
out="$root/target/apps"
version="0.25.1"

if ! command -v componentize-py >/dev/null; then
    echo "apps-wasm/python/build.sh: componentize-py is not installed: run \`make setup\`" >&2
    exit 1
fi
have="$(componentize-py --version | awk '{print $2}')"
if [ "$have" != "$version" ]; then
    echo "apps-wasm/python/build.sh: componentize-py $have found, $version needed: run \`make setup\`" >&2
    exit 1
fi

apps=()
for f in "$here"/*.py; do
    name="$(basename "$f" .py)"
    [ "$name" = mrapp ] || apps+=("$name")
done
mkdir -p "$out"
stamp="$out/.python-apps.stamp"
want="$( (echo "$version stub-wasi but hostile"; cat "$here"/*.py "$here"/../wit/*.wit) | sha256sum | cut -d' ' -f1)"
fresh=1
for name in "${apps[@]}"; do
    [ -f "$out/$name-py.wasm" ] || fresh=0
done
if [ "$fresh" = 1 ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    echo "python apps: up to date (${apps[*]})"
    exit 0
fi

rm -f "$stamp"
pids=()
for name in "${apps[@]}"; do
    (
        # --stub-wasi: CPython's WASI imports become stubs that trap. An app needs no
        # WASI, and the worker's WASI has nothing behind it anyway.
        stub=(--stub-wasi)
        [ "$name" != hostile ] || stub=()
        componentize-py -d "$here/../wit" -w app componentize "${stub[@]}" "$name" \
            -p "$here" -o "$out/$name-py.wasm" >/dev/null
        echo "python app: $out/$name-py.wasm"
    ) &
    pids+=($!)
done
status=0
for pid in "${pids[@]}"; do
    wait "$pid" || status=1
done
[ "$status" = 0 ] || { echo "apps-wasm/python/build.sh: a build failed" >&2; exit 1; }
echo "$want" > "$stamp"
