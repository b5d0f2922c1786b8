#!/usr/bin/env bash
# `sonde run` as a CI runner (issue 5): 1,000 one-request HTTP scenario files against a local
# nginx. Reports start-up time (`sonde --version`, and `sonde run` on one file), wall time and
# requests/s for the 1,000 files (default --parallel = CPUs, and --parallel 64), and checks the
# targets: start-up <= 20 ms, 1,000 files < 2 s.
#
#   bash bench/run_files.sh               # N=1000, 5 repetitions each
#   N=200 REPS=3 bash bench/run_files.sh
#
# Hurl side by side: only when a `hurl` binary is on PATH (HURL=/path/to/hurl to name one). It is
# not installed here: `cargo install hurl` builds against libcurl (Debian's libcurl4-openssl-dev)
# and takes long; Debian has no hurl package. Hurl's published figure for comparison (issue 4144):
# about 3k requests/s with 500 parallel jobs, vs 120k for a load tool on the same server.
#
# Traffic stays on 127.0.0.1. Installs nginx from Debian if missing (root).
set -euo pipefail
N=${N:-1000}
REPS=${REPS:-5}
NGINX_PORT=${NGINX_PORT:-28180}
HURL=${HURL:-$(command -v hurl || true)}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/sonde-runbench.XXXXXX)
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

echo "building sonde (release)…" >&2
(cd "$root" && cargo build --release -q -p sonde --bin sonde)
SONDE=$root/target/release/sonde

mkdir -p "$work/nginx"
cat >"$work/nginx/nginx.conf" <<NGINX
daemon off;
worker_processes 1;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log error;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $work/nginx/body;
    proxy_temp_path $work/nginx/proxy;
    fastcgi_temp_path $work/nginx/fastcgi;
    uwsgi_temp_path $work/nginx/uwsgi;
    scgi_temp_path $work/nginx/scgi;
    server {
        listen 127.0.0.1:$NGINX_PORT backlog=4096;
        location / { return 200 "{\"status\":\"ok\"}\n"; }
    }
}
NGINX
nginx -c "$work/nginx/nginx.conf" -p "$work/nginx" -e "$work/nginx/error.log" &
pids+=($!)
for _ in $(seq 1 50); do
  (exec 3<>"/dev/tcp/127.0.0.1/$NGINX_PORT") 2>/dev/null && break
  sleep 0.1
done

mkdir -p "$work/files" "$work/hurl"
for i in $(seq 1 "$N"); do
  printf 'scenario: check-%04d\ntags: [smoke]\nhttp: {url: "http://127.0.0.1:%s/health/%d"}\nexpect: {status: 200, body: {contains: ok}}\n' \
    "$i" "$NGINX_PORT" "$i" >"$work/files/check-$i.yaml"
  printf 'GET http://127.0.0.1:%s/health/%d\nHTTP 200\n[Asserts]\nbody contains "ok"\n' \
    "$NGINX_PORT" "$i" >"$work/hurl/check-$i.hurl"
done
cp "$work/files/check-1.yaml" "$work/one.yaml"

# Median wall time in ms of REPS runs of a command (which must exit 0).
median_ms() {
  local times=() t0 t1
  for _ in $(seq 1 "$REPS"); do
    t0=$(date +%s%N)
    "$@" >/dev/null 2>"$work/last.err" || { echo "failed: $*" >&2; cat "$work/last.err" >&2; exit 1; }
    t1=$(date +%s%N)
    times+=($(((t1 - t0) / 1000)))
  done
  printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {printf "%.1f", a[int((NR+1)/2)]/1000}'
}

export CI=true   # plain output, as in a CI job
cpus=$(nproc)
v=$(median_ms "$SONDE" --version)
one=$(median_ms "$SONDE" run "$work/one.yaml")
def=$(median_ms "$SONDE" run "$work/files")
p64=$(median_ms "$SONDE" run --parallel 64 "$work/files")
chk=$(median_ms "$SONDE" check "$work/files")
rps() { awk -v n="$N" -v ms="$1" 'BEGIN {printf "%.0f", n / (ms / 1000)}'; }

echo
echo "sonde run: $N one-request HTTP scenario files, nginx on 127.0.0.1, $cpus CPUs, median of $REPS"
printf '  %-44s %9s ms\n' "start-up: sonde --version" "$v"
printf '  %-44s %9s ms\n' "start-up: sonde run (1 file, 1 request)" "$one"
printf '  %-44s %9s ms\n' "sonde check ($N files: load only)" "$chk"
printf '  %-44s %9s ms  %7s req/s\n' "sonde run ($N files, --parallel $cpus)" "$def" "$(rps "$def")"
printf '  %-44s %9s ms  %7s req/s\n' "sonde run ($N files, --parallel 64)" "$p64" "$(rps "$p64")"
if [ -n "$HURL" ]; then
  h=$(median_ms "$HURL" --test --jobs 64 "$work"/hurl/*.hurl)
  printf '  %-44s %9s ms  %7s req/s  (sonde/hurl: %s)\n' "hurl --test --jobs 64 ($N files)" "$h" "$(rps "$h")" \
    "$(awk -v a="$h" -v b="$p64" 'BEGIN {printf "%.2fx faster", a / b}')"
else
  echo "  hurl: not installed here (no Debian package; cargo install hurl needs libcurl headers and a long build) — not compared"
fi
ok() { awk -v a="$1" -v b="$2" 'BEGIN {exit !(a <= b)}' && echo ok || echo MISSED; }
echo "  targets: start-up <= 20 ms: $(ok "$one" 20) (run, 1 file) / $(ok "$v" 20) (--version); $N files < 2000 ms: $(ok "$def" 2000)"
