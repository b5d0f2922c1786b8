# Sourced by bench scripts: a work folder removed at exit with the processes started into
# `pids`, and Debian packages installed when their commands are missing.
#
#   source "$root/bench/lib/common.sh"
#   bench_workdir kts-cost               # sets $work, empties pids, traps EXIT
#   bench_need kts_cost nginx wrk        # NAME (for the message) COMMAND…; installs as root

bench_workdir() { # NAME
  work=$(mktemp -d "/tmp/sonde-$1.XXXXXX")
  pids=()
  trap bench_cleanup EXIT
}

bench_cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}

bench_need() { # NAME COMMAND… (each command's Debian package has the same name)
  local name=$1 c need=()
  shift
  for c in "$@"; do command -v "$c" >/dev/null || need+=("$c"); done
  ((${#need[@]})) || return 0
  [[ $(id -u) -eq 0 ]] || { echo "$name: missing ${need[*]}; run as root to install" >&2; exit 2; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
}
