#!/usr/bin/env bash
# Installs the real wash 0.43.0 CLI into tests/wash/bin for tests/tests/wash.rs (about 25
# minutes on 2 cores; cargo skips the work when it is there already). Then:
#   cargo test -p trellis-tests --test wash
set -euo pipefail
cd "$(dirname "$0")"
cargo install wash --version 0.43.0 --locked --root . "$@"
