#!/usr/bin/env bash
# The interop suite: the sonde binary against REAL third-party servers — Debian's nginx (HTTP,
# HTTPS + HTTP/2 with a generated CA), dnsmasq (DNS records for sonde.test) and caddy (HTTP/3
# over QUIC, installed by servers.sh; checked by http3.sh) on loopback ports —
# `promtool check metrics` on sonde's /metrics, and the blackbox parity suite (parity.rs) beside
# Debian's prometheus-blackbox-exporter, which the test itself starts on a loopback port, and
# Debian's mosquitto (MQTT over TCP, TLS and WebSocket, password auth) for the mqtt steps. Called by .ci/run (as root, on a fresh Debian
# 12); also fine by hand once the packages are installed.
#
#   1. install nginx, dnsmasq-base, prometheus (promtool), prometheus-blackbox-exporter, mosquitto,
#      openssl, curl if any is missing, without letting the packages start system services;
#   2. start the servers (servers.sh) in a fresh temporary folder, stopped again on any exit;
#      then regions.sh, alerting.sh, ejabberd.sh (XMPP over raw TCP), ha.sh (HA pairs), grafana.sh
#      (dashboards), kubernetes.sh (manifests), package.sh (the .deb) and status_page.sh (the status
#      page in headless Chromium, screenshots in tests/interop/screenshots/), each of which installs
#      what else it needs;
#   3. cargo test --test interop -- --ignored  (the tests read SONDE_INTEROP_* from servers.sh).
# Exit code: cargo's.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PATH:/usr/sbin:/sbin"
started=$(date +%s)

work=""
created_policy=""
cleanup() {
  local rc=$?
  if [[ -n $work ]]; then
    for f in "$work/nginx.pid" "$work/dnsmasq.pid" "$work/mosquitto.pid" "$work/caddy.pid"; do
      [[ -s $f ]] || continue
      pid=$(cat "$f")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
    done
    if [[ $rc -eq 0 ]]; then
      rm -rf "$work"
    else
      echo "interop: servers' files and logs kept in $work" >&2
    fi
  fi
  if [[ -n $created_policy ]]; then
    rm -f /usr/sbin/policy-rc.d
  fi
  echo "interop: finished in $(($(date +%s) - started)) s (exit $rc)"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- 1. packages ------------------------------------------------------------------------------
missing=()
for cmd in nginx dnsmasq promtool openssl curl prometheus-blackbox-exporter mosquitto mosquitto_passwd; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("$cmd")
done
if ((${#missing[@]})); then
  echo "interop: missing ${missing[*]}; installing Debian's packages"
  if [[ $(id -u) -ne 0 ]]; then
    echo "interop: run as root to install packages, or: apt-get install nginx dnsmasq-base prometheus prometheus-blackbox-exporter mosquitto openssl curl" >&2
    exit 2
  fi
  # A policy-rc.d that says 101 ("action forbidden") keeps the packages' maintainer scripts from
  # starting nginx, dnsmasq, prometheus, blackbox_exporter or mosquitto as services (which would
  # also take ports: blackbox's is 9115, sonde's default; mosquitto's 1883).
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    created_policy=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends nginx dnsmasq-base prometheus \
    prometheus-blackbox-exporter mosquitto openssl curl
fi

# --- 2. servers -------------------------------------------------------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/sonde-interop.XXXXXX")
bash tests/interop/servers.sh "$work"
set -a
# shellcheck disable=SC1091
. "$work/env"
set +a
echo "interop: servers up ($(tr '\n' ' ' < "$work/env"))"

bash tests/interop/regions.sh  # many regions: network namespaces, real Prometheus, remote_write
bash tests/interop/alerting.sh # a real Alertmanager receiving sonde's alerts; promtool on `sonde rules`
bash tests/interop/ejabberd.sh # IM over raw TCP: two users log in to ejabberd (STARTTLS, SASL PLAIN) with a step group
bash tests/interop/ha.sh       # an HA pair: one alert in Alertmanager and Prometheus, no gap when one dies
bash tests/interop/email.sh "$work" # e-mail alerts to aiosmtpd: STARTTLS, AUTH, a refused password
bash tests/interop/web_config.sh # --web.config.file: curl and a real Prometheus over HTTPS + basic auth + client cert
bash tests/interop/grafana.sh  # every Grafana dashboard query against a real Prometheus scraping sonde
bash tests/interop/kubernetes.sh # deploy/kubernetes/ against the Kubernetes and Prometheus Operator schemas
bash tests/interop/package.sh  # the .deb: dpkg -i, the unit's command line, /-/ready, reload, purge
bash tests/interop/http3.sh "$work" # HTTP/3 against caddy: blackbox module and scenario step, phases, 10-day expiry
bash tests/interop/status_page.sh # the status page in headless Chromium; the region grid against Prometheus
# --- 3. tests ---------------------------------------------------------------------------------
# --nocapture so that SKIPPED: lines (e.g. ICMP without permission) are seen, not swallowed.
set +e
cargo test --test interop -- --ignored --test-threads=1 --nocapture
rc=$?
set -e
exit $rc
