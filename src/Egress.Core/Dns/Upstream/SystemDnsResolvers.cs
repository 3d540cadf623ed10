using System.Net;
using DnsClient;

namespace Egress.Dns.Upstream;

/// <summary>Finds the parent instance's own resolvers (resolv.conf) with DnsClient, never falling back to a public resolver.</summary>
internal static class SystemDnsResolvers
{
    public static IReadOnlyList<IPEndPoint> Find()
    {
        try
        {
            return [.. NameServer.ResolveNameServers(skipIPv6SiteLocal: true, fallbackToGooglePublicDns: false)
                .Select(server => new IPEndPoint(IPAddress.Parse(server.Address), server.Port))];
        }
        catch (InvalidOperationException)
        {
            return [];
        }
    }
}
