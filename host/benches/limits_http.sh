#!/usr/bin/env bash
# The cost of limits on HTTP hello, side by side in one run: two `trellis host --deployer` on one
# nats-server, each on its own lattice with the hello example deployed, one with fuel metering
# off (the default) and one with `--max-fuel` (metering compiled in, a fuel budget per call).
# Both run the example's 30 s execution limit. wrk loads them in turn, ROUNDS (default 3) × 2 ×
# 10 s, and the requests/s of each round are printed with the ratio on/off.
# Needs wrk (`apt-get install wrk`) and what `.ci/setup` installs. Run from the repository root:
#   bash host/benches/limits_http.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
bash .ci/setup >/dev/null
cargo build --release -q -p trellis-host
trellis_bin=${CARGO_TARGET_DIR:-target}/release/trellis
rounds=${ROUNDS:-3}

work=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
nats_port=$(free_port)
nats_url="nats://127.0.0.1:$nats_port"
nats-server -a 127.0.0.1 -p "$nats_port" -js -sd "$work/nats" > "$work/nats.log" 2>&1 &
pids=($!)
trap 'kill -INT "${pids[@]}" 2>/dev/null; wait "${pids[@]}" 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 1 100); do (echo > "/dev/tcp/127.0.0.1/$nats_port") 2>/dev/null && break; sleep 0.1; done

declare -A port
for variant in off on; do
  port[$variant]=$(free_port)
  extra=()
  [ "$variant" = on ] && extra=(--max-fuel 1000000000000)
  "$trellis_bin" host --nats-url "$nats_url" --lattice "fuel-$variant" --deployer \
    --allow-file-load "${extra[@]}" > "$work/host-$variant.log" 2>&1 &
  pids+=($!)
  sed -e "s#file://./tests#file://$PWD/tests#" -e "s#127.0.0.1:8080#127.0.0.1:${port[$variant]}#" \
    wadm-manifests/hello.yaml > "$work/hello-$variant.yaml"
done
for variant in off on; do
  for _ in $(seq 1 100); do
    "$trellis_bin" app deploy "$work/hello-$variant.yaml" --nats-url "$nats_url" \
      --lattice "fuel-$variant" > /dev/null 2>&1 && break
    sleep 0.2
  done
  for _ in $(seq 1 300); do
    curl -sf "http://127.0.0.1:${port[$variant]}/warm" > /dev/null && break
    sleep 0.1
  done
  curl -sf "http://127.0.0.1:${port[$variant]}/warm" > /dev/null || { cat "$work"/*.log; exit 1; }
done

rate() { wrk -t1 -c8 -d10s "http://127.0.0.1:$1/hello" | awk '/Requests\/sec/ {print $2}'; }
echo "round  fuel off req/s  fuel on req/s  on/off"
for round in $(seq 1 "$rounds"); do
  off=$(rate "${port[off]}")
  on=$(rate "${port[on]}")
  printf '%5s  %14s  %13s  %6s\n' "$round" "$off" "$on" "$(python3 -c "print(f'{$on/$off:.2f}')")"
done
