# sluice developer entry points. `just --list` shows them all.

set shell := ["bash", "-euo", "pipefail", "-c"]

# Builds live outside the clone so fresh clones and CI reuse them.
export CARGO_TARGET_DIR := env_var_or_default("CARGO_TARGET_DIR", env_var("HOME") + "/.cache/sluice/target")
plugin_target := env_var_or_default("SLUICE_PLUGIN_TARGET", env_var("HOME") + "/.cache/sluice/plugins-target")
export SLUICE_TANSU := env_var_or_default("SLUICE_TANSU", env_var("HOME") + "/.cache/sluice/bin/tansu")

# The demo runs these two.
demo_crates := "recipe-parser calorie-alert"
plugin_crates := "recipe-parser calorie-alert page-parser passthrough busy-loop alloc-bomb panic big-output http-fetch init-trap flaky sleeper flood prober"

default:
    @just --list

# Install the component toolchains (Python, JS, C, Zig) at pinned versions into ~/.cache/sluice/toolchains
toolchains:
    bash .ci/install-toolchains

# Build the Rust plugins and test fixtures into dist/plugins/<name>.wasm (no toolchain but Rust's)
plugins: (rust-plugins plugin_crates)

# Build every plugin and test fixture, in every language (installs the Python, JS, C and Zig toolchains)
plugins-all: plugins toolchains
    #!/usr/bin/env bash
    set -euo pipefail
    bash plugins/build-polyglot.sh dist/plugins
    bash tests/plugins/wat/build.sh dist/plugins
    # The hot-swap tests' second build of calorie-alert (default threshold
    # 300), in its own target dir so the two builds don't rebuild each other.
    CARGO_TARGET_DIR="{{plugin_target}}-variant" cargo build --profile plugin --target wasm32-wasip2 -p calorie-alert --features default-threshold-300
    cp "{{plugin_target}}-variant/wasm32-wasip2/plugin/calorie_alert.wasm" dist/plugins/calorie-alert-300.wasm

# Build the named Rust plugin crates into dist/plugins/<name>.wasm
[private]
rust-plugins crates:
    #!/usr/bin/env bash
    set -euo pipefail
    rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
    args=(); for c in {{crates}}; do args+=(-p "$c"); done
    CARGO_TARGET_DIR="{{plugin_target}}" cargo build --profile plugin --target wasm32-wasip2 "${args[@]}"
    mkdir -p dist/plugins
    for c in {{crates}}; do
        cp "{{plugin_target}}/wasm32-wasip2/plugin/${c//-/_}.wasm" "dist/plugins/$c.wasm"
    done

# Install the tansu broker (Kafka-compatible) into ~/.cache/sluice/bin
broker-install:
    bash .ci/install-tansu "$SLUICE_TANSU"

# Run a local broker in the foreground on PORT (default 9092)
broker port="9092": broker-install
    "$SLUICE_TANSU" broker --listener-url tcp://127.0.0.1:{{port}} --advertised-listener-url tcp://127.0.0.1:{{port}} --storage-engine memory://tansu/

# Build the sluice binary. The whole workspace, as `cargo test --workspace`
# builds it: the plugin crates' host builds turn on proc-macro features
# (syn's `visit`, through scraper's derive_more) that wasmtime's own macros
# share, so building `-p sluice` alone made `just test` compile wasmtime again.
build:
    cargo build --workspace

# Run every test: plugin unit tests, host unit tests, integration tests against a real broker
test: plugins-all broker-install
    cargo test --workspace

# Regenerate the generated part of docs/config.md from the config types' docs
docs:
    SLUICE_BLESS=1 cargo test -p sluice --test config_reference

# fmt + clippy, as CI wants them
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# The recipe pipeline end to end on a local broker
demo: (rust-plugins demo_crates) broker-install build
    bash examples/recipes/demo.sh

# The demo, left running: rebuild a plugin with `just plugins` and watch it swap in
demo-live: (rust-plugins demo_crates) broker-install build
    SLUICE_DEMO_LIVE=1 bash examples/recipes/demo.sh

# Benchmarks: criterion for plugin calls, results into BENCHMARKS.md
bench: plugins-all
    bash .ci/bench
