#!/usr/bin/env bash
# The Debian package, for real: build it with cargo-deb, `dpkg -i` it, start sonde.service's
# command line as systemd would (its User/Group, only CAP_NET_RAW as ambient capability, no new
# privileges, its StateDirectory and WorkingDirectory, its EnvironmentFile), check /-/ready, that
# the packaged default configuration's scenarios (HTTP and ICMP) pass, that ExecReload reloads,
# that SIGTERM stops it cleanly; `systemd-analyze verify` the unit where systemd is installed;
# then `dpkg -r` and `dpkg --purge` and check that nothing is left.
#
# Needs root (dpkg, a system user). Installs cargo-deb (`cargo install cargo-deb --locked`) and
# dpkg-dev (dpkg-shlibdeps, for the package's Depends) when missing. Called by run.sh; by hand:
#   bash tests/interop/package.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$HOME/.cargo/bin:$PATH:/usr/sbin:/sbin"
started=$(date +%s)

if [[ $(id -u) -ne 0 ]]; then
  echo "SKIPPED: package interop — needs root for dpkg -i (run as root, as CI does)" >&2
  exit 0
fi
if dpkg -s sonde >/dev/null 2>&1; then
  echo "package: FAIL: a sonde package is already installed here; this test installs and purges its own" >&2
  exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/sonde-package.XXXXXX")
pid=""
created_policy=""
cleanup() {
  local rc=$?
  if [[ -n $pid ]]; then kill -9 "$pid" 2>/dev/null || true; fi
  if dpkg -s sonde >/dev/null 2>&1; then dpkg --purge sonde >/dev/null 2>&1 || true; fi
  [[ -n $created_policy ]] && rm -f /usr/sbin/policy-rc.d
  if [[ $rc -eq 0 ]]; then
    rm -rf "$work"
  else
    echo "package: FAILED; files kept in $work" >&2
    tail -n 30 "$work/sonde.log" >&2 2>/dev/null || true
  fi
  echo "package: finished in $(($(date +%s) - started)) s (exit $rc)"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() { echo "package: FAIL: $*" >&2; exit 1; }
# wait_until DESCRIPTION SECONDS COMMAND... — polls every 0.5 s (a hang guard, not a timing check).
wait_until() {
  local what=$1 secs=$2; shift 2
  local deadline=$(($(date +%s) + secs))
  until "$@"; do
    (($(date +%s) < deadline)) || fail "hang guard: $what (not within ${secs}s)"
    sleep 0.5
  done
}

# A policy-rc.d that says 101 ("action forbidden") keeps the package's postinst from starting
# sonde.service on a host where systemd runs: this test starts the unit's command line itself.
if [[ ! -e /usr/sbin/policy-rc.d ]]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod 755 /usr/sbin/policy-rc.d
  created_policy=1
fi

# --- tools --------------------------------------------------------------------------------------
missing=()
for pair in dpkg-shlibdeps:dpkg-dev strip:binutils setpriv:util-linux curl:curl python3:python3; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
if ((${#missing[@]})); then
  echo "package: installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
if ! cargo deb --version >/dev/null 2>&1; then
  t=$(date +%s)
  cargo install cargo-deb --locked
  echo "package: cargo install cargo-deb --locked took $(($(date +%s) - t)) s"
fi

# --- build --------------------------------------------------------------------------------------
# By default the package holds the debug binary the interop suite has already built: what is
# under test is the package (files, unit, maintainer scripts), and a release build would add
# about 8 minutes on 2 cores to CI. SONDE_PACKAGE_RELEASE=1 packages a release build, as
# docs/deploy.md does.
target=${CARGO_TARGET_DIR:-$PWD/target}
t=$(date +%s)
if [[ ${SONDE_PACKAGE_RELEASE:-0} == 1 ]]; then
  cargo build --release --locked --bin sonde
  bin=$target/release/sonde
else
  cargo build --locked --bin sonde
  bin=$target/debug/sonde
  echo "package: packaging the debug build $bin (SONDE_PACKAGE_RELEASE=1 for a release build)"
fi
echo "package: cargo build took $(($(date +%s) - t)) s"
# cargo-deb takes the binary and generated assets from <target>/release/: a staging target dir.
stage=$work/target
assets=$stage/release/assets
mkdir -p "$assets/man" "$assets/completions"
cp "$bin" "$stage/release/sonde"
"$bin" man --dir "$assets/man"
"$bin" completions bash > "$assets/completions/sonde"
"$bin" completions zsh > "$assets/completions/_sonde"
"$bin" completions fish > "$assets/completions/sonde.fish"
# --strip: debug info (~250 MB in a debug build, line tables in a release one) stays out.
CARGO_TARGET_DIR=$stage cargo deb --no-build --locked --strip --fast --output "$work/sonde.deb" > "$work/cargo-deb.log" ||
  { cat "$work/cargo-deb.log"; fail "cargo deb failed (above)"; }
dpkg-deb --info "$work/sonde.deb" | sed -n '/Package:/,/Description:/p'

# --- install ------------------------------------------------------------------------------------
DEBIAN_FRONTEND=noninteractive dpkg -i "$work/sonde.deb"
for f in /usr/bin/sonde /etc/sonde/sonde.yaml /etc/default/sonde \
  /usr/share/bash-completion/completions/sonde /usr/share/zsh/vendor-completions/_sonde \
  /usr/share/fish/vendor_completions.d/sonde.fish; do
  [[ -e $f ]] || fail "$f is not installed"
done
unit=$(dpkg -L sonde | grep '/systemd/system/sonde\.service$') || fail "no sonde.service in the package"
dpkg -L sonde | grep -q '/usr/share/man/man1/sonde-serve\.1' || fail "no man page sonde-serve(1)"
getent passwd sonde >/dev/null || fail "postinst did not create the user sonde"
[[ $(dpkg-query -W -f='${Conffiles}' sonde) == *"/etc/sonde/sonde.yaml"* ]] ||
  fail "/etc/sonde/sonde.yaml is not a conffile (an upgrade would overwrite the admin's edits)"
echo "package: installed; unit $unit"

if command -v systemd-analyze >/dev/null 2>&1; then
  # Offline verification: unknown keys, bad values, missing executables (man pages: checked above).
  systemd-analyze verify --man=no "$unit" || fail "systemd-analyze verify rejects sonde.service (above)"
  echo "package: systemd-analyze verify: ok"
else
  echo "package: systemd-analyze not installed; the unit is checked by running its command line below"
fi

# --- run the unit's command line as systemd would -----------------------------------------------
key() { sed -n "s/^$1=//p" "$unit" | tail -n 1; }
[[ $(key User) == sonde && $(key Group) == sonde ]] || fail "the unit does not run as the user sonde"
[[ $(key AmbientCapabilities) == CAP_NET_RAW ]] || fail "AmbientCapabilities is not CAP_NET_RAW"
[[ $(key ProtectSystem) == strict ]] || fail "ProtectSystem is not strict"
state=/var/lib/$(key StateDirectory)
workdir=$(key WorkingDirectory)
[[ $workdir == "$state" ]] || fail "WorkingDirectory $workdir is not the StateDirectory $state"
install -d -o sonde -g sonde -m "$(key StateDirectoryMode)" "$state"

# The admin's edit this test makes: a free loopback port instead of 9115 (which may be taken),
# in /etc/default/sonde and in the default configuration's self-probe.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
sed -i "s/127\.0\.0\.1:9115/127.0.0.1:$port/" /etc/default/sonde /etc/sonde/sonde.yaml
env_file=$(key EnvironmentFile)
env_file=${env_file#-}
SONDE_ARGS=$(set -a; . "$env_file"; printf '%s' "$SONDE_ARGS")
exec_start=$(key ExecStart)
exec_start=${exec_start//\$SONDE_ARGS/$SONDE_ARGS}
read -r -a argv <<< "$exec_start"
echo "package: starting as sonde: ${argv[*]}"
(
  cd "$workdir"
  exec setpriv --reuid=sonde --regid=sonde --init-groups --no-new-privs \
    --inh-caps=-all,+net_raw --ambient-caps=-all,+net_raw --bounding-set=-all,+net_raw \
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME="$state" SONDE_ARGS="$SONDE_ARGS" "${argv[@]}"
) > "$work/sonde.log" 2>&1 &
pid=$!
base=http://127.0.0.1:$port
ready() { curl -fsS "$base/-/ready" >/dev/null 2>&1; }
wait_until "sonde /-/ready" 60 ready
[[ $(stat -c %U "/proc/$pid") == sonde ]] || fail "sonde does not run as the user sonde"
# CapAmb: only CAP_NET_RAW (bit 13).
amb=$(sed -n 's/^CapAmb:\s*//p' "/proc/$pid/status")
[[ $amb == 0000000000002000 ]] || fail "ambient capabilities are $amb, expected only CAP_NET_RAW (0000000000002000)"

passed() {
  curl -fsS "$base/metrics" > "$work/metrics.txt" 2>/dev/null || return 1
  grep -q '^sonde_scenario_success{scenario="sonde-self-http"[^}]*} 1$' "$work/metrics.txt" &&
    grep -q '^sonde_scenario_success{scenario="sonde-self-icmp"[^}]*} 1$' "$work/metrics.txt"
}
# The scenarios run every 10 s at a fixed offset each: both have run within 25 s.
if ! (deadline=$(($(date +%s) + 25)); until passed; do (($(date +%s) < deadline)) || exit 1; sleep 0.5; done); then
  grep '^sonde_scenario_success' "$work/metrics.txt" >&2 || true
  fail "the packaged default configuration's scenarios did not both pass (above)"
fi
echo "package: /-/ready ok; sonde-self-http and sonde-self-icmp pass as user sonde with CAP_NET_RAW only"

# The history store lives in the StateDirectory, written by the service's user.
stored() { grep -q '"success":true' <<<"$(curl -fsS "$base/api/v1/scenarios/sonde-self-http/runs?limit=1" 2>/dev/null)"; }
wait_until "a run in the history (--storage.path $state)" 20 stored
[[ $(stat -c %U "$state/history.db") == sonde ]] || fail "$state/history.db is not the user sonde's"
echo "package: the history store is $state/history.db, owned by sonde"

# ExecReload, with $MAINPID as systemd sets it.
reload_ts() { curl -fsS "$base/metrics" | sed -n 's/^sonde_config_last_reload_success_timestamp_seconds //p'; }
before=$(reload_ts)
sleep 1.1 # the reload timestamp has sub-second resolution; make the change unambiguous
exec_reload=$(key ExecReload)
exec_reload=${exec_reload//\$MAINPID/$pid}
read -r -a reload_argv <<< "$exec_reload"
"${reload_argv[@]}"
reloaded() { [[ $(reload_ts) != "$before" ]]; }
wait_until "the reload after ExecReload (${reload_argv[*]})" 20 reloaded
kill -0 "$pid" || fail "sonde exited on ExecReload"
echo "package: ExecReload (${reload_argv[*]}) reloaded the configuration"

kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
pid=""
[[ $rc -eq 0 ]] || fail "sonde exited with $rc on SIGTERM"

# --- remove, purge ------------------------------------------------------------------------------
dpkg -r sonde
[[ ! -e /usr/bin/sonde && ! -e $unit ]] || fail "dpkg -r left the binary or the unit"
[[ -e /etc/sonde/sonde.yaml ]] || fail "dpkg -r removed the conffile (only purge should)"
dpkg --purge sonde
for f in /etc/sonde /etc/default/sonde "$state" /usr/share/doc/sonde \
  /etc/systemd/system/multi-user.target.wants/sonde.service; do
  [[ ! -e $f ]] || fail "$f is left after dpkg --purge"
done
! dpkg -s sonde >/dev/null 2>&1 || fail "dpkg still knows the package after purge"
echo "package: dpkg -r and --purge left nothing behind (the system user sonde stays, as Debian packages do)"
