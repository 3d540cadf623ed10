using System.Net;

namespace Egress.Configuration;

/// <summary>The <c>[enclave]</c> section: listeners of egress-enclave.</summary>
public sealed class EnclaveSection
{
    internal EnclaveSection(IReadOnlyList<IPEndPoint> proxyListen, IReadOnlyList<IPEndPoint> dnsListen, TimeSpan dnsQueryTimeout, NetfilterBackend netfilter, int maxConnections, int failoverAttempts, string? auditLog = null, int maxPendingConnections = 0, Denials.DenialDetail reportDenials = Denials.DenialDetail.Destinations)
    {
        ReportDenials = reportDenials;
        MaxPendingConnections = maxPendingConnections;
        AuditLog = auditLog;
        MaxConnections = maxConnections;
        FailoverAttempts = failoverAttempts;
        ProxyListen = proxyListen;
        DnsListen = dnsListen;
        DnsQueryTimeout = dnsQueryTimeout;
        Netfilter = netfilter;
    }

    /// <summary>Gets the addresses the transparent TCP proxy listens on (<c>enclave.proxy_listen</c>, default 127.0.0.1:4444 and [::1]:4444); never empty.</summary>
    public IReadOnlyList<IPEndPoint> ProxyListen { get; }

    /// <summary>Gets the addresses the DNS forwarder listens on (<c>enclave.dns_listen</c>, default 127.0.0.1:53 and [::1]:53); never empty.</summary>
    public IReadOnlyList<IPEndPoint> DnsListen { get; }

    /// <summary>Gets how long the DNS forwarder waits for the parent's answer (<c>enclave.dns_query_timeout_ms</c>, default 5 s).</summary>
    public TimeSpan DnsQueryTimeout { get; }

    /// <summary>
    /// Gets the netfilter backend <c>egress-enclave rules</c> uses (<c>enclave.netfilter</c>: <c>"auto"</c>, the default,
    /// <c>"nft"</c> or <c>"legacy"</c>).
    /// </summary>
    public NetfilterBackend Netfilter { get; }

    /// <summary>
    /// Gets how many connections the proxy relays at once (<c>enclave.max_connections</c>); a connection beyond it is
    /// reset at once and the refusal logged with the limit. 0 (the default) derives the limit from the process's
    /// open-files limit (RLIMIT_NOFILE less the descriptors open at the start and a reserve, 2 descriptors per
    /// connection: 388 at 1024 and 32,196 at 65,536 with 120 open at the start).
    /// </summary>
    public int MaxConnections { get; }

    /// <summary>
    /// Gets how many connections the proxy sets up at once (<c>enclave.max_pending_connections</c>): accepted, and
    /// not yet relaying (original destination, policy, tunnel stream, the parent's status). While that many are being
    /// set up, the proxy accepts no more: further connections wait in the kernel's listen backlog. 0 (the default)
    /// derives it: 32 per processor, at least 16 (64 on 2 processors).
    /// </summary>
    public int MaxPendingConnections { get; }

    /// <summary>
    /// Gets how many other addresses of the same name the proxy tries when the destination refuses the connection or
    /// is unreachable (<c>enclave.failover_attempts</c>, 0 … 16, default 2; 0 turns failover off).
    /// </summary>
    public int FailoverAttempts { get; }

    /// <summary>
    /// Gets where egress-enclave writes one JSON line per connection it decided (<c>enclave.audit_log</c>: <c>"stdout"</c>
    /// or an absolute file path, created with mode 0600 and appended to); null (the default) writes none. The fields are
    /// listed in docs/configuration.md.
    /// </summary>
    public string? AuditLog { get; }

    /// <summary>
    /// Gets what egress-enclave tells the parent of its own denials (<c>enclave.report_denials</c>): counts by kind, reason
    /// and destination every 10 s (<c>"destinations"</c>, the default), by kind and reason only (<c>"counts"</c>), or
    /// nothing (<c>"off"</c>); egress-host logs them (docs/tunnel-protocol.md, "Denial reports").
    /// </summary>
    internal Denials.DenialDetail ReportDenials { get; }
}
