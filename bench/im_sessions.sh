#!/usr/bin/env bash
# IM sessions benchmark (issue 4): N persistent two-user IM sessions (the shape of
# scenarios/im-login-send-receive.yaml, users alice-i/bob-i) against the release chat server on
# loopback, one message per session every 10 s. Reports sonde's RSS per session, CPU, the
# delivery latency sonde measures (sonde_step_duration_seconds{step="deliver"}, p50/p99 over the
# window) and missed intervals (runs that did not happen or did not pass).
#
#   bash bench/im_sessions.sh                       # 10,000 sessions, 60 s window
#   N=1000 WINDOW=30 bash bench/im_sessions.sh
#   SONDE_BIN=/tmp/sonde-old CHAT_BIN=/tmp/chat_server N=9900 bash bench/im_sessions.sh
#   PROTO=tcp bash bench/im_sessions.sh             # raw TCP, length-prefixed protobuf frames
#                                                   # (scenarios/im-tcp-protobuf.yaml's shape)
#
# This machine's fd hard limit is 20,000 per process and cannot be raised: 9,900 sessions
# (19,800 client connections + sonde's own fds) is the most one sonde process holds here.
#
# Traffic stays on 127.0.0.1. Targets on 2 cores: <= 30 KB RSS per session, no missed intervals.
set -euo pipefail
N=${N:-10000}
WINDOW=${WINDOW:-60}
INTERVAL=${INTERVAL:-10s}
NOISE=${NOISE:-5s}          # presence frames every connection gets (skipped by the expects)
PORT=${PORT:-29300}         # the chat server's WebSocket port (TCP: +1; sonde: -183)
CHAT_ADDR=127.0.0.1:$PORT
CHAT_TCP_ADDR=127.0.0.1:$((PORT + 1))
PROTO=${PROTO:-ws}          # ws, or tcp (length-prefixed protobuf frames)
SONDE_ADDR=127.0.0.1:$((PORT - 183))
HISTORY=${HISTORY:-on}      # on: sonde keeps history in a folder of its own here; off: none
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/sonde-im-bench.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# Two connections per session on each side, plus sonde's own: raise the fd limit.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
ulimit -n 1048576 2>/dev/null || true
echo "fd limit: $(ulimit -n)" >&2

if [ -n "${SONDE_BIN:-}" ]; then
  # A given build (before/after comparisons); the chat server from CHAT_BIN or this tree.
  SONDE=$SONDE_BIN
  CHAT=${CHAT_BIN:-$root/target/release/examples/chat_server}
else
  echo "building sonde and the chat server (release)…" >&2
  (cd "$root" && cargo build --release -q --bin sonde --example chat_server)
  SONDE=$root/target/release/sonde
  CHAT=$root/target/release/examples/chat_server
fi

if [ "$PROTO" = tcp ]; then
  cp "$root/examples/chat.proto" "$work/chat.proto"
  python3 "$root/bench/lib/im_config.py" "$N" "$CHAT_TCP_ADDR" "$INTERVAL" tcp >"$work/im.yaml"
else
  python3 "$root/bench/lib/im_config.py" "$N" "ws://$CHAT_ADDR/chat" "$INTERVAL" >"$work/im.yaml"
fi

cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
rss_kb() { awk '/VmRSS/{print $2}' "/proc/$1/status"; }
hz=$(getconf CLK_TCK)

"$CHAT" --listen "$CHAT_ADDR" --listen-tcp "$CHAT_TCP_ADDR" --noise-interval "$NOISE" 2>"$work/chat.log" &
pids+=($!)
chat_pid=$!
sleep 0.5
# A chat server that could not listen (its port taken) has exited: stop here, or the sessions
# would connect to whatever holds the port.
kill -0 "$chat_pid" 2>/dev/null || { echo "chat server is not running: $(cat "$work/chat.log")" >&2; exit 1; }

# Baseline: sonde with the built-in configuration (no sessions), for the per-session share.
# History (on by default in sonde serve): a folder per process, never the user's default one,
# which every run of this script (and the baseline) would otherwise share and fight over.
storage() { if [ "$HISTORY" = off ]; then echo ""; else echo "$work/history-$1"; fi; }
"$SONDE" serve --listen "$SONDE_ADDR" --log-level warn --storage.path "$(storage base)" 2>/dev/null &
base_pid=$!
for _ in $(seq 1 100); do curl -fsS "http://$SONDE_ADDR/-/ready" >/dev/null 2>&1 && break; sleep 0.1; done
sleep 1
base_rss=$(rss_kb $base_pid)
kill $base_pid; wait $base_pid 2>/dev/null || true

"$SONDE" serve -c "$work/im.yaml" --listen "$SONDE_ADDR" --log-level warn \
  --max-concurrent-runs 4096 --storage.path "$(storage run)" 2>"$work/sonde.log" &
pids+=($!)
sonde_pid=$!
for _ in $(seq 1 600); do curl -fsS "http://$SONDE_ADDR/-/ready" >/dev/null 2>&1 && break; sleep 0.1; done
echo "sonde up with $N persistent sessions; waiting for all to connect…" >&2
connected() {
  curl -fsS "http://$SONDE_ADDR/metrics" | awk '/^sonde_session_connected\{/ && $NF == 1 {n++} END {print n+0}'
}
for _ in $(seq 1 120); do
  c=$(connected)
  [ "$c" -ge "$N" ] && break
  sleep 1
done
echo "connected sessions: $c of $N; one more interval of warm-up…" >&2
sleep "${INTERVAL%s}"

(while kill -0 $sonde_pid 2>/dev/null; do
   echo "$(date +%s.%N) $(rss_kb $sonde_pid)"; sleep 0.5
 done) >"$work/rss.txt" 2>/dev/null &
sampler=$!
scrape() {
  local a b
  a=$(date +%s.%N); curl -fsS "http://$SONDE_ADDR/metrics" >"$1"; b=$(date +%s.%N)
  echo "$a $b"
}
read -r s0a s0b < <(scrape "$work/m0.txt")
c0=$(cpu_ticks $sonde_pid); k0=$(cpu_ticks $chat_pid)
sleep "$WINDOW"
c1=$(cpu_ticks $sonde_pid); k1=$(cpu_ticks $chat_pid)
read -r s1a s1b < <(scrape "$work/m1.txt")
kill $sampler 2>/dev/null || true
t0=$(python3 -c "print(($s0a+$s0b)/2)"); t1=$(python3 -c "print(($s1a+$s1b)/2)")
rss_end=$(rss_kb $sonde_pid)

T0=$t0 T1=$t1 C0=$c0 C1=$c1 K0=$k0 K1=$k1 HZ=$hz RSS_LOG=$work/rss.txt N=$N \
  BASE_RSS=$base_rss RSS_END=$rss_end INTERVAL=$INTERVAL NOISE=$NOISE PROTO=$PROTO \
  python3 "$root/bench/lib/im_report.py" "$work/m0.txt" "$work/m1.txt"
echo "  load average        $(cut -d" " -f1-3 /proc/loadavg) at the end (2 cores); history $HISTORY"
# VmRSS counts file pages mapped in (the history database's mmap) beside the heap: the split.
echo "  rss split           $(awk '/RssAnon|RssFile/{printf "%s %d MB  ", $1, $2/1024}' "/proc/$sonde_pid/status")"
