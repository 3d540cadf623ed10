using System.Net;

namespace Egress.Configuration;

/// <summary>The <c>[host]</c> section: egress-host on the parent instance.</summary>
public sealed class HostSection
{
    internal HostSection(TimeSpan connectTimeout, TimeSpan headerTimeout, IReadOnlyList<IPEndPoint> dnsUpstreams, TimeSpan dnsTimeout, IPEndPoint? metricsListen, int maxStreams,
        TimeSpan keepAliveIdle, TimeSpan keepAliveInterval, int keepAliveProbes, IReadOnlyList<EnclaveMapping>? enclaves = null, string? auditLog = null,
        IReadOnlyList<IPNetwork>? internalNetworks = null)
    {
        AuditLog = auditLog;
        InternalNetworks = internalNetworks ?? [];
        Enclaves = enclaves ?? [];
        MaxStreams = maxStreams;
        KeepAliveIdle = keepAliveIdle;
        KeepAliveInterval = keepAliveInterval;
        KeepAliveProbes = keepAliveProbes;
        MetricsListen = metricsListen;
        ConnectTimeout = connectTimeout;
        HeaderTimeout = headerTimeout;
        DnsUpstreams = dnsUpstreams;
        DnsTimeout = dnsTimeout;
    }

    /// <summary>Gets how long the host waits for an outbound connection to open (<c>host.connect_timeout_ms</c>, default 5 s).</summary>
    public TimeSpan ConnectTimeout { get; }

    /// <summary>Gets how long the host waits for a tunnel stream's request header (<c>host.header_timeout_ms</c>, default 5 s).</summary>
    public TimeSpan HeaderTimeout { get; }

    /// <summary>Gets the DNS resolvers queries are forwarded to (<c>host.dns_upstreams</c>); empty (the default) means the system's resolvers.</summary>
    public IReadOnlyList<IPEndPoint> DnsUpstreams { get; }

    /// <summary>Gets how long the host waits for an upstream DNS answer (<c>host.dns_timeout_ms</c>, default 2 s).</summary>
    public TimeSpan DnsTimeout { get; }

    /// <summary>Gets where egress-host serves its metrics in Prometheus text format (<c>host.metrics_listen</c>, e.g.
    /// <c>"127.0.0.1:9464"</c>); null (the default) serves none.</summary>
    public IPEndPoint? MetricsListen { get; }

    /// <summary>Gets how many tunnel streams (relayed connections and DNS streams) the host serves at once
    /// (<c>host.max_streams</c>); a stream beyond it is answered with a failure naming the limit. 0 (the default) derives
    /// the limit from the process's open-files limit (docs/configuration.md, <c>host.max_streams</c>).</summary>
    public int MaxStreams { get; }

    /// <summary>Gets how long an outbound (destination) connection may be idle before the kernel sends the first TCP
    /// keepalive probe (<c>host.keepalive_idle_seconds</c>, default 60 s); <see cref="TimeSpan.Zero"/> turns keepalive
    /// off.</summary>
    public TimeSpan KeepAliveIdle { get; }

    /// <summary>Gets the time between unanswered keepalive probes (<c>host.keepalive_interval_seconds</c>, default 10 s).</summary>
    public TimeSpan KeepAliveInterval { get; }

    /// <summary>Gets the policy file of each enclave (<c>[[host.enclaves]]</c>, by the CID of the VSOCK peer that opened a
    /// tunnel stream); empty (the default): every stream is decided by this file's <c>[egress]</c>. When entries are given,
    /// a stream from a CID no entry names is refused, unless an entry has <c>cid = "any"</c>.</summary>
    public IReadOnlyList<EnclaveMapping> Enclaves { get; }

    /// <summary>Gets how many unanswered keepalive probes end an outbound connection (<c>host.keepalive_probes</c>,
    /// default 6): with the defaults a dead destination is noticed after 60 + 6 × 10 = 120 s.</summary>
    public int KeepAliveProbes { get; }

    /// <summary>
    /// Gets where egress-host writes one JSON line per tunnel stream that reached a decision (<c>host.audit_log</c>:
    /// <c>"stdout"</c> or an absolute file path, created with mode 0600 and appended to); null (the default) writes none.
    /// </summary>
    public string? AuditLog { get; }

    /// <summary>
    /// Gets the networks egress-host treats as internal besides the built-in ranges (<c>host.internal_networks</c>; empty
    /// by default): a learned name or <c>*</c> never reaches them, a DNS answer inside one is refused as rebinding, and
    /// only an address or network entry that covers them opens them, as for the private ranges. For what the built-in
    /// ranges cannot know, such as a VPC's IPv6 blocks, which are global unicast addresses (docs/threat-model.md).
    /// </summary>
    public IReadOnlyList<IPNetwork> InternalNetworks { get; }
}
