#!/usr/bin/env bash
# --web.config.file as a hardened blackbox_exporter install uses it, against real clients: a PKI
# made with openssl, a bcrypt hash made with htpasswd (Apache's), sonde serving TLS with a
# required client certificate and basic auth; then
#   - curl with each variant: the right credentials and certificate (200, HTTP/1.1 and HTTP/2),
#     a wrong password and an unknown user (401), no client certificate and one from another CA
#     (no TLS session), plain HTTP (400, Go's words);
#   - promtool check metrics on the /metrics fetched over HTTPS (the process_* family included);
#   - a real Prometheus scraping sonde over HTTPS with basic auth and a client certificate
#     (up 1, process_* and sonde_build_info arrive, and a blackbox-style /probe job works), while
#     its jobs with a wrong password, without a client certificate and over plain HTTP are down;
#   - --web.systemd-socket under systemd-socket-activate: both passed sockets served.
#
# Called by run.sh; by hand: bash tests/interop/web_config.sh (as root if packages are missing).
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PATH:/usr/sbin:/sbin"
started=$(date +%s)
work=$(mktemp -d "${TMPDIR:-/tmp}/sonde-webcfg.XXXXXX")
pids=()
cleanup() {
  local rc=$?
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  if [[ $rc -eq 0 ]]; then rm -rf "$work"; else
    echo "web_config: FAILED; files kept in $work" >&2
    tail -n 20 "$work"/*.log >&2 2>/dev/null || true
  fi
  echo "web_config: finished in $(($(date +%s) - started)) s (exit $rc)"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
fail() { echo "web_config: FAIL: $*" >&2; exit 1; }
ok() { echo "web_config: ok: $*"; }
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

missing=()
for cmd in prometheus promtool curl openssl htpasswd python3; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("$cmd")
done
if ((${#missing[@]})); then
  [[ $(id -u) -eq 0 ]] || fail "missing ${missing[*]}: apt-get install prometheus openssl curl apache2-utils python3"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends prometheus openssl curl apache2-utils python3
fi
cargo build -q --bin sonde
sonde=$PWD/target/debug/sonde

# --- PKI: a CA for the server and its clients, and a stranger's CA -----------------------------
pki=$work/pki
mkdir -p "$pki"
(
  cd "$pki"
  for ca in ca other; do
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
      -subj "/CN=sonde interop $ca" -keyout "$ca.key" -out "$ca.crt" 2>/dev/null
  done
  leaf() { # NAME CA EXT
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$1" \
      -keyout "$1.key" -out "$1.csr" 2>/dev/null
    printf '%s\n' "$3" > "$1.ext"
    openssl x509 -req -in "$1.csr" -CA "$2.crt" -CAkey "$2.key" -CAcreateserial -days 10 \
      -extfile "$1.ext" -out "$1.crt" 2>/dev/null
  }
  leaf server ca "subjectAltName=IP:127.0.0.1,DNS:localhost
extendedKeyUsage=serverAuth"
  leaf client ca "subjectAltName=DNS:prometheus.interop
extendedKeyUsage=clientAuth"
  leaf stranger other "subjectAltName=DNS:prometheus.interop
extendedKeyUsage=clientAuth"
)
password='interop-Scrape-7733'
hash=$(htpasswd -nbBC 10 "" "$password" | tr -d ':\n')
[[ $hash == '$2y$10$'* ]] || fail "htpasswd made no bcrypt hash: $hash"

cat > "$work/web.yml" <<YAML
tls_server_config:
  cert_file: pki/server.crt
  key_file: pki/server.key
  client_ca_file: pki/ca.crt
  client_auth_type: RequireAndVerifyClientCert
  min_version: TLS12
http_server_config:
  http2: true
  headers:
    Strict-Transport-Security: max-age=31536000; includeSubDomains
    X-Content-Type-Options: nosniff
basic_auth_users:
  prometheus: '$hash'
YAML
cat > "$work/blackbox.yml" <<YAML
modules:
  tcp_connect:
    prober: tcp
    timeout: 2s
YAML
"$sonde" check "$work/blackbox.yml" --web.config.file "$work/web.yml" >/dev/null \
  || fail "sonde check refuses the web configuration"

port=$(free_port)
base=https://127.0.0.1:$port
"$sonde" serve --storage.path '' -c "$work/blackbox.yml" --listen "127.0.0.1:$port" \
  --web.config.file "$work/web.yml" --log.format=logfmt > "$work/sonde.log" 2>&1 &
pids+=($!)

good=(--silent --show-error --cacert "$pki/ca.crt" --cert "$pki/client.crt" --key "$pki/client.key")
status() { curl --silent --output /dev/null --write-out '%{http_code}' "$@" 2>/dev/null || true; }
ready() { [[ $(status "${good[@]}" -u "prometheus:$password" "$base/-/ready") == 200 ]]; }
wait_until "sonde serving over HTTPS" 20 ready

# --- curl, each variant -------------------------------------------------------------------------
for path in /metrics /-/healthy /config "/probe?module=tcp_connect&target=127.0.0.1:1" /api/v1/scenarios; do
  [[ $(status "${good[@]}" -u "prometheus:$password" "$base$path") == 200 ]] || fail "$path with the right credentials"
  [[ $(status "${good[@]}" -u "prometheus:wrong" "$base$path") == 401 ]] || fail "$path with a wrong password is not 401"
  [[ $(status "${good[@]}" -u "nobody:$password" "$base$path") == 401 ]] || fail "$path with an unknown user is not 401"
  [[ $(status "${good[@]}" "$base$path") == 401 ]] || fail "$path without credentials is not 401"
done
ok "right credentials 200; wrong password, unknown user, none: 401 (5 endpoints)"
headers=$(curl "${good[@]}" -u "prometheus:$password" -D - -o /dev/null "$base/metrics")
grep -qi '^www-authenticate' <<<"$(curl "${good[@]}" -D - -o /dev/null "$base/metrics")" || fail "401 without WWW-Authenticate"
grep -qi '^strict-transport-security: max-age=31536000; includeSubDomains' <<<"$headers" || fail "no HSTS header: $headers"
ok "headers from http_server_config; WWW-Authenticate on 401"

if curl --silent --cacert "$pki/ca.crt" -u "prometheus:$password" -o /dev/null "$base/metrics"; then
  fail "a client without a certificate got an answer"
fi
if curl --silent --cacert "$pki/ca.crt" --cert "$pki/stranger.crt" --key "$pki/stranger.key" \
  -u "prometheus:$password" -o /dev/null "$base/metrics"; then
  fail "a client certificate from another CA got an answer"
fi
ok "no client certificate, or another CA's: no TLS session"

plain=$(curl --silent --show-error "http://127.0.0.1:$port/metrics" -w '\n%{http_code}' || true)
[[ $plain == *"Client sent an HTTP request to an HTTPS server."*400 ]] || fail "plain HTTP: $plain"
ok "plain HTTP: 400 with Go's message"

if grep -q -- '--http2' <<<"$(curl --help all 2>/dev/null)"; then
  v=$(curl "${good[@]}" -u "prometheus:$password" --http2 -o /dev/null -w '%{http_version}' "$base/metrics")
  [[ $v == 2 ]] || fail "HTTP/2 over TLS not negotiated (http_version $v)"
  ok "HTTP/2 over TLS (ALPN h2)"
fi

# --- promtool on what Prometheus would scrape -----------------------------------------------------
curl "${good[@]}" -u "prometheus:$password" "$base/metrics" > "$work/metrics.txt"
for family in process_cpu_seconds_total process_resident_memory_bytes process_virtual_memory_bytes \
  process_open_fds process_max_fds process_start_time_seconds; do
  grep -q "^$family " "$work/metrics.txt" || fail "/metrics has no $family"
done
grep -q '^sonde_build_info{version="[^"]*",revision="[^"]*",rustc_version="[^"]*"} 1' "$work/metrics.txt" \
  || fail "sonde_build_info without revision/rustc_version: $(grep sonde_build_info "$work/metrics.txt")"
promtool check metrics < "$work/metrics.txt" || fail "promtool check metrics complains (above)"
ok "promtool check metrics clean with the process family"

# --- a real Prometheus ------------------------------------------------------------------------
pport=$(free_port)
printf '%s' "$password" > "$work/password"
tls_good="tls_config: {ca_file: $pki/ca.crt, cert_file: $pki/client.crt, key_file: $pki/client.key}"
cat > "$work/prometheus.yml" <<YAML
global: {scrape_interval: 1s, scrape_timeout: 1s}
scrape_configs:
  - job_name: sonde
    scheme: https
    $tls_good
    basic_auth: {username: prometheus, password_file: $work/password}
    static_configs: [{targets: ["127.0.0.1:$port"]}]
  - job_name: sonde-probe
    scheme: https
    metrics_path: /probe
    params: {module: [tcp_connect]}
    $tls_good
    basic_auth: {username: prometheus, password_file: $work/password}
    # The target is Prometheus itself (sonde refuses to probe itself: 508).
    static_configs: [{targets: ["127.0.0.1:$pport"]}]
    relabel_configs:
      - {source_labels: [__address__], target_label: __param_target}
      - {source_labels: [__param_target], target_label: instance}
      - {target_label: __address__, replacement: "127.0.0.1:$port"}
  - job_name: sonde-wrong-password
    scheme: https
    $tls_good
    basic_auth: {username: prometheus, password: not-the-password}
    static_configs: [{targets: ["127.0.0.1:$port"]}]
  - job_name: sonde-no-client-cert
    scheme: https
    tls_config: {ca_file: $pki/ca.crt}
    basic_auth: {username: prometheus, password_file: $work/password}
    static_configs: [{targets: ["127.0.0.1:$port"]}]
  - job_name: sonde-plain-http
    scheme: http
    basic_auth: {username: prometheus, password_file: $work/password}
    static_configs: [{targets: ["127.0.0.1:$port"]}]
YAML
promtool check config "$work/prometheus.yml" >/dev/null || fail "prometheus.yml invalid"
prometheus --config.file "$work/prometheus.yml" --web.listen-address "127.0.0.1:$pport" \
  --storage.tsdb.path "$work/tsdb" > "$work/prometheus.log" 2>&1 &
pids+=($!)
query() { # PROMQL → the first sample's value, or empty
  curl --silent --get "http://127.0.0.1:$pport/api/v1/query" --data-urlencode "query=$1" |
    python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else "")' 2>/dev/null || true
}
scraped() { [[ $(query "count(up{job=~\"sonde.*\"})") == 5 ]]; }
wait_until "Prometheus scraping all five jobs" 60 scraped
is() { [[ $(query "$2") == "$1" ]]; }
wait_until "up{job=sonde} 1 over HTTPS + basic auth + client certificate" 30 is 1 'up{job="sonde"}'
wait_until "the blackbox-style /probe job" 30 is 1 'probe_success{job="sonde-probe"}'
for job in sonde-wrong-password sonde-no-client-cert sonde-plain-http; do
  wait_until "up{job=$job} 0" 30 is 0 "up{job=\"$job\"}"
done
for family in process_start_time_seconds process_open_fds process_resident_memory_bytes; do
  [[ -n $(query "$family{job=\"sonde\"}") ]] || fail "Prometheus has no $family from sonde"
done
[[ $(query 'count(sonde_build_info{job="sonde",revision!="",rustc_version!=""})') == 1 ]] \
  || fail "sonde_build_info without its labels in Prometheus"
ok "Prometheus: up 1 with credentials and certificate; wrong password, no certificate, plain HTTP: up 0"

# The password and its hash appear nowhere in sonde's log.
if grep -qF -e "$password" -e "$hash" "$work/sonde.log"; then fail "a secret is in sonde's log"; fi
ok "no secret in sonde's log"

# --web.systemd-socket under systemd's own socket activator (systemd-socket-activate, from the
# systemd package): two listening sockets passed as descriptors 3 and 4, sonde started on the
# first connection, every endpoint served on both, behind the same web configuration.
if command -v systemd-socket-activate >/dev/null; then
  sa1=$(free_port); sa2=$(free_port)
  systemd-socket-activate -l "127.0.0.1:$sa1" -l "127.0.0.1:$sa2" \
    "$sonde" serve --web.systemd-socket --storage.path '' -c "$work/blackbox.yml" \
    --web.config.file "$work/web.yml" > "$work/socket-activate.log" 2>&1 &
  pids+=($!)
  # The activator listens a moment after it starts: until then a connection is refused.
  activated() { [[ $(status "${good[@]}" -m 20 -u "prometheus:$password" "https://127.0.0.1:$1/-/ready") == 200 ]]; }
  for p in "$sa1" "$sa2"; do
    wait_until "/-/ready on :$p through systemd-socket-activate" 30 activated "$p"
  done
  grep -q "Execing" "$work/socket-activate.log" || fail "systemd-socket-activate did not start sonde"
  ok "--web.systemd-socket: sonde serves both sockets systemd-socket-activate passed, behind the web configuration"
else
  echo "web_config: SKIPPED socket activation: systemd-socket-activate is not installed (package systemd)"
fi
