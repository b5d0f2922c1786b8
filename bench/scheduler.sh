#!/usr/bin/env bash
# Scheduler benchmark (issue 2): N HTTP scenarios at a 1 s interval against a local nginx, measured
# over a window. Reports probes/s achieved vs planned, scheduler lag p50/p99, RSS, and CPU seconds
# per 1,000 probes — and, side by side in the same run, blackbox_exporter's CPU per 1,000 probes
# when driven by wrk through /probe (blackbox has no scheduler; Prometheus drives it that way).
#
#   bash bench/scheduler.sh                 # 10,000 scenarios, 60 s window (~2.5 min in all)
#   N=2000 WINDOW=20 bash bench/scheduler.sh
#   SONDE_BIN=/tmp/base/target/release/sonde BLACKBOX=0 bash bench/scheduler.sh   # A/B: a given
#                                           # build, sonde only (compare builds in the same load)
#
# Traffic stays on 127.0.0.1. Installs nginx, wrk and prometheus-blackbox-exporter from Debian if
# missing (root). Targets on 2 cores: all planned runs achieved, lag p99 <= 50 ms, RSS <= 150 MB.
set -euo pipefail
N=${N:-10000}
WINDOW=${WINDOW:-60}
WARMUP=${WARMUP:-15}
NGINX_PORT=28080
SONDE_ADDR=127.0.0.1:29115
BLACKBOX_ADDR=127.0.0.1:29116
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/sonde-bench.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

need=()
command -v nginx >/dev/null || need+=(nginx)
command -v wrk >/dev/null || need+=(wrk)
command -v prometheus-blackbox-exporter >/dev/null || need+=(prometheus-blackbox-exporter)
if ((${#need[@]})); then
  created_policy=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    created_policy=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
  [ -n "$created_policy" ] && rm -f /usr/sbin/policy-rc.d
fi

if [ -n "${SONDE_BIN:-}" ]; then
  SONDE=$SONDE_BIN
else
  echo "building sonde (release)…" >&2
  (cd "$root" && cargo build --release -q --bin sonde)
  SONDE=$root/target/release/sonde
fi

# --- target: nginx, one worker, a fixed 200 -----------------------------------------------------
mkdir -p "$work/nginx"
cat >"$work/nginx/nginx.conf" <<EOF
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
EOF
nginx -c "$work/nginx/nginx.conf" -p "$work/nginx" -e "$work/nginx/error.log" &
pids+=($!)
nginx_master=$!
nginx_pid=
for _ in $(seq 1 50); do
  nginx_pid=$(pgrep -P "$nginx_master" | head -1 || true)
  [ -n "$nginx_pid" ] && break
  sleep 0.1
done

# --- N scenarios --------------------------------------------------------------------------------
python3 - "$N" "$NGINX_PORT" >"$work/bench.yaml" <<'EOF'
import sys
n, port = int(sys.argv[1]), sys.argv[2]
print("scenarios:")
for i in range(n):
    print(f"  - scenario: bench-{i:05d}\n    interval: 1s\n    timeout: 1s\n"
          f"    http: {{url: \"http://127.0.0.1:{port}/\"}}")
EOF

cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
rss_kb() { awk '/VmRSS/{print $2}' "/proc/$1/status"; }
hz=$(getconf CLK_TCK)

"$SONDE" serve -c "$work/bench.yaml" --listen "$SONDE_ADDR" --log-level warn 2>"$work/sonde.log" &
pids+=($!)
sonde_pid=$!
for _ in $(seq 1 300); do curl -fsS "http://$SONDE_ADDR/-/ready" >/dev/null 2>&1 && break; sleep 0.1; done
echo "sonde up with $N scenarios; warming up ${WARMUP}s…" >&2
sleep "$WARMUP"

# RSS every 0.2 s for the whole window, scrapes included (a 10k-scenario /metrics is ~35 MB of
# text, and encoding it is part of the memory a real deployment needs).
(while kill -0 $sonde_pid 2>/dev/null; do
   echo "$(date +%s.%N) $(rss_kb $sonde_pid)"; sleep 0.2
 done) >"$work/rss.txt" 2>/dev/null &
sampler=$!
# Counters come from two scrapes; each is timed at its midpoint.
scrape() {
  local a b
  a=$(date +%s.%N); curl -fsS "http://$SONDE_ADDR/metrics" >"$1"; b=$(date +%s.%N)
  echo "$a $b"
}
read -r s0a s0b < <(scrape "$work/m0.txt")
c0=$(cpu_ticks $sonde_pid); n0=$(cpu_ticks $nginx_pid)
sleep "$WINDOW"
c1=$(cpu_ticks $sonde_pid); n1=$(cpu_ticks $nginx_pid)
read -r s1a s1b < <(scrape "$work/m1.txt")
sleep 1
kill $sampler 2>/dev/null || true
t0=$(python3 -c "print(($s0a+$s0b)/2)"); t1=$(python3 -c "print(($s1a+$s1b)/2)")
kill $sonde_pid; wait $sonde_pid 2>/dev/null || true

# --- blackbox_exporter side by side: CPU per probe through /probe --------------------------------
export BB_REQS=
if [ "${BLACKBOX:-1}" != 0 ] && command -v prometheus-blackbox-exporter >/dev/null; then
  printf 'modules:\n  http_2xx:\n    prober: http\n    timeout: 5s\n' >"$work/blackbox.yml"
  prometheus-blackbox-exporter --config.file="$work/blackbox.yml" \
    --web.listen-address="$BLACKBOX_ADDR" --log.level=error 2>"$work/blackbox.log" &
  pids+=($!)
  bb_pid=$!
  for _ in $(seq 1 100); do curl -fsS "http://$BLACKBOX_ADDR/-/healthy" >/dev/null 2>&1 && break; sleep 0.1; done
  echo "driving blackbox_exporter /probe with wrk (c=64, 20 s)…" >&2
  export BB_SECS=20
  export BB0=$(cpu_ticks $bb_pid)
  wrk -t1 -c64 -d${BB_SECS}s "http://$BLACKBOX_ADDR/probe?module=http_2xx&target=http://127.0.0.1:$NGINX_PORT/" \
    >"$work/wrk.txt" 2>&1
  export BB1=$(cpu_ticks $bb_pid)
  export BB_RSS=$(rss_kb $bb_pid)
  export BB_REQS=$(awk '/requests in/{print $1}' "$work/wrk.txt")
fi

T0=$t0 T1=$t1 C0=$c0 C1=$c1 NG0=$n0 NG1=$n1 HZ=$hz RSS_LOG=$work/rss.txt SCRAPE1="$s1a $s1b" N=$N \
  python3 "$root/bench/lib/scheduler_report.py" "$work/m0.txt" "$work/m1.txt"
