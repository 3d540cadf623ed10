#!/usr/bin/env bash
# Egress in five seconds, on one Linux machine, with network namespaces standing in for the enclave and its parent:
#
#   enclave (only lo) --unix socket, the VSOCK stand-in--> parent --veth--> world (nginx on 198.18.0.10 and .99)
#
# It builds the hosts, applies the enclave's redirect rules, then runs an unmodified curl inside the enclave to an
# allowed destination (works) and to a denied one (refused), and shows the log lines that explain each.
# Everything is torn down on exit. Needs root and the .NET 10 SDK; installs the Debian packages it uses if missing.
#
#   sudo samples/demo.sh
#   EGRESS_DEMO_CONFIG=path/to/enclave.toml sudo -E samples/demo.sh   # another allowlist (must allow 198.18.0.10)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
PREFIX=egress-demo
ENCLAVE=$PREFIX-enclave PARENT=$PREFIX-parent WORLD=$PREFIX-world
ALLOWED=198.18.0.10 DENIED=198.18.0.99
CONFIG=${EGRESS_DEMO_CONFIG:-$HERE/enclave.toml}
# shellcheck source=netns/topology.sh
. "$HERE/netns/topology.sh"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
die() { echo "demo: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "needs root for network namespaces and iptables: sudo $0"
command -v dotnet >/dev/null || die "the .NET 10 SDK is required (https://dot.net); dotnet is not on PATH"

missing=()
for tool in ip:iproute2 iptables:iptables curl:curl nginx:nginx-light dnsmasq:dnsmasq-base nc:netcat-openbsd; do
    command -v "${tool%%:*}" >/dev/null || missing+=("${tool#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

WORK=$(mktemp -d /tmp/egress-demo.XXXXXX)
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    set +e
    egress_netns_down "$PREFIX"
    rm -rf "$WORK"
    if ip netns list | grep -q "^$PREFIX-"; then
        echo "demo: namespaces left behind: $(ip netns list | grep "^$PREFIX-")" >&2
        status=1
    fi
    exit "$status"
}
trap cleanup EXIT INT TERM

# wait_for DESCRIPTION PID LOG COMMAND...: until COMMAND succeeds (up to 15 s), failing fast if PID exits.
wait_for() {
    local what=$1 pid=$2 log=$3; shift 3
    for _ in $(seq 150); do
        "$@" >/dev/null 2>&1 && return 0
        if ! kill -0 "$pid" 2>/dev/null; then
            [ -f "$log" ] && cat "$log" >&2
            die "$what exited before it was ready"
        fi
        sleep 0.1
    done
    [ -f "$log" ] && cat "$log" >&2
    die "timed out waiting for $what"
}
listening() { ip netns exec "$1" ss -Hltn "sport = :$2" | grep -q LISTEN; }

say "building the hosts (Release)"
for project in Egress.Host Egress.Enclave; do
    dotnet build "$REPO/src/$project/$project.csproj" -c Release -v q -nologo > "$WORK/build.log" 2>&1 \
        || { cat "$WORK/build.log" >&2; die "build of $project failed"; }
done
HOST_DLL=$REPO/src/Egress.Host/bin/Release/net10.0/egress-host.dll
ENCLAVE_DLL=$REPO/src/Egress.Enclave/bin/Release/net10.0/egress-enclave.dll

say "creating namespaces $ENCLAVE, $PARENT, $WORLD"
egress_netns_down "$PREFIX"   # a previous run that was killed hard
egress_netns_up "$PREFIX"

say "world: nginx on $ALLOWED and $DENIED (both would answer)"
mkdir -p "$WORK/www"
echo "hello from the world behind egress" > "$WORK/www/index.html"
cat > "$WORK/nginx.conf" <<NGINX
master_process off;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log;
events { worker_connections 64; }
http {
  access_log $WORK/nginx-access.log;
  client_body_temp_path $WORK/body; proxy_temp_path $WORK/proxy; fastcgi_temp_path $WORK/fastcgi;
  uwsgi_temp_path $WORK/uwsgi; scgi_temp_path $WORK/scgi;
  default_type text/plain;
  server { listen 80; root $WORK/www; }
}
NGINX
ip netns exec "$WORLD" nginx -p "$WORK" -e "$WORK/nginx-error.log" -c "$WORK/nginx.conf" -g 'daemon off;' &
wait_for "nginx" $! "$WORK/nginx-error.log" listening "$WORLD" 80

say "parent: egress-host on unix:$WORK/tunnel.sock"
ip netns exec "$PARENT" dotnet "$HOST_DLL" --config "$CONFIG" --tunnel "unix:$WORK/tunnel.sock" > "$WORK/host.log" 2>&1 &
wait_for "egress-host" $! "$WORK/host.log" test -S "$WORK/tunnel.sock"

say "enclave: egress-enclave rules --apply, then the proxy"
ip netns exec "$ENCLAVE" dotnet "$ENCLAVE_DLL" rules --apply
ip netns exec "$ENCLAVE" dotnet "$ENCLAVE_DLL" --config "$CONFIG" --tunnel "unix:$WORK/tunnel.sock" > "$WORK/enclave.log" 2>&1 &
wait_for "egress-enclave" $! "$WORK/enclave.log" listening "$ENCLAVE" 4444

result=0
say "inside the enclave: curl http://$ALLOWED/   (allowed)"
if ip netns exec "$ENCLAVE" curl -sS --max-time 5 "http://$ALLOWED/"; then
    echo "-> allowed, as configured"
else
    echo "-> UNEXPECTED: curl failed (exit $?)"; result=1
fi

say "inside the enclave: curl http://$DENIED/   (not in the allowlist)"
if ip netns exec "$ENCLAVE" curl -sS --max-time 5 "http://$DENIED/"; then
    echo "-> UNEXPECTED: the denied destination answered"; result=1
else
    echo "-> refused (curl exit $?), as configured"
fi

sleep 0.3   # let the hosts flush their log lines
say "why: egress-enclave's log"
grep -E "$ALLOWED|$DENIED" "$WORK/enclave.log" || echo "(no enclave log line names $ALLOWED or $DENIED)"
say "why: egress-host's log"
grep -E "$ALLOWED|$DENIED" "$WORK/host.log" || echo "(no host log line names $ALLOWED or $DENIED)"

if [ "$result" -ne 0 ]; then
    say "full logs"
    echo "--- enclave.log"; cat "$WORK/enclave.log"
    echo "--- host.log"; cat "$WORK/host.log"
fi
say "tearing down"
exit "$result"
