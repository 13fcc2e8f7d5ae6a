#!/usr/bin/env bash
# Build every non-Rust plugin (each folder under plugins/ with a build.sh)
# into DIST/<folder>.wasm: `plugins/build-polyglot.sh [DIST]`.
#
# A plugin is rebuilt only when its sources, the WIT or the toolchain
# versions changed (a stamp per plugin under ~/.cache/sluice/polyglot);
# Python and JavaScript take 30-50 s each to componentize. A missing
# toolchain fails the build with a message naming `just toolchains`; no
# language is ever skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
dist=$(realpath -m "${1:-dist/plugins}")
T="${SLUICE_TOOLCHAINS:-$HOME/.cache/sluice/toolchains}"
stamps="$HOME/.cache/sluice/polyglot"
mkdir -p "$dist" "$stamps"
tools=$(cat .ci/install-toolchains)
for build in plugins/*/build.sh; do
    dir=$(dirname "$build")
    name=$(basename "$dir")
    out="$dist/$name.wasm"
    stamp=$( { echo "$tools"; cat wit/*.wit host/templates/*/build.sh; find "$dir" -type f ! -name '*.wasm' ! -path '*/__pycache__/*' | LC_ALL=C sort | xargs cat; } | sha256sum | cut -c1-64)
    if [ -f "$out" ] && [ "$(cat "$stamps/$name" 2>/dev/null)" = "$stamp" ]; then
        echo "build-polyglot: $name is up to date"
        continue
    fi
    start=$SECONDS
    if ! bash "$build" "$out"; then
        echo "build-polyglot: building $name failed (toolchains: \`just toolchains\`)" >&2
        rm -f "$out" "$stamps/$name"
        exit 1
    fi
    echo "$stamp" >"$stamps/$name"
    echo "build-polyglot: built $name in $((SECONDS - start)) s ($(stat -c %s "$out") bytes)"
done
