using System.Globalization;

namespace Egress.Interception;

/// <summary>
/// The routing and netfilter rules that make every outbound TCP connection inside an enclave land on the
/// egress proxy: a default route via <c>lo</c> (an enclave has no other interface), a DNAT rule in
/// <c>nat OUTPUT</c> for all TCP not addressed to loopback, and an SNAT rule for the unspecified source the
/// kernel picks for such connections. IPv4 and IPv6 alike. One place for these rules: the enclave host prints,
/// applies and removes exactly this list.
/// </summary>
public static class RedirectRules
{
    /// <summary>The proxy port used when none is configured.</summary>
    public const int DefaultProxyPort = 4444;

    /// <summary>The steps, in the order they are applied (removal runs them in reverse).</summary>
    /// <param name="proxyPort">The port the proxy listens on, on 127.0.0.1 and [::1].</param>
    public static IReadOnlyList<RedirectRule> For(int proxyPort = DefaultProxyPort)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(proxyPort, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(proxyPort, 65535);
        var port = proxyPort.ToString(CultureInfo.InvariantCulture);

        return
        [
            Route("IPv4 default route via loopback", ipv6: false, ["route"], ["default", "via", "127.0.0.1", "dev", "lo"]),
            Route("IPv6 default route via loopback", ipv6: true, ["-6", "route"], ["default", "dev", "lo"]),
            Netfilter(
                "redirect all IPv4 TCP not to loopback to the proxy", "iptables", "OUTPUT",
                ["-p", "tcp", "!", "-d", "127.0.0.0/8", "-j", "DNAT", "--to-destination", "127.0.0.1:" + port]),
            Netfilter(
                "give redirected IPv4 connections a loopback source", "iptables", "POSTROUTING",
                ["-o", "lo", "-s", "0.0.0.0/32", "-j", "SNAT", "--to-source", "127.0.0.1"]),
            Netfilter(
                "redirect all IPv6 TCP not to loopback to the proxy", "ip6tables", "OUTPUT",
                ["-p", "tcp", "!", "-d", "::1/128", "-j", "DNAT", "--to-destination", "[::1]:" + port]),
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
