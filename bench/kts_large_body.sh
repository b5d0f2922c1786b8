#!/usr/bin/env bash
# Does a large request body to a slow reader make a timestamped probe spin? (issue 14: each TX
# timestamp raises EPOLLERR on the socket, and a write that would block on a socket the runtime
# believes errored could be retried at once instead of waiting for room.) One `sonde probe`
# POSTs BODY_MB of body to a loopback server that reads 64 KiB every 50 ms, over http and over
# https (a throw-away openssl certificate), once with --probe.kernel-timestamps=on and once
# =off; prints wall, user and system CPU seconds of each.
# A spin shows as CPU seconds close to the wall time with timestamps on.
#
#   SONDE_BIN=target/release/sonde BODY_MB=4 bash bench/kts_large_body.sh
#
# Traffic stays on 127.0.0.1.
set -euo pipefail
SONDE_BIN=${SONDE_BIN:-target/release/sonde}
BODY_MB=${BODY_MB:-4}
PORT=${PORT:-29981}
work=$(mktemp -d /tmp/sonde-kts-body.XXXXXX)
server=
cleanup() { [[ -n $server ]] && kill "$server" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
bytes=$((BODY_MB * 1000000))
head -c "$bytes" /dev/zero | tr '\0' 'a' > "$work/body.txt"
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 \
  -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
cat > "$work/slow.py" <<PY
import socket, ssl, threading, time
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain("$work/cert.pem", "$work/key.pem")
def listen(port, tls):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port)); s.listen(8)
    while True:
        c, _ = s.accept()
        if tls:
            try: c = ctx.wrap_socket(c, server_side=True)
            except OSError: continue
        threading.Thread(target=reader, args=(c,), daemon=True).start()
def reader(c):
    c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    got = 0
    while got < $bytes:
        d = c.recv(65536)
        if not d: return
        got += len(d); time.sleep(0.05)
    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"); c.close()
threading.Thread(target=listen, args=($PORT + 1, True), daemon=True).start()
listen($PORT, False)
PY
python3 "$work/slow.py" & server=$!
sleep 0.5
cat > "$work/bb.yml" <<YML
modules:
  post:
    prober: http
    timeout: 120s
    http: {method: POST, body_file: $work/body.txt, tls_config: {insecure_skip_verify: true}}
YML
echo "kts_large_body: ${BODY_MB} MB body, reader 64 KiB / 50 ms, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
for scheme in http https; do
  port=$PORT; [[ $scheme == https ]] && port=$((PORT + 1))
  for k in on off; do
    /usr/bin/time -f "$scheme, kernel-timestamps=$k: wall %e s, user %U s, system %S s" \
      "$SONDE_BIN" probe -c "$work/bb.yml" -m post --probe.kernel-timestamps=$k "$scheme://127.0.0.1:$port/" \
      > "$work/out" 2> "$work/time" || true
    grep -q '^probe_success 1' "$work/out" || { cat "$work/out" "$work/time"; echo "kts_large_body: the $scheme probe failed" >&2; exit 1; }
    tail -n 1 "$work/time"
  done
done
