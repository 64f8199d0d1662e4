# Sourced by the benchmark scripts that run servers under wrk: a work directory, the servers'
# PIDs (stopped on exit), CPU pinning and loopback ports.
#
# PIN=1: servers (and their children) on CPU 0, wrk on CPU 1, so that the load generator does
# not take CPU from the servers and requests/s measure the servers' CPU cost per request.
server_cpu=() load_cpu=()
if [ -n "${PIN:-}" ]; then server_cpu=(taskset -c 0) load_cpu=(taskset -c 1); fi

work=$(mktemp -d)
pids=()
# KEEP=1 keeps the logs (and stores) in the work directory for a look afterwards.
trap 'kill -INT "${pids[@]}" 2>/dev/null; wait "${pids[@]}" 2>/dev/null; [ -n "${KEEP:-}" ] && echo "logs in $work" || rm -rf "$work"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return; sleep 0.1; done; return 1; }
