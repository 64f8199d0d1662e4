# Sourced by the test projects' build scripts. Called from a test, the calling cargo's variables
# would reach these separate builds: its target dir and flags are for the host workspace, and
# build scripts that watch its package variables (ring watches CARGO_MANIFEST_DIR) would rebuild
# on every call from another package.
for var in $(compgen -e); do
  case "$var" in
    CARGO_HOME | CARGO_NET_* | CARGO_REGISTRIES_* | CARGO_HTTP_*) ;;
    CARGO_* | RUSTFLAGS | RUSTDOCFLAGS | RUSTC_WRAPPER | RUSTC_WORKSPACE_WRAPPER) unset "$var" ;;
  esac
done
