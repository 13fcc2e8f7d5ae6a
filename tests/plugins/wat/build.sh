#!/usr/bin/env bash
# Wrap each hand-written core module here (*.wat) into a sluice:plugin
# component (built against wit/0.1.0): embed the `transform` world's type info, then `component new`.
# Usage: build.sh OUT_DIR
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$1"
wit="$here/../../../wit/0.1.0"  # these fixtures stay on sluice:plugin@0.1.0
tools="${SLUICE_TOOLCHAINS:-$HOME/.cache/sluice/toolchains}"
export PATH="$tools/bin:$PATH"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
for wat in "$here"/*.wat; do
    name="$(basename "$wat" .wat)"
    wasm-tools component embed --world transform "$wit" "$wat" -o "$tmp/$name.core.wasm"
    wasm-tools component new "$tmp/$name.core.wasm" -o "$out/$name.wasm"
done
