#!/usr/bin/env bash
# Builds the guest components the tests and benchmarks use, for wasm32-wasip2, into
# tests/components/target/wasm32-wasip2/release/*.wasm. Cargo skips the work when nothing changed.
set -euo pipefail
cd "$(dirname "$0")"
source ../own-cargo-env.sh
rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
cargo build --release --target wasm32-wasip2 --quiet "$@"
