#!/bin/sh
# Egress enclave entrypoint: make outbound TCP and DNS go through egress-enclave, then run the application.
#
#   bootstrap.sh [APP [ARGS...]]
#
# 1. brings up lo (an enclave starts with it down and has no other interface);
# 2. applies the redirect rules (egress-enclave rules --apply: default route via lo, iptables DNAT to the proxy);
# 3. starts egress-enclave --config $EGRESS_CONFIG in the background;
# 4. waits (bounded) until the proxy listens on 127.0.0.1:$EGRESS_PROXY_PORT;
# 5. DNS: when the forwarder listens on 127.0.0.1:53, writes "nameserver 127.0.0.1" to $EGRESS_RESOLV_CONF;
# 6. exec "$@" (the application replaces this shell; egress-enclave keeps running beside it).
#    Without arguments it waits for egress-enclave instead.
# Any failed step prints "bootstrap: error: ..." and exits non-zero before the application starts.
#
# Environment (defaults in brackets):
#   EGRESS_ENCLAVE_BIN     egress-enclave executable                          [/opt/egress/egress-enclave]
#   EGRESS_CONFIG          enclave.toml                                       [/etc/egress/enclave.toml]
#   EGRESS_RESOLV_CONF     resolv.conf to point at the DNS forwarder          [/etc/resolv.conf]
#   EGRESS_PROXY_PORT      proxy port ([enclave] proxy_listen must match)     [4444]
#   EGRESS_DNS             auto: write resolv.conf if the forwarder listens on 127.0.0.1:53 once the proxy is up
#                          (waiting up to EGRESS_DNS_WAIT more seconds); on: require it; off: leave resolv.conf  [auto]
#   EGRESS_DNS_WAIT        seconds auto mode waits for the DNS forwarder after the proxy is up                    [2]
#   EGRESS_START_TIMEOUT   seconds to wait for the proxy (and, with EGRESS_DNS=on, the forwarder)                 [15]
#   EGRESS_ENCLAVE_ARGS    extra arguments for egress-enclave, split on spaces (e.g. "--log-level Debug")         []
set -u

EGRESS_ENCLAVE_BIN=${EGRESS_ENCLAVE_BIN:-/opt/egress/egress-enclave}
EGRESS_CONFIG=${EGRESS_CONFIG:-/etc/egress/enclave.toml}
EGRESS_RESOLV_CONF=${EGRESS_RESOLV_CONF:-/etc/resolv.conf}
EGRESS_PROXY_PORT=${EGRESS_PROXY_PORT:-4444}
EGRESS_DNS=${EGRESS_DNS:-auto}
EGRESS_DNS_WAIT=${EGRESS_DNS_WAIT:-2}
EGRESS_START_TIMEOUT=${EGRESS_START_TIMEOUT:-15}
EGRESS_ENCLAVE_ARGS=${EGRESS_ENCLAVE_ARGS:-}

enclave_pid=

say() { printf 'bootstrap: %s\n' "$*" >&2; }

fail() {
  say "error: $*"
  if [ -n "$enclave_pid" ] && kill -0 "$enclave_pid" 2>/dev/null; then
    kill "$enclave_pid" 2>/dev/null
    wait "$enclave_pid" 2>/dev/null
  fi
  exit 1
}

is_number() { case $1 in ''|*[!0-9]*) return 1 ;; *) return 0 ;; esac; }

# listening tcp|udp PORT: something is bound to 127.0.0.1:PORT (or the wildcard address) and listening.
listening() {
  if [ "$1" = tcp ]; then flags=-Hltn; else flags=-Hlun; fi
  ss $flags "sport = :$2" 2>/dev/null | awk -v port=":$2" '
    $4 == "127.0.0.1" port || $4 == "0.0.0.0" port || $4 == "*" port || $4 == "[::]" port { found = 1 }
    END { exit found ? 0 : 1 }'
}

# wait_for tcp|udp PORT SECONDS: 0 once listening, 1 on timeout; fails the bootstrap if egress-enclave exits.
wait_for() {
  tries=$(( $3 * 10 ))
  while [ "$tries" -gt 0 ]; do
    listening "$1" "$2" && return 0
    if ! kill -0 "$enclave_pid" 2>/dev/null; then
      wait "$enclave_pid"
      code=$?
      enclave_pid=
      fail "egress-enclave exited (code $code) before listening on 127.0.0.1:$2/$1; see its messages above"
    fi
    sleep 0.1
    tries=$((tries - 1))
  done
  return 1
}

# --- checks -------------------------------------------------------------------------------------------------------
is_number "$EGRESS_PROXY_PORT" && [ "$EGRESS_PROXY_PORT" -ge 1 ] && [ "$EGRESS_PROXY_PORT" -le 65535 ] ||
  fail "EGRESS_PROXY_PORT='$EGRESS_PROXY_PORT' is not a port (1-65535)"
is_number "$EGRESS_START_TIMEOUT" && [ "$EGRESS_START_TIMEOUT" -ge 1 ] ||
  fail "EGRESS_START_TIMEOUT='$EGRESS_START_TIMEOUT' is not a whole number of seconds >= 1"
is_number "$EGRESS_DNS_WAIT" || fail "EGRESS_DNS_WAIT='$EGRESS_DNS_WAIT' is not a whole number of seconds"
case $EGRESS_DNS in auto|on|off) ;; *) fail "EGRESS_DNS='$EGRESS_DNS' is not one of auto, on, off" ;; esac
[ -x "$EGRESS_ENCLAVE_BIN" ] || fail "egress-enclave not found or not executable at '$EGRESS_ENCLAVE_BIN' (set EGRESS_ENCLAVE_BIN)"
[ -r "$EGRESS_CONFIG" ] || fail "configuration '$EGRESS_CONFIG' not found or not readable (set EGRESS_CONFIG)"
for tool in ip ss awk; do
  command -v "$tool" >/dev/null 2>&1 || fail "'$tool' not found on PATH (install iproute2 and awk)"
done

# --- 1. loopback --------------------------------------------------------------------------------------------------
ip link set dev lo up || fail "cannot bring up lo (needs CAP_NET_ADMIN)"

# --- 2. redirect rules --------------------------------------------------------------------------------------------
"$EGRESS_ENCLAVE_BIN" rules --apply --proxy-port "$EGRESS_PROXY_PORT" >&2 ||
  fail "'$EGRESS_ENCLAVE_BIN rules --apply' failed; outbound connections would not be redirected"

# --- 3. the proxy -------------------------------------------------------------------------------------------------
# shellcheck disable=SC2086 # EGRESS_ENCLAVE_ARGS is split on purpose
"$EGRESS_ENCLAVE_BIN" --config "$EGRESS_CONFIG" $EGRESS_ENCLAVE_ARGS &
enclave_pid=$!
trap 'fail "interrupted"' INT TERM

# --- 4. wait for it -----------------------------------------------------------------------------------------------
wait_for tcp "$EGRESS_PROXY_PORT" "$EGRESS_START_TIMEOUT" ||
  fail "egress-enclave did not listen on 127.0.0.1:$EGRESS_PROXY_PORT within ${EGRESS_START_TIMEOUT}s (does [enclave] proxy_listen match EGRESS_PROXY_PORT?)"
say "egress-enclave (pid $enclave_pid) is listening on 127.0.0.1:$EGRESS_PROXY_PORT"

# --- 5. DNS -------------------------------------------------------------------------------------------------------
dns=no
case $EGRESS_DNS in
  on)
    wait_for udp 53 "$EGRESS_START_TIMEOUT" && dns=yes ||
      fail "EGRESS_DNS=on but no DNS forwarder listens on 127.0.0.1:53 within ${EGRESS_START_TIMEOUT}s"
    ;;
  auto)
    if listening udp 53 || { [ "$EGRESS_DNS_WAIT" -gt 0 ] && wait_for udp 53 "$EGRESS_DNS_WAIT"; }; then dns=yes; fi
    ;;
esac
if [ "$dns" = yes ]; then
  # Rewritten in place (not replaced): Docker bind-mounts /etc/resolv.conf.
  printf 'nameserver 127.0.0.1\n' > "$EGRESS_RESOLV_CONF" || fail "cannot write '$EGRESS_RESOLV_CONF'"
  say "DNS: $EGRESS_RESOLV_CONF now points at the forwarder on 127.0.0.1:53"
elif [ "$EGRESS_DNS" = auto ]; then
  say "DNS: no forwarder on 127.0.0.1:53; $EGRESS_RESOLV_CONF left unchanged"
fi

# --- 6. the application -------------------------------------------------------------------------------------------
trap - INT TERM
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
say "starting: $*"
exec "$@"
