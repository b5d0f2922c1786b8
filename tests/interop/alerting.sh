#!/usr/bin/env bash
# Alerting, for real: Debian's prometheus-alertmanager and promtool against sonde.
#
# 1. Alertmanager on 127.0.0.1:19093 (no clustering). A sonde "target" on 127.0.0.1:19095 (its
#    built-in configuration; only its /-/healthy matters) and a sonde agent on 127.0.0.1:19096
#    probing it, with an agent settings document that sends alerts to the Alertmanager.
#    Stopping the target makes the alert appear in GET /api/v2/alerts with the right labels;
#    starting it again resolves it (it leaves the active alerts).
# 2. `sonde rules` on the shipped scenarios: `promtool check rules`, then `promtool test rules`
#    with expectations written here for the shipped alert: blocks.
#
# Ports avoid servers.sh (18080/18443/15353). Needs root to install packages (skips otherwise
# when they are missing). Usage: bash tests/interop/alerting.sh   (run.sh calls it)
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PATH:/usr/sbin:/sbin"
started=$(date +%s)

# --- packages -----------------------------------------------------------------------------------
missing=()
for pair in prometheus-alertmanager:prometheus-alertmanager promtool:prometheus curl:curl jq:jq; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "SKIPPED: alerting interop — ${missing[*]} missing and not root to install them" >&2
    exit 0
  fi
  echo "alerting: installing ${missing[*]}"
  created_policy=""
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    # Keep the packages from starting system services (which would also take ports).
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    created_policy=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(printf '%s\n' "${missing[@]}" | sort -u)
  [[ -n $created_policy ]] && rm -f /usr/sbin/policy-rc.d
fi

cargo build -q --bin sonde
sonde=$PWD/target/debug/sonde
work=$(mktemp -d "${TMPDIR:-/tmp}/sonde-alerting.XXXXXX")
AM=127.0.0.1:19093
TARGET=127.0.0.1:19095
AGENT=127.0.0.1:19096
for port in 19093 19095 19096; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "alerting: port $port is taken — expected it free" >&2
    exit 1
  fi
done
am_pid="" target_pid="" agent_pid=""

stop() {
  local pid=$1
  [[ -n $pid ]] || return 0
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
}
cleanup() {
  local rc=$?
  stop "$agent_pid"; stop "$target_pid"; stop "$am_pid"
  if [[ $rc -eq 0 ]]; then
    rm -rf "$work"
  else
    echo "alerting: FAILED; logs kept in $work" >&2
    tail -n 30 "$work"/*.log >&2 || true
  fi
  echo "alerting: finished in $(($(date +%s) - started)) s (exit $rc)"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_until WHAT SECONDS COMMAND...
wait_until() {
  local what=$1 secs=$2
  shift 2
  for _ in $(seq 1 $((secs * 5))); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  echo "alerting: timed out after ${secs}s waiting for $what" >&2
  return 1
}

# --- 1. Alertmanager ----------------------------------------------------------------------------
cat > "$work/am.yml" <<'YAML'
route: {receiver: "null", group_wait: 1s, group_interval: 1s}
receivers: [{name: "null"}]
YAML
prometheus-alertmanager --config.file="$work/am.yml" --storage.path="$work/am-data" \
  --web.listen-address="$AM" --cluster.listen-address= > "$work/alertmanager.log" 2>&1 &
am_pid=$!
wait_until "Alertmanager ready" 30 curl -sf "http://$AM/-/ready"

start_target() {
  # No -c and no ./sonde.yaml in $work: the built-in configuration.
  (cd "$work" && exec "$sonde" serve --storage.path '' --listen "$TARGET") >> "$work/target.log" 2>&1 &
  target_pid=$!
  wait_until "the target sonde" 30 curl -sf "http://$TARGET/-/healthy"
}
start_target

cat > "$work/agent.yaml" <<YAML
agent:
  region: interop
  alerting:
    resend_interval: 1m   # endsAt 4 min ahead: within this test only sonde's resolve ends it
    alertmanagers: [{url: "http://$AM"}]
YAML
cat > "$work/scenario.yaml" <<YAML
scenario: interop-target
interval: 500ms
timeout: 400ms
labels: {team: interop}
http: {url: "http://$TARGET/-/healthy"}
alert: {after: 2, resolve_after: 2, severity: page, summary: "{{ scenario }} down in {{ region }}"}
YAML
"$sonde" serve --storage.path '' -c "$work/agent.yaml" -c "$work/scenario.yaml" --listen "$AGENT" > "$work/agent.log" 2>&1 &
agent_pid=$!
wait_until "the agent" 30 curl -sf "http://$AGENT/-/ready"

alerts() { curl -sf "http://$AM/api/v2/alerts"; }
our_alert() {
  alerts | jq -e '[.[] | select(.labels.alertname == "SondeScenarioFailing"
    and .labels.scenario == "interop-target" and .labels.region == "interop"
    and .labels.severity == "page" and .labels.team == "interop"
    and .annotations.summary == "interop-target down in interop"
    and (.generatorURL | endswith("/api/v1/scenarios/interop-target")))] | length == 1'
}
no_alert() { alerts | jq -e '[.[] | select(.labels.scenario == "interop-target")] | length == 0'; }

# Passing: no alert.
sleep 2
no_alert >/dev/null || { echo "alerting: an alert exists while the target is up: $(alerts)" >&2; exit 1; }
echo "alerting: target up, no alert"

stop "$target_pid"; target_pid=""
wait_until "the alert in Alertmanager" 30 our_alert
echo "alerting: target down → alert active in Alertmanager: $(alerts | jq -c '.[0].labels')"

start_target
wait_until "the alert to resolve" 30 no_alert
echo "alerting: target back → alert resolved"
# Read the whole page first: `curl | grep -q` fails under pipefail when grep quits before curl
# has written everything (SIGPIPE), which a loaded CI machine hits.
agent_metrics=$(curl -sf "http://$AGENT/metrics")
grep -q '^sonde_alert_deliveries_total{notifier="alertmanager-1"} [1-9]' <<<"$agent_metrics" \
  || { echo "alerting: deliveries not counted: $(grep '^sonde_alert_' <<<"$agent_metrics")" >&2; exit 1; }

# --- 2. generated rules -------------------------------------------------------------------------
"$sonde" rules scenarios/ examples/sonde.yaml > "$work/rules.yml"
promtool check rules "$work/rules.yml"
cat > "$work/rules.test.yml" <<'YAML'
rule_files: [rules.yml]
evaluation_interval: 15s
tests:
  # example-http (interval 15s, after 3 → for 45s) fails in eu-west from 15s on.
  - interval: 15s
    input_series:
      - series: 'sonde_scenario_success{scenario="example-http",region="eu-west",team="web"}'
        values: '1 0x20'
      - series: 'sonde_scenario_success{scenario="example-http",region="us-east",team="web"}'
        values: '1x20'
    alert_rule_test:
      - eval_time: 45s
        alertname: SondeScenarioFailing
        exp_alerts: []
      - eval_time: 2m
        alertname: SondeScenarioFailing
        exp_alerts:
          - exp_labels: {scenario: example-http, region: eu-west, team: web, severity: page}
            exp_annotations:
              summary: "example-http fails in eu-west"
              description: "The scenario's runs fail."
              runbook_url: "https://runbooks.example/example-http"
  # shop-frontend (interval 20s, after 2 → for 40s, min_failing 2): one region alone never
  # fires; two do.
  - interval: 20s
    input_series:
      - series: 'sonde_scenario_success{scenario="shop-frontend",region="eu-west",team="web",tier="1"}'
        values: '0x20'
      - series: 'sonde_scenario_success{scenario="shop-frontend",region="us-east",team="web",tier="1"}'
        values: '1x5 0x15'
    alert_rule_test:
      - eval_time: 100s
        alertname: SondeScenarioFailingInManyRegions
        exp_alerts: []
      - eval_time: 5m
        alertname: SondeScenarioFailingInManyRegions
        exp_alerts:
          - exp_labels: {scenario: shop-frontend, severity: page, team: web, tier: "1"}
            exp_annotations:
              summary: "shop-frontend fails in 2 regions"
              description: "The scenario's runs fail."
YAML
(cd "$work" && promtool test rules rules.test.yml)
echo "alerting: generated rules pass promtool check and test"
