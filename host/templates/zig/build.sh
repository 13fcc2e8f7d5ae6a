#!/usr/bin/env bash
# Build this Zig plugin into a component: build.sh [OUT.wasm]
# Needs zig 0.17.1 (pip package ziglang), wit-bindgen-cli 0.63.0, wasm-tools
# 1.263.0 and the wasi preview1 reactor adapter (`just toolchains`).
set -euo pipefail
# SLUICE_PLUGIN_DIR lets a plugin kept elsewhere build with this script.
here="${SLUICE_PLUGIN_DIR:-$(cd "$(dirname "$0")" && pwd)}"
out=$(realpath -m "${1:-$here/$(basename "$here").wasm}")
T="${SLUICE_TOOLCHAINS:-$HOME/.cache/sluice/toolchains}"
wit="$here/wit"; [ -d "$wit" ] || wit="$here/../../wit/0.1.0"
for f in "$T/venv/bin/python" "$T/cargo/bin/wit-bindgen" "$T/bin/wasm-tools" "$T/wasi_snapshot_preview1.reactor.wasm"; do
    [ -e "$f" ] || { echo "$f is missing: run \`just toolchains\` (or see .ci/install-toolchains)" >&2; exit 1; }
done
zig() { "$T/venv/bin/python" -m ziglang "$@"; }
zig version >/dev/null 2>&1 || { echo "zig is missing: run \`just toolchains\` (or: $T/venv/bin/pip install ziglang==0.17.1)" >&2; exit 1; }
gen=$(mktemp -d)
trap 'rm -rf "$gen"' EXIT
"$T/cargo/bin/wit-bindgen" c "$wit" --world transform --out-dir "$gen" >"$gen/wit-bindgen.log" 2>&1 || { cat "$gen/wit-bindgen.log" >&2; exit 1; }
# Zig 0.17 has no @cImport: translate the generated header into a Zig file.
zig translate-c -target wasm32-wasi -lc "$gen/transform.h" >"$gen/transform.zig"
cp "$here"/*.zig "$gen/"
(cd "$gen" && zig build-exe main.zig transform.c transform_component_type.o -I. \
    -target wasm32-wasi -mexec-model=reactor -fno-entry -lc -O ReleaseSmall -fstrip \
    -femit-bin=core.wasm)
# Zig's libc and panic handler import a few WASI preview1 functions.
"$T/bin/wasm-tools" component new "$gen/core.wasm" \
    --adapt "wasi_snapshot_preview1=$T/wasi_snapshot_preview1.reactor.wasm" -o "$out"
