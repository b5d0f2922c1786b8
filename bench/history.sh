#!/usr/bin/env bash
# History store benchmark (issue 13): N HTTP scenarios at a 1 s interval against a local nginx,
# run twice in one go under the same load — history off (--storage.path='') and history on —
# ROUNDS times each, alternating (off, on, off, on…) so drift in the machine's load hits both.
# Reports per mode: runs/s achieved, CPU seconds per 1,000 runs, scheduler lag p50/p99; for the
# store: runs written and dropped, batch write time p99, bytes per run on disk and the disk growth
# per day extrapolated at this rate (before retention). Target: CPU per 1k runs and lag p99 with
# the store within 10 % of without.
#
#   bash bench/history.sh                     # 10,000 scenarios, 60 s windows, 1 round
#   N=2000 WINDOW=30 ROUNDS=2 bash bench/history.sh
#   SONDE_BIN=target/release/sonde bash bench/history.sh
#   SONDE_BIN_BEFORE=/path/to/older/sonde …   # adds an "on-before" run of that binary to each
#                                             # round (off, on-before, on), for before/after
#
# For the status page at 14 days of history (i13-page's part of the benchmark), fill a store
# without waiting 14 days:  cargo run --release --example history_fill -- DIR 100 14 60
#
# Traffic stays on 127.0.0.1. Installs nginx from Debian if missing (root).
set -euo pipefail
N=${N:-10000}
WINDOW=${WINDOW:-60}
WARMUP=${WARMUP:-15}
ROUNDS=${ROUNDS:-1}
NGINX_PORT=28081
SONDE_ADDR=127.0.0.1:29125
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/sonde-history-bench.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

if ! command -v nginx >/dev/null; then
  created_policy=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    created_policy=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nginx >/dev/null
  [ -n "$created_policy" ] && rm -f /usr/sbin/policy-rc.d
fi

if [ -n "${SONDE_BIN:-}" ]; then
  SONDE=$SONDE_BIN
else
  echo "building sonde (release)…" >&2
  (cd "$root" && cargo build --release -q --bin sonde)
  SONDE=$root/target/release/sonde
fi

mkdir -p "$work/nginx"
cat >"$work/nginx/nginx.conf" <<NGINX
daemon off;
worker_processes 1;
worker_rlimit_nofile 65536;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log error;
events { worker_connections 16384; }
http {
    access_log off;
    client_body_temp_path $work/nginx/body;
    proxy_temp_path $work/nginx/proxy;
    fastcgi_temp_path $work/nginx/fastcgi;
    uwsgi_temp_path $work/nginx/uwsgi;
    scgi_temp_path $work/nginx/scgi;
    server {
        listen 127.0.0.1:$NGINX_PORT backlog=4096;
        location / { return 200 "ok\n"; }
    }
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

cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
# CPU ticks of the store's writer thread (0 when history is off): the store's own share.
writer_ticks() {
  local t
  for t in /proc/$1/task/*; do
    if [ "$(cat "$t/comm" 2>/dev/null)" = sonde-history ]; then
      awk '{print $14+$15}' "$t/stat"
      return
    fi
  done
  echo 0
}
hz=$(getconf CLK_TCK)
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# measure MODE ROUND: one sonde, warm-up, a window between two scrapes; appends to results.txt.
measure() {
  local mode=$1 round=$2 bin=${3:-$SONDE} store=() dir=$work/store-$1-$2
  if [ "$mode" != off ]; then rm -rf "$dir"; store=(--storage.path "$dir"); else store=(--storage.path=); fi
  "$bin" serve -c "$work/bench.yaml" --listen "$SONDE_ADDR" --log-level warn "${store[@]}" \
    2>"$work/sonde-$mode-$round.log" &
  local pid=$!
  pids+=($pid)
  for _ in $(seq 1 600); do curl -fsS "http://$SONDE_ADDR/-/ready" >/dev/null 2>&1 && break; sleep 0.1; done
  echo "history $mode, round $round: warming up ${WARMUP}s, then a ${WINDOW}s window…" >&2
  sleep "$WARMUP"
  local t0 t1 c0 c1 w0 w1
  t0=$(date +%s.%N); curl -fsS "http://$SONDE_ADDR/metrics" >"$work/m0-$mode-$round.txt"
  c0=$(cpu_ticks $pid); w0=$(writer_ticks $pid)
  sleep "$WINDOW"
  c1=$(cpu_ticks $pid); w1=$(writer_ticks $pid)
  t1=$(date +%s.%N); curl -fsS "http://$SONDE_ADDR/metrics" >"$work/m1-$mode-$round.txt"
  kill -TERM $pid; wait $pid 2>/dev/null || true
  local disk=""
  [ "$mode" != off ] && disk=$dir/history.db
  echo "$mode $round $t0 $t1 $c0 $c1 $((w1 - w0)) $disk" >>"$work/results.txt"
}

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq 1 "$ROUNDS"); do
  measure off "$r"
  [ -n "${SONDE_BIN_BEFORE:-}" ] && measure on-before "$r" "$SONDE_BIN_BEFORE"
  measure on "$r"
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
HZ=$hz N=$N python3 "$root/bench/lib/history_report.py" "$work"
