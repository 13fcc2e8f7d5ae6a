#!/usr/bin/env bash
# Build this C plugin into a component: build.sh [OUT.wasm]
# Needs clang-22 + wasi-libc (apt), wit-bindgen-cli 0.63.0, wasm-tools 1.262.0
# and the wasi preview1 reactor adapter (`just toolchains` installs them all).
set -euo pipefail
# SLUICE_PLUGIN_DIR lets a plugin kept elsewhere build with this script.
here="${SLUICE_PLUGIN_DIR:-$(cd "$(dirname "$0")" && pwd)}"
out=$(realpath -m "${1:-$here/$(basename "$here").wasm}")
T="${SLUICE_TOOLCHAINS:-$HOME/.cache/sluice/toolchains}"
wit="$here/wit"; [ -d "$wit" ] || wit="$here/../../wit/0.1.0"
how="run \`just toolchains\` (or see .ci/install-toolchains)"
command -v clang-22 >/dev/null || { echo "clang-22 is missing: $how (apt-get install -y clang-22 lld-22 libclang-rt-22-dev-wasm32 wasi-libc)" >&2; exit 1; }
for f in "$T/cargo/bin/wit-bindgen" "$T/bin/wasm-tools" "$T/wasi_snapshot_preview1.reactor.wasm"; do
    [ -e "$f" ] || { echo "$f is missing: $how" >&2; exit 1; }
done
gen=$(mktemp -d)
trap 'rm -rf "$gen"' EXIT
"$T/cargo/bin/wit-bindgen" c "$wit" --world transform --out-dir "$gen" >"$gen/wit-bindgen.log" 2>&1 || { cat "$gen/wit-bindgen.log" >&2; exit 1; }
# Debian files wasi-libc under the target name wasm32-wasi.
clang-22 --target=wasm32-wasi -Wno-deprecated -mexec-model=reactor -O2 -Wall -Wextra -Werror \
    -Wl,--strip-all -I"$here" -I"$gen" "$here"/*.c "$gen/transform.c" "$gen/transform_component_type.o" \
    -o "$gen/core.wasm"
"$T/bin/wasm-tools" component new "$gen/core.wasm" \
    --adapt "wasi_snapshot_preview1=$T/wasi_snapshot_preview1.reactor.wasm" -o "$out"
