#!/usr/bin/env bash
# What basic auth (--web.config.file, bcrypt cost 10 as `htpasswd -B` makes) costs a scrape:
# the first request with the right password pays one bcrypt; later ones are served from the
# success cache; every wrong password pays a full bcrypt again (never cached). Prints the median
# and p90 of curl's total time for each kind over plain HTTP on loopback (no TLS, so the numbers
# are the auth's), and sonde's CPU seconds spent.
#
#   bash bench/web_auth.sh            # N=200 right, N_WRONG=20 wrong
#   N=1000 N_WRONG=50 bash bench/web_auth.sh
#
# Needs curl and htpasswd (apache2-utils). Traffic stays on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-200}
N_WRONG=${N_WRONG:-20}
command -v htpasswd >/dev/null || { echo "needs htpasswd: apt-get install apache2-utils" >&2; exit 2; }
# The debug build by default (dependencies, bcrypt included, are optimised in the dev profile);
# SONDE_BIN=target/release/sonde for a release build.
cargo build -q --bin sonde
sonde=${SONDE_BIN:-$PWD/target/debug/sonde}
work=$(mktemp -d "${TMPDIR:-/tmp}/sonde-webauth.XXXXXX")
pid=
trap '[[ -n $pid ]] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT
hash=$(htpasswd -nbBC 10 "" bench-pw | tr -d ':\n')
printf "basic_auth_users:\n  bench: '%s'\n" "$hash" > "$work/web.yml"
printf 'modules:\n  tcp_connect:\n    prober: tcp\n' > "$work/bb.yml"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$sonde" serve -c "$work/bb.yml" --listen "127.0.0.1:$port" --web.config.file "$work/web.yml" \
  > "$work/sonde.log" 2>&1 &
pid=$!
for _ in $(seq 100); do
  curl -s -o /dev/null "http://127.0.0.1:$port/-/healthy" -u bench:bench-pw && break
  sleep 0.1
done
cpu() { awk '{print ($14+$15)/100}' "/proc/$pid/stat"; }
times() { # USER:PASS COUNT → one time_total (ms) per line
  for _ in $(seq "$2"); do
    curl -s -o /dev/null -w '%{time_total}\n' -u "$1" "http://127.0.0.1:$port/metrics"
  done | awk '{printf "%.2f\n", $1*1000}' | sort -n
}
stats() { # label, file of sorted ms
  awk -v l="$1" '{a[NR]=$1} END {printf "%-34s n=%-5d median %7.2f ms   p90 %7.2f ms\n", l, NR, a[int((NR+1)/2)], a[int(NR*0.9+0.5)]}' "$2"
}
c0=$(cpu)
times bench:bench-pw "$N" > "$work/right"
c1=$(cpu)
times bench:wrong-pw "$N_WRONG" > "$work/wrong"
c2=$(cpu)
stats "right password (cached after 1st)" "$work/right"
stats "wrong password (bcrypt each)" "$work/wrong"
awk -v a="$c0" -v b="$c1" -v c="$c2" -v n="$N" -v w="$N_WRONG" 'BEGIN {
  printf "sonde CPU: %.1f ms per right-password scrape, %.1f ms per wrong guess\n", (b-a)*1000/n, (c-b)*1000/w }'
