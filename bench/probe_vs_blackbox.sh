#!/usr/bin/env bash
# /probe benchmark (issue 3): sonde and blackbox_exporter side by side, in one run, with the same
# blackbox.yml, against the same loopback targets.
#
#   1. Throughput: wrk drives each exporter's /probe at concurrency 1, 64 and 256 for http_2xx
#      (a local nginx), tcp_connect (the same nginx) and icmp (127.0.0.1); https_2xx (nginx's TLS
#      1.3 listener, certificate not verified) when MODULES names it. Per run: probes/s,
#      wrk's p50/p99 latency, CPU seconds per 1,000 probes (utime+stime of the exporter from
#      /proc/PID/stat), RSS after the run, probes that did not succeed; and sonde/blackbox ratios.
#   2. Measurement truth: a target that answers after exactly 20 ms (testkit's delay_server), 200
#      probes in flight; the distribution of probe_duration_seconds − 20 ms that each reports.
#
#   bash bench/probe_vs_blackbox.sh            # 10 s per run: ~4 minutes with the builds warm
#   SECS=5 TRUTH_SECS=10 bash bench/probe_vs_blackbox.sh
#   MODULES=icmp TRUTH=0 bash bench/probe_vs_blackbox.sh   # only the icmp rows, no truth runs
#   SONDE_BIN=/tmp/a/sonde TRUTH=0 bash bench/probe_vs_blackbox.sh  # a given build, no compile
#
# Targets on 2 cores: http_2xx at c=64 ≥ 5× blackbox's probes/s with ≤ 1/5 of its CPU per probe;
# measurement error p99 ≤ 2 ms for sonde. wrk, the exporters and the targets share the machine's
# cores, as they would in any single-host run: read the ratios, not the absolute numbers.
# Traffic stays on 127.0.0.1. Installs nginx, wrk and prometheus-blackbox-exporter from Debian if
# missing (root).
set -euo pipefail
SECS=${SECS:-10}
TRUTH_SECS=${TRUTH_SECS:-15}
TRUTH_CONNS=${TRUTH_CONNS:-200}
PACE_MS=${PACE_MS:-100}
MODULES=${MODULES:-http_2xx tcp_connect icmp} # throughput rows to run (a subset for a quick look)
TRUTH=${TRUTH:-1}                              # 0 skips the measurement-truth runs
DELAY_MS=20
NGINX_PORT=28180
NGINX_TLS_PORT=28181
DELAY_ADDR=127.0.0.1:29217
SONDE_ADDR=127.0.0.1:29215
BLACKBOX_ADDR=127.0.0.1:29216
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/sonde-probe-bench.XXXXXX)
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
  if [[ $(id -u) -ne 0 ]]; then
    echo "probe bench: missing ${need[*]}; run as root to install them" >&2
    exit 2
  fi
  created_policy=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    created_policy=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
  [ -n "$created_policy" ] && rm -f /usr/sbin/policy-rc.d
fi
for port in "$NGINX_PORT" "$NGINX_TLS_PORT" "${DELAY_ADDR##*:}" "${SONDE_ADDR##*:}" "${BLACKBOX_ADDR##*:}"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "probe bench: 127.0.0.1:$port is already in use" >&2
    exit 1
  fi
done

# SONDE_BIN: a given sonde build (A/B of two builds under the same load); TARGET_DIR: where the
# release builds are (default: the workspace's target/).
rel=${CARGO_TARGET_DIR:-$root/target}/release
if [ -n "${SONDE_BIN:-}" ]; then
  SONDE=$SONDE_BIN
else
  echo "building sonde (release)…" >&2
  (cd "$root" && cargo build --release -q --bin sonde)
  SONDE=$rel/sonde
fi
if [ "$TRUTH" = 1 ]; then
  echo "building delay_server (release)…" >&2
  (cd "$root" && cargo build --release -q -p sonde-testkit --bin delay_server)
fi
DELAY=$rel/delay_server

cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
rss_kb() { awk '/VmRSS/{print $2}' "/proc/$1/status"; }
hz=$(getconf CLK_TCK)
wait_http() { for _ in $(seq 1 200); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.1; done; echo "no answer from $1" >&2; return 1; }

# --- targets --------------------------------------------------------------------------------------
mkdir -p "$work/nginx"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=localhost \
  -keyout "$work/nginx/key.pem" -out "$work/nginx/cert.pem" 2>/dev/null
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
    server {
        listen 127.0.0.1:$NGINX_TLS_PORT ssl backlog=4096;
        ssl_certificate $work/nginx/cert.pem;
        ssl_certificate_key $work/nginx/key.pem;
        ssl_protocols TLSv1.3;
        location / { return 200 "ok\n"; }
    }
}
EOF
nginx -c "$work/nginx/nginx.conf" -p "$work/nginx" -e "$work/nginx/error.log" &
pids+=($!)
wait_http "http://127.0.0.1:$NGINX_PORT/"
if [ "$TRUTH" = 1 ]; then
  "$DELAY" --listen "$DELAY_ADDR" --delay-ms "$DELAY_MS" >"$work/delay.log" 2>&1 &
  pids+=($!)
  delay_pid=$!
  wait_http "http://$DELAY_ADDR/"
fi

# --- the exporters, one configuration -------------------------------------------------------------
cat >"$work/blackbox.yml" <<EOF
modules:
  http_2xx:
    prober: http
    timeout: 5s
  https_2xx:
    prober: http
    timeout: 5s
    http:
      tls_config:
        insecure_skip_verify: true
  tcp_connect:
    prober: tcp
    timeout: 5s
  icmp:
    prober: icmp
    timeout: 5s
    icmp:
      preferred_ip_protocol: ip4
EOF
prometheus-blackbox-exporter --config.file="$work/blackbox.yml" \
  --web.listen-address="$BLACKBOX_ADDR" --log.level=error >"$work/blackbox.log" 2>&1 &
pids+=($!)
bb_pid=$!
"$SONDE" serve --config.file="$work/blackbox.yml" --web.listen-address="$SONDE_ADDR" \
  --log-level warn >"$work/sonde.log" 2>&1 &
pids+=($!)
sonde_pid=$!
wait_http "http://$BLACKBOX_ADDR/-/healthy"
wait_http "http://$SONDE_ADDR/-/healthy"

target_of() {
  case $1 in
    http_2xx) echo "http://127.0.0.1:$NGINX_PORT/" ;;
    https_2xx) echo "https://127.0.0.1:$NGINX_TLS_PORT/" ;;
    tcp_connect) echo "127.0.0.1:$NGINX_PORT" ;;
    icmp) echo "127.0.0.1" ;;
  esac
}

# One wrk run: prints "RESULT …" plus cpu and rss of the exporter.
run() { # exporter pid addr module conns secs [durs_out]
  local name=$1 pid=$2 addr=$3 module=$4 conns=$5 secs=$6 durs=${7:-}
  local target threads c0 c1 line
  target=$(target_of "$module")
  [[ -n $durs ]] && target="http://$DELAY_ADDR/"
  threads=2; ((conns < 2)) && threads=1
  local url="http://$addr/probe?module=$module&target=$target"
  # "direct": wrk against the target itself, the machine's own noise floor for the truth run.
  [[ $name == direct ]] && { url="http://$DELAY_ADDR/"; durs=; }
  c0=$(cpu_ticks "$pid")
  line=$(DURS_OUT=$durs PACE_MS=${PACE:-} wrk -t"$threads" -c"$conns" -d"${secs}s" --timeout 10s \
    -s "$root/bench/lib/probe.lua" "$url" | grep '^RESULT')
  c1=$(cpu_ticks "$pid")
  [[ -z $durs ]] || sed -i '/^$/d' "$durs"
  echo "$name $module $conns $line cpu_s=$(python3 -c "print(($c1-$c0)/$hz)") rss_kb=$(rss_kb "$pid")"
}

echo "throughput: ${SECS}s per run, modules ($MODULES) × 3 concurrencies × 2 exporters…" >&2
: >"$work/results.txt"
for module in $MODULES; do
  for conns in 1 64 256; do
    for ex in blackbox sonde; do
      if [[ $ex == sonde ]]; then pid=$sonde_pid addr=$SONDE_ADDR; else pid=$bb_pid addr=$BLACKBOX_ADDR; fi
      run "$ex" "$pid" "$addr" "$module" "$conns" "$SECS" | tee -a "$work/results.txt" >&2
      sleep 1 # let TIME_WAIT and the CPU settle between runs
    done
  done
done

# Two truth runs. "saturated": the issue's setup as written, 200 connections each sending the
# next probe as soon as the last is answered — on 2 shared cores that is also a CPU-saturation
# test (10,000 probes/s are asked of a 20 ms target), so queueing inside the exporter shows up
# as measurement error. "paced": the same 200 connections, each pausing PACE_MS between probes,
# an offered load both exporters can carry: measurement error without saturation. Each mode
# also runs wrk against the target directly ("direct"): wrk's own latency minus 20 ms is what
# the machine (scheduling, loopback, the target) adds by itself, the floor under both exporters.
echo "measurement truth: $TRUTH_CONNS connections against a ${DELAY_MS} ms target, ${TRUTH_SECS}s each, saturated and paced (${PACE_MS} ms)…" >&2
# Paced first: the saturated run opens ~100k connections whose TIME_WAIT ports would still be
# around and make the occasional connect wait for a 1 s SYN retransmit.
truth_modes="paced saturated"; [[ $TRUTH == 0 ]] && truth_modes=
for mode in $truth_modes; do
  for ex in direct blackbox sonde; do
    case $ex in
      sonde) pid=$sonde_pid addr=$SONDE_ADDR ;;
      blackbox) pid=$bb_pid addr=$BLACKBOX_ADDR ;;
      direct) pid=$delay_pid addr=$DELAY_ADDR ;;
    esac
    pace=; [[ $mode == paced ]] && pace=$PACE_MS
    PACE=$pace run "$ex" "$pid" "$addr" http_2xx "$TRUTH_CONNS" "$TRUTH_SECS" "$work/durs-$mode-$ex.txt" \
      | sed "s/^/truth-$mode /" | tee -a "$work/results.txt" >&2
    sleep 1
  done
done

echo
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) (other processes on the machine count too)"
python3 "$root/bench/lib/probe_report.py" "$work/results.txt" "$work" "$DELAY_MS"
