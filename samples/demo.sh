#!/usr/bin/env bash
# Egress in a minute (the first run builds), on one Linux machine, with network namespaces standing in for the enclave and its parent:
#
#   enclave (only lo) --unix socket, the VSOCK stand-in--> parent --veth--> world (nginx on 198.18.0.10, .11 and .99;
#                                                                                 dnsmasq on 198.18.0.53)
#
# It builds the hosts, applies the enclave's redirect rules, points the enclave's resolv.conf at egress-enclave's DNS
# forwarder, then runs unmodified clients inside the enclave: curl to an allowed address (works) and to a denied one
# (refused), curl to an allowed name whose address is listed nowhere (works: the forwarder learned it from the
# answer), dig for a name outside the allowlist (NXDOMAIN), and shows the log lines that explain each.
# Everything is torn down on exit. Needs root and the .NET 10 SDK; installs the Debian packages it uses if missing.
#
#   sudo samples/demo.sh
#   EGRESS_DEMO_CONFIG=path/to/enclave.toml sudo -E samples/demo.sh   # another allowlist (must allow 198.18.0.10 and
#                                                                      # hello.egress.test, not 198.18.0.99 or evil.example)
#   EGRESS_DEMO_PREFIX=mine-demo sudo -E samples/demo.sh   # namespaces mine-demo-enclave, -parent, -world (default
#                                                           # egress-demo; as samples/netns/topology.sh's PREFIX)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
# shellcheck source=netns/topology.sh
. "$HERE/netns/topology.sh"
PREFIX=${EGRESS_DEMO_PREFIX:-egress-demo}
egress_netns_check_prefix "$PREFIX" || { echo "demo: EGRESS_DEMO_PREFIX: see above" >&2; exit 2; }
ENCLAVE=$PREFIX-enclave PARENT=$PREFIX-parent WORLD=$PREFIX-world
ALLOWED=198.18.0.10 DENIED=198.18.0.99
NAME=hello.egress.test NAME_ADDRESS=198.18.0.11 DENIED_NAME=evil.example DNS=198.18.0.53
CONFIG=${EGRESS_DEMO_CONFIG:-$HERE/enclave.toml}

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
die() { echo "demo: $*" >&2; exit 1; }
# ours: this run's namespaces that exist (exactly these three: not another run's whose prefix starts with ours).
ours() { ip netns list | awk '{print $1}' | grep -x -e "$ENCLAVE" -e "$PARENT" -e "$WORLD"; }

[ "$(id -u)" -eq 0 ] || die "needs root for network namespaces and iptables: sudo $0"
command -v dotnet >/dev/null || die "the .NET 10 SDK is required (https://dot.net); dotnet is not on PATH"

missing=()
for tool in ip:iproute2 iptables:iptables curl:curl nginx:nginx-light dnsmasq:dnsmasq-base nc:netcat-openbsd dig:bind9-dnsutils; do
    command -v "${tool%%:*}" >/dev/null || missing+=("${tool#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
    # A new user's trial: elsewhere (Amazon Linux: dnf) this ended in "apt-get: command not found".
    command -v apt-get >/dev/null ||
        die "missing tools; install these (Debian/Ubuntu package names) with your package manager and run again: ${missing[*]}"
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
    rm -rf "$WORK" "/etc/netns/$ENCLAVE"
    if ours >/dev/null; then
        echo "demo: namespaces left behind: $(ours | tr '\n' ' ')" >&2
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
rm -rf "/etc/netns/$ENCLAVE"
egress_netns_up "$PREFIX" || die "creating the namespaces failed (the step above)"

say "world: nginx on $ALLOWED, $NAME_ADDRESS and $DENIED (all three answer: only the policy tells them apart)"
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
say "parent (no policy there for its own traffic): curl http://$DENIED/, which the enclave will be refused"
if ip netns exec "$PARENT" curl -sS --max-time 5 "http://$DENIED/"; then
    echo "-> $DENIED answers; what stops the enclave below is the policy, not the network"
else
    echo "-> UNEXPECTED: $DENIED does not answer even from the parent (curl exit $?)"; exit 1
fi

say "world: dnsmasq on $DNS, the parent's DNS upstream ($NAME -> $NAME_ADDRESS, $DENIED_NAME -> $DENIED)"
ip netns exec "$WORLD" dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts --no-poll \
    --bind-interfaces --listen-address=$DNS --user=root --pid-file="$WORK/dnsmasq.pid" --log-facility=- --local=/#/ --local-ttl=300 \
    --host-record=$NAME,$NAME_ADDRESS --host-record=$DENIED_NAME,$DENIED > "$WORK/dnsmasq.log" 2>&1 &
wait_for "dnsmasq" $! "$WORK/dnsmasq.log" ip netns exec "$WORLD" dig +time=1 +tries=1 "@$DNS" $NAME

say "parent: egress-host on unix:$WORK/tunnel.sock"
ip netns exec "$PARENT" dotnet "$HOST_DLL" --config "$CONFIG" --tunnel "unix:$WORK/tunnel.sock" --dns-upstream $DNS \
    > "$WORK/host.log" 2>&1 &
wait_for "egress-host" $! "$WORK/host.log" test -S "$WORK/tunnel.sock"

say "enclave: egress-enclave rules --apply, then the proxy and the DNS forwarder; resolv.conf -> 127.0.0.1"
ip netns exec "$ENCLAVE" dotnet "$ENCLAVE_DLL" rules --apply --config "$CONFIG"
mkdir -p "/etc/netns/$ENCLAVE"   # ip netns exec bind-mounts this over /etc/resolv.conf
echo "nameserver 127.0.0.1" > "/etc/netns/$ENCLAVE/resolv.conf"
ip netns exec "$ENCLAVE" dotnet "$ENCLAVE_DLL" --config "$CONFIG" --tunnel "unix:$WORK/tunnel.sock" > "$WORK/enclave.log" 2>&1 &
wait_for "egress-enclave" $! "$WORK/enclave.log" listening "$ENCLAVE" 4444
wait_for "the DNS forwarder" $! "$WORK/enclave.log" listening "$ENCLAVE" 53

result=0
say "inside the enclave: curl http://$ALLOWED/   (allowed)"
if ip netns exec "$ENCLAVE" curl -sS --max-time 5 "http://$ALLOWED/"; then
    echo "-> allowed, as configured"
else
    echo "-> UNEXPECTED: curl failed (exit $?)"; result=1
fi

say "inside the enclave: curl http://$DENIED/   (not in the allowlist)"
ip netns exec "$ENCLAVE" curl -sS --max-time 5 "http://$DENIED/" && code=0 || code=$?
sleep 0.3   # the denial's log line
case $code in
    0) echo "-> UNEXPECTED: the denied destination answered"; result=1 ;;
    7|56)
        if grep -q "denied.*$DENIED\|$DENIED.*denied" "$WORK/enclave.log"; then
            echo "-> refused at once (curl exit $code: connection reset), and egress-enclave logged the denial, as configured"
        else
            echo "-> UNEXPECTED: curl exit $code, but egress-enclave logged no denial of $DENIED"; result=1
        fi ;;
    *) echo "-> UNEXPECTED: curl exit $code (a timeout or another failure, not the proxy's refusal)"; result=1 ;;
esac

say "inside the enclave: curl http://$NAME/   (allowed by name; $NAME_ADDRESS is listed nowhere)"
if ip netns exec "$ENCLAVE" curl -sS --max-time 5 "http://$NAME/"; then
    echo "-> allowed: the DNS forwarder learned $NAME_ADDRESS from the answer for $NAME"
else
    echo "-> UNEXPECTED: curl failed (exit $?)"; result=1
fi

say "inside the enclave: dig $DENIED_NAME   (a name not in the allowlist)"
answer=$(ip netns exec "$ENCLAVE" dig +time=5 +tries=1 "$DENIED_NAME" || true)
printf '%s\n' "$answer" | grep -E "status:|EDE:|SERVER:"
if printf '%s\n' "$answer" | grep -q "status: NXDOMAIN"; then
    echo "-> NXDOMAIN from the enclave's forwarder; the query never left the enclave"
else
    echo "-> UNEXPECTED: not denied with NXDOMAIN"; result=1
fi

sleep 0.3   # let the hosts flush their log lines
pattern="$ALLOWED|$DENIED|$NAME_ADDRESS|$NAME|$DENIED_NAME"
say "why: egress-enclave's log"
grep -E "$pattern" "$WORK/enclave.log" || echo "(no enclave log line names $ALLOWED, $DENIED, $NAME or $DENIED_NAME)"
say "why: egress-host's log"
grep -E "$pattern" "$WORK/host.log" || echo "(no host log line names $ALLOWED, $DENIED, $NAME or $DENIED_NAME)"

if [ "$result" -ne 0 ]; then
    say "full logs"
    echo "--- enclave.log"; cat "$WORK/enclave.log"
    echo "--- host.log"; cat "$WORK/host.log"
fi
say "tearing down"
exit "$result"
