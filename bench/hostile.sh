#!/usr/bin/env bash
# Hostile targets (issue 2): how long past its deadline does each hostile probe end? Runs the
# hostile-target test (tests/hostile.rs) in release mode: never-answering, trickling,
# endless-body (with and without a size limit), redirect-loop, silent TCP and silent DNS targets,
# each with an 800 ms deadline, scheduled beside a healthy 200 ms scenario. Target: every
# timeout ends within deadline + 100 ms. Loopback only.
#   bash bench/hostile.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --release -q --test hostile -- --nocapture 2>&1 | grep -E '^hostile|test result'
