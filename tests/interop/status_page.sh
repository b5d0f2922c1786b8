#!/usr/bin/env bash
# The status page in a real browser: Debian's headless chromium driven through chromium-driver
# (WebDriver) by selenium (PyPI, pinned, in target/interop/status-venv, reused). Two agents
# (regions r1 and r2) probe fixture targets on loopback — passing (sonde's own endpoints),
# failing (a closed port), flapping (flap.py: two 200s, two 503s) — r1 with the in-memory
# history and a public listener, r2 with the SQLite store; a real Prometheus scrapes both, and
# r1's region grid must show the numbers PromQL gives. Screenshots are kept in
# tests/interop/screenshots/ (gitignored; CI keeps them as artifacts).
# Called by run.sh; by hand: bash tests/interop/status_page.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PATH:/usr/sbin:/sbin"
started=$(date +%s)
work=$(mktemp -d "${TMPDIR:-/tmp}/sonde-status-page.XXXXXX")
shots=$PWD/tests/interop/screenshots
venv=${CARGO_TARGET_DIR:-$PWD/target}/interop/status-venv
pins=(selenium==4.27.1)
pids=()
cleanup() {
  local rc=$?
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  if [[ $rc -eq 0 ]]; then rm -rf "$work"; else
    echo "status-page: FAILED; files kept in $work" >&2
    tail -n 5 "$work"/*.log >&2 2>/dev/null || true
  fi
  echo "status-page: screenshots in $shots"
  echo "status-page: finished in $(($(date +%s) - started)) s (exit $rc)"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
fail() { echo "status-page: FAIL: $*" >&2; exit 1; }
wait_until() {
  local what=$1 secs=$2; shift 2
  local deadline=$(($(date +%s) + secs))
  until "$@"; do
    (($(date +%s) < deadline)) || fail "hang guard: $what (not within ${secs}s)"
    sleep 0.5
  done
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# --- packages: chromium, its WebDriver, python3-venv, prometheus ------------------------------
need=()
command -v chromium >/dev/null || need+=(chromium)
command -v chromedriver >/dev/null || need+=(chromium-driver)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need+=(python3-venv)
command -v prometheus >/dev/null || need+=(prometheus)
if ((${#need[@]})); then
  [[ $(id -u) -eq 0 ]] || fail "run as root to install ${need[*]} (apt-get install ${need[*]})"
  echo "status-page: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${need[@]}"
fi
if [[ ! -f $venv/pins ]] || [[ $(cat "$venv/pins") != "${pins[*]}" ]]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --disable-pip-version-check --progress-bar off "${pins[@]}" > "$work/pip.log" 2>&1 ||
    { tail -n 20 "$work/pip.log"; fail "pip install ${pins[*]} failed (above)"; }
  echo "${pins[*]}" > "$venv/pins"
fi

cargo build -q --bin sonde
sonde=$PWD/target/debug/sonde
closed=$(free_port)

ports=()
for _ in 1 2 3 4; do ports+=("$(free_port)"); done
r1=127.0.0.1:${ports[0]}; r2=127.0.0.1:${ports[1]}; pub=127.0.0.1:${ports[2]}; prom=127.0.0.1:${ports[3]}
# Hostile values where a page shows them: a group with markup, a tag with an onerror, an
# expectation (and so a failure message) with a script.
for region in r1 r2; do
  self=$([[ $region == r1 ]] && echo "$r1" || echo "$r2")
  # A flapping target per agent: flap.py counts requests, and its pattern is the test's truth.
  flap=$(free_port)
  python3 tests/interop/status_page/flap.py "$flap" > "$work/flap-$region.log" 2>&1 &
  pids+=($!)
  cat > "$work/$region.yaml" <<YAML
scenarios:
  - scenario: api-health
    interval: 1s
    group: Core API
    public: true
    tags: [api]
    steps:
      - name: health
        http: {url: "http://$self/-/healthy"}
      - name: metrics
        http: {url: "http://$self/metrics"}
  - scenario: flappy
    interval: 1s
    group: Core API
    public: true
    http: {url: "http://127.0.0.1:$flap/"}
  - scenario: db/primary
    interval: 1s
    group: "Data <b>stores</b>"
    tags: ["<img src=x onerror=alert(1)>"]
    steps:
      - name: "connect<script>window.__xss=1</script>"
        tcp: {target: "127.0.0.1:$closed"}
  - scenario: marked-up
    interval: 2s
    group: "Data <b>stores</b>"
    http: {url: "http://$self/-/healthy"}
    expect: {body: {contains: "<script>window.__xss=1</script>"}}
YAML
done
"$sonde" serve -c "$work/r1.yaml" --listen "$r1" --region r1 --storage.path '' \
  --web.public-listen-address "$pub" --status.prometheus-url "http://$prom" > "$work/sonde-r1.log" 2>&1 &
pids+=($!)
"$sonde" serve -c "$work/r2.yaml" --listen "$r2" --region r2 --storage.path "$work/store" \
  > "$work/sonde-r2.log" 2>&1 &
pids+=($!)

cat > "$work/prometheus.yml" <<YAML
global: {scrape_interval: 1s, scrape_timeout: 1s}
scrape_configs:
  - job_name: sonde
    static_configs: [{targets: ["$r1", "$r2"]}]
YAML
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
  --web.listen-address="$prom" > "$work/prometheus.log" 2>&1 &
pids+=($!)

series() {
  curl -sf "http://$prom/api/v1/query?query=count(count_over_time(sonde_scenario_success%5B1h%5D)%3E%3D8)" |
    grep -q '"value":\[[0-9.]*,"8"\]'
}
wait_until "Prometheus has 8 sonde_scenario_success series with 8 samples each" 90 series
# The store writes once a second; let flappy flap a few times more.
sleep 3

mkdir -p "$shots"
rm -f "$shots"/*.png
"$venv/bin/python" tests/interop/status_page/browser.py "http://$r1" "http://$r2" "http://$pub" \
  "http://$prom" "$shots" || fail "browser checks (above)"
echo "status-page: every browser check passed"
