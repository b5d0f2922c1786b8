#!/usr/bin/env bash
# Memory per loaded scenario (issue 17): generate N one-step HTTP scenarios (in files of
# PER_FILE), load them with `sonde check`, and read the peak RSS (GNU time's %M). Prints the
# RSS of an empty-ish load (1 scenario), of N, and the cost per scenario; then the same for
# `sonde serve` (resident RSS once ready: scheduler and metrics included; the scenarios run
# every 30 days, so nothing is probed meanwhile); then what the default --config.max-scenarios
# does with N above it.
#
#   bash bench/config_memory.sh                         # N=100000, the release binary
#   N=1000000 SONDE=target/debug/sonde bash bench/config_memory.sh
#
# Nothing is probed: `check` only loads. Needs /usr/bin/time (Debian package `time`).
set -euo pipefail
N=${N:-100000}
PER_FILE=${PER_FILE:-10000}
root=$(cd "$(dirname "$0")/.." && pwd)
SONDE=${SONDE:-$root/target/release/sonde}
[ -x "$SONDE" ] || { echo "build first: cargo build --release (or SONDE=path)"; exit 2; }
work=$(mktemp -d /tmp/sonde-cfgmem.XXXXXX)
trap 'rm -rf "$work"' EXIT

gen() { # gen DIR COUNT
  mkdir -p "$1"
  python3 - "$1" "$2" "$PER_FILE" <<'PY'
import sys
d, n, per = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for f in range(0, n, per):
    with open(f"{d}/s{f // per:05d}.yaml", "w") as out:
        out.write("scenarios:\n")
        for i in range(f, min(n, f + per)):
            out.write(f"  - scenario: s{i}\n    interval: 30d\n    http: {{url: \"http://127.0.0.1:9/{i}\"}}\n")
PY
}

rss() { # rss ARGS… → "KB SECONDS EXIT"
  local out
  out=$( { /usr/bin/time -f "%M %e" "$SONDE" check "$@" >/dev/null 2>"$work/err"; } 2>&1 ) || true
  # GNU time appends its line to stderr; the last line is ours.
  tail -n1 "$work/err"
}

gen "$work/one" 1
gen "$work/n" "$N"
echo "files: $(ls "$work/n" | wc -l), $(du -sh "$work/n" | cut -f1) for $N scenarios"
read -r base _ < <(rss --config.max-scenarios 100000000 "$work/one")
read -r peak secs < <(rss --config.max-scenarios 100000000 "$work/n")
echo "peak RSS, 1 scenario:        $((base / 1024)) MiB"
echo "peak RSS, $N scenarios: $((peak / 1024)) MiB in ${secs}s"
echo "per scenario:                $(( (peak - base) * 1024 / N )) bytes"
echo "1,000,000 scenarios, extrapolated: $(( (peak - base) * 1000000 / N / 1024 + base / 1024 )) MiB"
serve_rss() { # serve_rss DIR → KB once /-/ready answers
  local port=$((20000 + RANDOM % 20000)) pid kb=
  "$SONDE" serve --listen "127.0.0.1:$port" --config.max-scenarios 100000000 -c "$1" \
    >"$work/serve.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 3000); do
    if curl -fs "http://127.0.0.1:$port/-/ready" >/dev/null 2>&1; then
      kb=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status"); break
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  echo "${kb:-0}"
}
sbase=$(serve_rss "$work/one")
speak=$(serve_rss "$work/n")
echo "serve RSS, 1 scenario:       $((sbase / 1024)) MiB"
echo "serve RSS, $N scenarios: $((speak / 1024)) MiB"
echo "serve, per scenario:         $(( (speak - sbase) * 1024 / N )) bytes"
echo "--- with the default --config.max-scenarios:"
/usr/bin/time -f "peak RSS %M KB, %e s" "$SONDE" check "$work/n" 2>&1 >/dev/null | tail -n 3 || true
