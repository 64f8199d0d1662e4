#!/usr/bin/env bash
# HTTP hello under wrk with different `trellis host` flags, side by side in one run: one
# `trellis host --deployer` per flag set on one nats-server, each on its own lattice with
# wadm-manifests/hello.yaml deployed (fresh instance per request). wrk -t2 -c32 loads them in
# turn, ROUNDS (default 2) × sets × 10 s; prints requests/s, p50, p99 and each host's RSS.
# Each argument is one flag set ("" for the defaults). Needs wrk and what `.ci/setup` installs.
# Run from the repository root, e.g.:
#   bash host/benches/http_host_flags.sh "--pool-keep-resident-bytes 0" ""
set -euo pipefail
cd "$(dirname "$0")/../.."
[ $# -ge 1 ] || { sed -n '2,8p' "$0"; exit 2; }
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
bash .ci/setup >/dev/null
cargo build --release -q -p trellis-host
trellis_bin=${CARGO_TARGET_DIR:-target}/release/trellis
rounds=${ROUNDS:-2}

work=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
nats_port=$(free_port)
nats_url="nats://127.0.0.1:$nats_port"
nats-server -a 127.0.0.1 -p "$nats_port" -js -sd "$work/nats" > "$work/nats.log" 2>&1 &
pids=($!)
trap 'kill -INT "${pids[@]}" 2>/dev/null; wait "${pids[@]}" 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 1 100); do (echo > "/dev/tcp/127.0.0.1/$nats_port") 2>/dev/null && break; sleep 0.1; done

flag_sets=("$@")
ports=()
hosts=()
for i in "${!flag_sets[@]}"; do
  ports+=("$(free_port)")
  # shellcheck disable=SC2086 # a flag set is split into its flags on purpose
  "$trellis_bin" host --nats-url "$nats_url" --lattice "flags-$i" --deployer --allow-file-load \
    ${flag_sets[$i]} > "$work/host-$i.log" 2>&1 &
  hosts+=($!)
  pids+=($!)
  sed -e "s#file://./tests#file://$PWD/tests#" -e "s#127.0.0.1:8080#127.0.0.1:${ports[$i]}#" \
    wadm-manifests/hello.yaml > "$work/hello-$i.yaml"
done
for i in "${!flag_sets[@]}"; do
  for _ in $(seq 1 100); do
    "$trellis_bin" app deploy "$work/hello-$i.yaml" --nats-url "$nats_url" --lattice "flags-$i" \
      > /dev/null 2>&1 && break
    sleep 0.2
  done
  for _ in $(seq 1 300); do
    curl -sf "http://127.0.0.1:${ports[$i]}/warm" > /dev/null && break
    sleep 0.1
  done
  curl -sf "http://127.0.0.1:${ports[$i]}/warm" > /dev/null || { cat "$work"/*.log; exit 1; }
done

# Alternating rounds, so that every flag set sees the same machine noise.
for round in $(seq 1 "$rounds"); do
  for i in "${!flag_sets[@]}"; do
    echo "== round $round: [${flag_sets[$i]:-defaults}]"
    wrk -t2 -c32 -d10s --latency "http://127.0.0.1:${ports[$i]}/hello" \
      | grep -E "Requests/sec|^ +(50|99)%|errors|Non-2xx"
  done
done
for i in "${!flag_sets[@]}"; do
  echo "[${flag_sets[$i]:-defaults}] RSS after load: $(awk '/VmRSS/ {print $2, $3}' "/proc/${hosts[$i]}/status")"
done
