#!/usr/bin/env bash
# Build this JavaScript plugin into a component: build.sh [OUT.wasm]
# Needs @bytecodealliance/componentize-js 0.23.0 (`just toolchains` installs it).
set -euo pipefail
# SLUICE_PLUGIN_DIR lets a plugin kept elsewhere build with this script.
here="${SLUICE_PLUGIN_DIR:-$(cd "$(dirname "$0")" && pwd)}"
out=$(realpath -m "${1:-$here/$(basename "$here").wasm}")
T="${SLUICE_TOOLCHAINS:-$HOME/.cache/sluice/toolchains}"
wit="$here/wit"; [ -d "$wit" ] || wit="$here/../../wit/0.1.0"
cjs="$T/node/node_modules/.bin/componentize-js"
[ -x "$cjs" ] || { echo "$cjs is missing: run \`just toolchains\` (or: npm install --prefix $T/node @bytecodealliance/componentize-js@0.23.0)" >&2; exit 1; }
cd "$here"
# The plugin needs no WASI http or fetch-event; leave them out.
"$cjs" app.js --wit "$wit" -n transform -d http fetch-event -o "$out" >/dev/null
