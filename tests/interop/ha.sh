#!/usr/bin/env bash
# HA pairs, for real: two sonde agents in one region (--replica a and b), a real Prometheus
# scraping both with the rules `sonde rules` generates, and a real Alertmanager receiving both
# agents' own alerts.
#
#   127.0.0.1:19293  Alertmanager (no clustering)
#   127.0.0.1:19295  a "target" sonde (its built-in configuration; only /-/healthy matters)
#   127.0.0.1:19296  agent, --region eu --replica a    } the same scenario, alerting to the
#   127.0.0.1:19297  agent, --region eu --replica b    } Alertmanager
#   127.0.0.1:19290  Prometheus: scrapes both agents every second, evaluates the generated rules
#
# 1. The target stops: both agents fail and both push the alert (each counts a delivery), and
#    Alertmanager holds exactly one alert — the pushes are identical, so it deduplicates.
#    Prometheus's generated rule fires once for the region, not once per replica.
# 2. Agent a is killed (SIGKILL). The alert stays, once. The target comes back: agent b resolves it.
# 3. From before the failure to past agent a's death, the region's series (`max by (scenario, region)`) has a sample at every
#    second Prometheus evaluated — no gap where agent a died — while agent a's own series stops
#    (which shows the query could have found a gap).
#
# Ports avoid the other scripts'. Needs root to install packages (skips otherwise when they are
# missing). Usage: bash tests/interop/ha.sh   (run.sh calls it)
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PATH:/usr/sbin:/sbin"
started=$(date +%s)

# --- packages -----------------------------------------------------------------------------------
missing=()
for pair in prometheus:prometheus prometheus-alertmanager:prometheus-alertmanager curl:curl jq:jq; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "SKIPPED: HA interop — ${missing[*]} missing and not root to install them" >&2
    exit 0
  fi
  echo "ha: installing ${missing[*]}"
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
work=$(mktemp -d "${TMPDIR:-/tmp}/sonde-ha.XXXXXX")
AM=127.0.0.1:19293
TARGET=127.0.0.1:19295
A=127.0.0.1:19296
B=127.0.0.1:19297
PROM=127.0.0.1:19290
for port in 19290 19293 19295 19296 19297; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "ha: port $port is taken — expected it free" >&2
    exit 1
  fi
done
am_pid="" target_pid="" a_pid="" b_pid="" prom_pid=""

stop() {
  local pid=$1
  [[ -n $pid ]] || return 0
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
}
cleanup() {
  local rc=$?
  stop "$a_pid"; stop "$b_pid"; stop "$target_pid"; stop "$prom_pid"; stop "$am_pid"
  if [[ $rc -eq 0 ]]; then
    rm -rf "$work"
  else
    echo "ha: FAILED; logs kept in $work" >&2
    tail -n 30 "$work"/*.log >&2 || true
  fi
  echo "ha: finished in $(($(date +%s) - started)) s (exit $rc)"
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
  echo "ha: timed out after ${secs}s waiting for $what" >&2
  return 1
}

# --- servers ------------------------------------------------------------------------------------
cat > "$work/am.yml" <<'YAML'
route: {receiver: "null", group_wait: 1s, group_interval: 1s}
receivers: [{name: "null"}]
YAML
prometheus-alertmanager --config.file="$work/am.yml" --storage.path="$work/am-data" \
  --web.listen-address="$AM" --cluster.listen-address= > "$work/alertmanager.log" 2>&1 &
am_pid=$!
wait_until "Alertmanager ready" 30 curl -sf "http://$AM/-/ready"

start_target() {
  (cd "$work" && exec "$sonde" serve --storage.path '' --listen "$TARGET") >> "$work/target.log" 2>&1 &
  target_pid=$!
  wait_until "the target sonde" 30 curl -sf "http://$TARGET/-/healthy"
}
start_target

cat > "$work/agent.yaml" <<YAML
agent:
  region: eu
  alerting:
    resend_interval: 1m   # endsAt 4 min ahead: within this test only a resolve ends the alert
    alertmanagers: [{url: "http://$AM"}]
YAML
cat > "$work/scenario.yaml" <<YAML
scenario: ha-target
interval: 500ms
timeout: 400ms
labels: {team: ha}
http: {url: "http://$TARGET/-/healthy"}
alert: {after: 2, resolve_after: 2, severity: page, summary: "{{ scenario }} down in {{ region }}"}
YAML
"$sonde" serve --storage.path '' -c "$work/agent.yaml" -c "$work/scenario.yaml" --replica a --listen "$A" > "$work/agent-a.log" 2>&1 &
a_pid=$!
"$sonde" serve --storage.path '' -c "$work/agent.yaml" -c "$work/scenario.yaml" --replica b --listen "$B" > "$work/agent-b.log" 2>&1 &
b_pid=$!
wait_until "agent a" 30 curl -sf "http://$A/-/ready"
wait_until "agent b" 30 curl -sf "http://$B/-/ready"

"$sonde" rules "$work/scenario.yaml" > "$work/rules.yml"
cat > "$work/prometheus.yml" <<YAML
global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: ["$work/rules.yml"]
scrape_configs:
  - job_name: sonde
    static_configs: [{targets: ["$A", "$B"]}]
YAML
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
  --web.listen-address="$PROM" > "$work/prometheus.log" 2>&1 &
prom_pid=$!
wait_until "Prometheus ready" 60 curl -sf -o /dev/null "http://$PROM/-/ready"

# query PROMQL → the result vector (JSON)
query() { curl -sf -G "http://$PROM/api/v1/query" --data-urlencode "query=$1" | jq -c '.data.result'; }
is() { [[ $(query "$2" | jq -r '.[0].value[1] // "none"') == "$1" ]]; }
wait_until "both replicas scraped, each with its replica label" 30 \
  is 2 'count(sonde_scenario_success{scenario="ha-target",region="eu",replica=~"a|b"})'
# Prometheus's own clock (its evaluation times), in whole seconds.
prom_now() { curl -sf -G "http://$PROM/api/v1/query" --data-urlencode 'query=time()' | jq -r '.data.result[1] | tonumber | floor'; }
from=$(($(prom_now) + 1)) # the first samples may be younger than the current whole second
sleep 3

# --- 1. the target stops: one alert ---------------------------------------------------------------
alerts() { curl -sf "http://$AM/api/v2/alerts"; }
ours() { alerts | jq '[.[] | select(.labels.scenario == "ha-target")]'; }
one_alert() {
  ours | jq -e 'length == 1 and .[0].labels == {"alertname": "SondeScenarioFailing",
    "scenario": "ha-target", "region": "eu", "severity": "page", "team": "ha"}'
}
# Whole page first: `curl | grep -q` can fail under pipefail by SIGPIPE.
delivered() { grep -q '^sonde_alert_deliveries_total{notifier="alertmanager-1"} [1-9]' <<<"$(curl -sf "http://$1/metrics")"; }
no_alert() { ours | jq -e 'length == 0'; }

no_alert >/dev/null || { echo "ha: an alert exists while the target is up: $(ours)" >&2; exit 1; }
stop "$target_pid"; target_pid=""
wait_until "agent a's push" 30 delivered "$A"
wait_until "agent b's push" 30 delivered "$B"
wait_until "the alert in Alertmanager" 30 one_alert
sleep 2
one_alert >/dev/null || { echo "ha: expected one alert, got: $(ours)" >&2; exit 1; }
echo "ha: target down → both replicas pushed, Alertmanager holds one alert: $(ours | jq -c '.[0].labels')"

firing='ALERTS{alertname="SondeScenarioFailing",alertstate="firing",scenario="ha-target"}'
wait_until "the generated rule firing" 30 is 1 "count($firing)"
sleep 3
is 1 "count($firing)" || { echo "ha: the rule fires per replica: $(query "$firing")" >&2; exit 1; }
echo "ha: the generated rule fires once for the region: $(query "$firing" | jq -c '.[0].metric')"

# --- 2. one replica dies --------------------------------------------------------------------------
kill -9 "$a_pid"; wait "$a_pid" 2>/dev/null || true; a_pid=""
killed=$(prom_now)
sleep 5
one_alert >/dev/null || { echo "ha: after agent a died: $(ours)" >&2; exit 1; }
is 1 "count($firing)" || { echo "ha: after agent a died the rule says: $(query "$firing")" >&2; exit 1; }
echo "ha: agent a killed → still one alert"
start_target
wait_until "agent b to resolve the alert" 30 no_alert
echo "ha: target back → agent b resolved it"
sleep 2
to=$((killed + 6)) # past the failover, and well before the end of what Prometheus has scraped

# --- 3. no gap in the region's series ------------------------------------------------------------
# range PROMQL → how many samples its one series has from $from to $to, a second apart
samples() {
  curl -sf -G "http://$PROM/api/v1/query_range" --data-urlencode "query=$1" \
    --data-urlencode "start=$from" --data-urlencode "end=$to" --data-urlencode "step=1" \
    | jq '[.data.result[0].values // [] | length] | .[0]'
}
want=$((to - from + 1))
region=$(samples 'max by (scenario, region) (sonde_scenario_success{scenario="ha-target",region="eu"})')
replica_a=$(samples 'sonde_scenario_success{scenario="ha-target",region="eu",replica="a"}')
echo "ha: [$from, $to] $want seconds from first samples to end (agent a killed after $((killed - from)) s):" \
  "the region's series has $region samples, agent a's own $replica_a"
if ((region != want)); then
  echo "ha: the region's series has a gap ($region of $want samples): $(curl -sf -G "http://$PROM/api/v1/query_range" \
    --data-urlencode 'query=max by (scenario, region) (sonde_scenario_success{scenario="ha-target",region="eu"})' \
    --data-urlencode "start=$from" --data-urlencode "end=$to" --data-urlencode "step=1" | jq -c '.data.result[0].values')" >&2
  exit 1
fi
if ((replica_a >= want)); then
  echo "ha: agent a's series did not stop when it died ($replica_a of $want): the gap check proves nothing" >&2
  exit 1
fi
echo "ha: passed"
