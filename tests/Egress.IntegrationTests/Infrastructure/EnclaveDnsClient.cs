using System.Net;
using DnsClient;

namespace Egress.IntegrationTests.Infrastructure;

/// <summary>
/// DnsClient's <see cref="LookupClient"/> asking the enclave's forwarder (127.0.0.1:53) from inside the enclave
/// namespace. DnsClient 1.8 creates its sockets itself, per query (UDP) or per LookupClient (its TCP pool), on the
/// thread that calls the synchronous <c>Query</c>; so a fresh client queries synchronously on a thread that has
/// entered the namespace with setns, and every socket it makes lives there.
/// </summary>
internal static class EnclaveDnsClient
{
    /// <param name="tcpOnly">Ask over TCP only.</param>
    /// <param name="udpBufferSize">The EDNS UDP payload size it announces (512: no EDNS, so large answers come back truncated and it retries over TCP).</param>
    public static IDnsQueryResponse Query(string namespaceName, string name, QueryType type, bool tcpOnly = false, int udpBufferSize = 4096) =>
        NetworkNamespace.Run(namespaceName, () =>
        {
            var options = new LookupClientOptions(new NameServer(IPAddress.Loopback, EgressDeployment.DnsPort))
            {
                UseCache = false,
                Retries = 0,
                Timeout = TimeSpan.FromSeconds(5),
                UseTcpOnly = tcpOnly,
                UseTcpFallback = true,
                ExtendedDnsBufferSize = udpBufferSize,
                ThrowDnsErrors = false,
                ContinueOnDnsError = false,
                ContinueOnEmptyResponse = false,
            };
            return new LookupClient(options).Query(name, type);
        });
}
