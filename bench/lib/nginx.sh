# Sourced by bench scripts: a loopback nginx that answers 200 "ok" on PORT and, with TLS_PORT,
# also over TLS 1.3 (a fresh self-signed P-256 certificate), its files under DIR. The plain
# listener is on 127.0.0.1 and on each address in BENCH_NGINX_EXTRA_ADDRS (loopback ones).
#
#   source "$root/bench/lib/nginx.sh"
#   bench_nginx_start "$work/nginx" "$PORT" "$TLS_PORT"   # pid in $BENCH_NGINX_PID
bench_nginx_start() { # DIR PORT [TLS_PORT]
  local dir=$1 port=$2 tls_port=${3:-} tls=
  mkdir -p "$dir"
  if [ -n "$tls_port" ]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=localhost \
      -keyout "$dir/key.pem" -out "$dir/cert.pem" 2>/dev/null
    tls="server {
        listen 127.0.0.1:$tls_port ssl backlog=4096;
        ssl_certificate $dir/cert.pem;
        ssl_certificate_key $dir/key.pem;
        ssl_protocols TLSv1.3;
        location / { return 200 \"ok\\n\"; }
    }"
  fi
  cat >"$dir/nginx.conf" <<EON
daemon off;
worker_processes 1;
worker_rlimit_nofile 65536;
pid $dir/nginx.pid;
error_log $dir/error.log error;
events { worker_connections 16384; }
http {
    access_log off;
    client_body_temp_path $dir/body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    server {
        listen 127.0.0.1:$port backlog=4096;$(for a in ${BENCH_NGINX_EXTRA_ADDRS:-}; do printf '\n        listen %s:%s backlog=4096;' "$a" "$port"; done)
        location / { return 200 "ok\n"; }
    }
    $tls
}
EON
  nginx -c "$dir/nginx.conf" -p "$dir" -e "$dir/error.log" &
  BENCH_NGINX_PID=$!
  local _
  for _ in $(seq 1 100); do
    curl -fsS -o /dev/null "http://127.0.0.1:$port/" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "bench: nginx did not answer on 127.0.0.1:$port ($dir/error.log)" >&2
  return 1
}
