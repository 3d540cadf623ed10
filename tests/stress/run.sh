#!/usr/bin/env bash
# Egress stress suite (issue 13): hostile clients next to one well-behaved app, on network namespaces.
#
#   sudo tests/stress/run.sh                 # every scenario (~5 minutes after the build): table to stdout and a
#                                            # results file
#   sudo tests/stress/run.sh --smoke         # every scenario very briefly (~1 minute after the build); fails only
#                                            # when a host dies or a scenario cannot run (figures are not judged)
#   sudo tests/stress/run.sh --scenario=4    # the unloaded baseline and scenario 4 only (comma list: --scenario=2,4)
# Options: --out=PATH (the results file; default /tmp/egress-stress-results-DATE.md), --keep (keep the run directory
#          with every log and raw line), --strict (exit 3 when a target is missed; a full run otherwise exits 0 with
#          the misses in the table), --no-install (fail instead of apt-get installing missing tools).
# Environment: EGRESS_ENCLAVE_BIN / EGRESS_HOST_BIN run those executables instead of the Release builds of this tree
#          (e.g. a Native AOT publish, or another commit's build); STRESS_NOFILE (default 4096) is the open-files limit
#          (prlimit, soft and hard) both hosts run under; STRESS_SECONDS overrides how long each scenario loads.
#
# Topology (all on this machine; no packet leaves it; namespaces eg-stress-PID-{enc,par,wld}, removed on exit):
#   enclave ns  only lo; `egress-enclave rules --apply`; egress-enclave; the victim app and the hostile apps
#   parent ns   veth 198.18.0.1/15; egress-host on a unix: tunnel socket in the run directory
#   world ns    veth: nginx on 198.18.0.10:80 (the victim's HTTP), a hold server on 198.18.1.20:7 (the flood's
#               destination), dnsmasq on 198.18.0.53 (the parent's upstream: *.victim.stress.test and
#               *.oversize.stress.test answer 198.18.0.10; *.blackhole.stress.test is forwarded to 198.18.0.54), and a
#               DNS server on 198.18.0.54 that never answers
# Each phase of a full run starts both hosts afresh (peak RSS and descriptors are per phase; a smoke run keeps them
# while they live), warms the victim up (unmeasured, in the same process), then runs the
# victim for the load time next to the hostile client while a sampler reads both hosts' /proc every 200 ms, then
# runs the victim briefly once the hostile client is gone (does the service recover by itself?), then kills the hosts.
# Phase 0 is the unloaded baseline (the victim alone); phases 1-5 are the five faults of issue 13 (docs/stress.md).
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)

mode=full install=1 keep=0 strict=0 only="" out=""
for arg in "$@"; do
  case "$arg" in
    --smoke) mode=smoke ;;
    --scenario=*) only=",${arg#--scenario=}," ;;
    --out=*) out=${arg#--out=} ;;
    --keep) keep=1 ;;
    --strict) strict=1 ;;
    --no-install) install=0 ;;
    -h|--help) sed -n "2,27p" "$0"; exit 0 ;;
    *) echo "unknown option: $arg (see --help)" >&2; exit 2 ;;
  esac
done
want() { [ -z "$only" ] || [[ "$only" == *",$1,"* ]]; }
[[ -z "$only" || "$only" =~ ^,([1-5],)+$ ]] || { echo "--scenario takes numbers 1 to 5, comma-separated" >&2; exit 2; }

nofile=${STRESS_NOFILE:-4096}
if [ "$mode" = smoke ]; then
  load=${STRESS_SECONDS:-2} warmup=1 after=0 dns_rate=50 http_rate=5
  flood_conns=600 tunnel_idle=300 tunnel_partial=50 oversize_interval=200 pipeline_queries=64 pipeline_connections=20 slow_conns=100 slow_interval=1000
else
  load=${STRESS_SECONDS:-30} warmup=3 after=3 dns_rate=100 http_rate=10
  flood_conns=5000 tunnel_idle=5000 tunnel_partial=1000 oversize_interval=100 pipeline_queries=64 pipeline_connections=400 slow_conns=5000 slow_interval=5000
fi

log() { printf '[stress %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
# shellcheck source=../../benchmarks/lib.sh
source "$repo/benchmarks/lib.sh"

[ "$(id -u)" -eq 0 ] || die "needs root (network namespaces, iptables)"

# --- prerequisites ----------------------------------------------------------------------------------------------
need=(ip:iproute2 ss:iproute2 iptables:iptables dnsmasq:dnsmasq-base nginx:nginx-light prlimit:util-linux)
require_tools "$install" "${need[@]}"
command -v dotnet >/dev/null || die "dotnet SDK not found"

# --- build --------------------------------------------------------------------------------------------------------
build_started=$SECONDS
log "building Release (hosts, egress-stress)"
bin="$here/.build"
for project in src/Egress.Enclave src/Egress.Host tests/stress/Egress.Stress; do
  name=$(basename "$project")
  dotnet build "$repo/$project" -c Release -v q -nologo -o "$bin/$name" >"/tmp/egress-stress-build-$name.log" 2>&1 \
    || { tail -30 "/tmp/egress-stress-build-$name.log" >&2; die "build of $project failed"; }
done
enclave_bin="${EGRESS_ENCLAVE_BIN:-$bin/Egress.Enclave/egress-enclave}"
host_bin="${EGRESS_HOST_BIN:-$bin/Egress.Host/egress-host}"
tool="$bin/Egress.Stress/egress-stress"
for executable in "$enclave_bin" "$host_bin" "$tool"; do [ -x "$executable" ] || die "$executable is not an executable"; done
log "built in $((SECONDS - build_started)) s; egress-enclave: $enclave_bin; egress-host: $host_bin"

# --- run directory, namespaces, teardown ---------------------------------------------------------------------------
run=$(mktemp -d /tmp/egress-stress.XXXXXX)
chmod 755 "$run"
[ -n "$out" ] || out="/tmp/egress-stress-results-$(date -u +%Y%m%d-%H%M%S).md"
tag="eg-stress-$$"
ns_enc="$tag-enc" ns_par="$tag-par" ns_wld="$tag-wld"
veth_p="egs$$p" veth_w="egs$$w"
tunnel="$run/tunnel.sock"
pids=()       # every background process this script started (killed on exit)
failures=()   # scenarios that could not run, hosts that died in smoke mode

cleanup() {
  local pid
  trap - EXIT INT TERM
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${pids[@]}"; do
    for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  # Anything else still inside our namespaces (nothing should be).
  for ns in "$ns_enc" "$ns_par" "$ns_wld"; do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null; done
  done
  ip -n "$ns_par" link del "$veth_p" 2>/dev/null
  for ns in "$ns_enc" "$ns_par" "$ns_wld"; do ip netns del "$ns" 2>/dev/null; done
  if [ "$keep" -eq 1 ]; then log "kept $run"; else rm -rf "$run"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Hostile clients hold thousands of sockets: the script and everything it starts get the hard limit; the two hosts
# get their own lower one (prlimit), as DescriptorExhaustionTests does.
ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" -ge 12000 ] || log "warning: open-files limit $(ulimit -n): the hostile clients may hit it first"

in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
# start NAME NS CMD...: CMD in NS in the background (ip netns exec and prlimit exec, so $! is CMD's pid); the pid is
# left in $started.
start() {
  local name=$1 ns=$2; shift 2
  ip netns exec "$ns" "$@" >"$run/$name.log" 2>&1 &
  started=$!
  pids+=("$started")
}
alive() { [ -r "/proc/$1/stat" ] && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]; }
reap() { # reap PID: waits for it and forgets it (so the cleanup never signals a pid the kernel gave to another)
  local pid=$1 kept=() p
  wait "$pid" 2>/dev/null
  for p in "${pids[@]}"; do [ "$p" = "$pid" ] || kept+=("$p"); done
  pids=("${kept[@]}")
}
stop() { kill -9 "$1" 2>/dev/null; reap "$1"; }   # stop PID: SIGKILL, reaped
wait_until() { # wait_until SECONDS PID CMD...: until CMD succeeds; false if PID exits or time runs out
  local deadline=$((SECONDS + $1)) pid=$2; shift 2
  until "$@" >/dev/null 2>&1; do
    alive "$pid" || return 1
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.1
  done
}
listening() { [ -n "$(ip netns exec "$1" ss "$2" "sport = :$3")" ]; }
value() { grep -o "\b$1=[^ ]*" <<<"$2" | head -1 | cut -d= -f2; }   # value KEY LINE

log "namespaces $ns_enc, $ns_par, $ns_wld (run directory $run)"
for ns in "$ns_enc" "$ns_par" "$ns_wld"; do
  ip netns add "$ns" || die "ip netns add $ns"
  ip -n "$ns" link set lo up
  in_ns "$ns" sysctl -qw net.ipv4.ip_local_port_range="1024 65535" net.ipv4.tcp_tw_reuse=1
done
ip -n "$ns_par" link add "$veth_p" type veth peer name "$veth_w" netns "$ns_wld" || die "veth"
ip -n "$ns_par" addr add 198.18.0.1/15 dev "$veth_p"
for address in 198.18.0.10 198.18.1.20 198.18.0.53 198.18.0.54; do ip -n "$ns_wld" addr add "$address/15" dev "$veth_w"; done
ip -n "$ns_par" link set "$veth_p" up
ip -n "$ns_wld" link set "$veth_w" up

# --- world ----------------------------------------------------------------------------------------------------------
mkdir -p "$run/www"
echo "egress stress victim page" >"$run/www/index.html"
cat >"$run/nginx.conf" <<EOF
master_process off;
worker_rlimit_nofile 16384;
pid $run/nginx.pid;
error_log $run/nginx-error.log;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path $run/body; proxy_temp_path $run/proxy; fastcgi_temp_path $run/fastcgi;
  uwsgi_temp_path $run/uwsgi; scgi_temp_path $run/scgi;
  default_type text/plain;
  server { listen 198.18.0.10:80; root $run/www; }
}
EOF
start nginx "$ns_wld" nginx -p "$run" -e "$run/nginx-error.log" -c "$run/nginx.conf" -g 'daemon off;'
pid_nginx=$started
start hold-server "$ns_wld" "$tool" hold-server --listen 198.18.1.20:7
pid_hold=$started
start dns-blackhole "$ns_wld" "$tool" dns-blackhole --listen 198.18.0.54:53
pid_blackhole=$started
start dnsmasq "$ns_wld" dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts --no-poll \
  --bind-interfaces --listen-address=198.18.0.53 --port=53 --user=root --pid-file="$run/dnsmasq.pid" --log-facility=- \
  --local-ttl=300 --address=/victim.stress.test/198.18.0.10 --address=/oversize.stress.test/198.18.0.10 \
  --server=/blackhole.stress.test/198.18.0.54 --dns-forward-max=1000
pid_dnsmasq=$started
wait_until 20 "$pid_nginx" listening "$ns_wld" -Hltn 80 || die "nginx did not start: $(tail -5 "$run/nginx-error.log" 2>/dev/null)"
wait_until 20 "$pid_hold" listening "$ns_wld" -Hltn 7 || die "hold server did not start: $(cat "$run/hold-server.log")"
wait_until 20 "$pid_blackhole" listening "$ns_wld" -Hlun 53 || die "black-hole DNS did not start: $(cat "$run/dns-blackhole.log")"
wait_until 20 "$pid_dnsmasq" grep -q "started, version" "$run/dnsmasq.log" || die "dnsmasq did not start: $(cat "$run/dnsmasq.log")"

# --- Egress ---------------------------------------------------------------------------------------------------------
cat >"$run/enclave.toml" <<EOF
[egress]
enabled = true
destinations = ["198.18.0.10", "198.18.1.20", "*.stress.test"]

[tunnel]
enclave_endpoint = "unix:$tunnel"
host_endpoint = "unix:$tunnel"

[host]
dns_upstreams = ["198.18.0.53"]
EOF
in_ns "$ns_enc" "$enclave_bin" rules --apply --config "$run/enclave.toml" >"$run/rules.log" 2>&1 \
  || { cat "$run/rules.log" >&2; die "egress-enclave rules --apply"; }

# start_hosts PHASE: both hosts afresh under the open-files limit; sets pid_host and pid_enclave. False if one does
# not come up.
start_hosts() {
  rm -f "$tunnel"
  pid_host="" pid_enclave=""
  start "$1-egress-host" "$ns_par" prlimit --nofile="$nofile:$nofile" -- "$host_bin" --config "$run/enclave.toml"
  pid_host=$started
  wait_until 30 "$pid_host" test -S "$tunnel" || return 1
  start "$1-egress-enclave" "$ns_enc" prlimit --nofile="$nofile:$nofile" -- "$enclave_bin" --config "$run/enclave.toml"
  pid_enclave=$started
  wait_until 30 "$pid_enclave" listening "$ns_enc" -Hltn 4444 && wait_until 30 "$pid_enclave" listening "$ns_enc" -Hlun 53 \
    && wait_until 30 "$pid_enclave" listening "$ns_enc" -Hltn 53
}

# bad_seconds N: the seconds of phase N's measured run (by when the query started) in which a victim DNS query failed
# or took over 1 s, as ranges ("3-7,12"), or "none".
bad_seconds() {
  awk -F, 'NR > 1 && $2 > 0 && ($3 < $2 || $4 > 1000) { print $1 }' "$run/$1-timeline.csv" 2>/dev/null | awk '
    { if (NR > 1 && $1 == last + 1) { last = $1; next } if (NR > 1) out = add(out, first, last); first = last = $1 }
    function add(list, a, b) { return (list == "" ? "" : list ",") (a == b ? a : a "-" b) }
    END { print NR == 0 ? "none" : add(out, first, last) }'
}

percent() { # percent OK SENT
  awk -v ok="$1" -v sent="$2" 'BEGIN { if (sent > 0) printf "%.1f", 100 * ok / sent; else printf "-" }'
}

# hostile N SECONDS: starts scenario N's hostile client (in the background, its line in $run/N-hostile.log).
hostile() {
  local n=$1 seconds=$2
  case "$n" in
    1) start 1-hostile "$ns_enc" "$tool" conn-flood --target 198.18.1.20:7 --count "$flood_conns" --parallel 128 --seconds "$seconds" ;;
    2) start 2-hostile "$ns_enc" "$tool" tunnel-streams --tunnel "$tunnel" --idle "$tunnel_idle" --partial "$tunnel_partial" \
         --partial-bytes 32768 --parallel 128 --seconds "$seconds" ;;
    3) start 3-hostile "$ns_enc" "$tool" dns-oversize --server 127.0.0.1:53 --name q.oversize.stress.test --length 65508 \
         --interval-ms "$oversize_interval" --seconds "$seconds" ;;
    4) start 4-hostile "$ns_enc" "$tool" dns-pipeline --server 127.0.0.1:53 --name q.blackhole.stress.test \
         --count "$pipeline_queries" --connections "$pipeline_connections" --seconds "$seconds" ;;
    5) start 5-hostile "$ns_enc" "$tool" dns-slow --server 127.0.0.1:53 --name q.victim.stress.test --count "$slow_conns" \
         --byte-interval-ms "$slow_interval" --parallel 128 --seconds "$seconds" ;;
  esac
  pid_hostile=$started
}

declare -A scenario_title=(
  [0]="unloaded baseline (the victim alone)"
  [1]="descriptor flood: $flood_conns idle TCP connections from an enclave app"
  [2]="tunnel DNS streams: $tunnel_idle idle + $tunnel_partial holding half a 64 KiB frame"
  [3]="oversize query: 65,508 bytes over TCP, every ${oversize_interval} ms"
  [4]="pipelined queries: $pipeline_connections TCP connections x $pipeline_queries, upstream never answers"
  [5]="slow-byte DNS over TCP: $slow_conns clients, 1 byte / $((slow_interval / 1000)) s"
)

# phase N: one scenario (0: the baseline). Appends one line per phase to $run/phases.txt:
#   N|victim line|after line|monitor line|hostile line|alive enclave|alive host|load average
# A full run starts both hosts afresh for every phase; a smoke run keeps them while they live (figures are not
# judged there, and starting .NET hosts is most of a phase's time).
phase() {
  local n=$1 during monitor_line hostile_line after_line="-" alive_enc alive_host loadavg pid_victim pid_monitor
  log "phase $n: ${scenario_title[$n]}"
  loadavg=$(cut -d' ' -f1 /proc/loadavg)
  if [ "$mode" = full ] || [ -z "${pid_host:-}" ] || ! alive "$pid_host" || ! alive "$pid_enclave"; then
    [ -n "${pid_host:-}" ] && stop "$pid_host"
    [ -n "${pid_enclave:-}" ] && stop "$pid_enclave"
    if ! start_hosts "$n"; then
      failures+=("phase $n: the hosts did not start (logs: $run/$n-egress-*.log)")
      log "  the hosts did not start: $(tail -n 3 "$run/$n-egress-enclave.log" "$run/$n-egress-host.log" 2>/dev/null | tr '\n' ' ')"
      [ -n "$pid_host" ] && stop "$pid_host"
      [ -n "$pid_enclave" ] && stop "$pid_enclave"
      pid_host="" pid_enclave=""
      return
    fi
  fi
  # The victim warms up (unmeasured), prints 'measuring', and measures for the load time: the hostile client and the
  # sampler start then.
  start "$n-victim" "$ns_enc" "$tool" victim --dns 127.0.0.1:53 --name-suffix victim.stress.test --dns-rate "$dns_rate" \
    --http 198.18.0.10:80 --http-rate "$http_rate" --warmup "$warmup" --seconds "$load" --timeline "$run/$n-timeline.csv"
  pid_victim=$started
  wait_until $((warmup + 60)) "$pid_victim" grep -q '^measuring' "$run/$n-victim.log"
  if ! grep -q '^measuring=1 warmup_dns_ok=[1-9][0-9]* warmup_http_ok=[1-9]' "$run/$n-victim.log"; then
    failures+=("phase $n: the victim got no DNS answer or no HTTP response before any load: $(tr '\n' ' ' <"$run/$n-victim.log")")
    log "  cannot run: the victim fails before any load: $(tr '\n' ' ' <"$run/$n-victim.log")"
    stop "$pid_victim"
    return
  fi
  start "$n-monitor" "$ns_enc" "$tool" monitor --pid "enclave=$pid_enclave" --pid "host=$pid_host" --interval-ms 200 \
    --seconds "$((load + 1))"
  pid_monitor=$started
  pid_hostile=""
  [ "$n" -eq 0 ] || hostile "$n" "$((load + 1))"
  reap "$pid_victim"
  during=$(tail -1 "$run/$n-victim.log")
  if [ -n "$pid_hostile" ]; then
    reap "$pid_hostile"
    hostile_line=$(tail -1 "$run/$n-hostile.log")
    grep -q '=' <<<"$hostile_line" || failures+=("phase $n: the hostile client did not report: $(tail -3 "$run/$n-hostile.log" | tr '\n' ' ')")
  else
    hostile_line="-"
  fi
  reap "$pid_monitor"
  monitor_line=$(tail -1 "$run/$n-monitor.log")
  if [ "$mode" = full ]; then
    after_line=$(in_ns "$ns_enc" "$tool" victim --dns 127.0.0.1:53 --name-suffix victim.stress.test --dns-rate "$dns_rate" \
      --http 198.18.0.10:80 --http-rate "$http_rate" --seconds "$after" 2>&1 | tail -1)
  fi
  alive "$pid_enclave" && alive_enc=yes || alive_enc=no
  alive "$pid_host" && alive_host=yes || alive_host=no
  log "  victim: $during (seconds with a DNS failure or an answer over 1 s: $(bad_seconds "$n"))"
  log "  hostile: $hostile_line"
  log "  hosts: $monitor_line; alive: enclave $alive_enc, host $alive_host"
  [ "$mode" = smoke ] || log "  after the load: $after_line"
  if [ "$alive_enc" = no ] || [ "$alive_host" = no ]; then
    log "  a host died; its last lines:"
    tail -n 5 "$run/$n-egress-enclave.log" "$run/$n-egress-host.log" >&2
  fi
  grep -q 'dns_sent=' <<<"$during" || failures+=("phase $n: the victim did not report: $during")
  echo "$n|$during|$after_line|$monitor_line|$hostile_line|$alive_enc|$alive_host|$loadavg" >>"$run/phases.txt"
  if [ "$mode" = full ]; then
    stop "$pid_enclave"
    stop "$pid_host"
    pid_host="" pid_enclave=""
  fi
}

: >"$run/phases.txt"
started_at=$(date -u '+%Y-%m-%d %H:%M UTC')
for n in 0 1 2 3 4 5; do
  if [ "$n" -eq 0 ] || want "$n"; then phase "$n"; fi
done

# --- report ---------------------------------------------------------------------------------------------------------
commit=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=$(git -C "$repo" status --porcelain -- src 2>/dev/null | head -1)
baseline_p99=$(awk -F'|' '$1 == 0' "$run/phases.txt" | grep -o 'dns_p99_ms=[0-9.]*' | head -1 | cut -d= -f2)
{
  if [ -n "${EGRESS_ENCLAVE_BIN:-}${EGRESS_HOST_BIN:-}" ]; then
    echo "Hosts under test: egress-enclave $enclave_bin, egress-host $host_bin (not this tree's build)."
    echo
  fi
  echo "Egress stress suite ($mode run), $started_at, commit $commit${dirty:+ (src/ modified)}; $(nproc) CPUs,"
  echo "$(lscpu | awk -F: '/Model name/{gsub(/^ +/, "", $2); print $2; exit}'), Linux $(uname -r); both hosts under"
  echo "\`prlimit --nofile=$nofile\`; load ${load} s per scenario, the victim at $dns_rate DNS queries/s (UDP) and $http_rate HTTP"
  echo "requests/s (5 s timeout each; a failure counts in the percentiles at the time it failed)."
  echo
  echo "| # | Scenario | Victim DNS ok | DNS p50 / p99 ms | p99 / unloaded p99 | Victim HTTP ok | Enclave / host peak RSS MiB | Enclave / host peak fds | Alive (enclave / host) | After the load: DNS / HTTP ok | Load avg |"
  echo "|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|"
  while IFS='|' read -r n during after_line monitor_line hostile_line alive_enc alive_host loadavg; do
    dns_ok=$(percent "$(value dns_ok "$during")" "$(value dns_sent "$during")")
    http_ok=$(percent "$(value http_ok "$during")" "$(value http_sent "$during")")
    p50=$(printf '%.1f' "$(value dns_p50_ms "$during")") p99=$(printf '%.1f' "$(value dns_p99_ms "$during")")
    ratio=$(awk -v p="$p99" -v b="$baseline_p99" 'BEGIN { if (b > 0) printf "%.2fx", p / b; else printf "-" }')
    rss="$(printf '%.0f' "$(value enclave_peak_rss_mib "$monitor_line")") / $(printf '%.0f' "$(value host_peak_rss_mib "$monitor_line")")"
    fds="$(value enclave_peak_fds "$monitor_line") / $(value host_peak_fds "$monitor_line")"
    after_ok="-"
    [ "$after_line" = - ] || after_ok="$(percent "$(value dns_ok "$after_line")" "$(value dns_sent "$after_line")") % / $(percent "$(value http_ok "$after_line")" "$(value http_sent "$after_line")") %"
    died() { # died yes|no SECONDS: "yes", or "no (died at N s)" with the sampler's time of death
      if [ "$1" = yes ]; then printf yes; else printf 'no%s' "$(awk -v t="$2" 'BEGIN { if (t >= 0) printf " (died at %.0f s)", t }')"; fi
    }
    alive_cell="$(died "$alive_enc" "$(value enclave_exited_after_s "$monitor_line")") / $(died "$alive_host" "$(value host_exited_after_s "$monitor_line")")"
    echo "| $n | ${scenario_title[$n]} | $dns_ok % | $p50 / $p99 | $ratio | $http_ok % | $rss | $fds | $alive_cell | $after_ok | $loadavg |"
  done <"$run/phases.txt"
  echo
  echo "What each hostile client saw (its own report), and the seconds of the load in which one of the victim's DNS"
  echo "queries failed or took over 1 s (by when it started; 0 is the first second):"
  echo
  while IFS='|' read -r n _ _ _ hostile_line _; do
    [ "$n" -eq 0 ] || echo "* $n: \`$hostile_line\`; victim's bad seconds: $(bad_seconds "$n")"
  done <"$run/phases.txt"
  echo
  echo "Targets (issue 13): both hosts alive; the victim's DNS 100 % answered and its p99 within 2x of the unloaded p99"
  echo "while one hostile client floods; egress-enclave's peak RSS below 256 MiB."
  [ "$mode" = full ] || echo "(A smoke run does not judge these: its scenarios are too short and too small.)"
  echo
  echo "| # | Both alive | DNS 100 % | DNS p99 ≤ 2x unloaded | Enclave RSS < 256 MiB |"
  echo "|---|---|---|---|---|"
  while IFS='|' read -r n during _ monitor_line _ alive_enc alive_host _; do
    [ "$n" -eq 0 ] && continue
    verdict() { if eval "$1"; then printf 'PASS'; else printf 'MISS'; fi; }
    sent=$(value dns_sent "$during") ok=$(value dns_ok "$during") p99=$(value dns_p99_ms "$during")
    rss=$(value enclave_peak_rss_mib "$monitor_line")
    a=$(verdict '[ "$alive_enc" = yes ] && [ "$alive_host" = yes ]')
    b=$(verdict '[ -n "$sent" ] && [ "$sent" -gt 0 ] && [ "$ok" = "$sent" ]')
    c=$(verdict 'awk -v p="$p99" -v b="$baseline_p99" "BEGIN { exit !(b > 0 && p <= 2 * b) }"')
    d=$(verdict 'awk -v r="$rss" "BEGIN { exit !(r != \"\" && r < 256) }"')
    echo "| $n | $a | $b ($ok of $sent) | $c ($p99 ms vs $baseline_p99 ms) | $d (${rss%.*} MiB) |"
  done <"$run/phases.txt"
} >"$out"
cat "$out"
cp "$out" "$run/results.md"
log "results: $out"

misses=$(grep -c 'MISS' "$out")
dead=$(awk -F'|' '$6 == "no" || $7 == "no"' "$run/phases.txt" | wc -l)
if [ "$mode" = smoke ] && [ "$dead" -gt 0 ]; then
  failures+=("a host died in $dead phase(s) (smoke)")
fi
if [ "${#failures[@]}" -gt 0 ]; then
  log "${#failures[@]} failure(s):"
  for f in "${failures[@]}"; do log "  $f"; done
  exit 1
fi
if [ "$mode" = full ] && [ "$strict" -eq 1 ] && [ "$misses" -gt 0 ]; then
  log "$misses target(s) missed (--strict)"
  exit 3
fi
log "done ($misses target(s) missed)"
