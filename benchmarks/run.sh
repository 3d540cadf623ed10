#!/usr/bin/env bash
# Egress benchmark suite against real peers (socat, HAProxy, dnsmasq, no proxy at all), on network namespaces.
#
#   sudo benchmarks/run.sh            # full run (~10 minutes): prints the ratio table, rewrites docs/benchmarks.md
#   sudo benchmarks/run.sh --smoke    # every measurement, very briefly (< 2 minutes); exits non-zero if a path
#                                     # fails to carry traffic; docs untouched (for CI)
# Options: --no-install (fail instead of apt-get installing missing tools), --no-docs (full run, docs untouched),
#          --keep (keep the run directory with logs and raw results),
#          --only=throughput,latency,connrate,http,memory,dns,sni,micro (run only these sections; implies --no-docs).
# Environment: BENCH_WARMUP_SECONDS (default 5) of untimed traffic through Egress before connrate and http measure;
#          EGRESS_ENCLAVE_BIN=/path/to/egress-enclave measures that executable instead of the Release build (e.g. a
#          Native AOT publish), EGRESS_HOST_BIN=/path/to/egress-host likewise for egress-host (e.g. another commit's
#          build, for runs taking turns); BENCH_* variables are described where used.
#
# Topology (all on this machine; no packet leaves it):
#   enclave ns  only lo; `egress-enclave rules --apply` (route via lo + DNAT of all TCP to 127.0.0.1:4444, and
#               net.ipv4.tcp_timestamps = 2, which every path in the namespace runs under);
#               egress-enclave, the first hop of the socat and HAProxy chains, the clients (iperf3, egress-bench-tool,
#               dnsperf, wrk)
#   parent ns   veth 198.18.0.1/24; egress-host, the second hop of the socat and HAProxy chains, the dnsmasq pair
#   world ns    veth 198.18.0.10/24; iperf3 -s, the echo server, the authoritative dnsmasq (bench.sni.test and every
#               name below bench.egress.test are 198.18.0.10), nginx on :8080 (plain HTTP) for the http section and
#               on :443 for the sni section
#   tunnel      Unix sockets in the run directory (reachable from every namespace), one per chain
# Paths measured: egress (app -> DNAT -> egress-enclave -> unix -> egress-host -> server), socat 2-hop and HAProxy
# 2-hop (app -> DNAT -> 127.0.0.1:port -> hop 1 -> unix -> hop 2 -> server: the same DNAT as Egress's), direct (parent ns -> world ns over the veth,
# no proxy). The sni section restarts both egress hosts with the server-name check (egress.tls_server_name) on and
# off, allowing only the name bench.sni.test (so connections go through the address learned from its DNS answer).
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)

mode=full install=1 docs=1 keep=0 only=""
for arg in "$@"; do
  case "$arg" in
    --smoke) mode=smoke ;;
    --no-install) install=0 ;;
    --no-docs) docs=0 ;;
    --keep) keep=1 ;;
    --only=*) only=",${arg#--only=}," ;;
    -h|--help) sed -n "2,27p" "$0"; exit 0 ;;
    *) echo "unknown option: $arg (see --help)" >&2; exit 2 ;;
  esac
done
[ "$mode" = smoke ] || [ -n "$only" ] && docs=0
want() { [ -z "$only" ] || [[ "$only" == *",$1,"* ]]; }

if [ "$mode" = smoke ]; then
  repeats=1 tp_seconds=1 lat_seconds=1 cr_seconds=1 cr_concurrency=8 http_seconds=1 hold=100 socat_hold=100 dns_seconds=1
  sni_hold=100
else
  repeats=3 tp_seconds=5 lat_seconds=3 cr_seconds=5 cr_concurrency=16 http_seconds=5 hold=10000 socat_hold=1000 dns_seconds=5
  sni_hold=3000 # nginx takes 4096 per worker, one worker per CPU (write_nginx_ok_conf)
  # More repeats narrow a ratio whose single repeats spread widely (for experiments; the docs' tables use 3).
  if [ -n "${BENCH_REPEATS:-}" ]; then
    [[ $BENCH_REPEATS =~ ^[1-9][0-9]?$ ]] || { echo "BENCH_REPEATS=$BENCH_REPEATS: 1 to 99" >&2; exit 2; }
    repeats=$BENCH_REPEATS
    docs=0
  fi
fi
http_connections=${BENCH_HTTP_CONNECTIONS:-16}  # for experiments (at least 2: wrk runs 2 threads)
# Untimed traffic through the Egress path before the connection-rate and http sections measure: the hosts were just
# started, and the JIT's tiered compilation (egress-host always; egress-enclave unless EGRESS_ENCLAVE_BIN is a Native
# AOT build) is still compiling the per-connection path for seconds, on the same two cores. 0 skips it.
warmup_seconds=${BENCH_WARMUP_SECONDS:-5}
[ "$mode" = smoke ] && warmup_seconds=0
if [ -n "${BENCH_CONCURRENCY:-}" ]; then cr_concurrency=$BENCH_CONCURRENCY  # for experiments
fi

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
# shellcheck source=lib.sh
source "$here/lib.sh"

[ "$(id -u)" -eq 0 ] || die "needs root (network namespaces, iptables)"

# --- prerequisites ----------------------------------------------------------------------------------------------
need=(iperf3:iperf3 socat:socat haproxy:haproxy dnsperf:dnsperf dnsmasq:dnsmasq-base ip:iproute2 iptables:iptables
      ss:iproute2 pgrep:procps python3:python3-minimal)
want sni && need+=(nginx:nginx openssl:openssl)
want http && need+=(nginx:nginx wrk:wrk)
require_tools "$install" "${need[@]}"
command -v dotnet >/dev/null || die "dotnet SDK not found"

# --- build --------------------------------------------------------------------------------------------------------
log "building Release (hosts, benchmark tools, micro-benchmarks)"
out="$repo/benchmarks/.build"
for project in src/Egress.Enclave src/Egress.Host benchmarks/Egress.Benchmarks.Tools benchmarks/Egress.Benchmarks; do
  name=$(basename "$project")
  dotnet build "$repo/$project" -c Release -v q -nologo -o "$out/$name" >"/tmp/egress-bench-build-$name.log" 2>&1 \
    || { tail -30 "/tmp/egress-bench-build-$name.log" >&2; die "build of $project failed"; }
done
enclave_bin="${EGRESS_ENCLAVE_BIN:-$out/Egress.Enclave/egress-enclave}"
[ -x "$enclave_bin" ] || die "EGRESS_ENCLAVE_BIN=$enclave_bin is not an executable"
[ -z "${EGRESS_ENCLAVE_BIN:-}" ] || log "egress-enclave under test: $enclave_bin"
host_bin="${EGRESS_HOST_BIN:-$out/Egress.Host/egress-host}"
[ -x "$host_bin" ] || die "EGRESS_HOST_BIN=$host_bin is not an executable"
[ -z "${EGRESS_HOST_BIN:-}" ] || log "egress-host under test: $host_bin"
tool="$out/Egress.Benchmarks.Tools/egress-bench-tool"

# --- run directory, namespaces, teardown ---------------------------------------------------------------------------
run=$(mktemp -d /tmp/egress-bench.XXXXXX)
results="$run/results.txt"
: >"$results"
tag="eb$$"
ns_enc="$tag-enclave" ns_par="$tag-parent" ns_wld="$tag-world"
veth_p="${tag}p" veth_w="${tag}w"
pids=()
failures=()

cleanup() {
  local pid child
  for pid in "${pids[@]}"; do
    for child in $(pgrep -P "$pid" 2>/dev/null); do kill "$child" 2>/dev/null; done
    kill "$pid" 2>/dev/null
  done
  for pid in "${pids[@]}"; do
    for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  for ns in "$ns_enc" "$ns_par" "$ns_wld"; do ip netns del "$ns" 2>/dev/null; done
  rm -rf "/etc/netns/$ns_enc"
  if [ "$keep" -eq 1 ]; then log "kept $run"; else rm -rf "$run"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Two sockets per relayed connection per host: the fd limit (hard limit; raising it needs CAP_SYS_RESOURCE) caps the
# number of idle connections the memory measurement can hold.
# Egress also keeps a reserve of descriptors out of its connection budget (an eighth of the limit, 64 to 1,024:
# DescriptorBudget), and refuses connections beyond the budget by design; the held count stays below it for every path.
ulimit -n "$(ulimit -Hn)"
fd_limit=$(ulimit -n)
fd_reserve=$((fd_limit / 8)); [ "$fd_reserve" -lt 64 ] && fd_reserve=64; [ "$fd_reserve" -gt 1024 ] && fd_reserve=1024
if [ $((hold * 2 + 300 + fd_reserve)) -gt "$fd_limit" ]; then
  hold=$(((fd_limit - 300 - fd_reserve) / 2))
  log "open-files limit $fd_limit: holding $hold connections instead of 10000 (Egress keeps $fd_reserve in reserve)"
fi
[ "$sni_hold" -gt "$hold" ] && sni_hold=$hold

# start NAME NS CMD...: runs CMD in NS in the background (ip netns exec execs, so $! is CMD's pid), logs to run dir.
start() {
  local name=$1 ns=$2; shift 2
  ip netns exec "$ns" "$@" >"$run/$name.log" 2>&1 &
  pids+=("$!")
  eval "pid_${name//-/_}=$!"
}
pid_of() { local var="pid_${1//-/_}"; printf '%s' "${!var}"; }
record() { echo "$*" >>"$results"; }
rss_kib() { awk '/^VmRSS:/{print $2}' "/proc/$1/status"; }
# hold_idle LABEL NS TARGET COUNT METRIC KEY PID1 PID2 [hold|hold-silent]: holds COUNT idle connections from NS to
# TARGET (hold: each proven by a 1-byte echo first; hold-silent: never a byte), and records the growth of METRIC of the
# two hops per connection, in bytes, as KEY with HOP replaced by hop1 and hop2.
hold_idle() {
  local label=$1 ns=$2 target=$3 count=$4 metric=$5 key=$6 pids_of_hops=("$7" "$8") how=${9:-hold} before=() after=() i
  for i in 0 1; do before[$i]=$($metric "${pids_of_hops[$i]}"); done
  start "hold-$label" "$ns" "$tool" "$how" --target "$target" --count "$count" --parallel 32
  local hold_pid deadline=$((SECONDS + 300)) held=1
  hold_pid=$(pid_of "hold-$label")
  until grep -q '^ready' "$run/hold-$label.log" 2>/dev/null; do
    if ! kill -0 "$hold_pid" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then break; fi
    sleep 0.5
  done
  if ! grep -q "^ready held=$count failed=0" "$run/hold-$label.log" 2>/dev/null; then
    fail "memory via $label: could not hold $count connections: $(tail -3 "$run/hold-$label.log" | tr '\n' ' ')"
    held=0
  else
    sleep 2
    for i in 0 1; do after[$i]=$($metric "${pids_of_hops[$i]}"); done
    for i in 0 1; do
      record "${key/HOP/hop$((i + 1))} $(((after[i] - before[i]) * 1024 / count))"
    done
    log "  $label: $count connections: hop 1 ${before[0]} -> ${after[0]} KiB, hop 2 ${before[1]} -> ${after[1]} KiB"
  fi
  kill "$hold_pid" 2>/dev/null
  wait "$hold_pid" 2>/dev/null
  sleep 3
  [ "$held" -eq 1 ]
}
fail() { failures+=("$*"); log "FAILED: $*"; }

log "namespaces $ns_enc, $ns_par, $ns_wld (run directory $run)"
for ns in "$ns_enc" "$ns_par" "$ns_wld"; do
  ip netns add "$ns" || die "ip netns add $ns"
  ip -n "$ns" link set lo up
  # Short runs of many connections: reuse TIME_WAIT ports and use the whole port range (each namespace has its own).
  in_ns "$ns" sysctl -qw net.ipv4.ip_local_port_range="1024 65535" net.ipv4.tcp_tw_reuse=1
done
ip -n "$ns_par" link add "$veth_p" type veth peer name "$veth_w" netns "$ns_wld" || die "veth"
ip -n "$ns_par" addr add 198.18.0.1/24 dev "$veth_p"
ip -n "$ns_wld" addr add 198.18.0.10/24 dev "$veth_w"
ip -n "$ns_par" link set "$veth_p" up
ip -n "$ns_wld" link set "$veth_w" up
mkdir -p "/etc/netns/$ns_enc" && echo "nameserver 127.0.0.1" >"/etc/netns/$ns_enc/resolv.conf"

world=198.18.0.10
iperf_port=5201 echo_port=7000 http_port=8080

# --- servers (world) ----------------------------------------------------------------------------------------------
start iperf-server "$ns_wld" iperf3 -s -B "$world" -p "$iperf_port"
start echo-server "$ns_wld" "$tool" echo-server --listen "$world:$echo_port"
# The authoritative upstream both DNS chains end at: every name below bench.egress.test, and bench.sni.test (the sni
# section), is 198.18.0.10, TTL 300.
start dnsmasq-c "$ns_wld" dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts --pid-file \
  --bind-interfaces --listen-address="$world" --port=53 --address=/bench.egress.test/"$world" \
  --address=/bench.sni.test/"$world" --local-ttl=300 \
  --log-facility="$run/dnsmasq-c.syslog"
# nginx for the http section: plain HTTP/1.1, a 3-byte answer, no access log; a worker per CPU.
if want http; then
  write_nginx_ok_conf "$run/nginx-http" "$world:$http_port"
  start nginx-http "$ns_wld" nginx -e "$run/nginx-http/error.log" -p "$run/nginx-http" -c "$run/nginx-http/nginx.conf"
fi
wait_until 20 "iperf3 -s" tcp_listening "$ns_wld" "$iperf_port"
wait_until 20 "echo server" tcp_listening "$ns_wld" "$echo_port"
wait_until 20 "dnsmasq C" udp_listening "$ns_wld" 53
want http && wait_until 20 "nginx (http)" tcp_listening "$ns_wld" "$http_port"

# --- egress chain ---------------------------------------------------------------------------------------------------
write_enclave_toml "$run/enclave.toml" "$run/egress.sock" "$world:53" \
  $'enabled = true\ndestinations = ["198.18.0.0/15", "*.bench.egress.test"]' "${BENCH_EXTRA_TOML:-}"
# BENCH_EXTRA_TOML is appended to that file (for experiments, e.g. BENCH_EXTRA_TOML=$'[relay]\nsplice = false').
# The redirect rules take the proxy endpoint (and the netfilter backend) from the same file.
in_ns "$ns_enc" "$enclave_bin" rules --apply --config "$run/enclave.toml" >"$run/rules.log" 2>&1 || { cat "$run/rules.log" >&2; die "egress-enclave rules --apply"; }
# Warning: no per-connection log lines (the peers log nothing either). BENCH_LOG_LEVEL=Information measures the hosts
# with their per-connection lines on (written to the run directory's egress-*.log files).
log_level=${BENCH_LOG_LEVEL:-Warning}
# BENCH_HOST_ENV="NAME=value ..." sets environment variables for the two egress hosts only (for experiments, e.g.
# DOTNET_ThreadPool_ForceMinWorkerThreads=32); word-split on purpose.
# egress-host runs as its systemd unit starts it: with MALLOC_ARENA_MAX=2 (deploy/host/egress-host.service; measured
# in docs/benchmarks.md, "Two malloc arenas for egress-host"). BENCH_HOST_ENV="MALLOC_ARENA_MAX=..." overrides it.
# shellcheck disable=SC2086
start egress-host "$ns_par" env MALLOC_ARENA_MAX=2 ${BENCH_HOST_ENV:-} "$host_bin" --config "$run/enclave.toml" --log-level "$log_level"
wait_until 30 "egress-host" test -S "$run/egress.sock"
# shellcheck disable=SC2086
start egress-enclave "$ns_enc" env ${BENCH_HOST_ENV:-} "$enclave_bin" --config "$run/enclave.toml" --log-level "$log_level"
wait_until 30 "egress-enclave" tcp_listening "$ns_enc" 4444

# --- socat chain: hop 1 in the enclave ns listens on 127.0.0.1, hop 2 in the parent ns dials the world; 64 KiB
#     transfer buffer (socat's default is 8 KiB; Egress reads 64 KiB at a time) and TCP_NODELAY like Egress ----------
socat_iperf=5002 socat_echo=5007 socat_http=5008
for target in iperf:$socat_iperf:$iperf_port echo:$socat_echo:$echo_port http:$socat_http:$http_port; do
  IFS=: read -r what port dest <<<"$target"
  start "socat2-$what" "$ns_par" socat -b 65536 "UNIX-LISTEN:$run/socat-$what.sock,fork,backlog=4096" "TCP:$world:$dest,nodelay"
  wait_until 20 "socat hop 2 ($what)" test -S "$run/socat-$what.sock"
  start "socat1-$what" "$ns_enc" socat -b 65536 "TCP-LISTEN:$port,bind=127.0.0.1,fork,reuseaddr,nodelay,backlog=4096" \
    "UNIX-CONNECT:$run/socat-$what.sock"
  wait_until 20 "socat hop 1 ($what)" tcp_listening "$ns_enc" "$port"
done

# --- HAProxy chain: tcp mode, default tuning, unix socket between the two instances -----------------------------------
ha_iperf=5102 ha_echo=5107 ha_http=5108
ha_maxconn=$((hold + 100))
ha_common="global
  maxconn $ha_maxconn
defaults
  mode tcp
  maxconn $ha_maxconn
  timeout connect 5s
  timeout client 1h
  timeout server 1h"
cat >"$run/haproxy2.cfg" <<EOF
$ha_common
frontend iperf
  bind unix@$run/ha-iperf.sock
  default_backend iperf
backend iperf
  server world $world:$iperf_port
frontend echo
  bind unix@$run/ha-echo.sock
  default_backend echo
backend echo
  server world $world:$echo_port
frontend http
  bind unix@$run/ha-http.sock
  default_backend http
backend http
  server world $world:$http_port
EOF
cat >"$run/haproxy1.cfg" <<EOF
$ha_common
frontend iperf
  bind 127.0.0.1:$ha_iperf
  default_backend iperf
backend iperf
  server parent unix@$run/ha-iperf.sock
frontend echo
  bind 127.0.0.1:$ha_echo
  default_backend echo
backend echo
  server parent unix@$run/ha-echo.sock
frontend http
  bind 127.0.0.1:$ha_http
  default_backend http
backend http
  server parent unix@$run/ha-http.sock
EOF
start haproxy2 "$ns_par" haproxy -db -f "$run/haproxy2.cfg"
wait_until 20 "haproxy hop 2" test -S "$run/ha-echo.sock"
start haproxy1 "$ns_enc" haproxy -db -f "$run/haproxy1.cfg"
wait_until 20 "haproxy hop 1" tcp_listening "$ns_enc" "$ha_echo"

# --- the same DNAT for every path in the enclave namespace: an app there connects to the world's address, and a rule
#     in nat OUTPUT sends it to the first hop. For the peers, one rule per port, ahead of Egress's catch-all, in the
#     netfilter backend that holds Egress's rules (two backends' nat OUTPUT hooks have the same priority, so a rule in
#     the other one could run after Egress's).
nat_program=
for program in iptables-nft iptables-legacy iptables; do
  if command -v "$program" >/dev/null && in_ns "$ns_enc" "$program" -w -t nat -S OUTPUT 2>/dev/null | grep -q -- "--to-destination 127.0.0.1:4444"; then
    nat_program=$program
    break
  fi
done
[ -n "$nat_program" ] || die "no netfilter backend holds egress-enclave's DNAT rule (rules.log: $(tr '\n' ' ' <"$run/rules.log"))"
for port in $socat_iperf $socat_echo $socat_http $ha_iperf $ha_echo $ha_http; do
  in_ns "$ns_enc" "$nat_program" -w -t nat -I OUTPUT 1 -p tcp -d "$world" --dport "$port" -j DNAT --to-destination "127.0.0.1:$port" \
    || die "$nat_program: DNAT rule for port $port"
done

# path -> namespace of the client, iperf3 target, echo target (the peers' through their DNAT rules above)
paths=(egress haproxy socat direct)
declare -A client_ns=([egress]=$ns_enc [haproxy]=$ns_enc [socat]=$ns_enc [direct]=$ns_par)
declare -A iperf_target=([egress]="$world $iperf_port" [haproxy]="$world $ha_iperf" [socat]="$world $socat_iperf" [direct]="$world $iperf_port")
declare -A echo_target=([egress]="$world:$echo_port" [haproxy]="$world:$ha_echo" [socat]="$world:$socat_echo" [direct]="$world:$echo_port")
declare -A http_target=([egress]="$world:$http_port" [haproxy]="$world:$ha_http" [socat]="$world:$socat_http" [direct]="$world:$http_port")
declare -A hop_pids=([egress]="$(pid_of egress-enclave) $(pid_of egress-host)" [haproxy]="$(pid_of haproxy1) $(pid_of haproxy2)"
                     [socat]="$(pid_of socat1-iperf) $(pid_of socat2-iperf)" [direct]="")

# CPU ticks (own + reaped children, so socat's forks count) of a process.
cpu_ticks() { awk '{print $14 + $15 + $16 + $17}' "/proc/$1/stat" 2>/dev/null || echo 0; }
clk_tck=$(getconf CLK_TCK)
# cpu_begin PATH ... cpu_end PATH METRIC ... cpu_record: % of one core each hop of PATH used in between.
cpu_begin() { cpu_before=(); local pid; for pid in ${hop_pids[$1]}; do cpu_before+=("$(cpu_ticks "$pid")"); done; cpu_start=$(date +%s%N); }
cpu_end() {
  local elapsed_ms=$((($(date +%s%N) - cpu_start) / 1000000)) hop=0 pid
  cpu_lines=()
  for pid in ${hop_pids[$1]}; do
    cpu_lines+=("$2.$1.hop$((hop + 1)) $(((($(cpu_ticks "$pid") - cpu_before[hop]) * 100000 / clk_tck) / elapsed_ms))")
    hop=$((hop + 1))
  done
}
cpu_record() { local line; for line in "${cpu_lines[@]}"; do record "$line"; done; }

# --- throughput -------------------------------------------------------------------------------------------------------
if want throughput; then
log "throughput: iperf3 -t $tp_seconds, $repeats repeat(s) per path"
for ((r = 1; r <= repeats; r++)); do
  for path in "${paths[@]}"; do
    read -r host port <<<"${iperf_target[$path]}"
    cpu_begin "$path"
    json=$(in_ns "${client_ns[$path]}" iperf3 -c "$host" -p "$port" -t "$tp_seconds" -J 2>&1)
    cpu_end "$path" cpu_pct
    gbps=$(python3 -c 'import json,sys
try: print("%.3f" % (json.loads(sys.stdin.read())["end"]["sum_received"]["bits_per_second"] / 1e9))
except Exception: print("0")' <<<"$json")
    if [ "$gbps" = 0 ] || [ "$gbps" = 0.000 ]; then
      fail "throughput via $path carried no traffic: $(tail -c 300 <<<"$json")"
      continue
    fi
    record "throughput_gbps.$path $gbps"
    cpu_record
    log "  $path: $gbps Gbit/s"
  done
done
fi

# --- latency ----------------------------------------------------------------------------------------------------------
if want latency; then
log "latency: 1-byte ping-pong for $lat_seconds s, $repeats repeat(s) per path"
for ((r = 1; r <= repeats; r++)); do
  for path in "${paths[@]}"; do
    line=$(in_ns "${client_ns[$path]}" "$tool" latency --target "${echo_target[$path]}" --seconds "$lat_seconds" 2>&1) \
      || { fail "latency via $path: $line"; continue; }
    p50=$(grep -o 'p50_us=[0-9.]*' <<<"$line" | cut -d= -f2)
    p99=$(grep -o 'p99_us=[0-9.]*' <<<"$line" | cut -d= -f2)
    record "rtt_p50_us.$path $p50"
    record "rtt_p99_us.$path $p99"
    log "  $path: $line"
  done
done
fi

# --- connection rate --------------------------------------------------------------------------------------------------
if want connrate; then
hop_pids[socat]="$(pid_of socat1-echo) $(pid_of socat2-echo)"  # the echo chain from here on
log "connection rate: $cr_concurrency loops for $cr_seconds s, $repeats repeat(s) per path (after a ${warmup_seconds} s warm-up of the egress path)"
[ "$warmup_seconds" -gt 0 ] && in_ns "${client_ns[egress]}" "$tool" connrate --target "${echo_target[egress]}" \
  --seconds "$warmup_seconds" --concurrency "$cr_concurrency" >/dev/null 2>&1
for ((r = 1; r <= repeats; r++)); do
  for path in "${paths[@]}"; do
    cpu_begin "$path"
    line=$(in_ns "${client_ns[$path]}" "$tool" connrate --target "${echo_target[$path]}" --seconds "$cr_seconds" \
      --concurrency "$cr_concurrency" 2>&1) || { fail "connection rate via $path: $line"; continue; }
    cpu_end "$path" cpu_cr_pct
    record "conn_per_s.$path $(grep -o 'per_second=[0-9]*' <<<"$line" | cut -d= -f2)"
    cpu_record
    log "  $path: $line; CPU % per hop: ${cpu_lines[*]}"
    sleep 1
  done
done
fi

# --- HTTP connection rate -----------------------------------------------------------------------------------------------
# A real HTTP client that closes every connection: wrk, one connection per request (Connection: close), against nginx
# in the world namespace; requests per second = connections per second. CPU per hop as in the connection-rate section.
if want http; then
hop_pids[socat]="$(pid_of socat1-http) $(pid_of socat2-http)"  # the http chain in this section
log "http: wrk -c $http_connections, Connection: close, for $http_seconds s, $repeats repeat(s) per path (after a ${warmup_seconds} s warm-up of the egress path)"
[ "$warmup_seconds" -gt 0 ] && in_ns "${client_ns[egress]}" wrk -t 2 -c "$http_connections" -d "${warmup_seconds}s" \
  -H "Connection: close" "http://${http_target[egress]}/" >/dev/null 2>&1
for ((r = 1; r <= repeats; r++)); do
  for path in "${paths[@]}"; do
    cpu_begin "$path"
    out_wrk=$(in_ns "${client_ns[$path]}" wrk -t 2 -c "$http_connections" -d "${http_seconds}s" -H "Connection: close" \
      "http://${http_target[$path]}/" 2>&1)
    cpu_end "$path" cpu_http_pct
    rate=$(awk '/^Requests\/sec:/{print $2}' <<<"$out_wrk")
    total=$(awk '/requests in/{print $1}' <<<"$out_wrk")
    # Socket errors: connect, read, write, timeout; "Non-2xx or 3xx responses": answers that were not 200.
    errors=$(awk '/Socket errors:/{gsub(/,/, ""); print $4 + $6 + $8 + $10}' <<<"$out_wrk")
    bad=$(awk '/Non-2xx or 3xx responses:/{print $5}' <<<"$out_wrk")
    if [ -z "$rate" ] || [ "${total:-0}" = 0 ]; then
      fail "http via $path carried nothing: $(tail -c 300 <<<"$out_wrk")"
      continue
    fi
    record "http_req_per_s.$path $rate"
    record "http_errors.$path $((${errors:-0} + ${bad:-0}))"
    cpu_record
    log "  $path: $rate requests/s ($total requests, ${errors:-0} socket errors, ${bad:-0} non-2xx); CPU % per hop: ${cpu_lines[*]}"
    sleep 1
  done
done
fi

# --- memory per idle relayed connection -------------------------------------------------------------------------------
if want memory; then
hop_pids[socat]="$(pid_of socat1-echo) $(pid_of socat2-echo)"
# Proportional set size of a process and its children (socat forks one process per connection; Pss splits the pages
# they share instead of counting them once per process).
pss_tree_kib() {
  local total=0 pid
  for pid in "$1" $(pgrep -P "$1"); do
    total=$((total + $(awk '/^Pss:/{print $2}' "/proc/$pid/smaps_rollup" 2>/dev/null || echo 0)))
  done
  echo "$total"
}
# measure_memory PATH COUNT METRIC: holds COUNT idle connections through PATH, records bytes per connection per hop.
measure_memory() {
  hold_idle "$1" "${client_ns[$1]}" "${echo_target[$1]}" "$2" "$3" "mem_bytes_per_conn.$1.HOP" ${hop_pids[$1]} && record "mem_conns.$1 $2"
}
log "memory: idle relayed connections ($hold for egress and HAProxy, $socat_hold for socat)"
measure_memory egress "$hold" rss_kib
measure_memory haproxy "$hold" rss_kib
measure_memory socat "$socat_hold" pss_tree_kib
fi

# --- DNS ----------------------------------------------------------------------------------------------------------
if want dns; then
log "DNS: dnsperf for $dns_seconds s, $repeats repeat(s) per path"
for ((i = 0; i < 1000; i++)); do echo "n$i.bench.egress.test A"; done >"$run/queries.txt"
# The peer: two non-caching dnsmasq forwarders in series in the parent ns (A -> B -> the authoritative C in world).
start dnsmasq-b "$ns_par" dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts --pid-file \
  --bind-interfaces --listen-address=127.0.0.1 --port=5302 --cache-size=0 --dns-forward-max=1000 \
  --server="$world#53" --log-facility="$run/dnsmasq-b.syslog"
start dnsmasq-a "$ns_par" dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts --pid-file \
  --bind-interfaces --listen-address=127.0.0.1 --port=5301 --cache-size=0 --dns-forward-max=1000 \
  --server="127.0.0.1#5302" --log-facility="$run/dnsmasq-a.syslog"
wait_until 20 "dnsmasq A" udp_listening "$ns_par" 5301
wait_until 20 "dnsmasq B" udp_listening "$ns_par" 5302
declare -A dns_ns=([egress]=$ns_enc [dnsmasq]=$ns_par) dns_port=([egress]=53 [dnsmasq]=5301)
dns_paths=(dnsmasq)
if probe=$(in_ns "$ns_enc" "$tool" dns-probe --server 127.0.0.1:53 --name probe.bench.egress.test --timeout-ms 3000 2>&1); then
  dns_paths=(egress dnsmasq)
else
  log "SKIP DNS through egress: nothing answers on 127.0.0.1:53 in the enclave namespace ($probe);"
  log "     this egress-enclave build has no DNS forwarder yet (or it failed to start: see $run/egress-enclave.log)"
  record "dns_skipped egress"
fi
for ((r = 1; r <= repeats; r++)); do
  for path in "${dns_paths[@]}"; do
    # Saturation: 100 queries outstanding; queries per second, and every query must be answered.
    perf=$(in_ns "${dns_ns[$path]}" dnsperf -s 127.0.0.1 -p "${dns_port[$path]}" -d "$run/queries.txt" \
      -l "$dns_seconds" -q 100 -t 2 2>&1)
    qps=$(awk '/Queries per second:/{print $4}' <<<"$perf")
    lost=$(awk '/Queries lost:/{print $3}' <<<"$perf")
    completed=$(awk '/Queries completed:/{print $3}' <<<"$perf")
    if [ -z "$qps" ] || [ "${completed:-0}" = 0 ]; then fail "DNS via $path answered nothing: $(tail -5 <<<"$perf")"; continue; fi
    record "dns_qps.$path $qps"
    record "dns_lost.$path $lost"
    # Latency: the same queries at a fixed 1,000 qps, every answer's latency (dnsperf -v), p50 and p99.
    lat=$(in_ns "${dns_ns[$path]}" dnsperf -s 127.0.0.1 -p "${dns_port[$path]}" -d "$run/queries.txt" \
      -l "$dns_seconds" -Q 1000 -t 2 -v 2>&1 | python3 -c '
import sys
l = sorted(float(p[-1]) for p in (x.split() for x in sys.stdin) if len(p) >= 4 and p[0] == ">")
print("%.1f %.1f" % (l[len(l) // 2] * 1e6, l[int(len(l) * 0.99)] * 1e6) if l else "")')
    if [ -n "$lat" ]; then
      record "dns_p50_us.$path ${lat% *}"
      record "dns_p99_us.$path ${lat#* }"
    fi
    log "  $path: $qps qps, lost $lost; at 1000 qps p50/p99 ${lat:-?} us"
  done
done
fi

# --- TLS server-name check on and off ---------------------------------------------------------------------------------
# egress.tls_server_name applies only to connections allowed through an address learned from a DNS answer, and reads
# the client's ClientHello before relaying. So both hosts are restarted on a file that allows only bench.sni.test (no
# CIDR entry), the client resolves the name through the egress DNS forwarder (127.0.0.1:53 in the enclave ns) before
# it connects, and each round runs once with "require" and once with "off", alternating which goes first: TLS
# handshakes per second (new connection, full handshake with SNI, one HTTP request, close; nginx in the world ns) and
# iperf3 to the name (no ClientHello: its first bytes pass unparsed, so no difference is expected; measured to show it).
if want sni; then
sni_name=bench.sni.test sni_port=443 sni_concurrency=4
log "TLS server-name check: require vs off, TLS handshakes for $cr_seconds s x $sni_concurrency loops and iperf3 -t $tp_seconds, $repeats repeat(s)"
write_nginx_ok_conf "$run/nginx-sni" "$world:$sni_port" "$sni_name"
start nginx-sni "$ns_wld" nginx -e "$run/nginx-sni/error.log" -p "$run/nginx-sni" -c "$run/nginx-sni/nginx.conf"
wait_until 20 "nginx" tcp_listening "$ns_wld" "$sni_port"

# The TLS client: benchmarks/tls-client.py (NAME PORT SECONDS CONCURRENCY [SNI]; see its header).
tls_client="$here/tls-client.py"

sni_round=0
# egress_restart CONFIG: stops the running egress-enclave and egress-host, starts both on CONFIG (whose tunnel socket
# must be new) and waits for the enclave's proxy port.
egress_restart() {
  local config=$1 pid
  sni_round=$((sni_round + 1))
  for pid in "$egress_enclave_pid" "$egress_host_pid"; do
    kill "$pid" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  wait_until 20 "the enclave proxy port to close" bash -c "! ip netns exec $ns_enc ss -Hltn 'sport = :4444' | grep -q ."
  local sock
  sock=$(sed -n 's/^host_endpoint = "unix:\(.*\)"$/\1/p' "$config")
  # shellcheck disable=SC2086
  start "egress-host-$sni_round" "$ns_par" env MALLOC_ARENA_MAX=2 ${BENCH_HOST_ENV:-} "$host_bin" --config "$config" --log-level "$log_level"
  egress_host_pid=$(pid_of "egress-host-$sni_round")
  wait_until 30 "egress-host ($config)" test -S "$sock"
  # shellcheck disable=SC2086
  start "egress-enclave-$sni_round" "$ns_enc" env ${BENCH_HOST_ENV:-} "$enclave_bin" --config "$config" --log-level "$log_level"
  egress_enclave_pid=$(pid_of "egress-enclave-$sni_round")
  wait_until 30 "egress-enclave ($config)" tcp_listening "$ns_enc" 4444
}
egress_enclave_pid=$(pid_of egress-enclave) egress_host_pid=$(pid_of egress-host)

sni_modes=(require off)
for ((r = 1; r <= repeats; r++)); do
  order=("${sni_modes[@]}")
  [ $((r % 2)) -eq 0 ] && order=(off require)
  for sni_mode in "${order[@]}"; do
    config="$run/enclave-sni-$r-$sni_mode.toml"
    write_enclave_toml "$config" "$run/egress-sni-$r-$sni_mode.sock" "$world:53" \
      "enabled = true
destinations = [\"$sni_name:$sni_port\", \"$sni_name:$iperf_port\"]
tls_server_name = \"$sni_mode\"" "${BENCH_EXTRA_TOML:-}"
    egress_restart "$config"
    # The check must be what it says: under "require" a ClientHello naming another server is refused on the learned
    # address; under "off" it passes. (Each restart forgets what was learned: the client resolves the name again.)
    probe=$(in_ns "$ns_enc" python3 "$tls_client" "$sni_name" "$sni_port" 0 1 other.sni.test 2>&1)
    probe_status=$?
    if [ "$sni_mode" = require ] && [ "$probe_status" -eq 0 ]; then
      fail "sni: a ClientHello for other.sni.test passed under tls_server_name = \"require\" (the check is not on the path)"
    elif [ "$sni_mode" = off ] && [ "$probe_status" -ne 0 ]; then
      fail "sni: a ClientHello for other.sni.test was refused under tls_server_name = \"off\": $probe"
    fi
    # Both hosts were just started: a warm-up first, untimed, as long as the measurement, so that the JIT has compiled
    # the checked path (without it, "require" read 0.88x to 0.92x of "off" over 10 repeats; side by side, warm, 1.01x).
    in_ns "$ns_enc" python3 "$tls_client" "$sni_name" "$sni_port" "$cr_seconds" "$sni_concurrency" >/dev/null 2>&1
    line=$(in_ns "$ns_enc" python3 "$tls_client" "$sni_name" "$sni_port" "$cr_seconds" "$sni_concurrency" 2>&1)
    rate=$(grep -o 'per_second=[0-9]*' <<<"$line" | cut -d= -f2)
    ok=$(grep -o ' ok=[0-9]*' <<<"$line" | cut -d= -f2)
    if [ -z "$rate" ] || [ "${ok:-0}" = 0 ]; then
      fail "sni: TLS connections via egress ($sni_mode) carried nothing: $(tail -c 300 <<<"$line")"
    else
      record "sni_tls_conn_per_s.$sni_mode $rate"
      record "sni_tls_failed.$sni_mode $(grep -o 'failed=[0-9]*' <<<"$line" | cut -d= -f2)"
      log "  $sni_mode: TLS $line; probe with another server name: $probe"
    fi
    sleep 1
    json=$(in_ns "$ns_enc" iperf3 -c "$sni_name" -p "$iperf_port" -t "$tp_seconds" -J 2>&1)
    gbps=$(python3 -c 'import json,sys
try: print("%.3f" % (json.loads(sys.stdin.read())["end"]["sum_received"]["bits_per_second"] / 1e9))
except Exception: print("0")' <<<"$json")
    if [ "$gbps" = 0 ] || [ "$gbps" = 0.000 ]; then
      fail "sni: throughput via egress ($sni_mode) carried no traffic: $(tail -c 300 <<<"$json")"
    else
      record "sni_throughput_gbps.$sni_mode $gbps"
      log "  $sni_mode: iperf3 to $sni_name: $gbps Gbit/s"
    fi
    # Idle connections to the learned address, the client's first byte not yet sent: what each holds under the check
    # (a red-team trial: 25 KB a connection under "require" against 10 KB "off", before the gate waited for the first byte).
    hold_idle "sni-$r-$sni_mode" "$ns_enc" "$world:$sni_port" "$sni_hold" rss_kib "sni_mem_bytes_per_conn_HOP.$sni_mode" \
      "$egress_enclave_pid" "$egress_host_pid" hold-silent || true
  done
done
python3 - "$results" <<'EOF' >&2
import statistics, sys
samples = {}
for line in open(sys.argv[1], encoding="utf-8"):
    key, _, value = line.partition(" ")
    if key.startswith("sni_"):
        samples.setdefault(key, []).append(float(value))
for metric, unit in (("sni_tls_conn_per_s.{}", "TLS connections/s"), ("sni_throughput_gbps.{}", "Gbit/s"),
                     ("sni_mem_bytes_per_conn_hop1.{}", "egress-enclave bytes per idle connection"),
                     ("sni_mem_bytes_per_conn_hop2.{}", "egress-host bytes per idle connection")):
    on, off = samples.get(metric.format("require")), samples.get(metric.format("off"))
    if on and off:
        a, b = statistics.median(on), statistics.median(off)
        print(f"[bench] sni: {unit}: require {a:g}, off {b:g} (medians of {len(on)}/{len(off)}), require/off {a / b:.3f}x")
EOF
# Back to the main configuration, for any section after this one (on a new tunnel socket).
sed "s|unix:$run/egress.sock|unix:$run/egress-main.sock|" "$run/enclave.toml" >"$run/enclave-main.toml"
egress_restart "$run/enclave-main.toml"
hop_pids[egress]="$egress_enclave_pid $egress_host_pid"
fi

# --- micro-benchmarks -------------------------------------------------------------------------------------------------
if want micro; then
log "micro-benchmarks (BenchmarkDotNet, in-process)"
bdn_args=(--artifacts "$run/bdn")
[ "$mode" = smoke ] && bdn_args+=(--smoke)
if ! "$out/Egress.Benchmarks/Egress.Benchmarks" "${bdn_args[@]}" >"$run/bdn.log" 2>&1; then
  tail -20 "$run/bdn.log" >&2
  fail "micro-benchmarks"
fi
fi

# --- report ---------------------------------------------------------------------------------------------------------
info="$run/machine.txt"
{
  echo "date $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "nproc $(nproc)"
  echo "cpu $(lscpu | awk -F: '/Model name/{gsub(/^ +/, "", $2); print $2; exit}')"
  echo "kernel $(uname -r)"
  echo "dotnet $(dotnet --version)"
  echo "iperf3 $(iperf3 --version | head -1 | awk '{print $2}')"
  echo "haproxy $(haproxy -v | head -1 | awk '{print $3}')"
  echo "socat $(socat -V | awk '/socat version/{print $3; exit}')"
  echo "dnsmasq $(dnsmasq --version | head -1 | awk '{print $3}')"
  echo "dnsperf $(dnsperf -h 2>&1 | awk '/^Version/{print $2}')"
  echo "mode $mode"
  echo "enclave_bin $enclave_bin"
  echo "host_bin $host_bin"
  echo "repeats $repeats"
  echo "wrk $(wrk --version 2>&1 | head -1 | awk '{print $2}')"
  echo "nginx $(nginx -v 2>&1 | awk -F/ '{print $2}')"
  echo "durations throughput ${tp_seconds}s, latency ${lat_seconds}s, connection rate ${cr_seconds}s x $cr_concurrency loops, HTTP ${http_seconds}s x $http_connections connections, DNS ${dns_seconds}s"
} >"$info"
report_args=(--results "$results" --machine "$info" --bdn "$run/bdn/results")
[ "$docs" -eq 1 ] && report_args+=(--docs "$repo/docs/benchmarks.md")
python3 "$here/report.py" "${report_args[@]}" || fail "report"

if [ "${#failures[@]}" -gt 0 ]; then
  log "${#failures[@]} failure(s):"
  for f in "${failures[@]}"; do log "  $f"; done
  exit 1
fi
log "done"
