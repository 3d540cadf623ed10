#!/bin/sh
# Egress enclave entrypoint: make outbound TCP and DNS go through egress-enclave, then run the application.
#
#   bootstrap.sh [APP [ARGS...]]
#
# 1. brings up lo (an enclave starts with it down and has no other interface);
# 2. applies the redirect rules: egress-enclave rules --apply --config $EGRESS_CONFIG (default route via lo, DNAT
#    of all TCP to the proxy endpoints of [enclave] proxy_listen, in the netfilter backend that works here: nf_tables
#    via iptables-nft, else iptables-legacy, as on the Nitro enclave kernel, which has no nf_tables; see
#    EGRESS_NETFILTER). Its "proxy: ADDRESS:PORT ..." lines name the endpoints the proxy must listen on: the port
#    is read from the configuration alone, never given twice;
# 3. starts egress-enclave --config $EGRESS_CONFIG in the background, under a small supervisor that restarts it if
#    it exits once the application runs (after 1 s, doubling to 30 s while it keeps failing; EGRESS_RESTART). With
#    restarts on, egress-enclave keeps what it learns from DNS answers in a private directory made for this boot
#    (--learned-addresses), so that a restarted one still allows the addresses the application resolved before;
# 4. waits (bounded) until the proxy listens on each of those endpoints;
# 5. DNS: once the forwarder listens on every endpoint of [enclave] dns_listen (the rules' "dns: ADDRESS:PORT"
#    lines: port-53 DNS to any address goes there), writes "nameserver 127.0.0.1" (::1 with IPv6 endpoints only) to
#    $EGRESS_RESOLV_CONF;
# 6. exec "$@" (the application replaces this shell; egress-enclave and its supervisor keep running beside it).
#    Without arguments it waits for egress-enclave instead (INT and TERM to this script stop it).
# While egress-enclave is down, outbound connections and DNS are refused (the rules stay; nothing leaves unchecked).
# Any failed step prints "bootstrap: error: ..." and exits non-zero before the application starts.
#
# Environment (defaults in brackets):
#   EGRESS_ENCLAVE_BIN     egress-enclave executable                          [/opt/egress/egress-enclave]
#   EGRESS_CONFIG          enclave.toml (also the source of the proxy port)   [/etc/egress/enclave.toml]
#   EGRESS_RESOLV_CONF     resolv.conf to point at the DNS forwarder          [/etc/resolv.conf]
#   EGRESS_NETFILTER       auto, nft or legacy: the netfilter backend for the rules (rules --netfilter), overriding
#                          [enclave] netfilter; empty: the configuration decides (its default, auto, probes: nft where
#                          nf_tables works, else legacy)                                                          []
#   EGRESS_DNS             auto: write resolv.conf if the forwarder listens on its endpoints once the proxy is up
#                          (waiting up to EGRESS_DNS_WAIT more seconds); on: require it (waiting up to
#                          EGRESS_START_TIMEOUT); off: leave resolv.conf                                         [auto]
#   EGRESS_DNS_WAIT        seconds auto mode waits for each DNS endpoint after the proxy is up                  [2]
#   EGRESS_START_TIMEOUT   seconds to wait for each proxy endpoint (and, with EGRESS_DNS=on, each DNS one)       [15]
#   EGRESS_ENCLAVE_ARGS    extra arguments for egress-enclave, split on spaces (e.g. "--log-level Debug")         []
#   EGRESS_RESTART         on: restart egress-enclave whenever it exits after start-up, keeping its learned
#                          addresses in $TMPDIR/egress-state.XXXXXX; off: leave it stopped                       [on]
#   EGRESS_APP_DIR         directory to change to before the application starts (a Nitro enclave's init ignores the
#                          image's WORKDIR; the image sets /app); empty: stay where started                      []
# EGRESS_PROXY_PORT is no longer read (the port is [enclave] proxy_listen's); setting it is an error, so that a
# stale value cannot silently disagree with the configuration.
set -u

EGRESS_ENCLAVE_BIN=${EGRESS_ENCLAVE_BIN:-/opt/egress/egress-enclave}
EGRESS_CONFIG=${EGRESS_CONFIG:-/etc/egress/enclave.toml}
EGRESS_RESOLV_CONF=${EGRESS_RESOLV_CONF:-/etc/resolv.conf}
EGRESS_NETFILTER=${EGRESS_NETFILTER:-}
EGRESS_DNS=${EGRESS_DNS:-auto}
EGRESS_DNS_WAIT=${EGRESS_DNS_WAIT:-2}
EGRESS_START_TIMEOUT=${EGRESS_START_TIMEOUT:-15}
EGRESS_ENCLAVE_ARGS=${EGRESS_ENCLAVE_ARGS:-}
EGRESS_APP_DIR=${EGRESS_APP_DIR:-}
EGRESS_RESTART=${EGRESS_RESTART:-on}

enclave_pid=
handoff_dir=
state_dir=

say() { printf 'bootstrap: %s\n' "$*" >&2; }

fail() {
  say "error: $*"
  [ -z "$handoff_dir" ] || rm -rf "$handoff_dir"
  if [ -n "$enclave_pid" ] && kill -0 "$enclave_pid" 2>/dev/null; then
    kill "$enclave_pid" 2>/dev/null
    wait "$enclave_pid" 2>/dev/null
  fi
  [ -z "$state_dir" ] || rm -rf "$state_dir" # after egress-enclave, which writes it as it stops
  exit 1
}

is_number() { case $1 in ''|*[!0-9]*) return 1 ;; *) return 0 ;; esac; }

# listening tcp|udp ADDRESS:PORT: something is bound to ADDRESS:PORT (or to a wildcard address that covers it: for
# IPv4 0.0.0.0 and a dual-stack socket, which ss shows as *; for IPv6 [::] and *) and listening. An IPv6-only [::]
# socket (egress-enclave's are) does not cover an IPv4 endpoint.
listening() {
  port=${2##*:}
  case $2 in \[*) any="[::]:$port" ;; *) any="0.0.0.0:$port" ;; esac
  if [ "$1" = tcp ]; then flags=-Hltn; else flags=-Hlun; fi
  ss $flags "sport = :$port" 2>/dev/null | awk -v want="$2" -v any="$any" -v port=":$port" '
    $4 == want || $4 == any || $4 == "*" port { found = 1 }
    END { exit found ? 0 : 1 }'
}

# wait_for tcp|udp ADDRESS:PORT SECONDS: 0 once listening, 1 on timeout; fails the bootstrap if egress-enclave exits.
wait_for() {
  tries=$(( $3 * 10 ))
  while [ "$tries" -gt 0 ]; do
    listening "$1" "$2" && return 0
    if ! kill -0 "$enclave_pid" 2>/dev/null; then
      wait "$enclave_pid"
      code=$?
      enclave_pid=
      fail "egress-enclave exited (code $code) during start-up (while waiting for $2/$1); see its messages above"
    fi
    sleep 0.1
    tries=$((tries - 1))
  done
  return 1
}

# on_path NAME: whether exec finds NAME as an executable file in a PATH directory (a relative or empty entry is taken
# from EGRESS_APP_DIR, where the application will run). Not "command -v": a builtin or one of this script's functions
# would pass, and exec cannot run them.
on_path() {
  rest=$PATH:
  while [ -n "$rest" ]; do
    dir=${rest%%:*} rest=${rest#*:}
    case $dir in /*) ;; *) dir=${EGRESS_APP_DIR:-.}/${dir:-.} ;; esac
    [ -f "$dir/$1" ] && [ -x "$dir/$1" ] && return 0
  done
  return 1
}

# uptime_seconds: whole seconds since boot (monotonic, and needs no date(1)).
uptime_seconds() { read -r up _ < /proc/uptime && printf '%s\n' "${up%%.*}"; }

# supervise ACK: runs egress-enclave in the background and waits for it. Until it is told start-up is done (SIGUSR1
# from the bootstrap, acknowledged by creating the file ACK), an exit of egress-enclave ends the supervisor with its
# exit code, for the bootstrap to report. After that, an exit is logged and egress-enclave is started again
# (EGRESS_RESTART=on) after a delay that doubles from 1 s to 30 s while it runs less than a minute each time. TERM
# stops egress-enclave and the supervisor, which says so and exits with egress-enclave's code. (INT cannot reach it:
# sh starts a background job with INT ignored, for good.) HUP is ignored: a closed console must not stop egress.
supervise() {
  ack=$1 started_up=no stopping=no child= delay=1
  # Acknowledged once: a later USR1 (the bootstrap's directory is gone by then) must not end this shell, which a
  # failed redirection on the special builtin ":" does in dash; "command :" keeps it a regular one.
  trap 'started_up=yes; [ -z "$ack" ] || command : 2>/dev/null > "$ack"; ack=' USR1
  trap 'stopping=yes; [ -z "$child" ] || kill -TERM "$child" 2>/dev/null' TERM
  trap '' HUP
  while :; do
    since=$(uptime_seconds)
    # shellcheck disable=SC2086 # EGRESS_ENCLAVE_ARGS is split on purpose
    if [ -n "$state_dir" ]; then # after the extra arguments: they may name the verb ("run --log-level Debug")
      "$EGRESS_ENCLAVE_BIN" --config "$EGRESS_CONFIG" $EGRESS_ENCLAVE_ARGS --learned-addresses "$state_dir/learned-addresses" &
    else
      "$EGRESS_ENCLAVE_BIN" --config "$EGRESS_CONFIG" $EGRESS_ENCLAVE_ARGS &
    fi
    child=$!
    # A TERM that came while it was being started found no child to pass itself on to (sh runs a trap only between
    # commands): pass it on now.
    [ "$stopping" = no ] || kill -TERM "$child" 2>/dev/null
    code=0
    # A wait that a trapped signal interrupts returns early; wait again until the process is gone.
    while kill -0 "$child" 2>/dev/null; do
      wait "$child"
      code=$?
    done
    if [ "$stopping" = no ] && [ "$started_up" = no ]; then
      # An exit during start-up is the bootstrap's to report. No hand-off from here on (an ignored USR1 is never
      # acknowledged, and the bootstrap then sees this shell gone); one that came just before still counts.
      trap '' USR1
      [ "$started_up" = yes ] || exit "$code"
    fi
    if [ "$stopping" = yes ]; then
      [ "$started_up" = no ] ||
        say "egress-enclave (pid $child) stopped by TERM to its supervisor (code $code); not restarted; outbound connections and DNS are refused from now on"
      exit "$code"
    fi
    ran=$(( $(uptime_seconds) - since ))
    if [ "$EGRESS_RESTART" != on ]; then
      say "egress-enclave (pid $child) exited (code $code) after ${ran}s; EGRESS_RESTART=$EGRESS_RESTART: not restarted; outbound connections and DNS are refused from now on"
      exit "$code"
    fi
    [ "$ran" -lt 60 ] || delay=1
    say "egress-enclave (pid $child) exited (code $code) after ${ran}s; outbound connections and DNS are refused until it is back; restarting it in ${delay}s"
    child= sleeper=
    if [ "$stopping" = no ]; then # a TERM just now is acted on at once, not after the delay
      sleep "$delay" &
      sleeper=$!
      wait "$sleeper" 2>/dev/null
    fi
    if [ "$stopping" = yes ]; then
      [ -z "$sleeper" ] || kill "$sleeper" 2>/dev/null
      say "supervisor stopped by TERM while egress-enclave was down; not restarted; outbound connections and DNS are refused from now on"
      exit "$code"
    fi
    delay=$(( delay * 2 > 30 ? 30 : delay * 2 ))
  done
}

# --- checks -------------------------------------------------------------------------------------------------------
[ -z "${EGRESS_PROXY_PORT+set}" ] ||
  fail "EGRESS_PROXY_PORT is no longer used: the proxy port comes from [enclave] proxy_listen in '$EGRESS_CONFIG'; unset it"
is_number "$EGRESS_START_TIMEOUT" && [ "$EGRESS_START_TIMEOUT" -ge 1 ] ||
  fail "EGRESS_START_TIMEOUT='$EGRESS_START_TIMEOUT' is not a whole number of seconds >= 1"
is_number "$EGRESS_DNS_WAIT" || fail "EGRESS_DNS_WAIT='$EGRESS_DNS_WAIT' is not a whole number of seconds"
case $EGRESS_DNS in auto|on|off) ;; *) fail "EGRESS_DNS='$EGRESS_DNS' is not one of auto, on, off" ;; esac
case $EGRESS_RESTART in on|off) ;; *) fail "EGRESS_RESTART='$EGRESS_RESTART' is not one of on, off" ;; esac
case $EGRESS_NETFILTER in ''|auto|nft|legacy) ;; *) fail "EGRESS_NETFILTER='$EGRESS_NETFILTER' is not one of auto, nft, legacy (or empty)" ;; esac
[ -x "$EGRESS_ENCLAVE_BIN" ] || fail "egress-enclave not found or not executable at '$EGRESS_ENCLAVE_BIN' (set EGRESS_ENCLAVE_BIN)"
[ -r "$EGRESS_CONFIG" ] || fail "configuration '$EGRESS_CONFIG' not found or not readable (set EGRESS_CONFIG)"
[ -z "$EGRESS_APP_DIR" ] || [ -d "$EGRESS_APP_DIR" ] || fail "EGRESS_APP_DIR='$EGRESS_APP_DIR' is not a directory"
# The application must be there before anything starts (a relative path is looked up from EGRESS_APP_DIR, where it
# will run): otherwise exec fails after egress-enclave is up, with only the shell's "not found".
if [ "$#" -gt 0 ]; then
  case $1 in
    */*) app_path=$1; case $app_path in /*) ;; *) app_path=${EGRESS_APP_DIR:-.}/$app_path ;; esac
         [ -f "$app_path" ] && [ -x "$app_path" ] || fail "application '$1' not found or not executable${EGRESS_APP_DIR:+ (from EGRESS_APP_DIR=$EGRESS_APP_DIR)}" ;;
    *) on_path "$1" || fail "application '$1' not found on PATH ($PATH)" ;;
  esac
fi
# The supervisor's hand-off (step 6) needs a writable directory: known before anything changes.
trap 'fail "interrupted"' INT TERM
handoff_dir=$(mktemp -d "${TMPDIR:-/tmp}/egress-bootstrap.XXXXXX") ||
  fail "cannot create a temporary directory in ${TMPDIR:-/tmp} (set TMPDIR to a writable one)"
# Where a restarted egress-enclave finds what the one before it learned from DNS answers (mode 0700, this boot's
# only; kept while the enclave runs; an absolute path, as egress-enclave wants it). Not when EGRESS_ENCLAVE_ARGS
# already names a file.
learned_given=no
set -f
for arg in $EGRESS_ENCLAVE_ARGS; do
  case $arg in --learned-addresses|--learned-addresses[=:]*) learned_given=yes ;; esac
done
set +f
if [ "$EGRESS_RESTART" = on ] && [ "$learned_given" = no ]; then
  state_dir=$(mktemp -d "${TMPDIR:-/tmp}/egress-state.XXXXXX") && state_dir=$(cd -P -- "$state_dir" >/dev/null && pwd -P) ||
    fail "cannot create a temporary directory in ${TMPDIR:-/tmp} (set TMPDIR to a writable one)"
fi
for tool in ip ss awk; do
  command -v "$tool" >/dev/null 2>&1 || fail "'$tool' not found on PATH (install iproute2 and awk)"
done

# --- 1. loopback --------------------------------------------------------------------------------------------------
ip link set dev lo up || fail "cannot bring up lo (needs CAP_NET_ADMIN)"

# --- 2. redirect rules --------------------------------------------------------------------------------------------
# Its output is shown once it is done, and read for the "proxy: ADDRESS:PORT ..." lines.
if [ -n "$EGRESS_NETFILTER" ]; then
  rules_out=$("$EGRESS_ENCLAVE_BIN" rules --apply --config "$EGRESS_CONFIG" --netfilter "$EGRESS_NETFILTER")
else
  rules_out=$("$EGRESS_ENCLAVE_BIN" rules --apply --config "$EGRESS_CONFIG")
fi
code=$?
[ -z "$rules_out" ] || printf '%s\n' "$rules_out" >&2
[ "$code" -eq 0 ] ||
  fail "'$EGRESS_ENCLAVE_BIN rules --apply' failed (exit $code); outbound connections would not be redirected"
proxy_endpoints=$(printf '%s\n' "$rules_out" | awk '$1 == "proxy:" { printf "%s%s", sep, $2; sep = " " }')
[ -n "$proxy_endpoints" ] ||
  fail "'$EGRESS_ENCLAVE_BIN rules --apply' named no proxy endpoint (no \"proxy: ADDRESS:PORT\" line); is that egress-enclave older than this script?"
dns_endpoints=$(printf '%s\n' "$rules_out" | awk '$1 == "dns:" { printf "%s%s", sep, $2; sep = " " }')

# --- 3. the proxy -------------------------------------------------------------------------------------------------
# enclave_pid is the supervisor's: TERM to it reaches egress-enclave, and its exit code is egress-enclave's. It says
# it took over (step 6) by creating $supervisor_ack.
supervisor_ack=$handoff_dir/supervising
supervise "$supervisor_ack" &
enclave_pid=$!

# --- 4. wait for it -----------------------------------------------------------------------------------------------
set -f # "[::1]:4444" is not a file pattern
for endpoint in $proxy_endpoints; do
  wait_for tcp "$endpoint" "$EGRESS_START_TIMEOUT" ||
    fail "egress-enclave did not listen on $endpoint within ${EGRESS_START_TIMEOUT}s (the rules redirect there, from [enclave] proxy_listen in '$EGRESS_CONFIG')"
done
set +f
say "egress-enclave is listening on $proxy_endpoints (its supervisor: pid $enclave_pid)"

# --- 5. DNS -------------------------------------------------------------------------------------------------------
# The forwarder's endpoints are the rules' "dns:" lines ([enclave] dns_listen): port-53 DNS to any address of a family
# is redirected to that family's endpoint, so resolv.conf names a loopback address and port 53 whatever they are.
dns=no
missing=
if [ "$EGRESS_DNS" != off ]; then
  if [ "$EGRESS_DNS" = on ]; then dns_wait=$EGRESS_START_TIMEOUT; else dns_wait=$EGRESS_DNS_WAIT; fi
  set -f
  for endpoint in $dns_endpoints; do
    listening udp "$endpoint" || { [ "$dns_wait" -gt 0 ] && wait_for udp "$endpoint" "$dns_wait"; } || missing="$missing $endpoint"
  done
  set +f
  if [ -z "$dns_endpoints" ]; then
    [ "$EGRESS_DNS" = auto ] ||
      fail "EGRESS_DNS=on but '$EGRESS_ENCLAVE_BIN rules --apply' named no DNS endpoint (no \"dns: ADDRESS:PORT\" line)"
  elif [ -n "$missing" ]; then
    [ "$EGRESS_DNS" = auto ] ||
      fail "EGRESS_DNS=on but the DNS forwarder does not listen on$missing within ${dns_wait}s (the rules redirect DNS there, from [enclave] dns_listen in '$EGRESS_CONFIG')"
  else
    dns=yes
  fi
fi
if [ "$dns" = yes ]; then
  nameserver=127.0.0.1
  case " $dns_endpoints" in *" "[0-9]*) ;; *) nameserver=::1 ;; esac # IPv6 endpoints only
  # Rewritten in place (not replaced): Docker bind-mounts /etc/resolv.conf.
  if printf 'nameserver %s\n' "$nameserver" 2>/dev/null > "$EGRESS_RESOLV_CONF"; then
    say "DNS: $EGRESS_RESOLV_CONF now says nameserver $nameserver (redirected to the forwarder on $dns_endpoints)"
  else
    why="cannot write '$EGRESS_RESOLV_CONF'"
    if [ -L "$EGRESS_RESOLV_CONF" ] && [ ! -e "$EGRESS_RESOLV_CONF" ]; then
      why="$why (a symbolic link to '$(readlink "$EGRESS_RESOLV_CONF")', which does not exist: a systemd-resolved image's)"
    fi
    [ "$EGRESS_DNS" = auto ] || fail "$why; set EGRESS_RESOLV_CONF to a writable file, or EGRESS_DNS=auto to go on without it"
    say "DNS: $why; left unchanged (DNS to port 53 of any address still reaches the forwarder on $dns_endpoints)"
  fi
elif [ "$EGRESS_DNS" = auto ]; then
  if [ -z "$dns_endpoints" ]; then
    say "DNS: the rules redirect no DNS; $EGRESS_RESOLV_CONF left unchanged"
  else
    say "DNS: no forwarder listens on$missing; $EGRESS_RESOLV_CONF left unchanged"
  fi
fi

# --- 6. the application -------------------------------------------------------------------------------------------
# From here on the supervisor restarts egress-enclave when it exits. It acknowledges by creating $supervisor_ack; if
# egress-enclave exited just before, the supervisor exits instead (it has reported nothing), and so does this.
kill -USR1 "$enclave_pid" 2>/dev/null || fail "egress-enclave exited during start-up; see its messages above"
tries=50
while [ ! -e "$supervisor_ack" ]; do
  # A supervisor that has exited stays a zombie until waited for, and a zombie takes signals without error.
  awk '$1 == "State:" { exit $2 == "Z" }' "/proc/$enclave_pid/status" 2>/dev/null ||
    fail "egress-enclave exited during start-up; see its messages above"
  [ "$tries" -gt 0 ] || fail "egress-enclave's supervisor (pid $enclave_pid) did not take over within 5s"
  sleep 0.1
  tries=$((tries - 1))
done
rm -rf "$handoff_dir"
handoff_dir=
if [ "$#" -eq 0 ]; then
  say "no application given; running egress-enclave only"
  trap 'kill -TERM "$enclave_pid" 2>/dev/null' INT TERM
  code=0
  while kill -0 "$enclave_pid" 2>/dev/null; do
    wait "$enclave_pid"
    code=$?
  done
  exit "$code"
fi
trap - INT TERM
if [ -n "$EGRESS_APP_DIR" ]; then
  cd "$EGRESS_APP_DIR" || fail "cannot change to EGRESS_APP_DIR='$EGRESS_APP_DIR'"
fi
say "starting: $*"
exec "$@"
