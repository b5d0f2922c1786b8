#!/usr/bin/env bash
# CPU per /probe of several sonde builds (or flag sets) at the same moment: each variant serves
# /probe and its own wrk drives it (CONNS in flight) while the others run, so all of them see the
# same machine, the same neighbours and the same load. Sequential A/B runs on a shared 2-core
# machine scatter by ±15-25 % between two runs of the same binary; runs at the same moment agree
# within a few per cent (bench/kts-results.md).
#
# Per variant and round: CPU µs per probe (utime+stime from /proc/PID/stat, all threads, split
# into user and system), minor page faults per probe, probes/s.
#
#   VARIANTS="before=/work/bin/sonde-before after=target/release/sonde" bash bench/probe_ab.sh
#   VARIANTS="on=./sonde off=./sonde:--probe.kernel-timestamps=off h0=./sonde:--history.limit=0" \
#     MODULE=https_2xx ROUNDS=3 SECS=6 CONNS=8 bash bench/probe_ab.sh
#
# A variant is NAME=BINARY[:FLAGS] (FLAGS one word, added to `serve`); a wrapper script that sets
# the environment and execs the binary works as BINARY. Builds that predate a flag get none.
# Traffic stays on 127.0.0.1. Installs nginx and wrk from Debian if missing (root).
set -euo pipefail
SECS=${SECS:-6}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-8}
MODULE=${MODULE:-http_2xx}
PORT0=${PORT0:-31400}
NGINX_PORT=${NGINX_PORT:-31380}
: "${VARIANTS:?VARIANTS=\"name=binary[:flag] ...\"}"
root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/bench/lib/common.sh"
bench_workdir probe-ab
bench_need probe_ab nginx wrk
port_free() { ! ss -ltn | grep -q ":$1 "; }
wait_port() { for _ in $(seq 1 100); do port_free "$1" || return 0; sleep 0.1; done; echo "nothing listens on $1" >&2; return 1; }

mkdir -p "$work/cfg"
port_free "$NGINX_PORT" || { echo "port $NGINX_PORT is taken" >&2; exit 1; }
source "$root/bench/lib/nginx.sh"
# tcp_connect: each variant connects to an address of its own (127.0.0.2, .3, …). Towards one
# address the variants' connects share the kernel's choice of local ports, and an A/A run
# (one binary against itself) then scattered by ±15 % per round.
n_variants=$(wc -w <<<"$VARIANTS")
if [ "$MODULE" = tcp_connect ]; then
  BENCH_NGINX_EXTRA_ADDRS=$(for ((i = 2; i <= n_variants + 1; i++)); do printf '127.0.0.%d ' "$i"; done)
fi
bench_nginx_start "$work/nginx" "$NGINX_PORT" "$((NGINX_PORT + 1))"
pids+=("$BENCH_NGINX_PID")
cat >"$work/cfg/blackbox.yml" <<EOF
modules:
  http_2xx: {prober: http, timeout: 5s}
  https_2xx: {prober: http, timeout: 5s, http: {tls_config: {insecure_skip_verify: true}}}
  tcp_connect: {prober: tcp, timeout: 5s}
EOF
case $MODULE in
  http_2xx) target=http://127.0.0.1:$NGINX_PORT/ ;;
  https_2xx) target=https://127.0.0.1:$((NGINX_PORT + 1))/ ;;
  tcp_connect) target=127.0.0.1:$NGINX_PORT ;;
  *) echo "MODULE: http_2xx, https_2xx or tcp_connect" >&2; exit 2 ;;
esac

declare -A pid_of port_of target_of
names=()
port=$PORT0
for v in $VARIANTS; do
  name=${v%%=*} rest=${v#*=}
  bin=${rest%%:*} flags=
  [[ $rest == *:* ]] && flags=${rest#*:}
  port_free "$port" || { echo "port $port is taken" >&2; exit 1; }
  # exec: the pid is sonde's own, whether BINARY is sonde or a wrapper that execs it. The
  # working directory is the run's own, so a build's default storage lands there.
  (cd "$work" && exec "$bin" serve --config.file="$work/cfg/blackbox.yml" \
    --web.listen-address="127.0.0.1:$port" --log-level warn $flags >"$work/$name.log" 2>&1) &
  pids+=($!)
  pid_of[$name]=$!
  port_of[$name]=$port
  target_of[$name]=$target
  [ "$MODULE" = tcp_connect ] && target_of[$name]=127.0.0.$((${#names[@]} + 2)):$NGINX_PORT
  names+=("$name")
  port=$((port + 1))
done
for name in "${names[@]}"; do wait_port "${port_of[$name]}"; done

stat3() { awk '{print $14, $15, $10}' "/proc/$1/stat"; } # utime stime minflt
hz=$(getconf CLK_TCK)
echo "probe_ab: $MODULE, ${SECS}s per round, $CONNS in flight per variant, all at once; load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for ((r = 0; r < ROUNDS; r++)); do
  declare -A before_stat=()
  for name in "${names[@]}"; do before_stat[$name]=$(stat3 "${pid_of[$name]}"); done
  wrks=()
  for name in "${names[@]}"; do
    wrk -t1 -c"$CONNS" -d"${SECS}s" --timeout 10s -s "$root/bench/lib/probe.lua" \
      "http://127.0.0.1:${port_of[$name]}/probe?module=$MODULE&target=${target_of[$name]}" | grep '^RESULT' >"$work/$name.res" &
    wrks+=($!)
  done
  wait "${wrks[@]}"
  line="round $r (load $(cut -d' ' -f1 /proc/loadavg)):"
  for name in "${names[@]}"; do
    read -r u0 s0 f0 <<<"${before_stat[$name]}"
    read -r u1 s1 f1 <<<"$(stat3 "${pid_of[$name]}")"
    req=$(sed -E 's/.*requests=([0-9]+).*/\1/' "$work/$name.res")
    bad=$(sed -E 's/.* bad=([0-9]+).*/\1/' "$work/$name.res")
    line+=$(python3 -c "
r = max($req, 1); us = lambda t: t / $hz / r * 1e6
print(f' $name {us($u1 - $u0 + $s1 - $s0):.1f} µs (user {us($u1 - $u0):.0f} + sys {us($s1 - $s0):.0f}, faults {($f1 - $f0) / r:.2f}, {r / $SECS:.0f}/s, bad $bad)')")
  done
  echo "$line"
done
