using System.Net;
using System.Net.Sockets;

namespace Egress.Interception;

/// <summary>
/// The routing and netfilter rules that make every outbound TCP connection inside an enclave land on the
/// egress proxy: a default route via <c>lo</c> (an enclave has no other interface), a DNAT rule in
/// <c>nat OUTPUT</c> for all TCP not addressed to loopback, and an SNAT rule for the unspecified source the
/// kernel picks for such connections. IPv4 and IPv6 alike. One place for these rules: the enclave host prints,
/// applies and removes exactly this list. The netfilter steps name the plain <c>iptables</c> and <c>ip6tables</c>;
/// a caller that picks a backend (<c>iptables-legacy</c>, <c>iptables-nft</c>) substitutes the program.
/// </summary>
public static class RedirectRules
{
    /// <summary>The proxy port used when none is configured.</summary>
    public const int DefaultProxyPort = 4444;

    /// <summary>The steps for a proxy on 127.0.0.1 and [::1] at one port (<see cref="ForProxyListen"/> with those two endpoints), in the order they are applied (removal runs them in reverse).</summary>
    /// <param name="proxyPort">The port the proxy listens on, on 127.0.0.1 and [::1].</param>
    /// <returns>The IPv4 and IPv6 steps.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="proxyPort"/> is not 1–65535.</exception>
    public static IReadOnlyList<RedirectRule> For(int proxyPort = DefaultProxyPort)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(proxyPort, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(proxyPort, 65535);
        return ForProxyListen([new IPEndPoint(IPAddress.Loopback, proxyPort), new IPEndPoint(IPAddress.IPv6Loopback, proxyPort)]);
    }

    /// <summary>
    /// The steps for a proxy listening on <paramref name="proxyListen"/> (<c>enclave.proxy_listen</c>), in the order
    /// they are applied. The DNAT target of each family is its endpoint from <see cref="Targets"/>. A family the proxy
    /// does not listen in is routed and redirected all the same, to its own loopback address at the other family's
    /// port, where the proxy does not listen (its IPv6 sockets are IPv6 only): its connections are refused there, and
    /// never leave around the proxy.
    /// </summary>
    /// <param name="proxyListen">Where the proxy listens: IPv4 and/or IPv6 endpoints.</param>
    /// <returns>The steps of both families.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="proxyListen"/> is null.</exception>
    /// <exception cref="ArgumentException">See <see cref="Targets"/>.</exception>
    public static IReadOnlyList<RedirectRule> ForProxyListen(IReadOnlyList<IPEndPoint> proxyListen)
    {
        var targets = Targets(proxyListen);
        var ipv4 = targets.FirstOrDefault(t => t.AddressFamily == AddressFamily.InterNetwork);
        var ipv6 = targets.FirstOrDefault(t => t.AddressFamily == AddressFamily.InterNetworkV6);
        return Build(
            ipv4 ?? new IPEndPoint(IPAddress.Loopback, ipv6!.Port),
            ipv6 ?? new IPEndPoint(IPAddress.IPv6Loopback, ipv4!.Port),
            ipv4Refused: ipv4 is null,
            ipv6Refused: ipv6 is null);
    }

    /// <summary>
    /// Where the DNAT rules send redirected connections, IPv4 first: per address family, the first listen endpoint
    /// whose address is loopback (kept as is) or unspecified (0.0.0.0 becomes 127.0.0.1, [::] becomes [::1]).
    /// Redirected connections travel over <c>lo</c>, so only the proxy's loopback listeners can take them. The proxy's
    /// IPv6 sockets are IPv6 only: an IPv6 endpoint never takes IPv4 connections. A family without an endpoint gets no
    /// target.
    /// </summary>
    /// <param name="proxyListen">Where the proxy listens: IPv4 and/or IPv6 endpoints.</param>
    /// <returns>One or two endpoints, at most one per family.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="proxyListen"/> is null.</exception>
    /// <exception cref="ArgumentException">
    /// <paramref name="proxyListen"/> is empty, or lists endpoints of a family none of which is loopback or unspecified
    /// (the message says which and what to listen on instead).
    /// </exception>
    public static IReadOnlyList<IPEndPoint> Targets(IReadOnlyList<IPEndPoint> proxyListen)
    {
        ArgumentNullException.ThrowIfNull(proxyListen);
        if (proxyListen.Count == 0)
        {
            throw new ArgumentException("The proxy listens nowhere: list at least one endpoint such as 127.0.0.1:4444.");
        }

        var targets = new List<IPEndPoint>(2);
        foreach (var (family, loopback, name) in new[]
        {
            (AddressFamily.InterNetwork, IPAddress.Loopback, "IPv4"),
            (AddressFamily.InterNetworkV6, IPAddress.IPv6Loopback, "IPv6"),
        })
        {
            var inFamily = proxyListen.Where(e => e.AddressFamily == family).ToList();
            if (inFamily.Count == 0)
            {
                continue;
            }

            var usable = inFamily.FirstOrDefault(e => IPAddress.IsLoopback(e.Address) || IsUnspecified(e.Address))
                ?? throw new ArgumentException(
                    $"The proxy's {name} listen address{(inFamily.Count > 1 ? "es" : string.Empty)} ({string.Join(", ", inFamily)}) "
                    + $"cannot take redirected connections: they travel over lo, so the proxy must also listen on a loopback address, "
                    + $"such as {new IPEndPoint(loopback, inFamily[0].Port)}.");
            targets.Add(IsUnspecified(usable.Address) ? new IPEndPoint(loopback, usable.Port) : usable);
        }

        return targets;
    }

    private static bool IsUnspecified(IPAddress address) =>
        address.Equals(IPAddress.Any) || address.Equals(IPAddress.IPv6Any);

    private static RedirectRule[] Build(IPEndPoint ipv4Target, IPEndPoint ipv6Target, bool ipv4Refused, bool ipv6Refused)
    {
        const string Refused = " (the proxy does not listen in this family: refused there)";
        return
        [
            Route("IPv4 default route via loopback", ipv6: false, ["route"], ["default", "via", "127.0.0.1", "dev", "lo"]),
            Route("IPv6 default route via loopback", ipv6: true, ["-6", "route"], ["default", "dev", "lo"]),
            Netfilter(
                "redirect all IPv4 TCP not to loopback to the proxy" + (ipv4Refused ? Refused : string.Empty), "iptables", "OUTPUT",
                ["-p", "tcp", "!", "-d", "127.0.0.0/8", "-j", "DNAT", "--to-destination", ipv4Target.ToString()]),
            Netfilter(
                "give redirected IPv4 connections a loopback source", "iptables", "POSTROUTING",
                ["-o", "lo", "-s", "0.0.0.0/32", "-j", "SNAT", "--to-source", "127.0.0.1"]),
            Netfilter(
                "redirect all IPv6 TCP not to loopback to the proxy" + (ipv6Refused ? Refused : string.Empty), "ip6tables", "OUTPUT",
                ["-p", "tcp", "!", "-d", "::1/128", "-j", "DNAT", "--to-destination", ipv6Target.ToString()]),
            Netfilter(
                "give redirected IPv6 connections a loopback source", "ip6tables", "POSTROUTING",
                ["-o", "lo", "-s", "::/128", "-j", "SNAT", "--to-source", "::1"]),
        ];
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

    private static RedirectRule Netfilter(string description, string program, string chain, string[] rule) =>
        new(
            description,
            program,
            ["-w", "-t", "nat", "-C", chain, .. rule],
            ["-w", "-t", "nat", "-A", chain, .. rule],
            ["-w", "-t", "nat", "-D", chain, .. rule],
            program == "ip6tables",
            CheckPrintsMatch: false);
}
