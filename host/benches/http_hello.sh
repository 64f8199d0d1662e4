#!/usr/bin/env bash
# HTTP hello under wrk on loopback, side by side in one run: `trellis up` (built-in HTTP server →
# component, in-process) and `wasmtime serve -S cli` (the guest reads its environment) on the
# same component. Prints requests/s, latency percentiles and each server's RSS. Bounded:
# ROUNDS × 2 × 10 s of load.
# Needs wrk (`apt-get install wrk`) and what `.ci/setup` installs; installs wasmtime-cli 45.0.3
# (the wasmtime Trellis embeds) into target/bench-tools on first use, unless WASMTIME points at
# one. Run from the repository root:
#   bash host/benches/http_hello.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
bash .ci/setup >/dev/null
cargo build --release -q -p trellis-host
trellis_bin=${CARGO_TARGET_DIR:-target}/release/trellis
wasmtime=${WASMTIME:-target/bench-tools/bin/wasmtime}
if [ ! -x "$wasmtime" ]; then
  cargo install -q wasmtime-cli --version 45.0.3 --locked --root target/bench-tools
  wasmtime=target/bench-tools/bin/wasmtime
fi
rounds=${ROUNDS:-2}
component=tests/components/target/wasm32-wasip2/release/http_server.wasm

work=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
trellis_port=$(free_port)
wasmtime_port=$(free_port)
sed -e "s#file://./tests#file://$PWD/tests#" -e "s#127.0.0.1:8080#127.0.0.1:$trellis_port#" \
  wadm-manifests/hello.yaml > "$work/hello.yaml"
"$trellis_bin" up "$work/hello.yaml" --data-dir "$work/data" > "$work/up.log" 2>&1 &
trellis=$!
"$wasmtime" serve -S cli --addr "127.0.0.1:$wasmtime_port" "$component" > "$work/serve.log" 2>&1 &
serve=$!
trap 'kill -INT $trellis $serve 2>/dev/null; wait $trellis $serve 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 1 300); do grep -q "press Ctrl-C" "$work/up.log" && break; sleep 0.1; done
grep -q "press Ctrl-C" "$work/up.log" || { cat "$work/up.log"; exit 1; }
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$wasmtime_port/warm" >/dev/null && break; sleep 0.1; done
curl -sf "http://127.0.0.1:$trellis_port/warm" >/dev/null
curl -sf "http://127.0.0.1:$wasmtime_port/warm" >/dev/null || { cat "$work/serve.log"; exit 1; }

# Alternating rounds, so that both servers see the same machine noise.
for round in $(seq 1 "$rounds"); do
  for server in trellis wasmtime; do
    port_var=${server}_port
    echo "== round $round: $server"
    wrk -t2 -c32 -d10s --latency "http://127.0.0.1:${!port_var}/hello" | grep -E "Requests/sec|^ +(50|99)%"
  done
done
echo "trellis RSS after load: $(grep VmRSS /proc/$trellis/status | awk '{print $2, $3}')"
echo "wasmtime serve RSS after load: $(grep VmRSS /proc/$serve/status | awk '{print $2, $3}')"
