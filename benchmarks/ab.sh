#!/usr/bin/env bash
# Two arms of Egress side by side: each arm's egress-enclave and egress-host in a namespace topology of its own
# (samples/netns/topology.sh), the same load against one arm and then the other, round after round, the order
# alternating. For a change to Egress itself, this is sharper than two runs of run.sh: a ratio to a peer from another
# run moves with the peer (docs/benchmarks.md, "Two malloc arenas for egress-host, measured side by side").
#
#   sudo benchmarks/ab.sh [--rounds=N] [--seconds=S] [--loads=http,connrate,throughput,latency] [--no-install]
#   sudo benchmarks/ab.sh --smoke     # one short round of each load; exits non-zero if an arm carries nothing
#
# An arm is described by the environment (A and B alike; unset = the Release build of this tree, as run.sh builds it):
#   AB_A_HOST_BIN, AB_A_ENCLAVE_BIN  the executables (e.g. another commit's build, or a Native AOT publish)
#   AB_A_ENV                         "NAME=value ..." for both hosts of the arm (word-split on purpose)
#   AB_A_HOST_ENV                    the same, for egress-host only (after AB_A_ENV)
#   AB_A_TOML                        appended to the arm's enclave.toml (e.g. $'[relay]\nsplice = false')
# egress-host runs with MALLOC_ARENA_MAX=2 in both arms, as its systemd unit starts it, unless the arm's
# variables set it. Both hosts log at Warning, as in run.sh.
#
# Loads (5 s a round each unless --seconds; each arm gets 5 s of untimed HTTP and connections first, for the JIT):
#   http        wrk -t 2 -c 16 -H "Connection: close" against nginx: requests/s
#   connrate    egress-bench-tool connrate, 16 loops of connect, 32-byte echo, close: connections/s
#   throughput  iperf3, one stream: Gbit/s
#   latency     egress-bench-tool latency, 1-byte ping-pong: p50 and p99 in µs (lower is better)
# Prints each round, then per load: each arm's median, B / A of the medians, the median of the rounds' own B / A
# (each round's two measurements are minutes apart at most), and in how many rounds B was ahead.
#
# Everything stays on this machine (198.18.0.0/15 inside the arms' own namespaces); the namespaces, their processes
# and the run directory are removed on exit, on failure and on Ctrl-C.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)

rounds=10 seconds=5 loads="http,connrate,throughput,latency" install=1 smoke=0 warmup=5
for arg in "$@"; do
  case "$arg" in
    --rounds=*) rounds=${arg#--rounds=} ;;
    --seconds=*) seconds=${arg#--seconds=} ;;
    --loads=*) loads=${arg#--loads=} ;;
    --no-install) install=0 ;;
    --smoke) smoke=1 ;;
    -h|--help) sed -n "2,30p" "$0"; exit 0 ;;
    *) echo "unknown option: $arg (see --help)" >&2; exit 2 ;;
  esac
done
[ "$smoke" -eq 1 ] && rounds=1 seconds=1 warmup=0
[[ $rounds =~ ^[1-9][0-9]{0,2}$ ]] || { echo "--rounds=$rounds: 1 to 999" >&2; exit 2; }
[[ $seconds =~ ^[1-9][0-9]{0,2}$ ]] || { echo "--seconds=$seconds: 1 to 999" >&2; exit 2; }
IFS=, read -r -a load_list <<<"$loads"
for load in "${load_list[@]}"; do
  case "$load" in http|connrate|throughput|latency) ;; *) echo "--loads: unknown load '$load'" >&2; exit 2 ;; esac
done

log() { printf '[ab %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
# shellcheck source=lib.sh
source "$here/lib.sh"
[ "$(id -u)" -eq 0 ] || die "needs root (network namespaces, iptables)"

need=(iperf3:iperf3 wrk:wrk nginx:nginx ip:iproute2 iptables:iptables ss:iproute2 python3:python3-minimal)
require_tools "$install" "${need[@]}"
command -v dotnet >/dev/null || die "dotnet SDK not found"

out="$repo/benchmarks/.build"
log "building Release (hosts, benchmark tools)"
for project in src/Egress.Enclave src/Egress.Host benchmarks/Egress.Benchmarks.Tools; do
  name=$(basename "$project")
  dotnet build "$repo/$project" -c Release -v q -nologo -o "$out/$name" >"/tmp/egress-ab-build-$name.log" 2>&1 \
    || { tail -30 "/tmp/egress-ab-build-$name.log" >&2; die "build of $project failed"; }
done
tool="$out/Egress.Benchmarks.Tools/egress-bench-tool"

# shellcheck source=../samples/netns/topology.sh
source "$repo/samples/netns/topology.sh"
run=$(mktemp -d /tmp/egress-ab.XXXXXX)
arms=(a b)
declare -A prefix=([a]="eg-a$$" [b]="eg-b$$")   # differ within the first 9 characters, which topology.sh names links by
ulimit -n "$(ulimit -Hn)"

cleanup() {
  local arm
  for arm in "${arms[@]}"; do
    egress_netns_down "${prefix[$arm]}" >/dev/null 2>&1
    rm -rf "/etc/netns/${prefix[$arm]}-enclave"
  done
  rm -rf "$run"
}
trap cleanup EXIT
trap 'exit 130' INT TERM


world=198.18.0.10
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
  in_ns "$p-world" "$tool" echo-server --listen "$world:7000" >"$d/echo.log" 2>&1 &
  write_nginx_ok_conf "$d/nginx" "$world:8080"
  in_ns "$p-world" nginx -e "$d/nginx/error.log" -p "$d/nginx" -c "$d/nginx/nginx.conf" >"$d/nginx.log" 2>&1 &
  toml_var="AB_${ARM}_TOML"
  cat >"$d/enclave.toml" <<EOF
[egress]
enabled = true
destinations = ["198.18.0.0/15"]

[tunnel]
enclave_endpoint = "unix:$d/egress.sock"
host_endpoint = "unix:$d/egress.sock"

[enclave]
proxy_listen = ["127.0.0.1:4444"]
dns_listen = ["127.0.0.1:53"]

[host]
dns_upstreams = ["198.18.0.53:53"]
${!toml_var:-}
EOF
  host_var="AB_${ARM}_HOST_BIN" enclave_var="AB_${ARM}_ENCLAVE_BIN" env_var="AB_${ARM}_ENV" host_env_var="AB_${ARM}_HOST_ENV"
  host_bin=${!host_var:-$out/Egress.Host/egress-host}
  enclave_bin=${!enclave_var:-$out/Egress.Enclave/egress-enclave}
  [ -x "$host_bin" ] || die "$host_var=$host_bin is not an executable"
  [ -x "$enclave_bin" ] || die "$enclave_var=$enclave_bin is not an executable"
  in_ns "$p-enclave" "$enclave_bin" rules --apply --config "$d/enclave.toml" >"$d/rules.log" 2>&1 \
    || { cat "$d/rules.log" >&2; die "arm $ARM: egress-enclave rules --apply"; }
  # shellcheck disable=SC2086
  in_ns "$p-parent" env MALLOC_ARENA_MAX=2 ${!env_var:-} ${!host_env_var:-} "$host_bin" --config "$d/enclave.toml" \
    --log-level Warning >"$d/egress-host.log" 2>&1 &
  wait_until 30 "arm $ARM: egress-host" test -S "$d/egress.sock"
  # shellcheck disable=SC2086
  in_ns "$p-enclave" env ${!env_var:-} "$enclave_bin" --config "$d/enclave.toml" --log-level Warning \
    >"$d/egress-enclave.log" 2>&1 &
  wait_until 30 "arm $ARM: egress-enclave" tcp_listening "$p-enclave" 4444
  for port in 5201 7000 8080; do wait_until 20 "arm $ARM: world server on :$port" tcp_listening "$p-world" "$port"; done
  log "arm $ARM (namespaces ${prefix[$arm]}-*): egress-host $host_bin, egress-enclave $enclave_bin"
  [ -z "${!env_var:-}" ] || log "arm $ARM: both hosts with ${!env_var}"
  [ -z "${!host_env_var:-}" ] || log "arm $ARM: egress-host with ${!host_env_var}"
  [ -z "${!toml_var:-}" ] || log "arm $ARM: enclave.toml ends with: ${!toml_var//$'\n'/ }"
done

# measure LOAD ARM SECONDS: prints "value [value2]" (requests/s, connections/s, Gbit/s, or p50 p99 µs), or fails.
measure() {
  local load=$1 ns="${prefix[$2]}-enclave" s=$3 text
  case "$load" in
    http)
      text=$(in_ns "$ns" wrk -t 2 -c 16 -d "${s}s" -H "Connection: close" "http://$world:8080/" 2>&1) || return 1
      if grep -q -e 'Socket errors' -e 'Non-2xx' <<<"$text"; then echo "wrk: $(grep -e 'Socket errors' -e 'Non-2xx' <<<"$text")" >&2; return 1; fi
      awk '/^Requests\/sec:/{print $2}' <<<"$text" ;;
    connrate)
      text=$(in_ns "$ns" "$tool" connrate --target "$world:7000" --seconds "$s" --concurrency 16 2>&1) || { echo "$text" >&2; return 1; }
      grep -q 'failed=0 ' <<<"$text" || { echo "$text" >&2; return 1; }
      grep -o 'per_second=[0-9]*' <<<"$text" | cut -d= -f2 ;;
    throughput)
      text=$(in_ns "$ns" iperf3 -c "$world" -p 5201 -t "$s" -J 2>&1) || { tail -c 300 <<<"$text" >&2; return 1; }
      python3 -c 'import json,sys; print("%.3f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"] / 1e9))' <<<"$text" ;;
    latency)
      text=$(in_ns "$ns" "$tool" latency --target "$world:7000" --seconds "$s" 2>&1) || { echo "$text" >&2; return 1; }
      echo "$(grep -o 'p50_us=[0-9.]*' <<<"$text" | cut -d= -f2) $(grep -o 'p99_us=[0-9.]*' <<<"$text" | cut -d= -f2)" ;;
  esac
}

if [ "$warmup" -gt 0 ]; then
  log "warm-up: ${warmup} s of HTTP and of connections through each arm"
  for arm in "${arms[@]}"; do
    measure http "$arm" "$warmup" >/dev/null 2>&1
    measure connrate "$arm" "$warmup" >/dev/null 2>&1
  done
fi

results="$run/results.txt"
: >"$results"
failed=0
log "$rounds round(s) of ${seconds} s per load and arm: ${load_list[*]}"
for ((r = 1; r <= rounds; r++)); do
  if ((r % 2)); then order=(a b); else order=(b a); fi
  for load in "${load_list[@]}"; do
    for arm in "${order[@]}"; do
      if value=$(measure "$load" "$arm" "$seconds") && [ -n "$value" ] && [ "${value%% *}" != 0 ] && [ "${value%% *}" != 0.000 ]; then
        echo "$r $load ${arm^^} $value" >>"$results"
        log "  round $r, $load, arm ${arm^^}: $value"
      else
        log "  round $r, $load, arm ${arm^^}: FAILED (carried nothing or reported errors)"
        failed=$((failed + 1))
      fi
      [ "$load" = connrate ] && sleep 1   # let the last round's TIME_WAIT sockets settle, as run.sh does
    done
  done
done

python3 - "$results" <<'EOF'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
lower_is_better = {"latency"}
metrics = []
for load in dict.fromkeys(r[1] for r in rows):
    names = ["p50 µs", "p99 µs"] if load == "latency" else [{"http": "requests/s", "connrate": "connections/s", "throughput": "Gbit/s"}[load]]
    for i, name in enumerate(names):
        per_round = {}
        for r in rows:
            if r[1] == load:
                per_round.setdefault(r[0], {})[r[2]] = float(r[3 + i])
        a = [v["A"] for v in per_round.values() if "A" in v]
        b = [v["B"] for v in per_round.values() if "B" in v]
        paired = [v["B"] / v["A"] for v in per_round.values() if "A" in v and "B" in v and v["A"] > 0]
        if not a or not b:
            continue
        ahead = sum(1 for x in paired if (x < 1 if load in lower_is_better else x > 1))
        metrics.append((f"{load} ({name}{', lower is better' if load in lower_is_better else ''})",
                        statistics.median(a), statistics.median(b), statistics.median(b) / statistics.median(a),
                        statistics.median(paired) if paired else float("nan"), f"{ahead} of {len(paired)}"))
print("| Load | A (median) | B (median) | B / A, medians | B / A, median of the rounds | B ahead |")
print("|---|---:|---:|---:|---:|---:|")
for name, a, b, ratio, paired, ahead in metrics:
    print(f"| {name} | {a:,.2f} | {b:,.2f} | {ratio:.3f} | {paired:.3f} | {ahead} |")
EOF
if [ "$failed" -gt 0 ]; then log "$failed measurement(s) failed"; exit 1; fi
log "done"
