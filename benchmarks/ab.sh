#!/usr/bin/env bash
# Two arms of Egress side by side: each arm's egress-enclave and egress-host in a namespace topology of its own
# (samples/netns/topology.sh), the same load against one arm and then the other, round after round, the order
# alternating. For a change to Egress itself, this is sharper than two runs of run.sh: a ratio to a peer from another
# run moves with the peer (docs/benchmarks.md, "Two malloc arenas for egress-host, measured side by side").
#
#   sudo benchmarks/ab.sh [--rounds=N] [--seconds=S] [--loads=http,connrate,throughput,latency,tls] [--no-install]
#   sudo benchmarks/ab.sh --smoke     # one 1 s round of each load, no warm-up (overrides --rounds and --seconds);
#                                     # exits non-zero if an arm carries nothing
#
# An arm is described by the environment (A and B alike; unset = the Release build of this tree, as run.sh builds it):
#   AB_A_HOST_BIN, AB_A_ENCLAVE_BIN  the executables (e.g. another commit's build, or a Native AOT publish)
#   AB_A_ENV                         "NAME=value ..." for both hosts of the arm (split at blanks, no globbing)
#   AB_A_HOST_ENV                    the same, for egress-host only (after AB_A_ENV)
#   AB_A_TOML                        appended to the arm's enclave.toml (e.g. $'[relay]\nsplice = false')
#   AB_A_EGRESS                      more keys of its [egress] table (e.g. 'tls_server_name = "off"')
# egress-host runs with MALLOC_ARENA_MAX=2 in both arms, as its systemd unit starts it, unless the arm's
# variables set it. Both hosts log at Warning, as in run.sh.
#
# Loads (5 s a round each unless --seconds; each arm gets 5 s of untimed HTTP and connections first, for the JIT):
#   http        wrk -t 2 -c 16 -H "Connection: close" against nginx: requests/s
#   connrate    egress-bench-tool connrate, 16 loops of connect, 32-byte echo, close: connections/s
#   throughput  iperf3, one stream: Gbit/s
#   latency     egress-bench-tool latency, 1-byte ping-pong: p50 and p99 in µs (lower is better)
#   tls         benchmarks/tls-client.py, 4 loops of connect, full TLS handshake, GET, close, to bench.tls.test (an
#               address learned from the arm's own DNS, so the TLS server-name check applies, "require" by default):
#               connections/s. The client is Python (one process): its own CPU bounds the rate; compare arms, not loads.
# Prints each round, then per load: each arm's median, B / A of the medians, the median of the rounds' own B / A
# (each round's two measurements are minutes apart at most), and in how many rounds B was ahead. After Ctrl-C or
# SIGTERM the same summary, of the measurements finished by then.
#
# A measurement that fails, reports errors, carries nothing or does not end within its time plus 30 s is counted as
# FAILED and the script exits 1 after the summary. Everything stays on this machine (198.18.0.0/15 inside the arms' own
# namespaces); the namespaces, their processes and the run directory are removed on exit, on failure, on Ctrl-C and
# on SIGTERM (exit 130 and 143).
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)

rounds=10 seconds=5 loads="http,connrate,throughput,latency,tls" install=1 smoke=0 warmup=5
for arg in "$@"; do
  case "$arg" in
    --rounds=*) rounds=${arg#--rounds=} ;;
    --seconds=*) seconds=${arg#--seconds=} ;;
    --loads=*) loads=${arg#--loads=} ;;
    --no-install) install=0 ;;
    --smoke) smoke=1 ;;
    -h|--help) sed -n '2,/^set -uo pipefail$/{/^set /d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    *) echo "unknown option: $arg (see --help)" >&2; exit 2 ;;
  esac
done
[ "$smoke" -eq 1 ] && rounds=1 seconds=1 warmup=0
[[ $rounds =~ ^[1-9][0-9]{0,2}$ ]] || { echo "--rounds=$rounds: 1 to 999" >&2; exit 2; }
[[ $seconds =~ ^[1-9][0-9]{0,2}$ ]] || { echo "--seconds=$seconds: 1 to 999" >&2; exit 2; }
IFS=, read -r -a load_list <<<"$loads"
[ "${#load_list[@]}" -gt 0 ] || { echo "--loads: name at least one of http, connrate, throughput, latency, tls" >&2; exit 2; }
declare -A seen_load=()
for load in "${load_list[@]}"; do
  case "$load" in http|connrate|throughput|latency|tls) ;; *) echo "--loads: unknown load '$load'" >&2; exit 2 ;; esac
  [ -z "${seen_load[$load]:-}" ] || { echo "--loads: '$load' named twice" >&2; exit 2; }
  seen_load[$load]=1
done

log() { printf '[ab %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
# shellcheck source=lib.sh
source "$here/lib.sh"
[ "$(id -u)" -eq 0 ] || die "needs root (network namespaces, iptables)"

need=(iperf3:iperf3 wrk:wrk nginx:nginx ip:iproute2 iptables:iptables ss:iproute2 python3:python3-minimal openssl:openssl
  dnsmasq:dnsmasq-base)
require_tools "$install" "${need[@]}"
command -v dotnet >/dev/null || die "dotnet SDK not found"

# shellcheck source=../samples/netns/topology.sh
source "$repo/samples/netns/topology.sh"
run=$(mktemp -d /tmp/egress-ab.XXXXXX)
arms=(a b)
declare -A prefix=([a]="eg-a$$" [b]="eg-b$$")   # differ within the first 9 characters, which topology.sh names links by
ulimit -n "$(ulimit -Hn)"

bounded_pid=
cleanup() {
  local arm
  # A build or client still running (stopped by a signal): timeout passes SIGTERM on to it.
  [ -z "$bounded_pid" ] || kill "$bounded_pid" 2>/dev/null
  for arm in "${arms[@]}"; do
    egress_netns_down "${prefix[$arm]}" >/dev/null 2>&1
    rm -rf "/etc/netns/${prefix[$arm]}-enclave"
  done
  rm -rf "$run"
}
results=
# interrupted STATUS: Ctrl-C or SIGTERM: the summary of the rounds measured so far, if any, then exit STATUS.
interrupted() {
  trap - INT TERM
  [ -z "$bounded_pid" ] || kill "$bounded_pid" 2>/dev/null
  if [ -n "$results" ] && [ -s "$results" ]; then
    local load measured=()
    for load in "${load_list[@]}"; do
      grep -q " $load " "$results" && measured+=("$load")
    done
    log "interrupted: the summary of the measurements finished so far (${measured[*]})"
    summarize "${measured[@]}"
  fi
  exit "$1"
}
trap cleanup EXIT
trap 'interrupted 130' INT
trap 'interrupted 143' TERM

# bounded SECONDS OUTFILE CMD...: CMD with its output in OUTFILE, stopped (SIGTERM, then SIGKILL 5 s later) after
# SECONDS. It runs in the background and the script waits for it, so that Ctrl-C or SIGTERM stops the script at once.
bounded() {
  local limit=$1 file=$2
  shift 2
  timeout -k 5 "$limit" "$@" >"$file" 2>&1 &
  bounded_pid=$!
  wait "$bounded_pid"
}

out="$repo/benchmarks/.build"
log "building Release (hosts, benchmark tools)"
for project in src/Egress.Enclave src/Egress.Host benchmarks/Egress.Benchmarks.Tools; do
  name=$(basename "$project")
  bounded 900 "$run/build-$name.log" dotnet build "$repo/$project" -c Release -v q -nologo -o "$out/$name" \
    || { tail -30 "$run/build-$name.log" >&2; die "build of $project failed"; }
done
tool="$out/Egress.Benchmarks.Tools/egress-bench-tool"

# started PID SECONDS DESCRIPTION LOG CMD...: waits until CMD succeeds; dies at once, with the end of LOG, if PID has
# exited, and after SECONDS otherwise.
started() {
  local pid=$1 deadline=$((SECONDS + $2)) what=$3 file=$4
  shift 4
  until "$@" >/dev/null 2>&1; do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -20 "$file" >&2 2>/dev/null
      die "$what exited before it was ready (its log's end above)"
    fi
    [ "$SECONDS" -lt "$deadline" ] || { tail -20 "$file" >&2 2>/dev/null; die "timed out waiting for $what"; }
    sleep 0.1
  done
}

world=198.18.0.10
# The tls load's server: its own address, reached only through the name (an address entry would skip the check).
tls_name=bench.tls.test tls_address=198.18.0.11 dns=198.18.0.53
for arm in "${arms[@]}"; do
  p=${prefix[$arm]} d="$run/$arm" ARM=${arm^^}
  mkdir -p "$d"
  egress_netns_up "$p" || die "topology $p"
  for ns in "$p-enclave" "$p-parent" "$p-world"; do
    # Many short connections: the whole port range and TIME_WAIT reuse, as run.sh sets them.
    in_ns "$ns" sysctl -qw net.ipv4.ip_local_port_range="1024 65535" net.ipv4.tcp_tw_reuse=1
  done
  mkdir -p "/etc/netns/$p-enclave" && echo "nameserver 127.0.0.1" >"/etc/netns/$p-enclave/resolv.conf"
  in_ns "$p-world" iperf3 -s -B "$world" -p 5201 >"$d/iperf3.log" 2>&1 &
  iperf_pid=$!
  in_ns "$p-world" "$tool" echo-server --listen "$world:7000" >"$d/echo.log" 2>&1 &
  echo_pid=$!
  write_nginx_ok_conf "$d/nginx" "$world:8080"
  in_ns "$p-world" nginx -e "$d/nginx/error.log" -p "$d/nginx" -c "$d/nginx/nginx.conf" >"$d/nginx.log" 2>&1 &
  nginx_pid=$!
  write_nginx_ok_conf "$d/nginx-tls" "$tls_address:443" "$tls_name"
  in_ns "$p-world" nginx -e "$d/nginx-tls/error.log" -p "$d/nginx-tls" -c "$d/nginx-tls/nginx.conf" >"$d/nginx-tls.log" 2>&1 &
  nginx_tls_pid=$!
  in_ns "$p-world" dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts --pid-file \
    --bind-interfaces --listen-address="$dns" --port=53 --address="/$tls_name/$tls_address" --local-ttl=300 \
    --log-facility="$d/dnsmasq.log" >"$d/dnsmasq.out" 2>&1 &
  dnsmasq_pid=$!
  toml_var="AB_${ARM}_TOML" egress_var="AB_${ARM}_EGRESS"
  write_enclave_toml "$d/enclave.toml" "$d/egress.sock" "$dns:53" \
    "enabled = true
destinations = [\"$world/32\", \"$tls_name:443\"]
${!egress_var:-}" "${!toml_var:-}"
  host_var="AB_${ARM}_HOST_BIN" enclave_var="AB_${ARM}_ENCLAVE_BIN" env_var="AB_${ARM}_ENV" host_env_var="AB_${ARM}_HOST_ENV"
  host_bin=${!host_var:-$out/Egress.Host/egress-host}
  enclave_bin=${!enclave_var:-$out/Egress.Enclave/egress-enclave}
  [ -x "$host_bin" ] || die "$host_var=$host_bin is not an executable"
  [ -x "$enclave_bin" ] || die "$enclave_var=$enclave_bin is not an executable"
  in_ns "$p-enclave" "$enclave_bin" rules --apply --config "$d/enclave.toml" >"$d/rules.log" 2>&1 \
    || { cat "$d/rules.log" >&2; die "arm $ARM: egress-enclave rules --apply"; }
  read -r -a both_env <<<"${!env_var:-}"
  read -r -a host_env <<<"${!host_env_var:-}"
  in_ns "$p-parent" env MALLOC_ARENA_MAX=2 "${both_env[@]}" "${host_env[@]}" "$host_bin" --config "$d/enclave.toml" \
    --log-level Warning >"$d/egress-host.log" 2>&1 &
  started "$!" 30 "arm $ARM: egress-host" "$d/egress-host.log" test -S "$d/egress.sock"
  in_ns "$p-enclave" env "${both_env[@]}" "$enclave_bin" --config "$d/enclave.toml" --log-level Warning \
    >"$d/egress-enclave.log" 2>&1 &
  started "$!" 30 "arm $ARM: egress-enclave" "$d/egress-enclave.log" tcp_listening "$p-enclave" 4444
  started "$iperf_pid" 20 "arm $ARM: iperf3 -s" "$d/iperf3.log" tcp_listening "$p-world" 5201
  started "$echo_pid" 20 "arm $ARM: the echo server" "$d/echo.log" tcp_listening "$p-world" 7000
  started "$nginx_pid" 20 "arm $ARM: nginx" "$d/nginx/error.log" tcp_listening "$p-world" 8080
  started "$nginx_tls_pid" 20 "arm $ARM: nginx (TLS)" "$d/nginx-tls/error.log" tcp_listening "$p-world" 443
  started "$dnsmasq_pid" 20 "arm $ARM: dnsmasq" "$d/dnsmasq.out" udp_listening "$p-world" 53
  log "arm $ARM (namespaces ${prefix[$arm]}-*): egress-host $host_bin, egress-enclave $enclave_bin"
  if [ -n "${seen_load[tls]:-}" ]; then
    # What the tls load measures: with the check on, a ClientHello naming another server is refused on the address.
    if in_ns "$p-enclave" timeout 30 python3 "$here/tls-client.py" "$tls_name" 443 0 1 "other.$tls_name" >"$d/probe.log" 2>&1; then
      log "arm $ARM: a ClientHello for other.$tls_name passes: the TLS server-name check is off"
    else
      log "arm $ARM: a ClientHello for other.$tls_name is refused: the TLS server-name check is on"
    fi
  fi
  [ -z "${!env_var:-}" ] || log "arm $ARM: both hosts with ${!env_var}"
  [ -z "${!host_env_var:-}" ] || log "arm $ARM: egress-host with ${!host_env_var}"
  [ -z "${!egress_var:-}" ] || log "arm $ARM: [egress] with: ${!egress_var//$'\n'/ }"
  [ -z "${!toml_var:-}" ] || log "arm $ARM: enclave.toml ends with: ${!toml_var//$'\n'/ }"
done

# measure LOAD ARM SECONDS: sets value to the load's figure (requests/s, connections/s or Gbit/s; for latency "p50
# p99" in µs), every one above zero; else says why on stderr and fails. Each client gets SECONDS + 30 s to finish.
# Not in a subshell: the wait in bounded is then the script's own, which a signal interrupts.
measure() {
  local load=$1 ns="${prefix[$2]}-enclave" s=$3 text="$run/measure.out"
  value=
  local limit=$((s + 30))
  case "$load" in
    http)
      bounded "$limit" "$text" ip netns exec "$ns" wrk -t 2 -c 16 -d "${s}s" -H "Connection: close" "http://$world:8080/" \
        || { echo "wrk failed or timed out: $(tail -c 300 "$text")" >&2; return 1; }
      if grep -q -e 'Socket errors' -e 'Non-2xx' "$text"; then
        echo "wrk: $(grep -e 'Socket errors' -e 'Non-2xx' "$text" | tr '\n' ' ')" >&2
        return 1
      fi
      value=$(awk '/^Requests\/sec:/{print $2}' "$text") ;;
    connrate)
      bounded "$limit" "$text" ip netns exec "$ns" "$tool" connrate --target "$world:7000" --seconds "$s" --concurrency 16 \
        || { echo "connrate failed or timed out: $(tail -c 300 "$text")" >&2; return 1; }
      grep -q 'failed=0 ' "$text" || { echo "connrate: $(tail -c 300 "$text")" >&2; return 1; }
      value=$(grep -o 'per_second=[0-9]*' "$text" | cut -d= -f2) ;;
    throughput)
      bounded "$limit" "$text" ip netns exec "$ns" iperf3 -c "$world" -p 5201 -t "$s" -J \
        || { echo "iperf3 failed or timed out: $(tail -c 300 "$text")" >&2; return 1; }
      value=$(python3 -c 'import json,sys; print("%.3f" % (json.load(open(sys.argv[1]))["end"]["sum_received"]["bits_per_second"] / 1e9))' "$text") ;;
    latency)
      bounded "$limit" "$text" ip netns exec "$ns" "$tool" latency --target "$world:7000" --seconds "$s" \
        || { echo "latency failed or timed out: $(tail -c 300 "$text")" >&2; return 1; }
      value="$(grep -o 'p50_us=[0-9.]*' "$text" | cut -d= -f2) $(grep -o 'p99_us=[0-9.]*' "$text" | cut -d= -f2)" ;;
    tls)
      bounded "$limit" "$text" ip netns exec "$ns" python3 "$here/tls-client.py" "$tls_name" 443 "$s" 4 \
        || { echo "tls-client.py failed or timed out: $(tail -c 300 "$text")" >&2; return 1; }
      grep -q ' failed=0 ' "$text" || { echo "tls: $(tail -c 300 "$text")" >&2; return 1; }
      value=$(grep -o 'per_second=[0-9]*' "$text" | cut -d= -f2) ;;
  esac
  # Every figure a positive number (a hung or empty load reads 0.00 requests/s, or nothing).
  # shellcheck disable=SC2086 # the latency's two figures are two arguments
  if ! python3 -c 'import sys; v = sys.argv[1:]; sys.exit(0 if v and all(float(x) > 0 for x in v) else 1)' $value 2>/dev/null; then
    echo "$load carried nothing (figure: '${value}')" >&2
    return 1
  fi
}

if [ "$warmup" -gt 0 ]; then
  log "warm-up: ${warmup} s of HTTP, of connections (and of TLS, when measured) through each arm"
  for arm in "${arms[@]}"; do
    measure http "$arm" "$warmup" >/dev/null 2>&1
    measure connrate "$arm" "$warmup" >/dev/null 2>&1
    [ -z "${seen_load[tls]:-}" ] || measure tls "$arm" "$warmup" >/dev/null 2>&1
  done
fi

# summarize LOAD...: per load, each arm's median, B / A of the medians, the median of the rounds' own B / A, and in
# how many rounds B was ahead, from $results.
summarize() {
python3 - "$results" "$@" <<'EOF'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
loads = sys.argv[2:]
lower_is_better = {"latency"}
metrics = []
for load in loads:
    names = ["p50 µs", "p99 µs"] if load == "latency" else [{"http": "requests/s", "connrate": "connections/s", "throughput": "Gbit/s", "tls": "TLS connections/s"}[load]]
    for i, name in enumerate(names):
        per_round = {}
        for r in rows:
            if r[1] == load:
                per_round.setdefault(r[0], {})[r[2]] = float(r[3 + i])
        a = [v["A"] for v in per_round.values() if "A" in v]
        b = [v["B"] for v in per_round.values() if "B" in v]
        paired = [v["B"] / v["A"] for v in per_round.values() if "A" in v and "B" in v and v["A"] > 0]
        if not a or not b:
            failed_arms = " and ".join(arm for arm, values in (("A", a), ("B", b)) if not values)
            metrics.append((f"{load} ({name})", statistics.median(a) if a else None, statistics.median(b) if b else None,
                            None, None, f"arm {failed_arms}: every round failed"))
            continue
        ahead = sum(1 for x in paired if (x < 1 if load in lower_is_better else x > 1))
        metrics.append((f"{load} ({name}{', lower is better' if load in lower_is_better else ''})",
                        statistics.median(a), statistics.median(b), statistics.median(b) / statistics.median(a),
                        statistics.median(paired) if paired else float("nan"), f"{ahead} of {len(paired)}"))
print("| Load | A (median) | B (median) | B / A, medians | B / A, median of the rounds | B ahead |")
print("|---|---:|---:|---:|---:|---:|")
def cell(x, spec):
    return "n/a" if x is None else format(x, spec)
for name, a, b, ratio, paired, ahead in metrics:
    print(f"| {name} | {cell(a, ',.2f')} | {cell(b, ',.2f')} | {cell(ratio, '.3f')} | {cell(paired, '.3f')} | {ahead} |")
EOF
}

results="$run/results.txt"
: >"$results"
failed=0
log "$rounds round(s) of ${seconds} s per load and arm: ${load_list[*]}"
for ((r = 1; r <= rounds; r++)); do
  if ((r % 2)); then order=(a b); else order=(b a); fi
  for load in "${load_list[@]}"; do
    for arm in "${order[@]}"; do
      if measure "$load" "$arm" "$seconds"; then
        echo "$r $load ${arm^^} $value" >>"$results"
        log "  round $r, $load, arm ${arm^^}: $value"
      else
        log "  round $r, $load, arm ${arm^^}: FAILED (above)"
        failed=$((failed + 1))
      fi
      [ "$load" = connrate ] && sleep 1   # let the last round's TIME_WAIT sockets settle, as run.sh does
    done
  done
done

summarize "${load_list[@]}"
if [ "$failed" -gt 0 ]; then log "$failed measurement(s) failed"; exit 1; fi
log "done"
