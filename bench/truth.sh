#!/usr/bin/env bash
# Wire-truth harness (issue 14): what each prober reports against what the packets say.
#
# tcpdump captures loopback while sonde and blackbox_exporter (one after the other, same
# blackbox.yml, same targets) answer /probe?debug=true driven by wrk at 1 and 200 in flight:
#   - http_2xx against a target that answers after exactly 20 ms (testkit's delay_server);
#   - http_2xx against nginx;
#   - https (module https_2xx) against the same 20 ms target over TLS 1.3 and against nginx's
#     TLS listener: phases connect, tls (the handshake's round) and processing (the request's
#     last segment -> the response's first). Both TLS targets send no session tickets: on the
#     wire a ticket cannot be told from the response (both are encrypted records);
#   - icmp against 127.0.0.1.
# Each sonde probe is matched to its own packets (the trace names its local port / ICMP id+seq)
# and |reported − wire| is given per phase (connect, tls, processing, rtt) for sonde's kernel figure
# and its user-space figure; blackbox_exporter logs no port, so its column compares quantiles of
# reported and wire distributions (see bench/lib/truth_report.py). 200 in flight saturates 2
# cores (wrk + exporter + target): that is the point.
#
#   bash bench/truth.sh              # 5 s per run, 12 runs: ~2 minutes with the builds warm
#   SECS=3 CONCS=200 KEEP=1 bash bench/truth.sh   # shorter, only 200 in flight, keep the captures
#
# Target (issue 14), saturated at 200 in flight: sonde-kernel p99 ≤ 0.5 ms for rtt, connect and
# processing (https included). Traffic stays on 127.0.0.1. TARGETS picks runs (default all):
# delay-http nginx-http delay-https nginx-https icmp. Root (tcpdump, raw ICMP); installs tcpdump, nginx, wrk
# and prometheus-blackbox-exporter from Debian if missing.
set -euo pipefail
SECS=${SECS:-5}
CONCS=${CONCS:-1 200}
DELAY_MS=20
TARGETS=${TARGETS:-delay-http nginx-http delay-https nginx-https icmp}
NGINX_PORT=28280
NGINX_TLS_PORT=28281
DELAY_ADDR=127.0.0.1:29317
DELAY_TLS_ADDR=127.0.0.1:29318
SONDE_ADDR=127.0.0.1:29315
BLACKBOX_ADDR=127.0.0.1:29316
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/sonde-truth.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [[ -n ${KEEP:-} ]]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

if [[ $(id -u) -ne 0 ]]; then
  echo "truth bench: run as root (tcpdump, raw ICMP sockets)" >&2
  exit 2
fi
need=()
for c in tcpdump nginx wrk prometheus-blackbox-exporter; do command -v "$c" >/dev/null || need+=("$c"); done
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
for port in "$NGINX_PORT" "$NGINX_TLS_PORT" "${DELAY_ADDR##*:}" "${DELAY_TLS_ADDR##*:}" "${SONDE_ADDR##*:}" "${BLACKBOX_ADDR##*:}"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "truth bench: 127.0.0.1:$port is already in use" >&2
    exit 1
  fi
done

# SONDE_BIN: a given sonde build (no compile; delay_server must already be built in the target dir).
target=${CARGO_TARGET_DIR:-$root/target}
if [ -n "${SONDE_BIN:-}" ]; then
  SONDE=$SONDE_BIN
else
  echo "building sonde and delay_server (release)…" >&2
  (cd "$root" && cargo build --release -q --bin sonde && cargo build --release -q -p sonde-testkit --bin delay_server)
  SONDE=$target/release/sonde
fi
DELAY=$target/release/delay_server
wait_http() { for _ in $(seq 1 200); do curl -kfsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.1; done; echo "no answer from $1" >&2; return 1; }

mkdir -p "$work/nginx"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=localhost \
  -keyout "$work/nginx/key.pem" -out "$work/nginx/cert.pem" 2>/dev/null
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
    server {
        listen 127.0.0.1:$NGINX_TLS_PORT ssl backlog=4096;
        ssl_certificate $work/nginx/cert.pem;
        ssl_certificate_key $work/nginx/key.pem;
        ssl_protocols TLSv1.3;
        # No session tickets (see the top of this file). OpenSSL still sends two TLS 1.3
        # tickets with the cache and tickets off; only NumTickets 0 stops them.
        ssl_session_tickets off;
        ssl_session_cache off;
        ssl_conf_command NumTickets 0;
        location / { return 200 "ok\n"; }
    }
}
NGINX
nginx -c "$work/nginx/nginx.conf" -p "$work/nginx" -e "$work/nginx/error.log" &
pids+=($!)
"$DELAY" --listen "$DELAY_ADDR" --delay-ms "$DELAY_MS" >"$work/delay.log" 2>&1 &
pids+=($!)
"$DELAY" --listen "$DELAY_TLS_ADDR" --delay-ms "$DELAY_MS" --tls >"$work/delay-tls.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$NGINX_PORT/"
wait_http "http://$DELAY_ADDR/"
wait_http "https://127.0.0.1:$NGINX_TLS_PORT/"
wait_http "https://$DELAY_TLS_ADDR/"

cat >"$work/blackbox.yml" <<BLACKBOX
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
  icmp:
    prober: icmp
    timeout: 5s
    icmp:
      preferred_ip_protocol: ip4
BLACKBOX
prometheus-blackbox-exporter --config.file="$work/blackbox.yml" \
  --web.listen-address="$BLACKBOX_ADDR" --log.level=error >"$work/blackbox.log" 2>&1 &
pids+=($!)
"$SONDE" serve --config.file="$work/blackbox.yml" --web.listen-address="$SONDE_ADDR" \
  --log-level warn >"$work/sonde.log" 2>&1 &
pids+=($!)
wait_http "http://$BLACKBOX_ADDR/-/healthy"
wait_http "http://$SONDE_ADDR/-/healthy"

# One run: capture, drive, stop the capture. Appends a line to runs.txt.
run() { # name exporter addr module target port conns
  local name=$1 ex=$2 addr=$3 module=$4 target=$5 port=$6 conns=$7
  local base="$work/$name-$ex" filter threads=2 tpid line
  ((conns < 2)) && threads=1
  if [[ $port == 0 ]]; then filter="icmp"; else filter="tcp port $port"; fi
  tcpdump -i lo -n -Z root -s 96 -B 65536 --time-stamp-precision=nano -w "$base.pcap" "$filter" \
    2>"$base.tcpdump" &
  tpid=$!
  for _ in $(seq 1 50); do grep -q "listening on" "$base.tcpdump" 2>/dev/null && break; sleep 0.1; done
  line=$(TRUTH_OUT="$base.txt" wrk -t"$threads" -c"$conns" -d"${SECS}s" --timeout 10s \
    -s "$root/bench/lib/truth.lua" "http://$addr/probe?module=$module&target=$target&debug=true" | grep '^RESULT')
  # tcpdump hands packets over in blocks, at the latest after its 1 s timeout: let the last go.
  sleep 1.5
  kill -INT "$tpid"
  wait "$tpid" 2>/dev/null || true
  echo "$name [$ex] $line; tcpdump: $(grep -o '[0-9]* packets dropped by kernel' "$base.tcpdump" || echo '? dropped'); load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
  echo "$name $ex $port $base.pcap $base.txt" >>"$work/runs.txt"
  sleep 1
}

: >"$work/runs.txt"
for conns in $CONCS; do
  for ex in sonde blackbox; do
    if [[ $ex == sonde ]]; then addr=$SONDE_ADDR; else addr=$BLACKBOX_ADDR; fi
    for t in $TARGETS; do
      case $t in
        delay-http) run "delay20ms-http-c$conns" "$ex" "$addr" http_2xx "http://$DELAY_ADDR/" "${DELAY_ADDR##*:}" "$conns" ;;
        nginx-http) run "nginx-http-c$conns" "$ex" "$addr" http_2xx "http://127.0.0.1:$NGINX_PORT/" "$NGINX_PORT" "$conns" ;;
        delay-https) run "delay20ms-https-c$conns" "$ex" "$addr" https_2xx "https://$DELAY_TLS_ADDR/" "${DELAY_TLS_ADDR##*:}" "$conns" ;;
        nginx-https) run "nginx-https-c$conns" "$ex" "$addr" https_2xx "https://127.0.0.1:$NGINX_TLS_PORT/" "$NGINX_TLS_PORT" "$conns" ;;
        icmp) run "icmp-c$conns" "$ex" "$addr" icmp 127.0.0.1 0 "$conns" ;;
        *) echo "truth bench: unknown target $t" >&2; exit 2 ;;
      esac
    done
  done
done

echo
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) cores; other processes on the machine count too)"
python3 "$root/bench/lib/truth_report.py" "$work/runs.txt"
