#!/usr/bin/env bash
# examples/grafana/ against real data: two sonde agents (regions r1, r2) probe the interop nginx
# with passing and failing scenarios (HTTPS with a certificate, a failing status, a closed port,
# a persistent session that cannot connect), a real Prometheus scrapes them and, blackbox-style,
# their /probe; then every dashboard variable and panel query is run against that Prometheus
# (grafana/check_dashboards.py): each must return series and none may error.
#
# Called by run.sh with the servers of servers.sh running (SONDE_INTEROP_* set); by hand it
# starts them itself: bash tests/interop/grafana.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PATH:/usr/sbin:/sbin"
started=$(date +%s)
work=$(mktemp -d "${TMPDIR:-/tmp}/sonde-grafana.XXXXXX")
pids=()
cleanup() {
  local rc=$?
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for f in "$work/nginx.pid" "$work/dnsmasq.pid"; do
    [[ -s $f ]] && kill "$(cat "$f")" 2>/dev/null || true
  done
  if [[ $rc -eq 0 ]]; then rm -rf "$work"; else
    echo "grafana: FAILED; files kept in $work" >&2
    tail -n 5 "$work"/*.log >&2 2>/dev/null || true
  fi
  echo "grafana: finished in $(($(date +%s) - started)) s (exit $rc)"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
fail() { echo "grafana: FAIL: $*" >&2; exit 1; }
# wait_until DESCRIPTION SECONDS COMMAND... — polls every 0.5 s (a hang guard, not a timing check).
wait_until() {
  local what=$1 secs=$2; shift 2
  local deadline=$(($(date +%s) + secs))
  until "$@"; do
    (($(date +%s) < deadline)) || fail "hang guard: $what (not within ${secs}s)"
    sleep 0.5
  done
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

command -v prometheus >/dev/null || fail "prometheus is not installed (run.sh installs it: apt-get install prometheus)"
if ! command -v python3 >/dev/null; then
  [[ $(id -u) -eq 0 ]] || fail "python3 is needed: apt-get install python3"
  DEBIAN_FRONTEND=noninteractive apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends python3
fi
if [[ -z ${SONDE_INTEROP_HTTPS:-} ]]; then
  bash tests/interop/servers.sh "$work"
  set -a; . "$work/env"; set +a
fi
cargo build -q --bin sonde
sonde=$PWD/target/debug/sonde
closed=$(free_port) # nothing listens there: connection refused

cat > "$work/scenarios.yaml" <<YAML
scenarios:
  - scenario: web-home
    interval: 2s
    http: {url: "http://$SONDE_INTEROP_HTTP/"}
    expect: {status: 200, body: {contains: hello}}
  - scenario: web-tls
    interval: 2s
    http: {url: "https://$SONDE_INTEROP_HTTPS/health", tls_config: {ca_file: "$SONDE_INTEROP_CA"}}
    expect: {status: 200, cert_expires_in: {gt: 1d}}
  - scenario: shop-flow              # fails at its second step: status
    interval: 2s
    steps:
      - name: home
        http: {url: "http://$SONDE_INTEROP_HTTP/"}
      - name: cart
        http: {url: "http://$SONDE_INTEROP_HTTP/missing"}
        expect: {status: 200}
  - scenario: closed-port            # fails: connect
    interval: 2s
    steps:
      - name: connect
        tcp: {target: "127.0.0.1:$closed"}
  - scenario: chat-session           # a persistent session that cannot connect
    interval: 2s
    session: persistent
    setup:
      - ws.connect: {as: a, url: "ws://127.0.0.1:$closed/chat"}
    steps:
      - name: send
        ws.send: {on: a, text: ping}
YAML
cat > "$work/modules.yaml" <<YAML
modules:
  http_2xx: {prober: http, timeout: 5s}
  https_ca:
    prober: http
    timeout: 5s
    http: {tls_config: {ca_file: "$SONDE_INTEROP_CA"}}
YAML

agent_ports=()
for region in r1 r2; do
  port=$(free_port)
  "$sonde" serve --storage.path '' -c "$work/scenarios.yaml" -c "$work/modules.yaml" --listen "127.0.0.1:$port" \
    --region "$region" > "$work/sonde-$region.log" 2>&1 &
  pids+=($!)
  agent_ports+=("$port")
done
a1=127.0.0.1:${agent_ports[0]}
a2=127.0.0.1:${agent_ports[1]}

prom_port=$(free_port)
cat > "$work/prometheus.yml" <<YAML
global: {scrape_interval: 2s, scrape_timeout: 2s}
scrape_configs:
  - job_name: sonde
    static_configs: [{targets: ["$a1", "$a2"]}]
  - job_name: blackbox-http            # Prometheus' usual blackbox relabelling, sonde as prober
    metrics_path: /probe
    params: {module: [http_2xx]}
    static_configs:
      - targets: ["http://$SONDE_INTEROP_HTTP/", "http://127.0.0.1:$closed/"]
    relabel_configs: &bb
      - {source_labels: [__address__], target_label: __param_target}
      - {source_labels: [__param_target], target_label: instance}
      - {target_label: __address__, replacement: "$a1"}
  - job_name: blackbox-tls
    metrics_path: /probe
    params: {module: [https_ca]}
    static_configs: [{targets: ["https://$SONDE_INTEROP_HTTPS/"]}]
    relabel_configs: *bb
YAML
promtool check config "$work/prometheus.yml" >/dev/null || fail "promtool rejects the test's prometheus.yml"
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
  --web.listen-address="127.0.0.1:$prom_port" > "$work/prometheus.log" 2>&1 &
pids+=($!)
prom=http://127.0.0.1:$prom_port

has() {
  local out
  out=$(curl -fsS --get "$prom/api/v1/query" --data-urlencode "query=$1" 2>/dev/null) || return 1
  python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin)["data"]["result"] else 1)' <<< "$out"
}
# Data for every kind of panel: rates need two scrapes of counters that moved.
for q in 'count(sonde_scenario_success) >= 10' 'rate(sonde_scenario_runs_total{result="failure"}[1m]) > 0' \
  'sonde_tls_cert_not_after_seconds' 'sonde_session_connected' 'probe_ssl_earliest_cert_expiry' \
  'count(probe_success) >= 3' 'rate(sonde_scheduler_lag_seconds_count[1m]) > 0'; do
  wait_until "Prometheus has $q" 90 has "$q"
done
python3 tests/interop/grafana/check_dashboards.py "$prom" examples/grafana
