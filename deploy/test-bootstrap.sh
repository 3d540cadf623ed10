#!/usr/bin/env bash
# Runs deploy/enclave/bootstrap.sh for real, as root, inside fresh network namespaces (each one a stand-in for an
# enclave: only lo, down), with the real egress-enclave binary, and checks what it did:
#   1. lo up, redirect rules (in nf_tables, auto's choice where it works) and default route in place, the proxy
#      listening on both endpoints of [enclave] proxy_listen (port 4455: read from the configuration, not assumed),
#      the application ran (exit code kept) in EGRESS_APP_DIR, resolv.conf pointing at 127.0.0.1 once the forwarder
#      listens on [enclave] dns_listen (127.0.0.1:5353: read from the rules' "dns:" line, not assumed to be :53);
#   2. EGRESS_DNS=on waits for that forwarder and writes resolv.conf, exactly; with IPv6 DNS endpoints only, ::1;
#   3. a missing configuration fails before anything starts;
#   4. EGRESS_DNS=on without a forwarder (a stand-in proxy with none) fails after a bounded wait, stops it, never runs
#      the app; EGRESS_DNS=auto then leaves resolv.conf and says so;
#   5. egress-enclave exiting at start (a tunnel endpoint only the proxy reads) fails at once with its exit code;
#   6. an invalid configuration fails at the rules step, before egress-enclave starts;
#   7. EGRESS_NETFILTER=legacy puts the rules into the iptables-legacy tables (as on the Nitro enclave kernel);
#   8. EGRESS_PROXY_PORT (no longer read), a bad EGRESS_NETFILTER and a missing application are refused before
#      anything changes;
#   9. egress-enclave killed while the application runs (just after relaying a connection) is restarted and listens
#      again, both keeping their learned addresses in one file of a private directory; with EGRESS_RESTART=off it is
#      not restarted, and says so; TERM to the supervisor stops it for good, and says so,
#      whether egress-enclave runs or is down; without an application, TERM to the bootstrap stops egress-enclave and
#      its supervisor;
#  10. with IPv6 disabled in the namespace, the IPv6 endpoints are skipped with a warning and the application runs.
# Namespaces are named eg-boot-*; each case removes its namespace and the processes in it, also on failure.
# Usage: deploy/test-bootstrap.sh   (builds src/Egress.Enclave in Release unless EGRESS_ENCLAVE_BIN is set)
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bootstrap="$root/deploy/enclave/bootstrap.sh"

if [ "$(id -u)" -ne 0 ]; then echo "test-bootstrap.sh: needs root (network namespaces, iptables)" >&2; exit 1; fi
for tool in ip iptables iptables-legacy iptables-nft ss socat; do
  command -v "$tool" >/dev/null || { echo "test-bootstrap.sh: '$tool' not found (apt-get install iproute2 iptables socat)" >&2; exit 1; }
done

if [ -z "${EGRESS_ENCLAVE_BIN:-}" ]; then
  EGRESS_ENCLAVE_BIN="$root/src/Egress.Enclave/bin/Release/net10.0/egress-enclave"
  dotnet build "$root/src/Egress.Enclave/Egress.Enclave.csproj" -c Release -v q -nologo >/dev/null ||
    { echo "test-bootstrap.sh: building egress-enclave failed" >&2; exit 1; }
fi

work=$(mktemp -d /tmp/egress-test-bootstrap.XXXXXX)
ns=""
cleanup_ns() {
  [ -n "$ns" ] || return 0
  for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
  ip netns del "$ns" 2>/dev/null
  ns=""
}
trap 'cleanup_ns; rm -rf "$work"' EXIT
trap 'exit 130' INT TERM

new_ns() {
  cleanup_ns
  ns="eg-boot-$$-$1"
  ip netns add "$ns" || { echo "test-bootstrap.sh: cannot create namespace $ns" >&2; exit 1; }
  printf 'nameserver 192.0.2.53 # before bootstrap\n' > "$work/resolv.conf"
}

# The tunnel is a Unix socket nobody serves (no connection is made through it here); the DNS forwarder listens on
# 5353, not 53, so that bootstrap.sh has to take its endpoint from the rules' output.
cat > "$work/enclave.toml" <<TOML
[egress]
enabled = true
destinations = ["198.18.0.0/15"]
[tunnel]
enclave_endpoint = "unix:$work/tunnel.sock"
[enclave]
proxy_listen = ["127.0.0.1:4455", "[::1]:4455"]
dns_listen = ["127.0.0.1:5353"]
TOML
printf '[egress]\nenabled = maybe\n' > "$work/bad.toml"
# Valid for the rules (which read [enclave]), refused by egress-enclave when it starts (the tunnel endpoint).
sed 's|^enclave_endpoint = .*|enclave_endpoint = "bogus://x"|' "$work/enclave.toml" > "$work/badtunnel.toml"
sed 's|^dns_listen = .*|dns_listen = ["[::1]:5353"]|' "$work/enclave.toml" > "$work/dns6.toml"
sed 's|^dns_listen = .*|dns_listen = ["127.0.0.1:5353", "[::1]:5353"]|' "$work/enclave.toml" > "$work/dualdns.toml"

passed=0 failed=0
out="$work/out.txt"
check() { # check DESCRIPTION COMMAND...
  if "${@:2}"; then passed=$((passed + 1)); echo "  ok   $1"
  else failed=$((failed + 1)); echo "  FAIL $1"; fi
}
has() { grep -qF -- "$1" "$out"; }
lacks() { ! grep -qF -- "$1" "$out"; }
show_output_if_failed() { [ "$failed" -eq "$1" ] || { echo "  --- output ---"; sed 's/^/  | /' "$out"; }; }

run_bootstrap() { # run_bootstrap ENV-ASSIGNMENTS... -- APP...
  local envs=()
  while [ "$1" != "--" ]; do envs+=("$1"); shift; done
  shift
  timeout 60 ip netns exec "$ns" env EGRESS_ENCLAVE_BIN="$EGRESS_ENCLAVE_BIN" EGRESS_CONFIG="$work/enclave.toml" \
    EGRESS_RESOLV_CONF="$work/resolv.conf" EGRESS_START_TIMEOUT=20 TMPDIR="$work" "${envs[@]}" sh "$bootstrap" "$@" >"$out" 2>&1
}

# The application: prints what it sees inside the "enclave", then exits 7 (to check its exit code is kept).
app='echo "APP RAN in $(pwd)"; ip -o link show lo; ip route show default; iptables-nft -w -t nat -S OUTPUT 2>/dev/null; iptables-nft -w -t nat -S POSTROUTING 2>/dev/null; echo "legacy:"; iptables-legacy -w -t nat -S OUTPUT; ss -Hltn "sport = :4455"; echo "resolv: $(cat "$EGRESS_RESOLV_CONF")"; exit 7'

echo "1. happy path (EGRESS_DNS=auto, the forwarder on 127.0.0.1:5353)"
new_ns happy; before=$failed
mkdir -p "$work/appdir"
run_bootstrap EGRESS_DNS=auto EGRESS_DNS_WAIT=10 EGRESS_APP_DIR="$work/appdir" -- sh -c "$app"; rc=$?
check "exit code is the application's (7)" test "$rc" -eq 7
check "application ran, in EGRESS_APP_DIR" has "APP RAN in $work/appdir"
check "lo is up" has "<LOOPBACK,UP,LOWER_UP>"
check "default route via lo" has "default via 127.0.0.1 dev lo src 127.0.0.1"
check "netfilter backend chosen and said" has "netfilter: nft (iptables-nft works; no legacy nat table is in use"
check "DNAT rule to the configured proxy port" has "-A OUTPUT ! -d 127.0.0.0/8 -p tcp -j DNAT --to-destination 127.0.0.1:4455"
check "SNAT rule for the unspecified source" has "-A POSTROUTING -s 0.0.0.0/32 -o lo -j SNAT --to-source 127.0.0.1"
check "IPv6 DNAT rule to the configured proxy port" test -n "$(ip netns exec "$ns" ip6tables-nft -w -t nat -S OUTPUT 2>/dev/null | grep -F -- '--to-destination [::1]:4455')"
check "waited for both proxy endpoints" has "is listening on 127.0.0.1:4455 [::1]:4455"
check "proxy listening while the application runs" has "127.0.0.1:4455"
check "resolv.conf points at 127.0.0.1 (redirected to the forwarder)" has "resolv: nameserver 127.0.0.1"
check "says where the forwarder is" has "DNS: $work/resolv.conf now says nameserver 127.0.0.1 (redirected to the forwarder on 127.0.0.1:5353)"
check "egress-enclave still running after the application exited" test -n "$(ip netns pids "$ns")"
show_output_if_failed "$before"

echo "2. DNS (EGRESS_DNS=on)"
new_ns dns; before=$failed
run_bootstrap EGRESS_DNS=on -- sh -c "$app"; rc=$?
check "exit code is the application's (7)" test "$rc" -eq 7
check "resolv.conf points at 127.0.0.1" has "resolv: nameserver 127.0.0.1"
check "resolv.conf file content exact" test "$(cat "$work/resolv.conf")" = "nameserver 127.0.0.1"
show_output_if_failed "$before"
# A new user's trial: a resolv.conf that is a dangling link (as in a systemd-resolved image) stopped the boot in auto.
new_ns dnslink; before=$failed
ln -s "$work/no-such-dir/stub-resolv.conf" "$work/link-resolv.conf"
run_bootstrap EGRESS_RESOLV_CONF="$work/link-resolv.conf" EGRESS_DNS_WAIT=10 -- sh -c 'echo APP RAN; exit 7'; rc=$?
check "dangling resolv.conf, auto: exit code is the application's (7)" test "$rc" -eq 7
check "dangling resolv.conf, auto: says it is a link and goes on" has "DNS: cannot write '$work/link-resolv.conf' (a symbolic link to '$work/no-such-dir/stub-resolv.conf', which does not exist: a systemd-resolved image's); left unchanged"
run_bootstrap EGRESS_RESOLV_CONF="$work/link-resolv.conf" EGRESS_DNS=on -- sh -c 'echo APP RAN; exit 7'; rc=$?
check "dangling resolv.conf, on: exit code 1" test "$rc" -eq 1
check "dangling resolv.conf, on: application did not run" lacks "APP RAN"
show_output_if_failed "$before"
new_ns dns6; before=$failed
run_bootstrap EGRESS_CONFIG="$work/dns6.toml" EGRESS_DNS=on -- sh -c "$app"; rc=$?
check "IPv6 DNS only: exit code is the application's (7)" test "$rc" -eq 7
check "IPv6 DNS only: resolv.conf names ::1" test "$(cat "$work/resolv.conf")" = "nameserver ::1"
show_output_if_failed "$before"

echo "3. missing configuration"
new_ns noconfig; before=$failed
run_bootstrap EGRESS_CONFIG="$work/absent.toml" -- sh -c "$app"; rc=$?
check "exit code 1" test "$rc" -eq 1
check "names the missing file" has "bootstrap: error: configuration '$work/absent.toml' not found"
check "application did not run" lacks "APP RAN"
check "no rules applied" test -z "$( (ip netns exec "$ns" iptables-nft -w -t nat -S OUTPUT; ip netns exec "$ns" iptables-legacy -w -t nat -S OUTPUT) 2>/dev/null | grep DNAT)"
show_output_if_failed "$before"

echo "4. no DNS forwarder (a stand-in proxy without one): EGRESS_DNS=on fails, auto leaves resolv.conf"
new_ns nodns; before=$failed
# The real binary for the rules; for the proxy, a listener on port 4455 of both families and nothing on 5353.
cat > "$work/proxy-only" <<SH
#!/bin/sh
if [ "\$1" = rules ]; then exec "$EGRESS_ENCLAVE_BIN" "\$@"; fi
exec socat TCP6-LISTEN:4455,bind=[::],ipv6only=0,fork,reuseaddr /dev/null
SH
chmod +x "$work/proxy-only"
run_bootstrap EGRESS_ENCLAVE_BIN="$work/proxy-only" EGRESS_DNS=on EGRESS_START_TIMEOUT=1 -- sh -c "$app"; rc=$?
check "exit code 1" test "$rc" -eq 1
check "says no forwarder listens where the rules send DNS" has "EGRESS_DNS=on but the DNS forwarder does not listen on 127.0.0.1:5353 within 1s"
check "application did not run" lacks "APP RAN"
check "the proxy was stopped" test -z "$(ip netns pids "$ns")"
show_output_if_failed "$before"
new_ns nodnsauto; before=$failed
run_bootstrap EGRESS_ENCLAVE_BIN="$work/proxy-only" EGRESS_DNS=auto EGRESS_DNS_WAIT=1 -- sh -c "$app"; rc=$?
check "auto: exit code is the application's (7)" test "$rc" -eq 7
check "auto: resolv.conf untouched" has "resolv: nameserver 192.0.2.53 # before bootstrap"
check "auto: says why" has "DNS: no forwarder listens on 127.0.0.1:5353; $work/resolv.conf left unchanged"
show_output_if_failed "$before"

echo "5. egress-enclave fails at start"
new_ns badtunnel; before=$failed
mkdir -p "$work/tmp5"
run_bootstrap EGRESS_CONFIG="$work/badtunnel.toml" TMPDIR="$work/tmp5" -- sh -c "$app"; rc=$?
check "exit code 1" test "$rc" -eq 1
check "reports egress-enclave's exit code (2)" has "egress-enclave exited (code 2) during start-up (while waiting for 127.0.0.1:4455/tcp)"
check "egress-enclave's own message is shown" has "badtunnel.toml:5:20: error: invalid tunnel endpoint 'bogus://x'"
check "its directories are removed (hand-off, learned addresses)" test -z "$(ls -A "$work/tmp5")"
check "application did not run" lacks "APP RAN"
show_output_if_failed "$before"

echo "6. invalid configuration stops at the rules"
new_ns badconfig; before=$failed
run_bootstrap EGRESS_CONFIG="$work/bad.toml" -- sh -c "$app"; rc=$?
check "exit code 1" test "$rc" -eq 1
check "names the rules step and its exit code" has "bootstrap: error: '$EGRESS_ENCLAVE_BIN rules --apply' failed (exit 2)"
check "egress-enclave's own message is shown" has "bad.toml:2:"
check "egress-enclave was never started" lacks "during start-up"
check "application did not run" lacks "APP RAN"
check "no rules applied" test -z "$( (ip netns exec "$ns" iptables-nft -w -t nat -S OUTPUT; ip netns exec "$ns" iptables-legacy -w -t nat -S OUTPUT) 2>/dev/null | grep DNAT)"
show_output_if_failed "$before"

echo "7. EGRESS_NETFILTER=legacy"
new_ns legacy; before=$failed
run_bootstrap EGRESS_NETFILTER=legacy EGRESS_DNS=off -- sh -c "$app"; rc=$?
check "exit code is the application's (7)" test "$rc" -eq 7
check "says legacy and why" has "netfilter: legacy (set by --netfilter; iptables-legacy works)"
check "DNAT rule in the legacy table" sh -c "sed -n '/^legacy:/,\$p' '$out' | grep -qF -- '--to-destination 127.0.0.1:4455'"
check "nothing in nf_tables" test -z "$(ip netns exec "$ns" iptables-nft -w -t nat -S 2>/dev/null | grep -e '^-A')"
check "IPv6 DNAT rule in the legacy table" test -n "$(ip netns exec "$ns" ip6tables-legacy -w -t nat -S OUTPUT | grep -F -- '--to-destination [::1]:4455')"
show_output_if_failed "$before"

echo "8. refused settings"
new_ns settings; before=$failed
run_bootstrap EGRESS_PROXY_PORT=4444 -- sh -c "$app"; rc_port=$?
port_out=$(cat "$out")
run_bootstrap EGRESS_NETFILTER=nftables -- sh -c "$app"; rc=$?
check "EGRESS_PROXY_PORT: exit code 1" test "$rc_port" -eq 1
check "EGRESS_PROXY_PORT: says the port comes from the configuration" grep -qF "bootstrap: error: EGRESS_PROXY_PORT is no longer used: the proxy port comes from [enclave] proxy_listen" <<<"$port_out"
check "EGRESS_NETFILTER=nftables: exit code 1" test "$rc" -eq 1
check "EGRESS_NETFILTER=nftables: names the accepted values" has "bootstrap: error: EGRESS_NETFILTER='nftables' is not one of auto, nft, legacy (or empty)"
check "application did not run" lacks "APP RAN"
check "nothing changed (lo still down)" test -z "$(ip netns exec "$ns" ip link show dev lo up)"
show_output_if_failed "$before"
# A new user's trial: a missing application failed only at the exec, after egress-enclave had started.
new_ns noapp-bin; before=$failed
run_bootstrap -- /nonexistent/app; rc=$?
check "missing application: exit code 1" test "$rc" -eq 1
check "missing application: named before anything starts" has "bootstrap: error: application '/nonexistent/app' not found or not executable"
check "missing application: nothing changed (lo still down)" test -z "$(ip netns exec "$ns" ip link show dev lo up)"
run_bootstrap -- no-such-program-egress; rc=$?
check "missing program on PATH: exit code 1" test "$rc" -eq 1
check "missing program on PATH: says so" has "bootstrap: error: application 'no-such-program-egress' not found on PATH"
# From a review: "command -v" passed a builtin and the script's own functions, which exec cannot run.
run_bootstrap -- cd /; rc=$?
check "a builtin is not an application: exit code 1" test "$rc" -eq 1
check "a builtin is not an application: says so" has "bootstrap: error: application 'cd' not found on PATH"
run_bootstrap -- supervise; rc=$?
check "the script's own function is not an application" has "bootstrap: error: application 'supervise' not found on PATH"
show_output_if_failed "$before"

echo "9. egress-enclave exits while the application runs"
# The application: makes a connection through the proxy (which fails it: nobody serves the tunnel), kills
# egress-enclave, then waits up to 10 s for a new egress-enclave to listen, and exits 7.
listener_pid='ss -Hltnp "sport = :4455" | sed -n "s/.*pid=\([0-9]*\).*/\1/p" | head -n 1'
app_kill="first=\$($listener_pid); echo \"FIRST \$first\"; nc -w 2 198.18.0.1 80 </dev/null; kill -KILL \"\$first\";
  second=; i=0; while [ \$i -lt 100 ]; do second=\$($listener_pid); [ -n \"\$second\" ] && [ \"\$second\" != \"\$first\" ] && break; second=; sleep 0.1; i=\$((i + 1)); done
  echo \"SECOND \${second:-none}\"; exit 7"
new_ns restart; before=$failed
run_bootstrap EGRESS_DNS=off -- sh -c "$app_kill"; rc=$?
check "exit code is the application's (7)" test "$rc" -eq 7
check "the application found egress-enclave listening" grep -qE '^FIRST [0-9]+$' "$out"
check "a new egress-enclave listens after the first was killed" grep -qE '^SECOND [0-9]+$' "$out"
check "the supervisor said what happened and when it restarts" grep -qE '^bootstrap: egress-enclave \(pid [0-9]+\) exited \(code 137\) after [0-9]+s; outbound connections and DNS are refused until it is back; restarting it in 1s$' "$out"
# Each egress-enclave keeps its learned addresses in the same file, in a private directory made for this boot.
state_file=$(sed -n 's/.*learned addresses: \(restored [0-9]* name-address pairs from \|\)\([^ ]*learned-addresses\).*/\2/p' "$out" | sort -u)
check "both egress-enclaves kept their learned addresses in one file" test "$(grep -c 'learned addresses: ' "$out")" -eq 2 -a "$(printf '%s\n' "$state_file" | wc -l)" -eq 1
check "in a directory of this boot's, mode 700" test "$(stat -c %a "$(dirname "$state_file")" 2>/dev/null)" = 700 -a "${state_file#"$work"/egress-state.}" != "$state_file"
show_output_if_failed "$before"
# From a review: the learned-addresses option went before EGRESS_ENCLAVE_ARGS, so "run --log-level Debug" (a verb)
# failed to start; and a relative TMPDIR gave a relative path, which egress-enclave refuses.
new_ns verbargs; before=$failed
mkdir -p "$work/reltmp"
(cd "$work" && run_bootstrap EGRESS_DNS=off EGRESS_ENCLAVE_ARGS="run --log-level Debug" TMPDIR=reltmp -- sh -c "$app_kill"); rc=$?
check "a verb in EGRESS_ENCLAVE_ARGS, relative TMPDIR: exit code is the application's (7)" test "$rc" -eq 7
check "a verb in EGRESS_ENCLAVE_ARGS, relative TMPDIR: restarted, keeping its file" grep -qE "learned addresses: .*$work/reltmp/egress-state\.[A-Za-z0-9]+/learned-addresses" "$out"
show_output_if_failed "$before"
# A second review: "--learned-addresses:PATH" (System.CommandLine's other delimiter) was not seen, so the option was
# given twice and egress-enclave refused to start.
new_ns ownfile; before=$failed
mkdir -p -m 700 "$work/own" "$work/tmpown"
run_bootstrap EGRESS_DNS=off EGRESS_ENCLAVE_ARGS="--learned-addresses:$work/own/learned" TMPDIR="$work/tmpown" -- sh -c "$app_kill"; rc=$?
check "its own --learned-addresses:PATH: exit code is the application's (7)" test "$rc" -eq 7
check "its own --learned-addresses:PATH: used, no directory of bootstrap's" test -z "$(ls -d "$work"/tmpown/egress-state.* 2>/dev/null)" -a -n "$(grep -F "learned addresses: " "$out" | grep -F "$work/own/learned")"
show_output_if_failed "$before"
new_ns norestart; before=$failed
run_bootstrap EGRESS_DNS=off EGRESS_RESTART=off -- sh -c "${app_kill//100/20}"; rc=$?
check "EGRESS_RESTART=off: exit code is the application's (7)" test "$rc" -eq 7
check "EGRESS_RESTART=off: no new egress-enclave within 2 s" has "SECOND none"
check "EGRESS_RESTART=off: says it was not restarted" has "EGRESS_RESTART=off: not restarted; outbound connections and DNS are refused from now on"
check "EGRESS_RESTART=off: nothing left running" test -z "$(ip netns pids "$ns")"
check "EGRESS_RESTART=off: no learned-addresses file (nothing restarts)" lacks "learned addresses: "
show_output_if_failed "$before"
# TERM to the supervisor (its pid is in the bootstrap's "its supervisor: pid N" line), once while egress-enclave runs
# and once while it is down: each time egress-enclave is not started again, and the supervisor says why.
app_term='sup=$(sed -n "s/.*its supervisor: pid \([0-9]*\)).*/\1/p" "$BOOT_OUT"); echo "SUPERVISOR $sup"
  kill -TERM "$sup"; sleep 2; echo "LEFT $(ss -Hltnp "sport = :4455" | grep -c egress-enclave)"; exit 7'
new_ns termrun; before=$failed
run_bootstrap EGRESS_DNS=off BOOT_OUT="$out" -- sh -c "$app_term"; rc=$?
check "TERM while running: exit code is the application's (7)" test "$rc" -eq 7
check "TERM while running: egress-enclave stopped, not restarted" has "LEFT 0"
check "TERM while running: says so" grep -qE '^bootstrap: egress-enclave \(pid [0-9]+\) stopped by TERM to its supervisor \(code [0-9]+\); not restarted' "$out"
show_output_if_failed "$before"
new_ns termdown; before=$failed
run_bootstrap EGRESS_DNS=off BOOT_OUT="$out" -- sh -c "first=\$($listener_pid); kill -KILL \"\$first\"; sleep 0.3; $app_term"; rc=$?
check "TERM while down: exit code is the application's (7)" test "$rc" -eq 7
check "TERM while down: egress-enclave not started again" has "LEFT 0"
check "TERM while down: says so" has "supervisor stopped by TERM while egress-enclave was down; not restarted"
show_output_if_failed "$before"
# From a review: a second USR1 (after the hand-off) ended the supervisor silently in dash, leaving egress-enclave
# unsupervised. Now it is ignored: the supervisor still restarts a killed egress-enclave.
new_ns usr1; before=$failed
app_usr1="sup=\$(sed -n 's/.*its supervisor: pid \\([0-9]*\\)).*/\\1/p' \"\$BOOT_OUT\"); kill -USR1 \"\$sup\"; sleep 0.5; $app_kill"
run_bootstrap EGRESS_DNS=off BOOT_OUT="$out" -- sh -c "$app_usr1"; rc=$?
check "second USR1: exit code is the application's (7)" test "$rc" -eq 7
check "second USR1: and restarts a killed egress-enclave" grep -qE '^SECOND [0-9]+$' "$out"
show_output_if_failed "$before"
new_ns noapp; before=$failed
ip netns exec "$ns" env TMPDIR="$work" EGRESS_ENCLAVE_BIN="$EGRESS_ENCLAVE_BIN" EGRESS_CONFIG="$work/enclave.toml" \
  EGRESS_RESOLV_CONF="$work/resolv.conf" EGRESS_DNS=off sh "$bootstrap" >"$out" 2>&1 &
boot=$!
for _ in $(seq 100); do grep -qF "no application given" "$out" && break; sleep 0.1; done
kill -TERM "$boot"
stopped=no
for _ in $(seq 100); do kill -0 "$boot" 2>/dev/null || { stopped=yes; break; }; sleep 0.1; done
wait "$boot" 2>/dev/null
check "no application: ran egress-enclave only" has "no application given; running egress-enclave only"
check "no application: TERM stops the bootstrap within 10 s" test "$stopped" = yes
check "no application: and egress-enclave with its supervisor" test -z "$(ip netns pids "$ns")"
show_output_if_failed "$before"

echo "10. IPv6 disabled in the enclave (both families configured)"
# A new user's trial: the proxy skipped [::1] with a warning, the DNS forwarder failed the whole start on it.
new_ns noipv6; before=$failed
ip netns exec "$ns" sh -c 'for c in all default lo; do echo 1 > /proc/sys/net/ipv6/conf/$c/disable_ipv6; done'
run_bootstrap EGRESS_CONFIG="$work/dualdns.toml" EGRESS_DNS=on -- sh -c "$app"; rc=$?
check "exit code is the application's (7)" test "$rc" -eq 7
check "the proxy skipped [::1] and said so" has "proxy not listening on [::1]:4455: IPv6 is unavailable here"
check "the DNS forwarder skipped [::1] and said so" has "dns forwarder not listening on [::1]:5353: IPv6 is unavailable here"
check "DNS on IPv4 all the same" has "resolv: nameserver 127.0.0.1"
show_output_if_failed "$before"

cleanup_ns
if [ "$failed" -eq 0 ]; then
  echo "test-bootstrap.sh: all $passed checks passed"
else
  echo "test-bootstrap.sh: $failed of $((passed + failed)) checks FAILED"
  exit 1
fi
