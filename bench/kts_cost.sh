#!/usr/bin/env bash
# What kernel timestamps cost (issue 14, "CPU per probe unchanged within 5 %"): one sonde binary
# run twice, --probe.kernel-timestamps=on and =off, beside an older build (BEFORE_BIN, e.g. one
# from before the kernel-timestamp work), all three serving /probe at once against the same
# loopback nginx. wrk drives one of them at a time, in rotating order (A B C, B C A, C A B, …),
# so the three see the same machine and the same neighbours' load within each round.
#
# Per run: probes/s and CPU seconds per 1,000 probes of that sonde (utime+stime from
# /proc/PID/stat, all threads), and how many probes did not succeed; then, per module and
# variant, the median over the rounds and the on/off and on/before ratios.
#
#   bash bench/kts_cost.sh                                   # builds sonde (release) first
#   SONDE_BIN=/work/relbuild/release/sonde BEFORE_BIN=/work/bin/sonde-before \
#     ROUNDS=4 SECS=8 CONNS=64 MODULES="http_2xx https_2xx tcp_connect" bash bench/kts_cost.sh
#
# Traffic stays on 127.0.0.1. Installs nginx and wrk from Debian if missing (root).
set -euo pipefail
SECS=${SECS:-8}
ROUNDS=${ROUNDS:-4}
CONNS=${CONNS:-64}
MODULES=${MODULES:-http_2xx https_2xx tcp_connect}
NGINX_PORT=28380
NGINX_TLS_PORT=28381
PORT_ON=29380
PORT_OFF=29381
PORT_BEFORE=29382
root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/bench/lib/common.sh"
bench_workdir kts-cost
bench_need kts_cost nginx wrk
if [ -n "${SONDE_BIN:-}" ]; then
  SONDE=$SONDE_BIN
else
  echo "building sonde (release)…" >&2
  (cd "$root" && cargo build --release -q --bin sonde)
  SONDE=${CARGO_TARGET_DIR:-$root/target}/release/sonde
fi
BEFORE=${BEFORE_BIN:-}
hz=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
wait_http() { for _ in $(seq 1 200); do curl -kfsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.1; done; echo "no answer from $1" >&2; return 1; }

source "$root/bench/lib/nginx.sh"
bench_nginx_start "$work/nginx" "$NGINX_PORT" "$NGINX_TLS_PORT"
pids+=("$BENCH_NGINX_PID")

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
EOF
declare -A pid_of port_of
start() { # variant binary port [flag]
  "$2" serve --config.file="$work/blackbox.yml" --web.listen-address="127.0.0.1:$3" \
    --storage.path="$work/store-$1" --log-level warn ${4:+"$4"} >"$work/sonde-$1.log" 2>&1 &
  pids+=($!)
  pid_of[$1]=$!
  port_of[$1]=$3
  wait_http "http://127.0.0.1:$3/-/healthy"
}
start on "$SONDE" "$PORT_ON" --probe.kernel-timestamps=on
start off "$SONDE" "$PORT_OFF" --probe.kernel-timestamps=off
variants=(on off)
if [ -n "$BEFORE" ]; then
  # An older build may predate --storage.path; it gets no flag it may not know.
  "$BEFORE" serve --config.file="$work/blackbox.yml" --web.listen-address="127.0.0.1:$PORT_BEFORE" \
    --log-level warn >"$work/sonde-before.log" 2>&1 &
  pids+=($!)
  pid_of[before]=$!
  port_of[before]=$PORT_BEFORE
  wait_http "http://127.0.0.1:$PORT_BEFORE/-/healthy"
  variants+=(before)
fi

target_of() {
  case $1 in
    http_2xx) echo "http://127.0.0.1:$NGINX_PORT/" ;;
    https_2xx) echo "https://127.0.0.1:$NGINX_TLS_PORT/" ;;
    tcp_connect) echo "127.0.0.1:$NGINX_PORT" ;;
  esac
}

echo "kts cost: ${SECS}s per run, $CONNS in flight, $ROUNDS rounds × (${variants[*]}) × ($MODULES); load before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
: >"$work/runs.txt"
n=${#variants[@]}
for module in $MODULES; do
  for ((r = 0; r < ROUNDS; r++)); do
    for ((i = 0; i < n; i++)); do
      v=${variants[$(((r + i) % n))]}
      pid=${pid_of[$v]}
      url="http://127.0.0.1:${port_of[$v]}/probe?module=$module&target=$(target_of "$module")"
      c0=$(cpu_ticks "$pid")
      line=$(wrk -t2 -c"$CONNS" -d"${SECS}s" --timeout 10s -s "$root/bench/lib/probe.lua" "$url" | grep '^RESULT')
      c1=$(cpu_ticks "$pid")
      req=$(sed -E 's/.*requests=([0-9]+).*/\1/' <<<"$line")
      rps=$(sed -E 's/.* rps=([0-9.]+).*/\1/' <<<"$line")
      bad=$(sed -E 's/.* bad=([0-9]+).*/\1/' <<<"$line")
      cpu=$(python3 -c "print(f'{($c1-$c0)/$hz/max($req,1)*1000:.4f}')")
      echo "$module $v round=$r rps=$rps cpu_s_per_1k=$cpu bad=$bad load=$(cut -d' ' -f1 /proc/loadavg)" | tee -a "$work/runs.txt" >&2
      sleep 1
    done
  done
done

echo
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) cores; other processes count too)"
python3 - "$work/runs.txt" <<'PY'
import re, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    m = re.match(r"(\S+) (\S+) round=\d+ rps=(\S+) cpu_s_per_1k=(\S+) bad=(\d+)", line)
    if m:
        rows.setdefault((m[1], m[2]), []).append((float(m[3]), float(m[4]), int(m[5])))
mods = sorted({k[0] for k in rows}, key=lambda x: ["http_2xx", "https_2xx", "tcp_connect"].index(x) if x in ["http_2xx", "https_2xx", "tcp_connect"] else 9)
print(f"{'module':<12} {'variant':<7} {'probes/s (median; runs)':<34} {'CPU s per 1k probes (median; runs)':<44} bad")
for mod in mods:
    med = {}
    for v in ("on", "off", "before"):
        rs = rows.get((mod, v))
        if not rs:
            continue
        rps = statistics.median(r[0] for r in rs)
        cpu = statistics.median(r[1] for r in rs)
        med[v] = (rps, cpu)
        print(f"{mod:<12} {v:<7} {rps:8.0f} ({' '.join(f'{r[0]:.0f}' for r in rs)}){'':<4} "
              f"{cpu:7.4f} ({' '.join(f'{r[1]:.4f}' for r in rs)}) {sum(r[2] for r in rs)}")
    if "on" in med and "off" in med:
        line = (f"{mod:<12} on/off: CPU per probe {100 * (med['on'][1] / med['off'][1] - 1):+.1f} %, "
                f"probes/s {100 * (med['on'][0] / med['off'][0] - 1):+.1f} %")
        if "before" in med:
            line += (f"; on/before: CPU per probe {100 * (med['on'][1] / med['before'][1] - 1):+.1f} %, "
                     f"probes/s {100 * (med['on'][0] / med['before'][0] - 1):+.1f} %")
        print(line)
PY
