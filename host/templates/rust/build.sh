#!/usr/bin/env bash
# Build this Rust plugin into a component: build.sh [OUT.wasm]
# Needs rustup's wasm32-wasip2 target (added here when missing).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
name=$(basename "$here")
out=$(realpath -m "${1:-$here/$name.wasm}")
command -v cargo >/dev/null || { echo "cargo is missing: install Rust with rustup (https://rustup.rs)" >&2; exit 1; }
rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
cd "$here"
cargo build --quiet --release --target wasm32-wasip2
target="${CARGO_TARGET_DIR:-$here/target}"
cp "$target/wasm32-wasip2/release/${name//-/_}.wasm" "$out"
