#!/usr/bin/env bash
# Start the real third-party servers the interop suite probes, on loopback only:
#   nginx    127.0.0.1:18080 (http) and 127.0.0.1:18443 (https, h2, certificate from a generated CA)
#   dnsmasq  127.0.0.1:15353 (udp+tcp), authoritative test records for sonde.test
#   mosquitto 127.0.0.1:18883 (MQTT), :18884 (MQTT over TLS, the same generated CA), :18885 (MQTT
#            over WebSocket); every listener wants a username and password (a password file)
#   caddy    127.0.0.1:18444 (HTTP/3 over QUIC on udp, and h1/h2 on tcp; a leaf from the same CA
#            that expires in 10 days) — installed here if missing (Debian's caddy)
# Usage: servers.sh WORKDIR   — writes WORKDIR/env (ports, CA path, leaf and CA expiry) and pid
#   files (WORKDIR/nginx.pid, WORKDIR/dnsmasq.pid, WORKDIR/mosquitto.pid, WORKDIR/caddy.pid) for
#   the caller to stop them.
# Run by run.sh; also handy by hand: `bash tests/interop/servers.sh /tmp/x`.
set -euo pipefail
work=${1:?usage: servers.sh WORKDIR}
mkdir -p "$work"/{pki,nginx/tmp,dns}

# A port already taken (say, by an earlier run that was not cleaned up) would let the readiness
# check below pass against the OLD servers, whose CA is not ours: refuse instead, clearly.
for port in 18080 18443 15353 18444 18883 18884 18885; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "servers.sh: 127.0.0.1:$port is already in use — stop whatever listens there first" >&2
    exit 1
  fi
done

# --- PKI: a CA and a short-lived leaf for 127.0.0.1 / localhost (openssl) --------------------
pki=$work/pki
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
  -subj "/CN=sonde interop CA/O=sonde tests" -keyout "$pki/ca.key" -out "$pki/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -subj "/CN=localhost" -keyout "$pki/leaf.key" -out "$pki/leaf.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > "$pki/leaf.ext"
openssl x509 -req -in "$pki/leaf.csr" -CA "$pki/ca.pem" -CAkey "$pki/ca.key" -CAcreateserial \
  -days 20 -extfile "$pki/leaf.ext" -out "$pki/leaf.pem" 2>/dev/null
not_after() { date -d "$(openssl x509 -in "$1" -noout -enddate | cut -d= -f2)" +%s; }
leaf_not_after=$(not_after "$pki/leaf.pem")
ca_not_after=$(not_after "$pki/ca.pem")

# --- nginx -------------------------------------------------------------------------------------
cat > "$work/nginx/nginx.conf" <<NGINX
daemon off;
worker_processes 1;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $work/nginx/tmp/body;
    proxy_temp_path $work/nginx/tmp/proxy;
    fastcgi_temp_path $work/nginx/tmp/fastcgi;
    uwsgi_temp_path $work/nginx/tmp/uwsgi;
    scgi_temp_path $work/nginx/tmp/scgi;
    default_type text/plain;
    server {
        listen 127.0.0.1:18080;
        listen 127.0.0.1:18443 ssl http2;
        ssl_certificate     $pki/leaf.pem;
        ssl_certificate_key $pki/leaf.key;
        # Explicit, so the negotiated version does not depend on the packaged nginx's default.
        ssl_protocols TLSv1.2 TLSv1.3;
        location = /        { return 200 "hello from nginx\n"; }
        location = /health  { default_type application/json; return 200 '{"status":"ok"}'; }
        location = /missing { return 404 "not here\n"; }
        location = /redirect { return 302 /; }
        location = /loop    { return 302 /loop; }
        # For the blackbox parity suite: a three-hop redirect chain, and a body for regexes.
        location = /chain/1 { return 301 /chain/2; }
        location = /chain/2 { return 302 /chain/3; }
        location = /chain/3 { return 307 /; }
        location = /version { return 200 "sonde-interop build 1.2.3 status=green\n"; }
    }
}
NGINX
nginx -t -c "$work/nginx/nginx.conf" -p "$work/nginx" -e "$work/nginx/error.log" >/dev/null 2>&1 \
  || { nginx -t -c "$work/nginx/nginx.conf" -p "$work/nginx" -e "$work/nginx/error.log"; exit 1; }
nginx -c "$work/nginx/nginx.conf" -p "$work/nginx" -e "$work/nginx/error.log" &
echo $! > "$work/nginx.pid"

# --- dnsmasq -----------------------------------------------------------------------------------
dnsmasq --keep-in-foreground --port=15353 --listen-address=127.0.0.1 --bind-interfaces \
  --no-resolv --no-hosts --no-poll --conf-file=/dev/null --user=root --group=root \
  --pid-file="$work/dns/dnsmasq.pid" --log-facility="$work/dns/dnsmasq.log" \
  --local=/sonde.test/ \
  --host-record=web.sonde.test,127.0.0.1,::1 \
  --host-record=v4only.sonde.test,127.0.0.1 \
  --mx-host=sonde.test,mail.sonde.test,10 \
  --host-record=mail.sonde.test,127.0.0.2 \
  --txt-record=sonde.test,"v=spf1 -all" \
  --cname=www.sonde.test,web.sonde.test &
echo $! > "$work/dnsmasq.pid"

# --- mosquitto ---------------------------------------------------------------------------------
# Password auth on every listener; `user root` keeps it from dropping to the mosquitto user, who
# could not read the (root-only) work folder.
mkdir -p "$work/mqtt"
mqtt_user=sonde-probe
mqtt_password="interop-$(openssl rand -hex 8)"
mosquitto_passwd -b -c "$work/mqtt/passwd" "$mqtt_user" "$mqtt_password" >/dev/null 2>&1
cat > "$work/mqtt/mosquitto.conf" <<MOSQ
user root
per_listener_settings false
allow_anonymous false
password_file $work/mqtt/passwd
persistence false
log_dest file $work/mqtt/mosquitto.log
log_type error
log_type warning
log_type notice
listener 18883 127.0.0.1
listener 18884 127.0.0.1
cafile $pki/ca.pem
certfile $pki/leaf.pem
keyfile $pki/leaf.key
# libwebsockets takes an interface here (with 127.0.0.1 it would listen on every address).
listener 18885 lo
protocol websockets
MOSQ
mosquitto -c "$work/mqtt/mosquitto.conf" > "$work/mqtt/stdout.log" 2>&1 &
echo $! > "$work/mosquitto.pid"

# --- caddy: HTTP/3 ------------------------------------------------------------------------------
if ! command -v caddy >/dev/null 2>&1; then
  echo "servers.sh: installing Debian's caddy (HTTP/3 server)"
  own_policy=""
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then # keep the package from starting caddy.service
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d
    own_policy=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends caddy >/dev/null \
    || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
         --no-install-recommends caddy >/dev/null; }
  [[ -n $own_policy ]] && rm -f /usr/sbin/policy-rc.d
fi
mkdir -p "$work/caddy"
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -subj "/CN=localhost" -keyout "$pki/h3.key" -out "$pki/h3.csr" 2>/dev/null
openssl x509 -req -in "$pki/h3.csr" -CA "$pki/ca.pem" -CAkey "$pki/ca.key" -CAcreateserial \
  -days 10 -extfile "$pki/leaf.ext" -out "$pki/h3.pem" 2>/dev/null
h3_not_after=$(not_after "$pki/h3.pem")
cat > "$work/caddy/Caddyfile" <<CADDY
{
	admin off
	auto_https off
	storage file_system $work/caddy/data
	servers {
		protocols h1 h2 h3
	}
}
https://127.0.0.1:18444, https://localhost:18444 {
	bind 127.0.0.1
	tls $pki/h3.pem $pki/h3.key
	header Alt-Svc "h3=\":18444\"; ma=60"
	respond /health \`{"status":"ok","proto":"{http.request.proto}"}\` 200
	respond / "hello from caddy over {http.request.proto}" 200
}
CADDY
HOME=$work/caddy XDG_DATA_HOME=$work/caddy XDG_CONFIG_HOME=$work/caddy \
  caddy run --config "$work/caddy/Caddyfile" --adapter caddyfile > "$work/caddy/caddy.log" 2>&1 &
echo $! > "$work/caddy.pid"

# --- wait until all answer --------------------------------------------------------------------
for _ in $(seq 1 50); do
  if curl -fsS -o /dev/null http://127.0.0.1:18080/ 2>/dev/null \
     && (exec 3<>/dev/tcp/127.0.0.1/15353) 2>/dev/null \
     && (exec 3<>/dev/tcp/127.0.0.1/18885) 2>/dev/null; then
    break
  fi
  sleep 0.1
done
curl -fsS -o /dev/null http://127.0.0.1:18080/ || { echo "nginx did not start:"; cat "$work/nginx/error.log"; exit 1; }
kill -0 "$(cat "$work/nginx.pid")" 2>/dev/null || { echo "nginx exited:"; cat "$work/nginx/error.log"; exit 1; }
kill -0 "$(cat "$work/dnsmasq.pid")" 2>/dev/null || { echo "dnsmasq exited:"; cat "$work/dns/dnsmasq.log"; exit 1; }
kill -0 "$(cat "$work/mosquitto.pid")" 2>/dev/null || { echo "mosquitto exited:"; cat "$work/mqtt/"*.log; exit 1; }
for _ in $(seq 1 50); do
  curl -fsS -o /dev/null --cacert "$pki/ca.pem" https://127.0.0.1:18444/ 2>/dev/null && break
  sleep 0.1
done
curl -fsS -o /dev/null --cacert "$pki/ca.pem" https://127.0.0.1:18444/ \
  || { echo "caddy did not start:"; cat "$work/caddy/caddy.log"; exit 1; }

cat > "$work/env" <<ENV
SONDE_INTEROP_HTTP=127.0.0.1:18080
SONDE_INTEROP_HTTPS=127.0.0.1:18443
SONDE_INTEROP_DNS=127.0.0.1:15353
SONDE_INTEROP_CA=$pki/ca.pem
SONDE_INTEROP_LEAF_NOT_AFTER=$leaf_not_after
SONDE_INTEROP_CA_NOT_AFTER=$ca_not_after
SONDE_INTEROP_MQTT=127.0.0.1:18883
SONDE_INTEROP_MQTTS=127.0.0.1:18884
SONDE_INTEROP_MQTT_WS=127.0.0.1:18885
SONDE_INTEROP_MQTT_USER=$mqtt_user
SONDE_INTEROP_MQTT_PASSWORD=$mqtt_password
SONDE_INTEROP_H3=127.0.0.1:18444
SONDE_INTEROP_H3_NOT_AFTER=$h3_not_after
ENV
