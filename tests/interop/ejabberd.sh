#!/usr/bin/env bash
# IM over raw TCP against a real XMPP server: Debian's ejabberd on 127.0.0.1:15222 (c2s,
# STARTTLS required, SASL PLAIN, users alice and bob), a CA generated here.
#
# `sonde run tests/interop/xmpp/` logs alice and bob in over raw TCP — stream header, STARTTLS
# mid-session, SASL PLAIN, resource bind, presence — with one reusable step group used twice,
# then alice sends bob a message carrying the run's id and bob must receive exactly that one.
# A second run with bob's password wrong must fail at bob's login, in the group's step, with the
# server's answer in the report.
#
# Needs root (packages; ejabberd runs as its own user). Usage: bash tests/interop/ejabberd.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PATH:/usr/sbin:/sbin"
started=$(date +%s)

if ! command -v ejabberdctl >/dev/null 2>&1; then
  if [[ $(id -u) -ne 0 ]]; then
    echo "SKIPPED: ejabberd interop — ejabberd missing and not root to install it" >&2
    exit 0
  fi
  echo "ejabberd: installing ejabberd"
  created_policy=""
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    # Keep the package from starting its system service (which would also take ports).
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    created_policy=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends ejabberd openssl
  [[ -n $created_policy ]] && rm -f /usr/sbin/policy-rc.d
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "SKIPPED: ejabberd interop — ejabberdctl must run as root or the ejabberd user" >&2
  exit 0
fi

cargo build -q --bin sonde
sonde=$PWD/target/debug/sonde
PORT=15222
if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
  echo "ejabberd: port $PORT is taken — expected it free" >&2
  exit 1
fi
# ejabberd runs as its own user: its folder must be reachable by it.
work=$(mktemp -d /tmp/sonde-ejabberd.XXXXXX)
chmod 755 "$work"
node="sonde$$@localhost"
ctl() { ejabberdctl --config-dir "$work/etc" --logs "$work/log" --spool "$work/spool" --node "$node" "$@"; }
cleanup() {
  local rc=$?
  ctl stop >/dev/null 2>&1 || true
  for _ in $(seq 1 50); do ctl status >/dev/null 2>&1 || break; sleep 0.2; done
  if [[ $rc -eq 0 ]]; then
    rm -rf "$work"
  else
    echo "ejabberd: FAILED; files kept in $work" >&2
    tail -n 30 "$work"/log/*.log >&2 || true
  fi
  echo "ejabberd: finished in $(($(date +%s) - started)) s (exit $rc)"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- certificates and configuration -------------------------------------------------------------
mkdir -p "$work/etc" "$work/log" "$work/spool"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=sonde interop CA" \
  -keyout "$work/ca.key" -out "$work/ca.pem" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=sonde.test" \
  -keyout "$work/server.key" -out "$work/server.csr" 2>/dev/null
printf 'subjectAltName=DNS:sonde.test\n' > "$work/ext"
openssl x509 -req -in "$work/server.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" \
  -CAcreateserial -days 2 -extfile "$work/ext" -out "$work/server.crt" 2>/dev/null
cat "$work/server.crt" "$work/server.key" > "$work/etc/server.pem"
cat > "$work/etc/ejabberd.yml" <<YAML
hosts: [sonde.test]
loglevel: info
certfiles: ["$work/etc/server.pem"]
listen:
  - port: $PORT
    ip: "127.0.0.1"
    module: ejabberd_c2s
    starttls_required: true
auth_method: internal
acl:
  local: {user_regexp: ""}
access_rules:
  local: {allow: local}
  c2s: {allow: all}
modules:
  mod_disco: {}
  mod_ping: {}
  mod_roster: {}
YAML
printf 'ERL_OPTIONS="-env ERL_CRASH_DUMP_BYTES 0"\nEJABBERD_PID_PATH=%s/ejabberd.pid\n' "$work" \
  > "$work/etc/ejabberdctl.cfg"
cp /etc/ejabberd/inetrc "$work/etc/"
chown -R ejabberd: "$work"

ctl start
for _ in $(seq 1 150); do ctl status >/dev/null 2>&1 && break; sleep 0.2; done
ctl status
for _ in $(seq 1 50); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.2; done
ctl register alice sonde.test alice-secret-pw
ctl register bob sonde.test bob-secret-pw
echo "ejabberd: up on 127.0.0.1:$PORT with alice and bob"

# --- sonde ----------------------------------------------------------------------------------------
export SONDE_XMPP_ADDR=127.0.0.1:$PORT SONDE_XMPP_CA_FILE=$work/ca.pem
export SONDE_XMPP_ALICE_PASSWORD=alice-secret-pw SONDE_XMPP_BOB_PASSWORD=bob-secret-pw
"$sonde" run tests/interop/xmpp/ --json "$work/pass.json" > "$work/pass.txt" 2>&1 || {
  echo "ejabberd: the round trip failed:" >&2
  cat "$work/pass.txt" >&2
  exit 1
}
echo "ejabberd: alice → bob delivered over raw TCP + STARTTLS + SASL PLAIN"
if grep -q -e alice-secret-pw -e bob-secret-pw "$work/pass.json" "$work/pass.txt"; then
  echo "ejabberd: a password is in the report" >&2
  exit 1
fi

export SONDE_XMPP_BOB_PASSWORD=wrong-password
if "$sonde" run tests/interop/xmpp/ --json "$work/fail.json" > "$work/fail.txt" 2>&1; then
  echo "ejabberd: a wrong password passed" >&2
  exit 1
fi
grep -q 'not-authorized' "$work/fail.json" || {
  echo "ejabberd: the failure does not carry the server's answer:" >&2
  cat "$work/fail.txt" >&2
  exit 1
}
jq -e '[.. | objects | select(.failed_step? != null) | .failed_step] | any(startswith("xmpp_login[bob]"))' \
  "$work/fail.json" >/dev/null || {
  echo "ejabberd: the failure is not at bob's login:" >&2
  cat "$work/fail.txt" >&2
  exit 1
}
echo "ejabberd: a wrong password fails at bob's login with the server's not-authorized"
