# Shell helpers shared by the namespace harnesses (benchmarks/run.sh, benchmarks/ab.sh; tests/stress/run.sh uses
# require_tools).
# Source it after defining log MESSAGE and die MESSAGE.

# in_ns NS CMD...: runs CMD in network namespace NS.
in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

# wait_until SECONDS DESCRIPTION CMD...: until CMD succeeds, every 0.1 s; dies "timed out waiting for DESCRIPTION"
# after SECONDS.
wait_until() {
  local deadline=$((SECONDS + $1)) what=$2; shift 2
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || die "timed out waiting for $what"
    sleep 0.1
  done
}

# tcp_listening NS PORT: something in NS listens on TCP PORT.
tcp_listening() { [ -n "$(ip netns exec "$1" ss -Hltn "sport = :$2")" ]; }
# udp_listening NS PORT: something in NS listens on UDP PORT.
udp_listening() { [ -n "$(ip netns exec "$1" ss -Hlun "sport = :$2")" ]; }

# require_tools INSTALL COMMAND:PACKAGE...: makes sure every COMMAND is on PATH. The packages of the missing ones are
# installed with apt-get when INSTALL is 1; when it is 0, or the install fails, dies naming them.
require_tools() {
  local install=$1 pair
  local missing=()
  shift
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
  done
  [ "${#missing[@]}" -gt 0 ] || return 0
  [ "$install" -eq 1 ] || die "missing tools (packages: ${missing[*]}); run without --no-install"
  log "installing ${missing[*]}"
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null \
    || die "apt-get install ${missing[*]} failed"
}

# write_nginx_ok_conf DIR LISTEN [TLS_NAME]: writes DIR/nginx.conf, an nginx in the foreground that answers 200 "ok\n"
# to every request on LISTEN (address:port), one worker per CPU, no access log; its pid, error log (DIR/error.log)
# and temporary files stay in DIR. With TLS_NAME: HTTPS on LISTEN, with a self-signed P-256 certificate for that name
# written to DIR, no session cache or tickets (every connection a full handshake); exits if openssl cannot make it.
# Start it with: nginx -e DIR/error.log -p DIR -c DIR/nginx.conf
write_nginx_ok_conf() {
  local dir=$1 listen=$2 tls_name=${3:-} tls=""
  mkdir -p "$dir"
  if [ -n "$tls_name" ]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$dir/tls.key" -out "$dir/tls.crt" \
      -subj "/CN=$tls_name" -days 1 >"$dir/tls-cert.log" 2>&1 || { echo "openssl req: $(cat "$dir/tls-cert.log")" >&2; exit 1; }
    listen="$listen ssl"
    tls="server_name $tls_name;
    ssl_certificate $dir/tls.crt;
    ssl_certificate_key $dir/tls.key;
    ssl_session_cache off;
    ssl_session_tickets off;"
  fi
  cat >"$dir/nginx.conf" <<CONF
daemon off;
worker_processes $(nproc);
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $dir/body;
  proxy_temp_path $dir/proxy;
  fastcgi_temp_path $dir/fastcgi;
  uwsgi_temp_path $dir/uwsgi;
  scgi_temp_path $dir/scgi;
  server {
    listen $listen;
    $tls
    location / { return 200 "ok\n"; }
  }
}
CONF
}

# write_enclave_toml FILE SOCKET DNS_UPSTREAM EGRESS [EXTRA]: the harnesses' enclave.toml: the [egress] table's keys
# EGRESS (lines), a unix: tunnel at SOCKET for both hosts, the enclave's proxy on 127.0.0.1:4444 and DNS forwarder on
# 127.0.0.1:53, the parent's DNS upstream DNS_UPSTREAM (address:port), then EXTRA (TOML appended as is).
write_enclave_toml() {
  local file=$1 socket=$2 upstream=$3 egress=$4 extra=${5:-}
  cat >"$file" <<CONF
[egress]
$egress

[tunnel]
enclave_endpoint = "unix:$socket"
host_endpoint = "unix:$socket"

[enclave]
proxy_listen = ["127.0.0.1:4444"]
dns_listen = ["127.0.0.1:53"]

[host]
dns_upstreams = ["$upstream"]
$extra
CONF
}
