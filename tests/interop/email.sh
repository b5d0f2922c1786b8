#!/usr/bin/env bash
# E-mail alerts, for real: sonde's `type: email` notifier against aiosmtpd (Python's asyncio
# SMTP server, the one CPython's own docs point to), configured as a submission server:
# STARTTLS required before anything else (with the certificate servers.sh made for localhost),
# AUTH required and only over TLS. A sonde agent on 127.0.0.1:19097 probes a closed port, so
# its alert fires at once: the mail must arrive with the alert's subject, over TLS, from the
# authenticated user; a second notifier with a wrong password must be refused (a failure
# counted, not retried).
#
# Usage: bash tests/interop/email.sh WORKDIR   (WORKDIR: the folder servers.sh set up; run.sh
# calls it). Installs Debian's python3-aiosmtpd when missing and root (pip otherwise), skips
# loudly when neither is possible.
set -euo pipefail
cd "$(dirname "$0")/../.."
servers=${1:?usage: email.sh WORKDIR (of servers.sh)}
started=$(date +%s)

if ! python3 -c 'import aiosmtpd' 2>/dev/null; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends python3-aiosmtpd \
      || pip3 install -q aiosmtpd
  else
    pip3 install -q --user aiosmtpd || true
  fi
fi
if ! python3 -c 'import aiosmtpd' 2>/dev/null; then
  echo "SKIPPED: e-mail interop — aiosmtpd is not installed and could not be installed" >&2
  exit 0
fi

cargo build -q --bin sonde
sonde=$PWD/target/debug/sonde
work=$(mktemp -d "${TMPDIR:-/tmp}/sonde-email.XXXXXX")
SMTP_PORT=19025
AGENT=127.0.0.1:19097
for port in $SMTP_PORT 19097; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "email: port $port is taken — expected it free" >&2
    exit 1
  fi
done
smtp_pid="" agent_pid=""
stop() {
  local pid=$1
  [[ -n $pid ]] || return 0
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
}
cleanup() {
  local rc=$?
  stop "$agent_pid"; stop "$smtp_pid"
  if [[ $rc -eq 0 ]]; then
    rm -rf "$work"
  else
    echo "email: FAILED; logs kept in $work" >&2
    tail -n 30 "$work"/*.log >&2 || true
  fi
  echo "email: finished in $(($(date +%s) - started)) s (exit $rc)"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_until() {
  local what=$1 secs=$2
  shift 2
  for _ in $(seq 1 $((secs * 5))); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  echo "email: timed out after ${secs}s waiting for $what" >&2
  return 1
}

# --- aiosmtpd: STARTTLS required, AUTH required over TLS, each accepted mail as a JSON file ---
mkdir -p "$work/mail"
cat > "$work/smtpd.py" <<'PY'
import asyncio, json, os, ssl, sys
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

cert, key, port, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
USERS = {"alice": "interop-pw"}

def authenticator(server, session, envelope, mechanism, auth_data):
    ok = USERS.get(auth_data.login.decode()) == auth_data.password.decode()
    # handled=False: aiosmtpd then answers 535 itself (its default assumes the hook replied).
    return AuthResult(success=ok, handled=False, auth_data=auth_data)

class Handler:
    n = 0
    async def handle_DATA(self, server, session, envelope):
        Handler.n += 1
        with open(os.path.join(out, f"{Handler.n}.json"), "w") as f:
            json.dump({
                "from": envelope.mail_from, "to": envelope.rcpt_tos,
                "data": envelope.content.decode("utf-8", "replace"),
                "tls": session.ssl is not None,
                "user": session.auth_data.login.decode() if session.auth_data else None,
            }, f)
        return "250 Message accepted for delivery"

ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ctx.load_cert_chain(cert, key)
c = Controller(Handler(), hostname="127.0.0.1", port=port, server_hostname="localhost",
               tls_context=ctx, require_starttls=True, authenticator=authenticator,
               auth_required=True, auth_require_tls=True)
c.start()
print("smtpd: listening", flush=True)
try:
    asyncio.get_event_loop().run_until_complete(asyncio.Event().wait())
except KeyboardInterrupt:
    pass
PY
python3 "$work/smtpd.py" "$servers/pki/leaf.pem" "$servers/pki/leaf.key" "$SMTP_PORT" "$work/mail" \
  > "$work/smtpd.log" 2>&1 &
smtp_pid=$!
wait_until "aiosmtpd" 20 bash -c "exec 3<>/dev/tcp/127.0.0.1/$SMTP_PORT"

# --- a sonde agent whose scenario fails at once ----------------------------------------------
printf 'interop-pw\n' > "$work/smtp-password"
cat > "$work/agent.yaml" <<YAML
agent:
  region: interop
  alerting:
    notifiers:
      mail:
        type: email
        smarthost: localhost:$SMTP_PORT
        from: "sonde interop <sonde@example.com>"
        to: [ops@example.com]
        auth_username: alice
        auth_password_file: smtp-password
        tls_config: {ca_file: "$servers/pki/ca.pem"}
      badpw:
        type: email
        smarthost: localhost:$SMTP_PORT
        from: sonde@example.com
        to: ops@example.com
        auth_username: alice
        auth_password: wrong
        tls_config: {ca_file: "$servers/pki/ca.pem"}
YAML
# A port nothing listens on: the scenario fails (connect) on its first run.
closed=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$work/scenario.yaml" <<YAML
scenario: interop-mail
interval: 1s
tcp: {target: "127.0.0.1:$closed"}
alert: {after: 1, notify: [mail, badpw], summary: "{{ scenario }} down in {{ region }}"}
YAML
"$sonde" serve --storage.path '' -c "$work/agent.yaml" -c "$work/scenario.yaml" --listen "$AGENT" > "$work/agent.log" 2>&1 &
agent_pid=$!
wait_until "the agent" 30 curl -sf "http://$AGENT/-/ready"
wait_until "the alert mail" 30 test -s "$work/mail/1.json"
python3 - "$work/mail/1.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
assert m["tls"], "the mail came in clear"
assert m["user"] == "alice", m
assert m["from"] == "sonde@example.com" and m["to"] == ["ops@example.com"], m
assert "Subject: [FIRING] interop-mail down in interop" in m["data"], m["data"]
assert "scenario: interop-mail" in m["data"], m["data"]
print("email: the alert mail arrived over STARTTLS from alice")
PY
badpw_failed() {
  grep -q '^sonde_alert_delivery_failures_total{notifier="badpw"} 1' <<<"$(curl -sf "http://$AGENT/metrics")"
}
wait_until "the wrong password to be refused" 30 badpw_failed
if grep -q '^sonde_alert_delivery_retries_total{notifier="badpw"}' <<<"$(curl -sf "http://$AGENT/metrics")"; then
  echo "email: a 535 was retried" >&2
  exit 1
fi
if grep -q "interop-pw" "$work/agent.log"; then
  echo "email: the SMTP password is in sonde's log" >&2
  exit 1
fi
echo "email: wrong password refused (535), not retried; no password in the log"
