#!/usr/bin/env bash
# Installs the real secrets backend, crates.io's `secrets-nats-kv` 0.2.0 (wasmCloud's NATS KV
# secrets backend and its CLI), with the lock file it was published with:
# tests/secrets/bin/secrets-nats-kv (used by tests/tests/secrets.rs). A no-op once installed;
# the build directory is kept so a version bump rebuilds only what changed.
set -euo pipefail
cd "$(dirname "$0")"
source ../own-cargo-env.sh
cargo install --quiet --locked --version =0.2.0 secrets-nats-kv \
  --root "$PWD" --target-dir "$PWD/target" "$@"
