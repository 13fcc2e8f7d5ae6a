#!/usr/bin/env bash
# Build this Python plugin into a component: build.sh [OUT.wasm]
# Needs componentize-py 0.25.1 (`just toolchains` installs it).
set -euo pipefail
# SLUICE_PLUGIN_DIR lets a plugin kept elsewhere build with this script.
here="${SLUICE_PLUGIN_DIR:-$(cd "$(dirname "$0")" && pwd)}"
out=$(realpath -m "${1:-$here/$(basename "$here").wasm}")
T="${SLUICE_TOOLCHAINS:-$HOME/.cache/sluice/toolchains}"
wit="$here/wit"; [ -d "$wit" ] || wit="$here/../../wit/0.1.0"
cpy="$T/venv/bin/componentize-py"
[ -x "$cpy" ] || { echo "$cpy is missing: run \`just toolchains\` (or: python3 -m venv $T/venv && $T/venv/bin/pip install componentize-py==0.25.1)" >&2; exit 1; }
cd "$here"
"$cpy" -d "$wit" -w transform componentize app -o "$out" >/dev/null
