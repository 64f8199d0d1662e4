#!/usr/bin/env bash
# HTTP hello through `trellis up` (built-in HTTP server → component, in-process) under wrk on
# loopback: requests/s, latency percentiles and the host's RSS. Bounded: 10 s of load.
# Needs wrk (`apt-get install wrk`) and what `.ci/setup` installs. Run from the repository root:
#   bash host/benches/http_hello.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
bash .ci/setup >/dev/null
cargo build --release -q -p trellis-host

work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
sed -e "s#file://./tests#file://$PWD/tests#" -e "s#127.0.0.1:8080#127.0.0.1:$port#" \
  wadm-manifests/hello.yaml > "$work/hello.yaml"
target/release/trellis up "$work/hello.yaml" --data-dir "$work/data" > "$work/up.log" 2>&1 &
up=$!
trap 'kill -INT $up 2>/dev/null; wait $up 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 1 300); do grep -q "press Ctrl-C" "$work/up.log" && break; sleep 0.1; done
grep -q "press Ctrl-C" "$work/up.log" || { cat "$work/up.log"; exit 1; }

curl -sf "http://127.0.0.1:$port/warm" >/dev/null
wrk -t2 -c32 -d10s --latency "http://127.0.0.1:$port/hello"
echo "trellis RSS after load: $(grep VmRSS /proc/$up/status | awk '{print $2, $3}')"
