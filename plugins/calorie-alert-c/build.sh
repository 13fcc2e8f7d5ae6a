#!/usr/bin/env bash
# Build this port into a component: build.sh [OUT.wasm]. The build is the
# template's (host/templates/c/build.sh), the script `sluice plugin new`
# ships, run on this folder.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
SLUICE_PLUGIN_DIR="$here" exec bash "$here/../../host/templates/c/build.sh" "$@"
