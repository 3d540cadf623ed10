using System.Globalization;
using System.Net;

namespace Egress.IntegrationTests.Infrastructure;

/// <summary>
/// One record dnsmasq serves, as its command-line option. Names match exactly (no subdomains); several host records
/// for the same name give several A/AAAA records in one answer.
/// </summary>
internal sealed record DnsmasqRecord(string Option)
{
    /// <summary>An A or AAAA record (by the address's family); TTL: dnsmasq's --local-ttl unless given.</summary>
    public static DnsmasqRecord Host(string name, IPAddress address, int? ttlSeconds = null) =>
        new(ttlSeconds is { } ttl
            ? string.Create(CultureInfo.InvariantCulture, $"--host-record={name},{address},{ttl}")
            : $"--host-record={name},{address}");

    /// <summary>A CNAME from <paramref name="alias"/> to <paramref name="target"/>, which must be a host record of the same dnsmasq.</summary>
    public static DnsmasqRecord Cname(string alias, string target) => new($"--cname={alias},{target}");
}
