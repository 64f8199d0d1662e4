#!/usr/bin/env bash
# Builds wasmCloud 1.x's host as a benchmark peer:
# tests/wasmcloud-host/target/release/trellis-bench-wasmcloud. About half an hour on 2 cores the
# first time; cargo skips the work when nothing changed.
set -euo pipefail
cd "$(dirname "$0")"
source ../own-cargo-env.sh
cargo build --release --locked --quiet "$@"
