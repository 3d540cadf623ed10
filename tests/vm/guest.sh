#!/bin/bash
# The VM suite's guest side: PID 1 of a QEMU guest booted by tests/vm/run-vm.sh. It makes the guest look like a
# Nitro enclave and its parent, runs the project's own hosts over real AF_VSOCK, runs each case with unmodified
# clients and writes one line per case to /vm-out/results:
#   PASS <case> | <detail>      FAIL <case> | <reason>      INFO <what> | <measurement>
# and "END" when every case has run. It powers the guest off at the end, whatever happens.
#
# What it loads: only modules that the Nitro enclave kernel has built in (no nf_tables), then module autoloading is
# switched off, so iptables-nft fails here as it does in a real enclave. Namespaces: "enc" (only lo, the redirect
# rules from `egress-enclave rules --apply`, egress-enclave, the apps), "par" (egress-host on vsock://any:PORT, a
# veth to the world), "wld" (servers on 198.18.0.0/15 and 2001:db8::/32, dnsmasq as the upstream resolver).
# egress-enclave dials vsock://1:PORT (VMADDR_CID_LOCAL through vsock_loopback); VSOCK ignores network namespaces,
# so it crosses from "enc" to "par" as it crosses the VM boundary on Nitro.
# /vm-out/guest.env (written by tests/vm/suite.sh) names the hosts to run: EGRESS_BIN (folder with
# egress-enclave.dll and egress-host.dll) and DOTNET.
set -u
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 LC_ALL=C.UTF-8

mount -t proc proc /proc 2>/dev/null
mount -t sysfs sys /sys 2>/dev/null
mkdir -p /dev/pts /dev/shm && mount -t devpts devpts /dev/pts 2>/dev/null && mount -t tmpfs tmpfs /dev/shm 2>/dev/null
# /tmp stays this machine's (through the overlay, so writable): the repository and its build may live there.
mount -t tmpfs tmpfs /run && mkdir -p /run/netns /var/run
mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null

RESULTS=/vm-out/results
W=$(mktemp -d /tmp/egress-vm-guest.XXXXXX)
: > "$RESULTS"
poweroff_now() { cp "$W"/*.log /vm-out/ 2>/dev/null; sync; echo o > /proc/sysrq-trigger; sleep 30; }
trap poweroff_now EXIT
# wait_until SECONDS COMMAND...: polls COMMAND every 0.1 s until it succeeds (0) or SECONDS pass (1). Under TCG a
# process start costs tens of milliseconds or more, so waits are bounded by time, never by a count of tries.
wait_until() {
  local deadline=$((SECONDS + $1)); shift
  until "$@"; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.1
  done
}

# Each line ends with the guest's uptime in seconds, so a slow step shows.
report() { printf '%s %s | %s [%ss]\n' "$1" "$2" "$3" "$SECONDS" | tee -a "$RESULTS" | sed 's/^/vm-case: /'; }
pass() { report PASS "$@"; }
fail() { report FAIL "$@"; }
info() { report INFO "$@"; }
# tail of a log, one line, for a failure reason
tail_of() { tail -n "${2:-5}" "$1" 2>/dev/null | tr '\n' ' ' | cut -c1-900; }

# shellcheck disable=SC1091
. /vm-out/vm.env
# shellcheck disable=SC1091
. /vm-out/guest.env
ENCLAVE=("$DOTNET" "$EGRESS_BIN/egress-enclave.dll")
HOST=("$DOTNET" "$EGRESS_BIN/egress-host.dll")
PORT=4433
in_enc() { ip netns exec enc "$@"; }

# --- the enclave kernel's netfilter set ---------------------------------------------------------------------------
for m in vsock_loopback veth ip_tables iptable_nat iptable_filter ip6_tables ip6table_nat ip6table_filter \
  nf_conntrack nf_nat xt_nat xt_REDIRECT ipt_REJECT ip6t_REJECT xt_conntrack xt_addrtype xt_tcpudp; do
  modprobe -d "$EGRESS_VM_MODULES" -S "$EGRESS_VM_KVER" "$m" || echo "vm: modprobe $m failed"
done
echo /bin/false > /proc/sys/kernel/modprobe

# --- topology -----------------------------------------------------------------------------------------------------
ip link set lo up
for ns in enc par wld; do ip netns add $ns; ip -n $ns link set lo up; done
ip link add par0 netns par type veth peer name wld0 netns wld
ip -n par addr add 198.18.0.1/15 dev par0
ip -n par addr add 2001:db8::1/64 dev par0 nodad
ip -n par link set par0 up
for a in 198.18.0.10 198.18.0.20 198.18.0.30 198.18.0.53; do ip -n wld addr add $a/15 dev wld0; done
ip -n wld addr add 2001:db8::10/64 dev wld0 nodad
ip -n wld link set wld0 up
mkdir -p /etc/netns/enc && echo "nameserver 127.0.0.1" > /etc/netns/enc/resolv.conf

# --- world servers (socat forks one process per connection) -----------------------------------------------------
head -c $((64 * 1024 * 1024)) /dev/urandom > "$W/blob64"
head -c $((4 * 1024 * 1024)) /dev/urandom > "$W/blob4"
SHA64=$(sha256sum < "$W/blob64" | cut -c1-64)
SHA4=$(sha256sum < "$W/blob4" | cut -c1-64)
world() { ip netns exec wld socat -t 30 "$@" 2>>"$W/world.log" & }
mkdir -p "$W/www" && echo "hello from the world" > "$W/www/index.html"
(cd "$W/www" && exec ip netns exec wld /usr/bin/python3 -m http.server 8080 --bind :: >>"$W/world.log" 2>&1) &
# socat's address syntax gives ',', ':' and ';' meanings of their own: each server's shell lives in a file.
printf '#!/bin/sh\nprintf "220 banner from the world\\r\\n"\nexec cat\n' > "$W/banner.sh"
printf '#!/bin/sh\ncat >/dev/null\nexec cat %s\n' "$W/blob4" > "$W/after-eof.sh"
printf '#!/bin/sh\nsha256sum | cut -c1-64\n' > "$W/sink.sh"
printf '#!/bin/sh\nexec cat %s\n' "$W/blob64" > "$W/source.sh"
chmod +x "$W"/*.sh
world TCP-LISTEN:7001,fork,reuseaddr EXEC:cat
world TCP-LISTEN:7002,fork,reuseaddr EXEC:"$W/banner.sh"
world TCP-LISTEN:7003,fork,reuseaddr EXEC:"$W/after-eof.sh"
world TCP-LISTEN:7004,fork,reuseaddr EXEC:"$W/sink.sh"
world TCP-LISTEN:7005,fork,reuseaddr EXEC:"$W/source.sh"
# 7006: HTTP 200 with a 64 KiB body and no length, then RST (SO_LINGER 0): a transfer cut short by the destination.
cat > "$W/rst.py" <<'EOF'
import socket, struct, time
listener = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("::", 7006))
listener.listen(8)
while True:
    c, _ = listener.accept()
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = c.recv(4096)
        if not chunk:
            break
        head += chunk
    c.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + b"x" * 65536)
    time.sleep(0.3)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()
EOF
(exec ip netns exec wld /usr/bin/python3 "$W/rst.py" >>"$W/world.log" 2>&1) &
ip netns exec wld dnsmasq --keep-in-foreground --no-resolv --no-hosts --bind-interfaces --listen-address=198.18.0.53 \
  --port=53 --user=root --pid-file="$W/dnsmasq.pid" --log-facility="$W/dnsmasq.log" --log-queries \
  --host-record=api.allowed.test,198.18.0.20 --host-record=denied.test,198.18.0.30 &

world_ready() { ip netns exec wld ss -Hltn 'sport = :8080' | grep -q LISTEN && ip netns exec wld ss -Hlun 'sport = :53' | grep -q 53; }
wait_until 60 world_ready || echo "vm: the world's servers did not start: $(tail_of "$W/world.log")"

cat > "$W/enclave.toml" <<EOF
[egress]
enabled = true
destinations = ["198.18.0.10", "2001:db8::10", "api.allowed.test"]

# Timeouts for TCG, where a first query also pays for the JIT of the whole DNS path on both hosts.
[tunnel]
enclave_endpoint = "vsock://1:$PORT"
host_endpoint = "vsock://any:$PORT"
status_timeout_ms = 20000

[enclave]
dns_query_timeout_ms = 15000

[host]
connect_timeout_ms = 5000
dns_timeout_ms = 10000
dns_upstreams = ["198.18.0.53"]

[relay]
shutdown_drain_seconds = 20
EOF

# egress-host says when it listens (ss cannot list VSOCK sockets here: vsock_diag is not loaded, as in an enclave).
host_listening() { [ "$(grep -c "gateway listening on vsock://any:$PORT" "$W/host.log" 2>/dev/null)" -gt "$1" ] || ! kill -0 $HOST_PID 2>/dev/null; }
start_host() {
  local before
  before=$(grep -c "gateway listening on vsock://any:$PORT" "$W/host.log" 2>/dev/null)
  ip netns exec par "${HOST[@]}" --config "$W/enclave.toml" >>"$W/host.log" 2>&1 &
  HOST_PID=$!
  wait_until 120 host_listening "${before:-0}" && kill -0 $HOST_PID 2>/dev/null
}
listening_in_enc() { in_enc ss -Hltn "sport = :$1" | grep -q LISTEN; }
enclave_ready() {
  ! kill -0 $ENCLAVE_PID 2>/dev/null || in_enc ss -Htuln '( sport = :4444 or sport = :53 )' |
    awk '$5 == "127.0.0.1:4444" { v4 = 1 } $5 == "[::1]:4444" { v6 = 1 } $1 == "udp" && $5 == "127.0.0.1:53" { dns = 1 } END { exit !(v4 && v6 && dns) }'
}
start_enclave() {
  # Not through in_enc: a function run in the background is a subshell, and its PID is not egress-enclave's.
  ip netns exec enc "${ENCLAVE[@]}" --config "$W/enclave.toml" >>"$W/enclave.log" 2>&1 &
  ENCLAVE_PID=$!
  wait_until 120 enclave_ready && kill -0 $ENCLAVE_PID 2>/dev/null
}

# --- case: nf_tables is absent, as in the Nitro enclave kernel ---------------------------------------------------
out=$(in_enc iptables-nft -w -t nat -S OUTPUT 2>&1)
if echo "$out" | grep -q "Failed to initialize nft"; then
  pass enclave-kernel-has-no-nf_tables "iptables-nft fails as in a Nitro enclave: $(echo "$out" | head -n 1)"
else
  fail enclave-kernel-has-no-nf_tables "iptables-nft did not fail for want of nf_tables, so this guest does not stand in for the enclave kernel: $out"
fi

# --- case: rules --apply on that kernel ------------------------------------------------------------------------------
if out=$(in_enc "${ENCLAVE[@]}" rules --apply --config "$W/enclave.toml" 2>&1); then
  if in_enc iptables-legacy -w -t nat -S OUTPUT | grep -q DNAT && in_enc ip6tables-legacy -w -t nat -S OUTPUT | grep -q DNAT; then
    pass rules-apply "exit 0, DNAT rules in the legacy tables (v4 and v6): $(echo "$out" | grep -i netfilter | head -n 1)"
  else
    fail rules-apply "exit 0 but no DNAT rule in iptables-legacy/ip6tables-legacy: $(echo "$out" | tr '\n' ' ' | cut -c1-600)"
  fi
else
  fail rules-apply "$(echo "$out" | tr '\n' ' ' | cut -c1-600)"
fi

if start_host; then pass host-listens-on-vsock "egress-host listens on vsock://any:$PORT"
else fail host-listens-on-vsock "$(tail_of "$W/host.log")"; fi
if start_enclave; then pass enclave-starts "egress-enclave listens on 127.0.0.1:4444 and 127.0.0.1:53 in the lo-only namespace"
else fail enclave-starts "$(tail_of "$W/enclave.log")"; fi

# --- case: allowed TCP (HTTP through both hosts, v4 and v6) ------------------------------------------------------
body=$(in_enc curl -sS --max-time 20 http://198.18.0.10:8080/ 2>&1)
[ "$body" = "hello from the world" ] && pass tcp-allowed-ipv4 "curl http://198.18.0.10:8080/ got the world's page" \
  || fail tcp-allowed-ipv4 "curl: $body; enclave: $(tail_of "$W/enclave.log" 3)"
body=$(in_enc curl -sS --max-time 20 'http://[2001:db8::10]:8080/' 2>&1)
[ "$body" = "hello from the world" ] && pass tcp-allowed-ipv6 "curl http://[2001:db8::10]:8080/ got the world's page" \
  || fail tcp-allowed-ipv6 "curl: $body; enclave: $(tail_of "$W/enclave.log" 3)"

# --- case: denied TCP (an address not listed; must fail fast, never reach the world) -------------------------------
start=$(date +%s%N)
out=$(in_enc curl -sS --max-time 20 http://198.18.0.30:8080/ 2>&1); rc=$?
ms=$(( ($(date +%s%N) - start) / 1000000 ))
if [ $rc -ne 0 ] && [ $ms -lt 10000 ] && grep -q "connection to 198.18.0.30:8080 denied" "$W/enclave.log"; then
  pass tcp-denied "curl exit $rc after ${ms} ms; enclave: $(grep 'connection to 198.18.0.30:8080 denied' "$W/enclave.log" | tail -n 1 | cut -c1-300)"
else
  fail tcp-denied "curl exit $rc after ${ms} ms: $out"
fi

# --- case: DNS over UDP and TCP through the VSOCK DNS stream ------------------------------------------------------
for transport in udp tcp; do
  flag=; [ $transport = tcp ] && flag=+tcp
  out=$(in_enc dig +time=20 +tries=1 $flag @127.0.0.1 api.allowed.test A +short 2>&1)
  [ "$out" = "198.18.0.20" ] && pass dns-allowed-$transport "dig $flag api.allowed.test -> $out" \
    || fail dns-allowed-$transport "dig $flag: $out; enclave: $(tail_of "$W/enclave.log" 3); host: $(tail_of "$W/host.log" 3)"
done
out=$(in_enc dig +time=20 +tries=1 @127.0.0.1 denied.test A 2>&1)
status=$(echo "$out" | sed -n 's/.*status: \([A-Z]*\).*/\1/p')
if [ -n "$status" ] && [ "$status" != NOERROR ] && ! grep -q denied.test "$W/dnsmasq.log"; then
  pass dns-denied-name "denied.test answered $status by the enclave, never asked upstream"
else
  fail dns-denied-name "status '$status'; dnsmasq saw: $(grep denied.test "$W/dnsmasq.log" | head -n 1)"
fi

# --- case: DNS sent to another resolver (the world's dnsmasq itself, over UDP and TCP) goes through the forwarder ---
out=$(in_enc dig +time=20 +tries=1 @198.18.0.53 api.allowed.test A +short 2>&1)
tcp=$(in_enc dig +time=20 +tries=1 +tcp @198.18.0.53 denied.test A 2>&1 | sed -n 's/.*status: \([A-Z]*\).*/\1/p')
if [ "$out" = "198.18.0.20" ] && [ "$tcp" = NXDOMAIN ] && ! grep -q denied.test "$W/dnsmasq.log"; then
  pass dns-other-resolver "dig @198.18.0.53 api.allowed.test -> $out (UDP); dig +tcp @198.18.0.53 denied.test -> $tcp, never asked upstream"
else
  fail dns-other-resolver "UDP: $out; TCP denied.test: '$tcp'; dnsmasq saw: $(grep denied.test "$W/dnsmasq.log" | head -n 1); rules: $(in_enc iptables-legacy -w -t nat -S OUTPUT | tr '\n' ' ')"
fi

# --- case: UDP other than DNS is refused at once (the rules' REJECT in filter OUTPUT, on this kernel's legacy tables) --
got=$(in_enc /usr/bin/python3 - <<'EOF' 2>&1
import errno, socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
s.connect(("198.18.0.10", 443))
start = time.monotonic()
try:
    s.send(b"quic initial")
    s.recv(100)
    print("answered")
except socket.timeout:
    print("timed out")
except OSError as e:
    print("%s %.3f" % (errno.errorcode[e.errno], time.monotonic() - start))
EOF
)
case "$got" in
  "EPERM 0."*) pass udp-refused "send to 198.18.0.10:443 over UDP: $got s" ;;
  *) fail udp-refused "got: $got; filter: $(in_enc iptables-legacy -w -t filter -S OUTPUT | tr '\n' ' ')" ;;
esac

# --- case: a learned address (allowed only through the DNS answer) ------------------------------------------------
# 198.18.0.20 is not listed: egress-enclave has learned it from the answers above.
body=$(in_enc curl -sS --max-time 20 http://api.allowed.test:8080/ 2>&1)
[ "$body" = "hello from the world" ] && pass learned-address "curl http://api.allowed.test:8080/ (198.18.0.20, learned from DNS) got the page" \
  || fail learned-address "curl: $body; enclave: $(tail_of "$W/enclave.log" 3); host: $(tail_of "$W/host.log" 3)"

# --- case: the deploy kit's entrypoint (deploy/enclave/bootstrap.sh) on this kernel, as an enclave image runs it -----
# A namespace of its own with lo down, as a Nitro enclave starts; the netfilter backend left to the configuration
# (auto: it must find iptables-legacy, nf_tables being absent); egress-enclave over VSOCK to the same egress-host; the
# application checks what a real one needs: TCP to a listed address, DNS through the forwarder, the learned address,
# a refused address, and its exit code passed through.
printf '#!/bin/sh\nexec %q %q "$@"\n' "$DOTNET" "$EGRESS_BIN/egress-enclave.dll" > "$W/egress-enclave"
cat > "$W/boot-app.sh" <<'EOF'
#!/bin/sh
echo "lo: $(ip -o link show lo | grep -c 'LOOPBACK,UP')"
echo "page: $(curl -sS --max-time 30 http://198.18.0.10:8080/ 2>&1)"
echo "dns: $(dig +short +time=30 +tries=1 @127.0.0.1 api.allowed.test 2>&1 | tr '\n' ' ')"
echo "learned: $(curl -sS --max-time 30 http://198.18.0.20:8080/ 2>&1)"
curl -sS --max-time 20 http://198.18.0.30:7001/ >/dev/null 2>&1; echo "refused: curl exit $?"
echo "legacy-dnat: $(iptables-legacy -w -t nat -S OUTPUT | grep -c DNAT)"
echo "resolv: $(cat "$EGRESS_RESOLV_CONF")"
exit 7
EOF
chmod +x "$W/egress-enclave" "$W/boot-app.sh"
ip netns add boot
ip netns exec boot env EGRESS_ENCLAVE_BIN="$W/egress-enclave" EGRESS_CONFIG="$W/enclave.toml" \
  EGRESS_RESOLV_CONF="$W/boot-resolv.conf" EGRESS_DNS=on EGRESS_START_TIMEOUT=120 TMPDIR="$W" \
  timeout 400 sh /vm-out/bootstrap.sh "$W/boot-app.sh" > "$W/boot.log" 2>&1
rc=$?
ip netns pids boot 2>/dev/null | xargs -r kill 2>/dev/null; sleep 1; ip netns pids boot 2>/dev/null | xargs -r kill -9 2>/dev/null
ip netns del boot
boot_has() { grep -qxF -- "$1" "$W/boot.log"; }
missing=
for want in "lo: 1" "page: hello from the world" "dns: 198.18.0.20 " "learned: hello from the world" \
  "legacy-dnat: 3" "resolv: nameserver 127.0.0.1"; do
  boot_has "$want" || missing="$missing [$want]"
done
grep -qE '^refused: curl exit (7|52|56)$' "$W/boot.log" || missing="$missing [refused: curl exit 7, 52 or 56]"
[ $rc -eq 7 ] || missing="$missing [exit 7, got $rc]"
if [ -z "$missing" ]; then
  pass deploy-bootstrap "bootstrap.sh: lo up, the rules in the legacy tables by themselves, egress-enclave over VSOCK, resolv.conf pointed at it; the app's TCP, DNS and learned address worked, the unlisted address was refused, its exit code 7 came back: $(grep -i -m1 'netfilter\|legacy' "$W/boot.log" | cut -c1-200)"
else
  fail deploy-bootstrap "missing:$missing; log: $(tail_of "$W/boot.log" 14)"
fi

# --- case: bulk both ways, sha256 ----------------------------------------------------------------------------------
got=$(in_enc socat -t 60 -T 60 - TCP:198.18.0.10:7004 < "$W/blob64" 2>&1)
[ "$got" = "$SHA64" ] && pass bulk-upload "64 MiB to the world, sha256 equal" || fail bulk-upload "world saw sha256 '$got', sent $SHA64"
got=$(in_enc socat -t 60 -T 60 -u TCP:198.18.0.10:7005 - 2>/dev/null | sha256sum | cut -c1-64)
[ "$got" = "$SHA64" ] && pass bulk-download "64 MiB from the world, sha256 equal" || fail bulk-download "received sha256 $got, sent $SHA64"

# --- measured: does splice(2) work on a VSOCK socket, or does the relay fall back to copying? ------------------------
# Both hosts are traced while 64 MiB go from the world to the app: egress-host splices TCP -> pipe -> VSOCK,
# egress-enclave VSOCK -> pipe -> TCP. strace -c counts each call and its errors (a splice that the socket refuses
# fails with EINVAL, and the relay then copies with recvfrom/sendto).
if command -v strace >/dev/null; then
  strace -f -c -o "$W/strace-host" -e trace=splice,recvfrom,sendto,recvmsg,sendmsg -p $HOST_PID 2>/dev/null &
  strace_host=$!
  strace -f -c -o "$W/strace-enclave" -e trace=splice,recvfrom,sendto,recvmsg,sendmsg -p $ENCLAVE_PID 2>/dev/null &
  strace_enclave=$!
  sleep 3
  in_enc socat -t 60 -T 60 -u TCP:198.18.0.10:7005 - 2>/dev/null | sha256sum >/dev/null
  kill -INT $strace_host $strace_enclave; wait $strace_host $strace_enclave 2>/dev/null
  # "calls/errors" of one system call in a strace -c summary (the errors column is empty when there were none)
  calls() { awk -v c="$2" '$NF == c { printf "%s/%s", $4, (NF == 6 ? $5 : 0); found = 1 } END { if (!found) printf "0/0" }' "$1"; }
  summary() { echo "splice $(calls "$1" splice), recvfrom $(calls "$1" recvfrom), sendto $(calls "$1" sendto), recvmsg $(calls "$1" recvmsg), sendmsg $(calls "$1" sendmsg)"; }
  info splice-on-vsock "64 MiB world -> app, system calls as calls/errors: egress-host (TCP -> VSOCK): $(summary "$W/strace-host"); egress-enclave (VSOCK -> TCP): $(summary "$W/strace-enclave")"
fi

# --- case: half-close (the app sends, shuts down its write side, then reads a 4 MiB reply) --------------------------
got=$(printf 'request' | in_enc socat -t 60 -T 60 - TCP:198.18.0.10:7003 2>/dev/null | sha256sum | cut -c1-64)
[ "$got" = "$SHA4" ] && pass half-close "4 MiB reply after the app's EOF, sha256 equal" || fail half-close "reply sha256 $got, expected $SHA4"

# --- case: the destination resets after a body without a length: over VSOCK too, the app sees the reset -------------
# (tunnel v2: END(RST) from egress-host, RST to the app; with v1, curl exited 0 with a truncated body)
in_enc curl -sS --max-time 20 -o /dev/null http://198.18.0.10:7006/ 2>"$W/rst.err"; rc=$?
line=$(grep '198.18.0.10:7006 closed' "$W/enclave.log" | tail -n 1)
if [ $rc -eq 56 ]; then
  pass destination-rst-app-sees-reset "curl exit 56 ($(head -c 120 "$W/rst.err" | tr '\n' ' ')); enclave: ${line#*closed: }"
else
  fail destination-rst-app-sees-reset "curl exit $rc, expected 56 ($(head -c 120 "$W/rst.err" | tr '\n' ' ')); enclave: ${line#*closed: }"
fi

# --- case: a server that speaks first ---------------------------------------------------------------------------------
got=$(in_enc /usr/bin/python3 - <<'EOF' 2>&1
import socket
s = socket.create_connection(("198.18.0.10", 7002), timeout=15)
print(s.makefile("rb").readline().decode().strip())
EOF
)
[ "$got" = "220 banner from the world" ] && pass server-speaks-first "banner received before the app sent anything" || fail server-speaks-first "$got"

# --- case: egress-host killed under a live connection: the app must learn within 1 s --------------------------------
cat > "$W/hold.py" <<'EOF'
import socket, sys, time, os
s = socket.create_connection(("198.18.0.10", 7001), timeout=15)
s.sendall(b"ping\n")
assert s.recv(100) == b"ping\n"
open(sys.argv[1], "w").write("ready")
while not os.path.exists(sys.argv[2]):
    time.sleep(0.01)
start = time.monotonic()
s.settimeout(10)
try:
    data = s.recv(100)
    outcome = "EOF" if data == b"" else "data %r" % data
except socket.timeout:
    outcome = "nothing (timed out)"
except OSError as e:
    outcome = "error %s" % (e.strerror or e)
print("%s after %.3f s" % (outcome, time.monotonic() - start))
EOF
rm -f "$W/ready" "$W/go"
in_enc /usr/bin/python3 "$W/hold.py" "$W/ready" "$W/go" > "$W/hold.out" 2>&1 &
hold=$!
wait_until 30 test -e "$W/ready"
touch "$W/go"; kill -9 $HOST_PID
wait $hold
got=$(cat "$W/hold.out")
secs=$(echo "$got" | sed -n 's/.* after \([0-9.]*\) s$/\1/p')
if [ -n "$secs" ] && awk -v s="$secs" 'BEGIN { exit !(s < 1.0) }' && ! echo "$got" | grep -q "^nothing"; then
  pass host-killed-app-learns "egress-host killed with SIGKILL: the app saw $got"
else
  fail host-killed-app-learns "egress-host killed with SIGKILL: the app saw $got"
fi

# --- case: egress-host restarted: service resumes without restarting egress-enclave ---------------------------------
if start_host; then
  body=$(in_enc curl -sS --max-time 20 http://198.18.0.10:8080/ 2>&1)
  out=$(in_enc dig +time=20 +tries=1 @127.0.0.1 api.allowed.test A +short 2>&1)
  if [ "$body" = "hello from the world" ] && [ "$out" = "198.18.0.20" ]; then
    pass host-restarted-service-resumes "after the restart: HTTP and DNS work, same egress-enclave (pid $ENCLAVE_PID)"
  else
    fail host-restarted-service-resumes "curl: $body; dig: $out; enclave: $(tail_of "$W/enclave.log" 3)"
  fi
else
  fail host-restarted-service-resumes "egress-host did not listen again: $(tail_of "$W/host.log")"
fi

# --- case: egress-host killed while it sends: the app gets what was relayed, then its recv() returns -----------------
# The app stops reading after 1 MiB, so every buffer on the way is full when egress-host is killed; then it reads as
# fast as it can. Before its recv() can return 0 it must take the bytes already queued for it, so this bounds the
# time to the end (10 s, the issue's observation) rather than holding it to the idle case's 1 s; the time is reported.
cat > "$W/stream.py" <<'EOF'
import os, socket, sys, time
s = socket.create_connection(("198.18.0.10", 7005), timeout=15)
got = 0
while got < 1 << 20:
    got += len(s.recv(65536))
open(sys.argv[1], "w").write("ready")
while not os.path.exists(sys.argv[2]):
    time.sleep(0.01)
s.settimeout(10)
try:
    while True:
        data = s.recv(1 << 20)
        if not data:
            outcome = "EOF"
            break
        got += len(data)
except socket.timeout:
    outcome = "nothing (timed out)"
except OSError as e:
    outcome = "error %s" % (e.strerror or e)
print("%.3f %s after %d bytes" % (time.time(), outcome, got))
EOF
rm -f "$W/ready" "$W/go"
in_enc /usr/bin/python3 "$W/stream.py" "$W/ready" "$W/go" > "$W/stream.out" 2>&1 &
stream=$!
wait_until 60 test -e "$W/ready"
sleep 1
killed=$(date +%s.%N); kill -9 $HOST_PID; touch "$W/go"
wait $stream
got=$(cat "$W/stream.out")
secs=$(echo "$got" | awk -v k="$killed" '{ printf "%.3f", $1 - k }')
bytes=$(echo "$got" | sed -n 's/.* after \([0-9]*\) bytes$/\1/p')
# A clean EOF on a stream cut short is the tunnel v1 limit (its end is only a FIN; tunnel v2 carries the cause): said, not judged here.
cut=; [ -n "$bytes" ] && [ "$bytes" -lt $((64 * 1024 * 1024)) ] && echo "$got" | grep -q " EOF " && cut=" (cut short, yet a clean EOF: tunnel v1 cannot tell the app)"
if echo "$got" | grep -qE '^[0-9.]+ (EOF|error)' && awk -v s="$secs" 'BEGIN { exit !(s < 10.0) }'; then
  pass host-killed-mid-transfer-recv-returns "egress-host killed with SIGKILL while sending 64 MiB: the app saw ${got#* } ${secs} s after the kill$cut"
else
  fail host-killed-mid-transfer-recv-returns "egress-host killed with SIGKILL while sending 64 MiB: the app saw ${got#* } ${secs} s after the kill"
fi
if start_host; then pass host-restarted-again "egress-host listens again after the second kill"
else fail host-restarted-again "egress-host did not listen again: $(tail_of "$W/host.log")"; fi

# --- case: SIGTERM drain: egress-enclave stops accepting, a live connection finishes, then it exits 0 -------------
rm -f "$W/ready" "$W/go"
cat > "$W/drain.py" <<'EOF'
import socket, sys, time, os
s = socket.create_connection(("198.18.0.10", 7001), timeout=15)
open(sys.argv[1], "w").write("ready")
while not os.path.exists(sys.argv[2]):
    time.sleep(0.01)
s.sendall(b"after sigterm\n")
print(s.recv(100).decode().strip())
s.close()
EOF
in_enc /usr/bin/python3 "$W/drain.py" "$W/ready" "$W/go" > "$W/drain.out" 2>&1 &
drain=$!
wait_until 30 test -e "$W/ready"
kill -TERM $ENCLAVE_PID
not_listening() { ! listening_in_enc 4444; }
wait_until 10 not_listening
listening_after=$(listening_in_enc 4444 && echo yes || echo no)
touch "$W/go"; wait $drain
start=$(date +%s%N)
wait $ENCLAVE_PID; code=$?
ms=$(( ($(date +%s%N) - start) / 1000000 ))
got=$(cat "$W/drain.out")
if [ "$got" = "after sigterm" ] && [ $listening_after = no ] && [ $code -eq 0 ] && [ $ms -lt 15000 ]; then
  pass sigterm-drain "stopped listening, the live connection still echoed, exit 0 ${ms} ms after it closed"
else
  fail sigterm-drain "echo '$got', still listening: $listening_after, exit $code after ${ms} ms; $(tail_of "$W/enclave.log" 3)"
fi

# --- cases: several enclaves on one parent ([[host.enclaves]]): the real VSOCK accept path reads the peer's CID ---
# Over vsock_loopback the enclave's streams come from CID 1 (VMADDR_CID_LOCAL). One egress-host maps CID 1 to a file
# that allows only 198.18.0.10 (so IPv6, which the enclave's own file allows, is denied by the parent); another maps
# only CID 16, so CID 1 is refused with the reason. egress-enclave is started against each in turn (--tunnel).
printf '[egress]\nenabled = true\ndestinations = ["198.18.0.10"]\n' > "$W/cid1.toml"
map_host() { # map_host PORT LOG ENTRY: an egress-host on vsock://any:PORT with the main file plus [[host.enclaves]] ENTRY
  { cat "$W/enclave.toml"; printf '\n[[host.enclaves]]\n%s\n' "$3"; } > "$W/host-$1.toml"
  ip netns exec par "${HOST[@]}" --config "$W/host-$1.toml" --tunnel "vsock://any:$1" >>"$2" 2>&1 &
}
mapped_listening() { grep -q "gateway listening on vsock://any:$1" "$2" 2>/dev/null; }
map_host $((PORT + 1)) "$W/host-mapped.log" "cid = 1
config = \"$W/cid1.toml\""
MAPPED_PID=$!
map_host $((PORT + 2)) "$W/host-refusing.log" "cid = 16
config = \"$W/cid1.toml\""
REFUSING_PID=$!
enclave_on() { # enclave_on PORT: egress-enclave dialling vsock://1:PORT
  ip netns exec enc "${ENCLAVE[@]}" --config "$W/enclave.toml" --tunnel "vsock://1:$1" >>"$W/enclave-$1.log" 2>&1 &
  ENCLAVE_PID=$!
  wait_until 120 enclave_ready && kill -0 $ENCLAVE_PID 2>/dev/null
}
stop_enclave() { kill -TERM $ENCLAVE_PID 2>/dev/null; wait $ENCLAVE_PID 2>/dev/null; }
if wait_until 120 mapped_listening $((PORT + 1)) "$W/host-mapped.log" && enclave_on $((PORT + 1)); then
  body=$(in_enc curl -sS --max-time 20 http://198.18.0.10:8080/ 2>&1)
  v6=$(in_enc curl -sS --max-time 20 'http://[2001:db8::10]:8080/' 2>&1); v6rc=$?
  wait_until 10 grep -q 'connection to \[2001:db8::10\]:8080 denied' "$W/host-mapped.log"
  denied=$(grep -c 'connection to \[2001:db8::10\]:8080 denied' "$W/host-mapped.log")
  entry=$(grep -o 'enclave CID 1: policy [^ ]*' "$W/host-mapped.log" | head -n 1)
  if [ "$body" = "hello from the world" ] && [ $v6rc -ne 0 ] && [ "$denied" -gt 0 ] && [ -n "$entry" ]; then
    pass host-enclaves-cid-mapped "peer CID 1 decided by cid1.toml ($entry): 198.18.0.10 allowed, [2001:db8::10] (allowed by the enclave's own file) denied by the parent"
  else
    fail host-enclaves-cid-mapped "curl v4: $body; curl v6 exit $v6rc: $v6; parent denials of v6: $denied; entry: '$entry'; host: $(tail_of "$W/host-mapped.log" 3)"
  fi
else
  fail host-enclaves-cid-mapped "egress-host or egress-enclave did not start: $(tail_of "$W/host-mapped.log" 3) $(tail_of "$W/enclave-$((PORT + 1)).log" 3)"
fi
stop_enclave
reason='enclave CID 1 is not in [[host.enclaves]] (mapped: 16; no cid = "any")'
if wait_until 120 mapped_listening $((PORT + 2)) "$W/host-refusing.log" && enclave_on $((PORT + 2)); then
  out=$(in_enc curl -sS --max-time 20 http://198.18.0.10:8080/ 2>&1); rc=$?
  wait_until 10 grep -qF "parent: $reason" "$W/enclave-$((PORT + 2)).log"
  if [ $rc -ne 0 ] && grep -qF "$reason" "$W/host-refusing.log" && grep -qF "parent: $reason" "$W/enclave-$((PORT + 2)).log"; then
    pass host-enclaves-cid-refused "peer CID 1 not mapped: curl exit $rc; the enclave logged: parent: $reason"
  else
    fail host-enclaves-cid-refused "curl exit $rc: $out; host: $(tail_of "$W/host-refusing.log" 3); enclave: $(tail_of "$W/enclave-$((PORT + 2)).log" 3)"
  fi
else
  fail host-enclaves-cid-refused "egress-host or egress-enclave did not start: $(tail_of "$W/host-refusing.log" 3) $(tail_of "$W/enclave-$((PORT + 2)).log" 3)"
fi
stop_enclave
kill $MAPPED_PID $REFUSING_PID 2>/dev/null; wait $MAPPED_PID $REFUSING_PID 2>/dev/null

# --- case: the enclave's denial report (the tcp-denied case's connection) reached egress-host over VSOCK -------------
line=$(grep -h "denied 1 connection to 198.18.0.30:8080 (never_learned)" "$W/host.log" | head -n 1)
if [ -n "$line" ]; then pass denial-report-over-vsock "${line:0:300}"
else fail denial-report-over-vsock "no report line in host.log: $(grep -h "denial report" "$W/host.log" "$W/enclave.log" | head -n 3 | tr '\n' ' ')"; fi

# --- case: rules --remove ---------------------------------------------------------------------------------------------
if out=$(in_enc "${ENCLAVE[@]}" rules --remove --config "$W/enclave.toml" 2>&1) \
  && ! in_enc iptables-legacy -w -t nat -S OUTPUT | grep -q DNAT && ! in_enc ip6tables-legacy -w -t nat -S OUTPUT | grep -q DNAT \
  && ! in_enc iptables-legacy -w -t filter -S OUTPUT | grep -q REJECT; then
  pass rules-remove "exit 0, no DNAT or REJECT rule left in the legacy tables"
else
  fail rules-remove "$(echo "$out" | tr '\n' ' ' | cut -c1-600); left: $(in_enc iptables-legacy -w -t nat -S OUTPUT | grep DNAT)"
fi

kill $HOST_PID 2>/dev/null; wait $HOST_PID 2>/dev/null
echo END >> "$RESULTS"
echo "vm: all cases ran"
