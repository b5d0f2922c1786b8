#!/usr/bin/env bash
# Fuzzing campaign (issue 17 item 8): every fuzz target of tests/fuzz.rs for MINUTES minutes
# each, from a random seed (or SEED), on the stable toolchain. Prints the executions per target
# and every finding; a failing input is saved to fuzz/corpus/<target>/crash-<hash> (or
# hang-<hash>: the run then stops at once, a hung parser cannot be interrupted) so that plain
# `cargo test --test fuzz` replays it from then on. Fix it, keep the file, commit both.
#
#   bash bench/fuzz.sh                              # 5 minutes per target, 9 targets
#   MINUTES=1 TARGETS=scenario,template bash bench/fuzz.sh
#   SEED=42 MINUTES=2 bash bench/fuzz.sh            # replay a campaign's mutations
#   RELEASE=0 MINUTES=1 bash bench/fuzz.sh          # debug build (no release build to wait for)
#
# Traffic: the tcp_framing target talks to its own listener on 127.0.0.1 only.
set -euo pipefail
MINUTES=${MINUTES:-5}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
secs=$(awk -v m="$MINUTES" 'BEGIN { printf "%d", m * 60 }')
export FUZZ_SECONDS=$secs
export FUZZ_TARGETS=${TARGETS:-}
export FUZZ_SEED=${SEED:-$(od -An -N8 -tu8 /dev/urandom | tr -d ' ')}
# Release by default: several times the executions of a debug build. --nocapture: the
# campaign prints its numbers.
profile=(--release)
[ "${RELEASE:-1}" = 0 ] && profile=()
log=$(mktemp /tmp/sonde-fuzz.XXXXXX)
status=0
cargo test "${profile[@]}" --test fuzz -- --ignored --exact campaign --nocapture >"$log" 2>&1 || status=$?
grep -E '^(seed|target|  finding|findings)|FINDING|panicked|^error' "$log" || true
git status --short fuzz/corpus | sed 's/^/new corpus file: /'
if [ "$status" -ne 0 ]; then
    echo "the campaign stopped with status $status (a hang stops it at once); full log: $log"
    exit "$status"
fi
rm -f "$log"
