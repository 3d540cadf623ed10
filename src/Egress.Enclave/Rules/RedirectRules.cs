using System.Net;
using System.Net.Sockets;

namespace Egress.Enclave.Rules;

/// <summary>
/// The routing, address and netfilter rules that make every outbound TCP connection inside an enclave land on the
/// egress proxy and every DNS query on its forwarder: a default route via <c>lo</c> (an enclave has no other
/// interface); one non-loopback address per family on <c>lo</c> (<see cref="ConfiguredIPv4"/>,
/// <see cref="ConfiguredIPv6"/>), so that resolvers asked for <c>AI_ADDRCONFIG</c> see both families configured;
/// DNAT rules in <c>nat OUTPUT</c> that send UDP and TCP to port 53 of any address but the forwarder's (its own too when it listens on another port) to the forwarder,
/// and all other TCP not addressed to loopback (nor, for IPv6, to <see cref="ConfiguredIPv6"/>, this enclave's own address:
/// a connection to it stays local, as one to <see cref="ConfiguredIPv4"/> in 127.0.0.0/8 does) to the proxy; an SNAT
/// rule for the unspecified source the kernel picks for such connections; and a rule in <c>filter OUTPUT</c> that
/// refuses all other UDP at once. IPv4 and IPv6 alike. One place for these rules: the enclave host prints, applies and
/// removes exactly this list. The netfilter steps name the plain <c>iptables</c> and <c>ip6tables</c>; a caller that
/// picks a backend (<c>iptables-legacy</c>, <c>iptables-nft</c>) substitutes the program.
/// </summary>
internal static class RedirectRules
{
    /// <summary>The proxy port used when none is configured.</summary>
    public const int DefaultProxyPort = 4444;

    /// <summary>The DNS port: queries to it, UDP or TCP, to any address, are redirected to the forwarder.</summary>
    public const int DnsPort = 53;

    /// <summary>
    /// The IPv4 address put on <c>lo</c> so that the enclave has an IPv4 address other than 127.0.0.1: glibc's
    /// <c>getaddrinfo</c> with <c>AI_ADDRCONFIG</c> (Node's <c>dns.lookup</c>, <c>getent ahostsv4</c>, most HTTP clients)
    /// skips a family without one and fails without sending a query. In 127.0.0.0/8: it reaches nothing.
    /// </summary>
    public const string ConfiguredIPv4 = "127.0.0.2";

    /// <summary>
    /// The IPv6 address put on <c>lo</c> for the same reason as <see cref="ConfiguredIPv4"/> (glibc counts every IPv6
    /// address but ::1). A unique local address (RFC 4193, fd00::/8; global ID 65:6772:6573, "egres"): never routed
    /// outside, denied by the policy as an internal range, and on <c>lo</c> it reaches nothing.
    /// </summary>
    public const string ConfiguredIPv6 = "fd65:6772:6573::1";

    /// <summary>
    /// The steps for a proxy on 127.0.0.1 and [::1] at one port and a DNS forwarder on 127.0.0.1 and [::1] at another
    /// (<see cref="For(IReadOnlyList{IPEndPoint}, IReadOnlyList{IPEndPoint})"/> with those endpoints), in the order they
    /// are applied (removal runs them in reverse).
    /// </summary>
    /// <param name="proxyPort">The port the proxy listens on, on 127.0.0.1 and [::1].</param>
    /// <param name="dnsPort">The port the DNS forwarder listens on, on 127.0.0.1 and [::1].</param>
    /// <returns>The IPv4 and IPv6 steps.</returns>
    /// <exception cref="ArgumentOutOfRangeException">A port is not 1–65535.</exception>
    public static IReadOnlyList<RedirectRule> For(int proxyPort = DefaultProxyPort, int dnsPort = DnsPort)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(proxyPort, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(proxyPort, 65535);
        ArgumentOutOfRangeException.ThrowIfLessThan(dnsPort, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(dnsPort, 65535);
        return For(
            [new IPEndPoint(IPAddress.Loopback, proxyPort), new IPEndPoint(IPAddress.IPv6Loopback, proxyPort)],
            [new IPEndPoint(IPAddress.Loopback, dnsPort), new IPEndPoint(IPAddress.IPv6Loopback, dnsPort)]);
    }

    /// <summary>
    /// The steps for a proxy listening on <paramref name="proxyListen"/> (<c>enclave.proxy_listen</c>) and a DNS
    /// forwarder on <paramref name="dnsListen"/> (<c>enclave.dns_listen</c>), in the order they are applied. The DNAT
    /// target of each family is its endpoint from <see cref="Targets"/>. A family the proxy (or the forwarder) does not
    /// listen in is routed and redirected all the same, to its own loopback address at the other family's port, where
    /// nothing of Egress listens (its IPv6 sockets are IPv6 only): its connections and queries are refused there, and
    /// never leave around the proxy or the name policy.
    /// </summary>
    /// <param name="proxyListen">Where the proxy listens: IPv4 and/or IPv6 endpoints.</param>
    /// <param name="dnsListen">Where the DNS forwarder listens (UDP and TCP): IPv4 and/or IPv6 endpoints.</param>
    /// <returns>The steps of both families.</returns>
    /// <exception cref="ArgumentNullException">An argument is null.</exception>
    /// <exception cref="ArgumentException">See <see cref="Targets"/>.</exception>
    public static IReadOnlyList<RedirectRule> For(IReadOnlyList<IPEndPoint> proxyListen, IReadOnlyList<IPEndPoint> dnsListen)
    {
        var (proxy4, proxy6) = PerFamily(Targets(proxyListen, "proxy"));
        var (dns4, dns6) = PerFamily(Targets(dnsListen, "DNS forwarder"));
        return Build(proxy4, proxy6, dns4, dns6);
    }

    /// <summary>
    /// Where the DNAT rules send redirected connections, IPv4 first: per address family, the first listen endpoint
    /// whose address is loopback (kept as is) or unspecified (0.0.0.0 becomes 127.0.0.1, [::] becomes [::1]).
    /// Redirected connections travel over <c>lo</c>, so only loopback listeners can take them. The IPv6 sockets are
    /// IPv6 only: an IPv6 endpoint never takes IPv4 connections. A family without an endpoint gets no target.
    /// </summary>
    /// <param name="proxyListen">Where the proxy listens: IPv4 and/or IPv6 endpoints.</param>
    /// <returns>One or two endpoints, at most one per family.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="proxyListen"/> is null.</exception>
    /// <exception cref="ArgumentException">
    /// <paramref name="proxyListen"/> is empty, or lists endpoints of a family none of which is loopback or unspecified
    /// (the message says which and what to listen on instead).
    /// </exception>
    public static IReadOnlyList<IPEndPoint> Targets(IReadOnlyList<IPEndPoint> proxyListen) => Targets(proxyListen, "proxy");

    /// <summary><see cref="Targets(IReadOnlyList{IPEndPoint})"/> for the listener called <paramref name="what"/> in messages.</summary>
    public static IReadOnlyList<IPEndPoint> Targets(IReadOnlyList<IPEndPoint> listen, string what)
    {
        ArgumentNullException.ThrowIfNull(listen);
        if (listen.Count == 0)
        {
            throw new ArgumentException($"The {what} listens nowhere: list at least one endpoint such as 127.0.0.1:{(what == "proxy" ? DefaultProxyPort : DnsPort)}.");
        }

        var targets = new List<IPEndPoint>(2);
        foreach (var (family, loopback, name) in new[]
        {
            (AddressFamily.InterNetwork, IPAddress.Loopback, "IPv4"),
            (AddressFamily.InterNetworkV6, IPAddress.IPv6Loopback, "IPv6"),
        })
        {
            var inFamily = listen.Where(e => e.AddressFamily == family).ToList();
            if (inFamily.Count == 0)
            {
                continue;
            }

            var usable = inFamily.FirstOrDefault(e => IPAddress.IsLoopback(e.Address) || Egress.Configuration.EndPointText.IsUnspecified(e.Address))
                ?? throw new UnreachableListenerException(
                    $"The {what}'s {name} listen address{(inFamily.Count > 1 ? "es" : string.Empty)} ({string.Join(", ", inFamily)}) "
                    + $"cannot take redirected connections: they travel over lo, so the {what} must also listen on a loopback address, "
                    + $"such as {new IPEndPoint(loopback, inFamily[0].Port)}.",
                    IndexOf(listen, inFamily[0]));
            targets.Add(Egress.Configuration.EndPointText.IsUnspecified(usable.Address) ? new IPEndPoint(loopback, usable.Port) : usable);
        }

        return targets;
    }

    private static (IPEndPoint? IPv4, IPEndPoint? IPv6) PerFamily(IReadOnlyList<IPEndPoint> targets) =>
        (targets.FirstOrDefault(t => t.AddressFamily == AddressFamily.InterNetwork),
         targets.FirstOrDefault(t => t.AddressFamily == AddressFamily.InterNetworkV6));

    private static int IndexOf(IReadOnlyList<IPEndPoint> list, IPEndPoint endPoint)
    {
        for (int i = 0; i < list.Count; i++)
        {
            if (ReferenceEquals(list[i], endPoint))
            {
                return i;
            }
        }

        return -1;
    }

    private static RedirectRule[] Build(IPEndPoint? proxy4, IPEndPoint? proxy6, IPEndPoint? dns4, IPEndPoint? dns6)
    {
        const string ProxyRefused = " (the proxy does not listen in this family: refused there)";
        const string DnsRefused = " (the DNS forwarder does not listen in this family: refused there)";

        // A family without a listener is sent to its own loopback at the other family's port: refused, never relayed.
        var proxyTarget4 = proxy4 ?? new IPEndPoint(IPAddress.Loopback, proxy6!.Port);
        var proxyTarget6 = proxy6 ?? new IPEndPoint(IPAddress.IPv6Loopback, proxy4!.Port);
        var dnsTarget4 = dns4 ?? new IPEndPoint(IPAddress.Loopback, dns6!.Port);
        var dnsTarget6 = dns6 ?? new IPEndPoint(IPAddress.IPv6Loopback, dns4!.Port);
        return
        [
            // "src": a connected socket's local address is 127.0.0.1 (getsockname), not 0.0.0.0, which the kernel picks
            // for a route via lo otherwise (127.0.0.1 and 127.0.0.2 are host-scoped, never chosen for another destination).
            Route("IPv4 default route via loopback", ipv6: false, ["route"], ["default", "via", "127.0.0.1", "dev", "lo", "src", "127.0.0.1"]),
            Route("IPv6 default route via loopback", ipv6: true, ["-6", "route"], ["default", "dev", "lo"]),
            Address("an IPv4 address besides 127.0.0.1, for AI_ADDRCONFIG", ipv6: false, $"{ConfiguredIPv4}/32"),
            Address("an IPv6 address besides ::1, for AI_ADDRCONFIG", ipv6: true, $"{ConfiguredIPv6}/128"),
            .. Dns("iptables", dnsTarget4, "/32", dns4 is null ? DnsRefused : string.Empty),
            Netfilter(
                "redirect all other IPv4 TCP not to loopback to the proxy" + (proxy4 is null ? ProxyRefused : string.Empty), "iptables", "OUTPUT",
                ["-p", "tcp", "!", "-d", "127.0.0.0/8", "-j", "DNAT", "--to-destination", proxyTarget4.ToString()]),
            Netfilter(
                "give redirected IPv4 connections a loopback source", "iptables", "POSTROUTING",
                ["-o", "lo", "-s", "0.0.0.0/32", "-j", "SNAT", "--to-source", "127.0.0.1"]),
            RejectUdp("iptables", "icmp-port-unreachable"),
            .. Dns("ip6tables", dnsTarget6, "/128", dns6 is null ? DnsRefused : string.Empty),
            Netfilter(
                "leave IPv6 TCP to this enclave's own address on lo alone", "ip6tables", "OUTPUT",
                ["-p", "tcp", "-d", $"{ConfiguredIPv6}/128", "-j", "RETURN"]),
            Netfilter(
                "redirect all other IPv6 TCP not to loopback to the proxy" + (proxy6 is null ? ProxyRefused : string.Empty), "ip6tables", "OUTPUT",
                ["-p", "tcp", "!", "-d", "::1/128", "-j", "DNAT", "--to-destination", proxyTarget6.ToString()]),
            Netfilter(
                "give redirected IPv6 connections a loopback source", "ip6tables", "POSTROUTING",
                ["-o", "lo", "-s", "::/128", "-j", "SNAT", "--to-source", "::1"]),
            RejectUdp("ip6tables", "icmp6-port-unreachable"),
        ];
    }

    /// <summary>
    /// UDP to any address not of this enclave, once DNS has been redirected to the forwarder (nat OUTPUT runs before
    /// filter OUTPUT, so a redirected query is addressed to the forwarder by then), refused at once: the application's
    /// send fails with EPERM (a packet filtered on output), where without the rule the datagram was routed to lo and
    /// dropped there silently, and a client (QUIC, HTTP/3) waited for its own timeout before it gave up or fell back to
    /// TCP. New flows only: the forwarder's answer to a redirected query is addressed to the source the query left with,
    /// which is 0.0.0.0 (or ::) before the SNAT rule, not a local address. Uses the REJECT target and the conntrack and
    /// addrtype matches, all built into the Nitro enclave kernel.
    /// </summary>
    private static RedirectRule RejectUdp(string program, string rejectWith) => Netfilter(
        $"refuse {(program == "iptables" ? "IPv4" : "IPv6")} UDP to anything but this enclave at once: only DNS is carried", program, "OUTPUT",
        ["-p", "udp", "-m", "conntrack", "--ctstate", "NEW", "-m", "addrtype", "!", "--dst-type", "LOCAL", "-j", "REJECT", "--reject-with", rejectWith],
        table: "filter");

    /// <summary>
    /// UDP and TCP to port 53 of every address but the forwarder's own (when it listens on 53), to the forwarder: an app with its own resolver
    /// (a VPC resolver, 8.8.8.8, 127.0.0.53) still goes through the name policy. Before the proxy's rule, which would
    /// otherwise take TCP/53 as an ordinary connection. A forwarder on another port (127.0.0.1:5353) takes port 53 of
    /// its own address too: resolv.conf cannot name a port, so <c>nameserver 127.0.0.1</c> asks 127.0.0.1:53, which
    /// was left alone and refused (a trial).
    /// </summary>
    private static RedirectRule[] Dns(string program, IPEndPoint target, string hostPrefix, string note)
    {
        var family = program == "iptables" ? "IPv4" : "IPv6";
        string[] notForwarder = target.Port == DnsPort ? ["!", "-d", target.Address + hostPrefix] : [];
        string which = target.Port == DnsPort ? "any resolver" : "any resolver, its own address's port 53 included,";
        return
        [
            .. new[] { "udp", "tcp" }.Select(protocol => Netfilter(
                $"redirect {family} DNS over {protocol.ToUpperInvariant()} to {which} to the DNS forwarder{note}", program, "OUTPUT",
                ["-p", protocol, "--dport", "53", .. notForwarder, "-j", "DNAT", "--to-destination", target.ToString()])),
        ];
    }

    private static RedirectRule Address(string description, bool ipv6, string prefix)
    {
        string[] family = ipv6 ? ["-6", "addr"] : ["-4", "addr"];
        return new(
            description,
            "ip",
            [.. family, "show", "dev", "lo", "to", prefix],
            [.. family, "replace", prefix, "dev", "lo", .. (ipv6 ? (string[])["nodad"] : [])],
            [.. family, "del", prefix, "dev", "lo"],
            ipv6,
            CheckPrintsMatch: true);
    }

    private static RedirectRule Route(string description, bool ipv6, string[] prefix, string[] route) =>
        new(
            description,
            "ip",
            [.. prefix, "show", .. route],
            [.. prefix, "replace", .. route],
            [.. prefix, "del", .. route],
            ipv6,
            CheckPrintsMatch: true);

    private static RedirectRule Netfilter(string description, string program, string chain, string[] rule, string table = "nat") =>
        new(
            description,
            program,
            ["-w", "-t", table, "-C", chain, .. rule],
            ["-w", "-t", table, "-A", chain, .. rule],
            ["-w", "-t", table, "-D", chain, .. rule],
            program == "ip6tables",
            CheckPrintsMatch: false);
}

/// <summary>A listen list whose addresses of one family are all off loopback (redirected connections travel over lo):
/// <see cref="Index"/> is the first of them in the list, for the configuration error's location.</summary>
internal sealed class UnreachableListenerException(string message, int index) : ArgumentException(message)
{
    /// <summary>The index of the first unreachable address in the list given.</summary>
    public int Index { get; } = index;
}
