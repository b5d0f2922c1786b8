#!/usr/bin/env bash
# IM sessions over raw TCP benchmark (issue 12): N persistent two-user IM sessions of the shape
# of scenarios/im-tcp-protobuf.yaml (two tcp.connect connections per session, each frame a 4-byte
# big-endian length then a protobuf message compiled from examples/chat.proto at load; users
# alice-i/bob-i) against the release chat server's TCP side on loopback, one message per session
# every 10 s. Reports sonde's RSS per session, CPU, the delivery latency sonde measures
# (sonde_step_duration_seconds{step="deliver"}, p50/p99 over the window) and missed intervals.
# The shape of bench/im_sessions.sh (the WebSocket one), whose report it shares.
#
#   bash bench/im_tcp_sessions.sh                     # 10,000 sessions, 60 s window
#   N=1000 WINDOW=30 bash bench/im_tcp_sessions.sh
#   SONDE_BIN=/tmp/sonde CHAT_BIN=/tmp/chat_server bash bench/im_tcp_sessions.sh
#
# This machine's fd hard limit is 20,000 per process and cannot be raised, and a session holds
# two connections on each side, so one sonde (or chat server) process holds at most 9,900
# sessions. Above that the sessions are split evenly over SHARDS pairs of sonde + chat server
# processes (10,000 -> 2 x 5,000); RSS per session is then the sum over the sonde processes,
# less one baseline each, over N.
#
# Traffic stays on 127.0.0.1. Targets on 2 cores: <= 20 KB RSS per session, no missed intervals.
set -euo pipefail
N=${N:-10000}
WINDOW=${WINDOW:-60}
INTERVAL=${INTERVAL:-10s}
NOISE=${NOISE:-5s}          # presence frames every connection gets (skipped by the expects)
HISTORY=${HISTORY:-on}      # on: each sonde keeps history in a folder of its own here; off: none
SONDE_PORT=${SONDE_PORT:-29217}   # first sonde's port (one more per shard)
CHAT_PORT=${CHAT_PORT:-29400}     # first chat server's WebSocket port (TCP: +1; two per shard)
PER_PROCESS=9900
SHARDS=${SHARDS:-$(( (N + PER_PROCESS - 1) / PER_PROCESS ))}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/sonde-im-tcp-bench.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
echo "fd limit: $(ulimit -n); $N sessions in $SHARDS sonde + chat server pair(s)" >&2

if [ -n "${SONDE_BIN:-}" ]; then
  SONDE=$SONDE_BIN
  CHAT=${CHAT_BIN:-$root/target/release/examples/chat_server}
else
  echo "building sonde and the chat server (release)…" >&2
  (cd "$root" && cargo build --release -q --bin sonde --example chat_server)
  tdir=${CARGO_TARGET_DIR:-$root/target}
  SONDE=$tdir/release/sonde
  CHAT=$tdir/release/examples/chat_server
fi

cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
rss_kb() { awk '/VmRSS/{print $2}' "/proc/$1/status"; }
hz=$(getconf CLK_TCK)
sonde_addr() { echo "127.0.0.1:$((SONDE_PORT + $1))"; }
chat_tcp() { echo "127.0.0.1:$((CHAT_PORT + 1 + 2 * $1))"; }
chat_ws() { echo "127.0.0.1:$((CHAT_PORT + 2 * $1))"; }
# History (on by default in sonde serve): a folder per process, never the user's default one,
# which every run of this script (and the baseline) would otherwise share and fight over.
storage() { if [ "$HISTORY" = off ]; then echo ""; else echo "$work/history-$1"; fi; }
wait_ready() {
  for _ in $(seq 1 "$2"); do curl -fsS "http://$1/-/ready" >/dev/null 2>&1 && return; sleep 0.1; done
}

cp "$root/examples/chat.proto" "$work/chat.proto"
chat_pids=(); sonde_pids=()
for s in $(seq 0 $((SHARDS - 1))); do
  first=$((N * s / SHARDS)); count=$((N * (s + 1) / SHARDS - first))
  python3 "$root/bench/lib/im_tcp_config.py" "$first" "$count" "$(chat_tcp "$s")" "$INTERVAL" \
    >"$work/im-$s.yaml"
  "$CHAT" --listen "$(chat_ws "$s")" --listen-tcp "$(chat_tcp "$s")" --noise-interval "$NOISE" \
    2>"$work/chat-$s.log" &
  pids+=($!); chat_pids+=($!)
done
sleep 0.5
# A chat server that could not listen (its port taken) has exited: stop here, or the sessions
# would connect to whatever holds the port.
for s in $(seq 0 $((SHARDS - 1))); do
  kill -0 "${chat_pids[$s]}" 2>/dev/null || { echo "chat server $s is not running: $(cat "$work/chat-$s.log")" >&2; exit 1; }
done

# Baseline: sonde with the built-in configuration (no sessions), once per sonde process.
"$SONDE" serve --listen "$(sonde_addr 0)" --log-level warn --storage.path "$(storage base)" 2>/dev/null &
base_pid=$!
wait_ready "$(sonde_addr 0)" 100
sleep 1
base_rss=$(rss_kb $base_pid)
kill $base_pid; wait $base_pid 2>/dev/null || true

for s in $(seq 0 $((SHARDS - 1))); do
  "$SONDE" serve -c "$work/im-$s.yaml" --listen "$(sonde_addr "$s")" --log-level warn \
    --max-concurrent-runs 4096 --storage.path "$(storage "$s")" 2>"$work/sonde-$s.log" &
  pids+=($!); sonde_pids+=($!)
done
for s in $(seq 0 $((SHARDS - 1))); do wait_ready "$(sonde_addr "$s")" 600; done
echo "sonde up with $N persistent sessions; waiting for all to connect…" >&2
connected() {
  for s in $(seq 0 $((SHARDS - 1))); do curl -fsS "http://$(sonde_addr "$s")/metrics"; done |
    awk '/^sonde_session_connected\{/ && $NF == 1 {n++} END {print n+0}'
}
for _ in $(seq 1 180); do
  c=$(connected)
  [ "$c" -ge "$N" ] && break
  sleep 1
done
echo "connected sessions: $c of $N; one more interval of warm-up…" >&2
sleep "${INTERVAL%s}"

sum_rss() { local t=0; for p in "${sonde_pids[@]}"; do t=$((t + $(rss_kb "$p"))); done; echo $t; }
sum_cpu() { local t=0; for p in "$@"; do t=$((t + $(cpu_ticks "$p"))); done; echo $t; }
(while kill -0 "${sonde_pids[0]}" 2>/dev/null; do
   echo "$(date +%s.%N) $(sum_rss)"; sleep 0.5
 done) >"$work/rss.txt" 2>/dev/null &
sampler=$!
scrape() {
  local a b
  a=$(date +%s.%N)
  for s in $(seq 0 $((SHARDS - 1))); do curl -fsS "http://$(sonde_addr "$s")/metrics"; done >"$1"
  b=$(date +%s.%N)
  echo "$a $b"
}
load0=$(cut -d' ' -f1-3 /proc/loadavg)
read -r s0a s0b < <(scrape "$work/m0.txt")
c0=$(sum_cpu "${sonde_pids[@]}"); k0=$(sum_cpu "${chat_pids[@]}")
sleep "$WINDOW"
c1=$(sum_cpu "${sonde_pids[@]}"); k1=$(sum_cpu "${chat_pids[@]}")
read -r s1a s1b < <(scrape "$work/m1.txt")
kill $sampler 2>/dev/null || true
t0=$(python3 -c "print(($s0a+$s0b)/2)"); t1=$(python3 -c "print(($s1a+$s1b)/2)")
rss_end=$(sum_rss)

T0=$t0 T1=$t1 C0=$c0 C1=$c1 K0=$k0 K1=$k1 HZ=$hz RSS_LOG=$work/rss.txt N=$N \
  BASE_RSS=$base_rss RSS_END=$rss_end INTERVAL=$INTERVAL NOISE=$NOISE SHARDS=$SHARDS \
  TRANSPORT="raw TCP, length-prefixed protobuf" \
  python3 "$root/bench/lib/im_report.py" "$work/m0.txt" "$work/m1.txt"
echo "  load average        $load0 at the window's start, $(cut -d' ' -f1-3 /proc/loadavg) at its end (2 cores)"
echo "  history             $HISTORY"
# VmRSS counts file pages mapped in (the history database's mmap) beside the heap: the split.
split() { awk '/RssAnon|RssFile/{printf "%s %d MB  ", $1, $2/1024}' "/proc/$1/status"; }
for p in "${sonde_pids[@]}"; do echo "  rss split (pid $p)  $(split "$p")"; done
for s in $(seq 0 $((SHARDS - 1))); do
  if grep -q . "$work/sonde-$s.log"; then
    echo "  sonde $s log: $(wc -l <"$work/sonde-$s.log") lines, first: $(head -c 300 "$work/sonde-$s.log")"
  fi
done
