#!/usr/bin/env bash
# The Egress test topology with plain iproute2, for the demo and for poking around by hand.
#
#   samples/netns/topology.sh up   [PREFIX]   # creates PREFIX-enclave, PREFIX-parent, PREFIX-world
#   samples/netns/topology.sh down [PREFIX]   # kills what runs inside them and deletes them
#
# PREFIX (default egress-demo): 1 to 32 letters, digits, '-' and '_', starting with a letter or digit (it names
# namespaces, /etc/netns directories and interfaces, and is matched in `ip netns list`); anything else exits 2.
#
# enclave: only lo (like a Nitro Enclave). parent: 198.18.0.1/15 and 2001:db8::1/64 on a veth to world, default
# routes into world. world: 198.18.0.10 (allowed in the demo), 198.18.0.99 (denied), 198.18.0.53 (DNS),
# 169.254.169.254 (metadata look-alike) and 2001:db8::10. 198.18.0.0/15 (RFC 2544) and 2001:db8::/32 never leave
# the machine. Source this file to get the egress_netns_up / egress_netns_down functions.
#
# A destination that never answers (the parent's connect times out, rather than failing at once): an unassigned
# address of 2001:db8::/64 fails with "no route to host" after ~3 s (neighbour discovery) and one routed elsewhere
# with "network unreachable"; for a timeout, drop it in world:
#   ip -n PREFIX-world -6 route add blackhole 2001:db8:1::/64     # 2001:db8:1::99 now times out
#   ip -n PREFIX-world route add blackhole 203.0.113.0/24         # 203.0.113.99 (RFC 5737) too

# egress_netns_check_prefix PREFIX: fails, saying why, unless PREFIX is 1 to 32 of [A-Za-z0-9_-], not starting with
# '-' or '_'.
egress_netns_check_prefix() {
    if ! [[ $1 =~ ^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$ ]]; then
        echo "invalid namespace prefix '$1': use 1 to 32 letters, digits, '-' and '_', starting with a letter or digit" >&2
        return 2
    fi
}

# egress_netns_step CMD...: runs one step of egress_netns_up; fails, naming it, if it fails.
egress_netns_step() {
    "$@" || { echo "egress_netns_up: '$*' failed (exit $?)" >&2; return 1; }
}

# egress_netns_up [PREFIX]: creates the three namespaces; stops at the first step that fails and returns 1, saying
# which (what it made is left for egress_netns_down, which removes a partial topology too).
egress_netns_up() {
    local prefix=${1:-egress-demo} enc par wld
    egress_netns_check_prefix "$prefix" || return
    enc="$prefix-enclave" par="$prefix-parent" wld="$prefix-world"
    local vp="${prefix:0:9}-p" vw="${prefix:0:9}-w"   # interface names are at most 15 characters
    for ns in "$enc" "$par" "$wld"; do
        egress_netns_step ip netns add "$ns" || return
        egress_netns_step ip -n "$ns" link set lo up || return
    done
    egress_netns_step ip -n "$par" link add "$vp" type veth peer name "$vw" netns "$wld" || return
    egress_netns_step ip -n "$par" addr add 198.18.0.1/15 dev "$vp" || return
    egress_netns_step ip -n "$par" -6 addr add 2001:db8::1/64 dev "$vp" nodad || return
    egress_netns_step ip -n "$par" link set "$vp" up || return
    for address in 198.18.0.10/15 198.18.0.11/15 198.18.1.20/15 198.18.0.99/15 198.18.0.53/15 169.254.169.254/32; do
        egress_netns_step ip -n "$wld" addr add "$address" dev "$vw" || return
    done
    egress_netns_step ip -n "$wld" -6 addr add 2001:db8::10/64 dev "$vw" nodad || return
    egress_netns_step ip -n "$wld" link set "$vw" up || return
    egress_netns_step ip -n "$par" route add default via 198.18.0.10 dev "$vp" || return
    egress_netns_step ip -n "$par" route add 169.254.169.254/32 via 198.18.0.10 dev "$vp" || return
    egress_netns_step ip -n "$par" -6 route add default via 2001:db8::10 dev "$vp" || return
}

egress_netns_down() {
    local prefix=${1:-egress-demo} ns pids
    egress_netns_check_prefix "$prefix" || return
    for ns in "$prefix-enclave" "$prefix-parent" "$prefix-world"; do
        if ip netns list | grep -qx -e "$ns" -e "$ns (id: .*)"; then
            # Only processes living inside our own namespaces.
            pids=$(ip netns pids "$ns" 2>/dev/null || true)
            if [ -n "$pids" ]; then
                # shellcheck disable=SC2086
                kill $pids 2>/dev/null || true
                # Up to 5 s to stop (a host drains its connections and logs "stopped"; 0.5 s was sometimes too short
                # on a busy machine, and bash printed "Killed"), then SIGKILL whatever is left.
                for _ in $(seq 50); do
                    # shellcheck disable=SC2086
                    kill -0 $pids 2>/dev/null || break
                    sleep 0.1
                done
                # shellcheck disable=SC2086
                kill -9 $pids 2>/dev/null || true
            fi
            ip netns delete "$ns"
        fi
    done
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -euo pipefail
    case "${1:-}" in
        up) egress_netns_up "${2:-egress-demo}" ;;
        down) egress_netns_down "${2:-egress-demo}" ;;
        *) echo "usage: $0 up|down [PREFIX]" >&2; exit 2 ;;
    esac
fi
