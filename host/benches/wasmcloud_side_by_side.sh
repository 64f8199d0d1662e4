#!/usr/bin/env bash
# Trellis and wasmCloud 1.x (crates.io `wasmcloud-host` 0.27.1, the host of wasmCloud 1.9, built
# by tests/wasmcloud-host/build.sh) side by side in one run, each on its own loopback
# nats-server with two hosts A and B, both set up by the same control-interface requests
# (`trellis ctl`, a client like `wash`): the built-in HTTP server (`wasmcloud+builtin://
# http-server`) on A serves
#   hello  the `http_server` component on A: a fresh instance per request (both hosts' default);
#   ping   the `http_ping` component on A, which calls `pong.ping` of the `pong` component on B:
#          HTTP → component → wRPC over NATS → component on another host.
# Every component may run INSTANCES (default 64) instances, above wrk's 32 connections. Load:
# `wrk -t2 -c32 -d10s --latency` (the ping path at 8 connections too), ROUNDS (default 2)
# alternating rounds, so that both hosts see the same machine noise; prints requests/s, mean
# (± stdev), p50 and p99 latency, errors, how many connections were answered, and the RSS of
# the hosts.
# Bounded: ROUNDS × 6 × 10 s of load, then 2 × 10 s of one request at a time. PIN=1 puts the
# servers on CPU 0 and wrk on CPU 1.
#
# The first run builds the wasmCloud host (about half an hour on 2 cores). Needs wrk
# (`apt-get install wrk`). Run from the repository root:
#   bash host/benches/wasmcloud_side_by_side.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
bash .ci/setup >/dev/null
bash tests/components/build.sh
bash tests/wasmcloud-host/build.sh
cargo build --release -q -p trellis-host
trellis_bin=$PWD/${CARGO_TARGET_DIR:-target}/release/trellis
wasmcloud_bin=$PWD/tests/wasmcloud-host/target/release/trellis-bench-wasmcloud
components=$PWD/tests/components/target/wasm32-wasip2/release
rounds=${ROUNDS:-2}
instances=${INSTANCES:-64}

source host/benches/servers.sh

# The IDs of the lattice's hosts, one a line.
host_ids() {
  "$trellis_bin" ctl hosts -o json 2>/dev/null |
    python3 -c 'import json,sys; [print(h["id"]) for h in json.load(sys.stdin)]' 2>/dev/null || true
}

# A control request that may wait for a component's compile.
ctl() { TRELLIS_CTL_TIMEOUT_MS=30000 "$trellis_bin" ctl "$@"; }

# Waits until the lattice has `$1` hosts; prints the one that is not in `$2` (newline-separated).
new_host() {
  for _ in $(seq 1 150); do
    local ids; ids=$(host_ids)
    if [ "$(printf '%s\n' "$ids" | grep -c .)" -ge "$1" ]; then
      printf '%s\n' "$ids" | grep -vxF -e "${2:-none}" | head -1
      return
    fi
    sleep 0.2
  done
  echo "host $1 did not join the lattice" >&2
  return 1
}

# Starts `$1` (trellis or wasmcloud) with hosts A and B on a nats-server of its own, deploys both
# paths, and waits until both answer. Sets ${1}_hello_port, ${1}_ping_port, ${1}_pids.
deploy() {
  local kind=$1 nats_port monitor_port; nats_port=$(free_port) monitor_port=$(free_port)
  printf -v "${kind}_monitor_port" %s "$monitor_port"
  mkdir -p "$work/$kind-nats"
  "${server_cpu[@]}" nats-server -a 127.0.0.1 -p "$nats_port" -m "$monitor_port" -js \
    -sd "$work/$kind-nats" > "$work/$kind-nats.log" 2>&1 &
  pids+=($!)
  wait_port "$nats_port"
  export TRELLIS_NATS_URL=nats://127.0.0.1:$nats_port TRELLIS_LATTICE=bench
  local host_pids=() a b
  for host in a b; do
    if [ "$kind" = trellis ]; then
      local metrics_port; metrics_port=$(free_port)
      printf -v "metrics_$host" %s "$metrics_port"
      RUST_LOG=warn "${server_cpu[@]}" "$trellis_bin" host --name "$host" --allow-file-load \
        --metrics-addr "127.0.0.1:$metrics_port" > "$work/$kind-$host.log" 2>&1 &
    else
      RUST_LOG=warn "${server_cpu[@]}" "$wasmcloud_bin" "$TRELLIS_NATS_URL" bench \
        > "$work/$kind-$host.log" 2>&1 &
    fi
    pids+=($!)
    host_pids+=($!)
    if [ "$host" = a ]; then a=$(new_host 1); else b=$(new_host 2 "$a"); fi
  done
  local hello_port ping_port; hello_port=$(free_port) ping_port=$(free_port)
  ctl config put listen-hello "address=127.0.0.1:$hello_port" >/dev/null
  ctl config put listen-ping "address=127.0.0.1:$ping_port" >/dev/null
  ctl scale "$a" hello "file://$components/http_server.wasm" --count "$instances" >/dev/null
  ctl scale "$a" http-ping "file://$components/http_ping.wasm" --count "$instances" >/dev/null
  ctl scale "$b" pong "file://$components/pong.wasm" --count "$instances" >/dev/null
  ctl provider start "$a" http-server wasmcloud+builtin://http-server >/dev/null
  ctl link put http-server hello wasi:http --interface incoming-handler \
    --source-config listen-hello >/dev/null
  ctl link put http-server http-ping wasi:http --interface incoming-handler \
    --name ping --source-config listen-ping >/dev/null
  ctl link put http-ping pong trellis:example --interface pong >/dev/null
  for port in "$hello_port" "$ping_port"; do
    for _ in $(seq 1 300); do curl -sf "http://127.0.0.1:$port/warm" >/dev/null && break; sleep 0.1; done
    curl -sf "http://127.0.0.1:$port/warm" >/dev/null ||
      { tail -20 "$work/$kind-a.log" "$work/$kind-b.log"; exit 1; }
  done
  printf -v "${kind}_hello_port" %s "$hello_port"
  printf -v "${kind}_ping_port" %s "$ping_port"
  printf -v "${kind}_pids" %s "${host_pids[*]}"
}

deploy trellis
deploy wasmcloud
curl -sf "http://127.0.0.1:$trellis_ping_port/" | grep -qx "pong 42" || { echo "trellis: ping answered wrong" >&2; exit 1; }
curl -sf "http://127.0.0.1:$wasmcloud_ping_port/" | grep -qx "pong 42" || { echo "wasmCloud: ping answered wrong" >&2; exit 1; }

# `load THREADS CONNECTIONS URL OUTPUT`: wrk's figures, and how many connections were answered
# on average (requests/s × mean latency, Little's law): fewer than CONNECTIONS means requests
# sat unanswered, and the latency figures describe only the others.
load() {
  "${load_cpu[@]}" wrk -t"$1" -c"$2" -d10s --latency "$3" > "$4"
  grep -E "Requests/sec|^ +Latency|^ +(50|99)%|Non-2xx|Socket errors" "$4"
  python3 - "$2" "$4" <<'PY'
import re, sys
text = open(sys.argv[2]).read()
value, unit = re.search(r"Latency\s+([\d.]+)(us|ms|s)\b", text).groups()
mean = float(value) * {"us": 1e-6, "ms": 1e-3, "s": 1.0}[unit]
rate = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
print(f"  answered connections (req/s x mean latency): {rate * mean:.1f} of {sys.argv[1]}")
PY
}

# The ping path at 32 connections and at 8, where wasmCloud 1.9 answers every connection.
for round in $(seq 1 "$rounds"); do
  for run in hello:32 ping:32 ping:8; do
    path=${run%:*} connections=${run#*:}
    for kind in trellis wasmcloud; do
      port_var=${kind}_${path}_port
      echo "== round $round: $path on $kind, $connections connections"
      load 2 "$connections" "http://127.0.0.1:${!port_var}/$path" "$work/load.txt"
    done
  done
done
# Where a wRPC call's time goes: one request at a time on the ping path (no queueing), then the
# mean of each stage from the Trellis hosts' metrics over that run: the ping component's whole
# call on A (instantiation + the wRPC call + HTTP body), the wRPC call as A's client sees it
# (publish → results), and pong's call as B serves it (waiting for an instance, instantiation,
# the call). The gaps are the HTTP server's part and the transport's (NATS hops, wRPC framing).
scrape() { curl -sf "http://127.0.0.1:$1/metrics"; }
scrape "$metrics_a" > "$work/a-before.prom"
scrape "$metrics_b" > "$work/b-before.prom"
# Messages through the nats-server (in + out), from its monitoring endpoint.
nats_messages() {
  curl -sf "http://127.0.0.1:$1/varz" | python3 -c 'import json,sys; v=json.load(sys.stdin); print(v["in_msgs"] + v["out_msgs"])'
}
for kind in trellis wasmcloud; do
  port_var=${kind}_ping_port monitor_var=${kind}_monitor_port
  echo "== one request at a time: ping on $kind"
  messages_before=$(nats_messages "${!monitor_var}")
  load 1 1 "http://127.0.0.1:${!port_var}/ping" "$work/$kind-sequential.txt"
  messages=$(( $(nats_messages "${!monitor_var}") - messages_before ))
  requests=$(awk '/requests in/ {print $1}' "$work/$kind-sequential.txt")
  python3 -c "print(f'NATS messages in + out per request: {$messages / $requests:.1f}')"
  if [ "$kind" = trellis ]; then
    scrape "$metrics_a" > "$work/a-after.prom"
    scrape "$metrics_b" > "$work/b-after.prom"
  fi
done
python3 - "$work" <<'PY'
import re, sys
work = sys.argv[1]
def read(name):
    values = {}
    for line in open(f"{work}/{name}.prom"):
        m = re.match(r'(\w+)(\{[^}]*\})? (\S+)$', line.strip())
        if m:
            values[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return values
def mean_us(host, metric, labels=""):
    before, after = read(f"{host}-before"), read(f"{host}-after")
    key = lambda part: f"{metric}_{part}" + (f"{{{labels}}}" if labels else "")
    n = after[key("count")] - before.get(key("count"), 0)
    return (after[key("sum")] - before.get(key("sum"), 0)) / n * 1e6, int(n)
ping, n = mean_us("a", "trellis_component_call_duration_seconds", 'component="http-ping"')
wrpc, _ = mean_us("a", "trellis_wrpc_call_duration_seconds")
pong, _ = mean_us("b", "trellis_component_call_duration_seconds", 'component="pong"')
print(f"Trellis, mean of {n} sequential requests: ping component {ping:.0f} µs, of which the wRPC call "
      f"{wrpc:.0f} µs, of which pong served on B {pong:.0f} µs; transport {wrpc - pong:.0f} µs, "
      f"ping's own part (instance, HTTP body) {ping - wrpc:.0f} µs")
PY

rss() { grep VmRSS "/proc/$1/status" | awk '{print $2}'; }
for kind in trellis wasmcloud; do
  pids_var=${kind}_pids
  read -r a b <<< "${!pids_var}"
  echo "$kind RSS after load: host A $(rss "$a") kB, host B $(rss "$b") kB"
done
