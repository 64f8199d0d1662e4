#!/usr/bin/env bash
# HTTP hello under wrk on loopback, side by side in one run: `trellis up` (built-in HTTP server →
# component, in-process) and `wasmtime serve -S cli` (the guest reads its environment) on the
# same component, each with a fresh instance per request and with an instance serving up to
# REUSE (default 128) requests (`requests_per_instance`, `--max-instance-reuse-count`). Prints
# requests/s, latency percentiles and each server's RSS. `wasmtime_tuned` is `wasmtime serve`
# with fresh instances and Trellis's pool setting (2 MiB of each pooled memory and table kept
# resident; concurrency support stays on: `wasmtime serve` 48 runs its instances with
# `run_concurrent`, which needs it). `hyper` is the ceiling: a plain hyper server, no wasm
# (`host/examples/hyper_hello.rs`). Bounded: ROUNDS × 6 × 10 s of load.
# Needs wrk (`apt-get install wrk`) and what `.ci/setup` installs; installs wasmtime-cli 48.0.8
# (the wasmtime Trellis embeds) into target/bench-tools on first use, unless WASMTIME points at
# one. Run from the repository root:
#   bash host/benches/http_hello.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
bash .ci/setup >/dev/null
cargo build --release -q -p trellis-host --bin trellis --example hyper_hello
trellis_bin=${CARGO_TARGET_DIR:-target}/release/trellis
hyper_bin=${CARGO_TARGET_DIR:-target}/release/examples/hyper_hello
wasmtime=${WASMTIME:-target/bench-tools/bin/wasmtime}
if [ ! -x "$wasmtime" ]; then
  cargo install -q wasmtime-cli --version 48.0.8 --locked --root target/bench-tools
  wasmtime=target/bench-tools/bin/wasmtime
fi
rounds=${ROUNDS:-2}
component=tests/components/target/wasm32-wasip2/release/http_server.wasm

work=$(mktemp -d)
reuse=${REUSE:-128}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
trellis_port=$(free_port)
wasmtime_port=$(free_port)
trellis_reuse_port=$(free_port)
wasmtime_reuse_port=$(free_port)
wasmtime_tuned_port=$(free_port)
hyper_port=$(free_port)
manifest() {
  sed -e "s#file://./tests#file://$PWD/tests#" -e "s#127.0.0.1:8080#127.0.0.1:$1#" \
    wadm-manifests/hello.yaml
}
manifest "$trellis_port" > "$work/hello.yaml"
manifest "$trellis_reuse_port" | sed "s#^\( *\)address: .*#&\n\1requests_per_instance: \"$reuse\"#" \
  > "$work/hello-reuse.yaml"
"$trellis_bin" up "$work/hello.yaml" --data-dir "$work/data" > "$work/up.log" 2>&1 &
trellis=$!
"$trellis_bin" up "$work/hello-reuse.yaml" --data-dir "$work/data-reuse" > "$work/up-reuse.log" 2>&1 &
trellis_reuse=$!
"$wasmtime" serve -S cli --addr "127.0.0.1:$wasmtime_port" "$component" > "$work/serve.log" 2>&1 &
serve=$!
"$wasmtime" serve -S cli --addr "127.0.0.1:$wasmtime_reuse_port" --max-instance-reuse-count "$reuse" \
  "$component" > "$work/serve-reuse.log" 2>&1 &
serve_reuse=$!
keep=$((2 << 20))
"$wasmtime" serve -S cli --addr "127.0.0.1:$wasmtime_tuned_port" \
  -O "pooling-memory-keep-resident=$keep,pooling-table-keep-resident=$keep,pooling-pagemap-scan=auto" \
  "$component" > "$work/serve-tuned.log" 2>&1 &
serve_tuned=$!
"$hyper_bin" "127.0.0.1:$hyper_port" &
hyper=$!
pids=("$trellis" "$trellis_reuse" "$serve" "$serve_reuse" "$serve_tuned" "$hyper")
# SIGTERM for hyper: a background job of a script ignores SIGINT unless it handles it itself.
trap 'kill -INT "${pids[@]}" 2>/dev/null; kill -TERM "$hyper" 2>/dev/null; wait "${pids[@]}" 2>/dev/null; rm -rf "$work"' EXIT
for log in up up-reuse; do
  for _ in $(seq 1 300); do grep -q "press Ctrl-C" "$work/$log.log" && break; sleep 0.1; done
  grep -q "press Ctrl-C" "$work/$log.log" || { cat "$work/$log.log"; exit 1; }
done
for port in "$wasmtime_port" "$wasmtime_reuse_port" "$wasmtime_tuned_port" "$hyper_port"; do
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/warm" >/dev/null && break; sleep 0.1; done
done
for port in "$trellis_port" "$trellis_reuse_port" "$wasmtime_port" "$wasmtime_reuse_port" \
  "$wasmtime_tuned_port" "$hyper_port"; do
  curl -sf "http://127.0.0.1:$port/warm" >/dev/null || { cat "$work"/*.log; exit 1; }
done

# Alternating rounds, so that every server sees the same machine noise.
for round in $(seq 1 "$rounds"); do
  for server in trellis wasmtime wasmtime_tuned trellis_reuse wasmtime_reuse hyper; do
    port_var=${server}_port
    echo "== round $round: $server"
    wrk -t2 -c32 -d10s --latency "http://127.0.0.1:${!port_var}/hello" | grep -E "Requests/sec|^ +(50|99)%"
  done
done
rss() { grep VmRSS "/proc/$1/status" | awk '{print $2, $3}'; }
echo "trellis RSS after load: $(rss "$trellis"); with reuse $(rss "$trellis_reuse")"
echo "wasmtime serve RSS after load: $(rss "$serve"); with reuse $(rss "$serve_reuse"); tuned $(rss "$serve_tuned")"
