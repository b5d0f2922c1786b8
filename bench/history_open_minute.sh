#!/usr/bin/env bash
# Readers' cost of a busy open minute (issue 13). Written to measure a tried change (minute
# rollup rows written once their minute ends, readers summing the open minute from the runs
# table; reverted for what this showed). It times the pages and API answers that read it while N scenarios run every second (so the
# open minute holds up to ~60 runs per scenario), for SONDE_BIN and SONDE_BIN_BEFORE alternately
# (ROUNDS each), each timed late in a minute (second >= 45) after a warm-up.
#
#   SONDE_BIN=… SONDE_BIN_BEFORE=… N=2000 ROUNDS=2 bash bench/history_open_minute.sh
#
# Traffic stays on 127.0.0.1. Needs nginx (bench/history.sh installs it).
set -euo pipefail
N=${N:-2000}
ROUNDS=${ROUNDS:-2}
REQUESTS=${REQUESTS:-30}
NGINX_PORT=28082
ADDR=127.0.0.1:29126
work=$(mktemp -d /tmp/sonde-open-minute.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/nginx"
cat >"$work/nginx/nginx.conf" <<NGINX
daemon off;
worker_processes 1;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log error;
events { worker_connections 8192; }
http {
    access_log off;
    client_body_temp_path $work/nginx/body;
    proxy_temp_path $work/nginx/proxy;
    fastcgi_temp_path $work/nginx/fastcgi;
    uwsgi_temp_path $work/nginx/uwsgi;
    scgi_temp_path $work/nginx/scgi;
    server { listen 127.0.0.1:$NGINX_PORT backlog=4096; location / { return 200 "ok\n"; } }
}
NGINX
nginx -c "$work/nginx/nginx.conf" -p "$work/nginx" -e "$work/nginx/error.log" &
pids+=($!)
python3 - "$N" "$NGINX_PORT" >"$work/bench.yaml" <<'PY'
import sys
n, port = int(sys.argv[1]), sys.argv[2]
print("scenarios:")
for i in range(n):
    print(f"  - scenario: bench-{i:05d}\n    interval: 1s\n    timeout: 1s\n"
          f"    http: {{url: \"http://127.0.0.1:{port}/\"}}")
PY
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
measure() { # label binary
  rm -rf "$work/store"
  "$2" serve -c "$work/bench.yaml" --listen "$ADDR" --log-level warn --storage.path "$work/store" \
    2>"$work/sonde.log" &
  local pid=$!
  pids+=($pid)
  for _ in $(seq 1 600); do curl -fsS "http://$ADDR/-/ready" >/dev/null 2>&1 && break; sleep 0.1; done
  sleep 20
  # Wait for the second half of a minute: the open minute then holds 45+ s of runs.
  while [ "$(date +%-S)" -lt 45 ]; do sleep 0.5; done
  python3 - "$1" "http://$ADDR" "$REQUESTS" <<'PY'
import http.client, sys, time, urllib.parse
label, base, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
u = urllib.parse.urlparse(base)
c = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
for path in ["/", "/status/list", "/scenario/bench-00001",
             "/api/v1/scenarios/bench-00001/uptime?window=24h",
             "/api/v1/scenarios/bench-00001/latency?step=get&from=-1h"]:
    ts = []
    for i in range(n + 2):
        t = time.perf_counter()
        c.request("GET", path)
        r = c.getresponse()
        r.read()
        if i >= 2:
            ts.append((time.perf_counter() - t) * 1000)
    ts.sort()
    print(f"{label:10} {path:50} p50 {ts[len(ts)//2]:7.2f} ms  p95 {ts[int(len(ts)*0.95)]:7.2f} ms  status {r.status}")
PY
  kill -TERM $pid; wait $pid 2>/dev/null || true
}
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg); $N scenarios at 1 s, $REQUESTS requests per path"
for r in $(seq 1 "$ROUNDS"); do
  measure "before/$r" "$SONDE_BIN_BEFORE"
  measure "after/$r" "$SONDE_BIN"
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
