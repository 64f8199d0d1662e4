#!/usr/bin/env bash
# Builds the real wadm as a test binary: tests/wadm/target/release/trellis-test-wadm (used by
# tests/tests/wadm.rs). Cargo skips the work when nothing changed.
set -euo pipefail
cd "$(dirname "$0")"
source ../own-cargo-env.sh
cargo build --release --locked --quiet "$@"
