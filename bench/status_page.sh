#!/usr/bin/env bash
# Status page server time (issue 13): the overview with 10,000 scenarios and a scenario's page
# at 14 days of history, read from the SQLite store as `sonde serve` reads it. Targets: overview
# p99 <= 50 ms, scenario page <= 50 ms.
#
# Two stores are filled without waiting (examples/history_fill.rs writes through the store's
# own writer: same tables, rollups, incidents):
#   wide: N scenarios (10,000) with DAYS_WIDE days (2) of runs every 600 s;
#   deep: DEEP_N (100) scenarios with DEEP_DAYS (14) days of runs every 60 s (20,160 runs each,
#         2 million in all).
# Then `sonde serve` on each (scenarios of that name, 1 h interval to a closed loopback port, so
# few runs happen during the measure) and REQUESTS timed GETs per page over one kept-alive
# connection (Python http.client): the first overview page, a page deep in the list, the list
# fragment the script refreshes, a search; the scenario page at the default span, 7d and 30d.
#
#   bash bench/status_page.sh
#   N=2000 DEEP_N=3 REQUESTS=50 SONDE_BIN=target/debug/sonde \
#     FILL_BIN=target/debug/examples/history_fill bash bench/status_page.sh   # a quick debug run
#
# Traffic stays on 127.0.0.1.
set -euo pipefail
N=${N:-10000}
DAYS_WIDE=${DAYS_WIDE:-2}
REQUESTS=${REQUESTS:-200}
DEEP_N=${DEEP_N:-100}
DEEP_DAYS=${DEEP_DAYS:-14}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/sonde-status-bench.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

if [[ -z ${SONDE_BIN:-} || -z ${FILL_BIN:-} ]]; then
  echo "building sonde and history_fill (release)…" >&2
  (cd "$root" && cargo build --release -q --bin sonde --example history_fill)
fi
SONDE=${SONDE_BIN:-$root/target/release/sonde}
FILL=${FILL_BIN:-$root/target/release/examples/history_fill}
closed=$(free_port)

scenarios() { # count → a scenario file of bench-00000… (what history_fill names)
  python3 - "$1" "$closed" <<'PY'
import sys
n, port = int(sys.argv[1]), sys.argv[2]
print("scenarios:")
for i in range(n):
    print(f"  - scenario: bench-{i:05}\n    interval: 1h\n    tags: [t{i % 40}]\n    steps:\n"
          f"      - name: get\n        tcp: {{target: \"127.0.0.1:{port}\"}}")
PY
}

measure() { # label, base URL, then paths
  python3 - "$REQUESTS" "$@" <<'PY'
import http.client, sys, time, urllib.parse
n, label, base = int(sys.argv[1]), sys.argv[2], sys.argv[3]
u = urllib.parse.urlparse(base)
conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
for path in sys.argv[4:]:
    times, size = [], 0
    for i in range(n + 3):
        t = time.perf_counter()
        conn.request("GET", path)
        r = conn.getresponse()
        body = r.read()
        dt = (time.perf_counter() - t) * 1000
        if r.status != 200:
            sys.exit(f"{path}: {r.status}")
        if i >= 3:  # the first requests warm the store's page cache
            times.append(dt)
        size = len(body)
    times.sort()
    q = lambda p: times[min(len(times) - 1, int(p * len(times)))]
    print(f"{label:9} {path:42} p50 {q(0.5):6.1f} ms  p95 {q(0.95):6.1f} ms  p99 {q(0.99):6.1f} ms"
          f"  max {times[-1]:6.1f} ms  {size / 1024:6.0f} KiB")
PY
}

addr=""
serve() { # store dir, scenario file; sets $addr (not in a subshell: its pid must reach cleanup)
  local port; port=$(free_port)
  "$SONDE" serve -c "$2" --listen "127.0.0.1:$port" --storage.path "$1" --storage.retention 15d \
    > "$work/serve-$port.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 600); do
    curl -sf "http://127.0.0.1:$port/-/ready" >/dev/null 2>&1 && break
    sleep 0.2
  done
  addr="127.0.0.1:$port"
}

echo "filling: $N scenarios × $DAYS_WIDE days every 600 s; $DEEP_N scenarios × $DEEP_DAYS days every 60 s" >&2
"$FILL" "$work/wide" "$N" "$DAYS_WIDE" 600
"$FILL" "$work/deep" "$DEEP_N" "$DEEP_DAYS" 60
scenarios "$N" > "$work/wide.yaml"
scenarios "$DEEP_N" > "$work/deep.yaml"
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); $REQUESTS requests per page" >&2

serve "$work/wide" "$work/wide.yaml"
deep_page=$((N / 50 * 3 / 4 + 1))
measure overview "http://$addr" "/" "/?page=$deep_page" "/status/list" "/?q=bench-0019" "/?by=tag&state=failing"
kill "${pids[-1]}"
serve "$work/deep" "$work/deep.yaml"
deep=$addr
# bench-00002: a scenario of 14 days; bench-00001: the same, down for the last two hours.
measure scenario "http://$deep" "/scenario/bench-00002" "/scenario/bench-00002?span=7d" \
  "/scenario/bench-00002?span=30d" "/scenario/bench-00001?span=24h" "/"
echo "store sizes: wide $(du -sh "$work/wide" | cut -f1), deep $(du -sh "$work/deep" | cut -f1)"
