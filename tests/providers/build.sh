#!/usr/bin/env bash
# Builds the native test providers and packs each into a provider archive:
# tests/providers/target/release/{name}.par.gz. Cargo skips the work when nothing changed, and an
# archive is only rewritten when its binary is newer.
set -euo pipefail
cd "$(dirname "$0")"
source ../own-cargo-env.sh
cargo build --release --locked --quiet "$@"
out=target/release
for name in greeter; do
  bin="$out/test-provider-$name"
  par="$out/$name.par.gz"
  if [ ! -f "$par" ] || [ "$bin" -nt "$par" ]; then
    # Packed beside and renamed into place: a test reading the archive never sees half of it.
    "$out/test-provider-packer" "$bin" "$par.tmp.gz" "trellis-test-$name"
    mv "$par.tmp.gz" "$par"
  fi
done
