#!/usr/bin/env bash
# HTTP hello under wrk on loopback, side by side in one run: `trellis up` (built-in HTTP server →
# component, in-process), once with a fresh instance per request (the default, as wasmCloud)
# and once with `requests_per_instance=REUSE` (default 128, as `wasmtime serve
# --max-instance-reuse-count`), and a wasmCloud 1.x host serving the same component through its
# http-server capability provider (a separate process that calls the component over wRPC on
# NATS), all with at most INSTANCES (default 64) instances of the component: with 4, the
# wasmCloud 1.9.2 host stops answering after the first load round ends (every later request
# times out), so the default stays above wrk's 32 connections. Prints requests/s, latency
# percentiles and RSS (wasmCloud: host + provider). Bounded: ROUNDS × 3 × 10 s of load.
#
# wasmCloud is not built here: point WASMCLOUD at a `wasmcloud` binary and
# WASMCLOUD_HTTP_SERVER at its `http-server-provider` binary (BENCHMARKS.md says how the
# recorded run got them). Needs wrk (`apt-get install wrk`) and what `.ci/setup` and
# `tests/providers/build.sh` (the provider-archive packer) build. Run from the repository root:
#   WASMCLOUD=… WASMCLOUD_HTTP_SERVER=… bash host/benches/http_hello_wasmcloud.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${WASMCLOUD:?path to a wasmCloud 1.x wasmcloud binary}"
: "${WASMCLOUD_HTTP_SERVER:?path to the http-server-provider binary of wasmCloud}"
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
bash .ci/setup >/dev/null
bash tests/providers/build.sh
cargo build --release -q -p trellis-host
trellis_bin=${CARGO_TARGET_DIR:-target}/release/trellis
packer=tests/providers/target/release/test-provider-packer
rounds=${ROUNDS:-2}
instances=${INSTANCES:-64}
reuse=${REUSE:-128}
component=$PWD/tests/components/target/wasm32-wasip2/release/http_server.wasm

source host/benches/servers.sh
wasmcloud_port=$(free_port)
nats_port=$(free_port)

# Trellis: the hello example on its own port, twice (fresh instances, reused instances).
trellis_port=$(free_port)
reuse_port=$(free_port)
manifest() {
  sed -e "s#file://./tests#file://$PWD/tests#" -e "s#127.0.0.1:8080#127.0.0.1:$1#" \
    -e "s#instances: 4#instances: $instances#" wadm-manifests/hello.yaml
}
manifest "$trellis_port" > "$work/hello.yaml"
manifest "$reuse_port" | sed "s#^\( *\)address: .*#&\n\1requests_per_instance: \"$reuse\"#" \
  > "$work/hello-reuse.yaml"
"${server_cpu[@]}" "$trellis_bin" up "$work/hello.yaml" --data-dir "$work/trellis" \
  > "$work/up.log" 2>&1 &
trellis=$!
pids+=("$trellis")
"${server_cpu[@]}" "$trellis_bin" up "$work/hello-reuse.yaml" --data-dir "$work/trellis-reuse" \
  > "$work/up-reuse.log" 2>&1 &
trellis_reuse=$!
pids+=("$trellis_reuse")

# wasmCloud: its own nats-server and host; the component, provider and link set through the
# control interface (trellis ctl is a control-interface client like wash).
mkdir -p "$work/nats"
"${server_cpu[@]}" nats-server -a 127.0.0.1 -p "$nats_port" -js -sd "$work/nats" > "$work/nats.log" 2>&1 &
pids+=($!)
export TRELLIS_NATS_URL=nats://127.0.0.1:$nats_port TRELLIS_LATTICE=bench
for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/"$nats_port") 2>/dev/null && break; sleep 0.1; done
WASMCLOUD_ALLOW_FILE_LOAD=true RUST_LOG=warn "${server_cpu[@]}" "$WASMCLOUD" --nats-host 127.0.0.1 \
  --nats-port "$nats_port" --lattice bench > "$work/wasmcloud.log" 2>&1 &
wasmcloud=$!
pids+=("$wasmcloud")
host_id=""
for _ in $(seq 1 100); do
  host_id=$("$trellis_bin" ctl hosts -o json 2>/dev/null | python3 -c 'import json,sys; h=json.load(sys.stdin); print(h[0]["id"] if h else "")' 2>/dev/null || true)
  [ -n "$host_id" ] && break
  sleep 0.2
done
[ -n "$host_id" ] || { cat "$work/wasmcloud.log"; exit 1; }
"$packer" "$WASMCLOUD_HTTP_SERVER" "$work/http-server.par.gz" wasmcloud-http-server
"$trellis_bin" ctl config put wc-listen "address=127.0.0.1:$wasmcloud_port" >/dev/null
"$trellis_bin" ctl scale "$host_id" http-component "file://$component" --count "$instances" >/dev/null
"$trellis_bin" ctl provider start "$host_id" httpserver "file://$work/http-server.par.gz" \
  --timeout-ms 30000 >/dev/null
"$trellis_bin" ctl link put httpserver http-component wasi:http --interface incoming-handler \
  --source-config wc-listen >/dev/null

for log in up up-reuse; do
  for _ in $(seq 1 300); do grep -q "press Ctrl-C" "$work/$log.log" && break; sleep 0.1; done
  grep -q "press Ctrl-C" "$work/$log.log" || { cat "$work/$log.log"; exit 1; }
done
for _ in $(seq 1 300); do curl -sf "http://127.0.0.1:$wasmcloud_port/warm" >/dev/null && break; sleep 0.1; done
curl -sf "http://127.0.0.1:$trellis_port/warm" >/dev/null
curl -sf "http://127.0.0.1:$reuse_port/warm" >/dev/null
curl -sf "http://127.0.0.1:$wasmcloud_port/warm" >/dev/null || { tail -20 "$work/wasmcloud.log"; exit 1; }

# Alternating rounds, so that both servers see the same machine noise.
for round in $(seq 1 "$rounds"); do
  for server in trellis reuse wasmcloud; do
    port_var=${server}_port
    echo "== round $round: $server"
    "${load_cpu[@]}" wrk -t2 -c32 -d10s --latency "http://127.0.0.1:${!port_var}/hello" | grep -E "Requests/sec|^ +(50|99)%|Non-2xx|Socket errors"
  done
done
rss() { if [ -n "$1" ]; then grep VmRSS "/proc/$1/status" | awk '{print $2}'; else echo "?"; fi; }
provider=$(pgrep -P "$wasmcloud" | head -1 || true)
echo "trellis RSS after load: $(rss "$trellis") kB; with reuse $(rss "$trellis_reuse") kB"
echo "wasmCloud RSS after load: host $(rss "$wasmcloud") kB, http-server provider $(rss "$provider") kB"
