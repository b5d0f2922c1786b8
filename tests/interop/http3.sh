#!/usr/bin/env bash
# HTTP/3 against a real server: Debian's caddy (started by servers.sh on 127.0.0.1:18444, QUIC
# on udp, a leaf from the suite's generated CA that expires in 10 days). Checks, with the sonde
# binary of this worktree:
#   1. a blackbox module (enable_http3) through `sonde probe`: success, probe_http_version 3, the
#      QUIC+TLS handshake as the tls phase and no connect phase, processing and transfer, TLS 1.3,
#      probe_ssl_earliest_cert_expiry = the leaf's notAfter; caddy itself says the request came
#      over HTTP/3 (its {http.request.proto} in the body);
#   2. an http:// target of that module goes to https:// (blackbox 0.28's conversion);
#   3. a scenario http step with enable_http3 through `sonde run --json`: HTTP/3.0, the expiry
#      check `cert_expires_in: {lt: 11d, gt: 9d}`;
#   4. refusals: an untrusted CA fails in the QUIC handshake (tls), and the 10-day certificate
#      fails `cert_expires_in: {gt: 14d}`.
# Usage: http3.sh WORKDIR (servers.sh's, with its env file). Exit 0 when every check holds.
set -euo pipefail
work=${1:?usage: http3.sh WORKDIR}
cd "$(dirname "$0")/../.."
set -a
# shellcheck disable=SC1091
. "$work/env"
set +a
sonde=$PWD/target/debug/sonde
[[ -x $sonde ]] || cargo build -q --bin sonde
dir=$work/http3
mkdir -p "$dir"
fail() {
  echo "http3.sh: FAILED: $*" >&2
  exit 1
}
metric() { # metric FILE SERIES → its value
  awk -v s="$2 " 'index($0, s) == 1 { print $NF }' "$1"
}

# --- 1. blackbox module ------------------------------------------------------------------------
cat > "$dir/blackbox.yml" <<YAML
modules:
  http3:
    prober: http
    timeout: 5s
    http:
      enable_http3: true
      enable_http2: false
      valid_http_versions: ["HTTP/3.0"]
      fail_if_not_ssl: true
      fail_if_body_not_matches_regexp: ["over HTTP/3"]
      tls_config:
        ca_file: $SONDE_INTEROP_CA
  http3_untrusted:
    prober: http
    timeout: 5s
    http:
      enable_http3: true
      enable_http2: false
YAML
"$sonde" probe -c "$dir/blackbox.yml" -m http3 "https://$SONDE_INTEROP_H3/" > "$dir/probe.txt" \
  || { cat "$dir/probe.txt"; fail "the HTTP/3 probe of caddy failed"; }
m=$dir/probe.txt
[[ $(metric "$m" probe_success) == 1 ]] || fail "probe_success"
[[ $(metric "$m" probe_http_version) == 3 ]] || fail "probe_http_version is not 3"
[[ $(metric "$m" probe_http_ssl) == 1 ]] || fail "probe_http_ssl"
[[ $(metric "$m" 'probe_tls_version_info{version="TLS 1.3"}') == 1 ]] || fail "TLS 1.3"
[[ $(metric "$m" 'probe_http_duration_seconds{phase="connect"}') == 0 ]] || fail "a connect phase over QUIC"
# The suite caddy (Go's crypto/tls) chose, which quinn does not expose: one of TLS 1.3's three.
cipher=$(grep -o 'probe_tls_cipher_info{cipher="[A-Z0-9_]*"} 1' "$m" || true)
[[ $cipher =~ TLS_(AES_128_GCM_SHA256|AES_256_GCM_SHA384|CHACHA20_POLY1305_SHA256) ]] || fail "no TLS 1.3 probe_tls_cipher_info: ${cipher:-none}"
for phase in tls processing transfer; do
  v=$(metric "$m" "probe_http_duration_seconds{phase=\"$phase\"}")
  awk -v v="$v" 'BEGIN { exit !(v > 0) }' || fail "phase $phase is $v, expected > 0"
done
expiry=$(metric "$m" probe_ssl_earliest_cert_expiry)
awk -v e="$expiry" -v want="$SONDE_INTEROP_H3_NOT_AFTER" 'BEGIN { exit !(e == want) }' \
  || fail "probe_ssl_earliest_cert_expiry $expiry, expected $SONDE_INTEROP_H3_NOT_AFTER"
echo "http3.sh: blackbox module over HTTP/3 to caddy ok (${cipher% 1}; tls phase $(metric "$m" 'probe_http_duration_seconds{phase="tls"}') s)"

# --- 2. http:// is turned into https:// -------------------------------------------------------
"$sonde" probe -c "$dir/blackbox.yml" -m http3 "http://$SONDE_INTEROP_H3/" > "$dir/probe-http.txt" \
  || fail "the http:// target was not converted to https://"

# --- 3. scenario step ----------------------------------------------------------------------------
cat > "$dir/scenario.yaml" <<YAML
scenario: caddy-http3
interval: 30s
timeout: 5s
http:
  url: "https://localhost:${SONDE_INTEROP_H3##*:}/health"
  enable_http3: true
  valid_http_versions: [HTTP/3.0]
  tls_config:
    ca_file: $SONDE_INTEROP_CA
expect:
  status: 200
  json:
    $.proto: {equals: "HTTP/3.0"}
  cert_expires_in: {gt: 9d, lt: 11d}
YAML
"$sonde" run -q --json "$dir/run.json" "$dir/scenario.yaml" \
  || { cat "$dir/run.json"; fail "the HTTP/3 scenario failed"; }
grep -q '"HTTP/3.0"' "$dir/run.json" || fail "the JSON report does not say HTTP/3.0"
echo "http3.sh: scenario step over HTTP/3 ok"

# --- 4. refusals --------------------------------------------------------------------------------
if "$sonde" probe --debug -c "$dir/blackbox.yml" -m http3_untrusted "https://$SONDE_INTEROP_H3/" \
  > "$dir/untrusted.txt"; then
  fail "a certificate from an untrusted CA was accepted"
fi
grep -q "QUIC handshake" "$dir/untrusted.txt" || { cat "$dir/untrusted.txt"; fail "no QUIC handshake failure"; }
sed -e 's/{gt: 9d, lt: 11d}/{gt: 14d}/' "$dir/scenario.yaml" > "$dir/short.yaml"
if "$sonde" run -q "$dir/short.yaml" > "$dir/short.txt" 2>&1; then
  fail "a certificate expiring in 10 days passed cert_expires_in > 14d"
fi
echo "http3.sh: refusals ok (untrusted CA, certificate expiring in 10 days)"
