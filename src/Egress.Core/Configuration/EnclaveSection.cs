using System.Net;

namespace Egress.Configuration;

/// <summary>The <c>[enclave]</c> section: listeners of egress-enclave.</summary>
public sealed class EnclaveSection
{
    internal EnclaveSection(IReadOnlyList<IPEndPoint> proxyListen, IReadOnlyList<IPEndPoint> dnsListen, TimeSpan dnsQueryTimeout)
    {
        ProxyListen = proxyListen;
        DnsListen = dnsListen;
        DnsQueryTimeout = dnsQueryTimeout;
    }

    /// <summary>Gets the addresses the transparent TCP proxy listens on (<c>enclave.proxy_listen</c>, default 127.0.0.1:4444 and [::1]:4444); never empty.</summary>
    public IReadOnlyList<IPEndPoint> ProxyListen { get; }

    /// <summary>Gets the addresses the DNS forwarder listens on (<c>enclave.dns_listen</c>, default 127.0.0.1:53); never empty.</summary>
    public IReadOnlyList<IPEndPoint> DnsListen { get; }

    /// <summary>Gets how long the DNS forwarder waits for the parent's answer (<c>enclave.dns_query_timeout_ms</c>, default 5 s).</summary>
    public TimeSpan DnsQueryTimeout { get; }
}
