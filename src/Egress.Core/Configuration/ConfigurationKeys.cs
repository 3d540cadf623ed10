using System.Net;

namespace Egress.Configuration;

/// <summary>
/// Every key of <c>enclave.toml</c> that Egress reads, each described once (<see cref="ConfigurationKey"/>). Adding a
/// key is one entry here (and in <see cref="All"/>), its property on the section type, and its use; its documentation
/// is the row of <c>docs/configuration.md</c>, which a test checks against this table.
/// </summary>
internal static class ConfigurationKeys
{
    // Linux caps TCP_KEEPIDLE and TCP_KEEPINTVL at 32767 s (MAX_TCP_KEEPIDLE) and TCP_KEEPCNT at 127.
    private const long MaxKeepAliveSeconds = 32_767;
    private const long MaxMilliseconds = int.MaxValue;
    private const long MaxSeconds = int.MaxValue / 1000;

    public static readonly ConfigurationKey EgressEnabled = new("egress.enabled", ConfigurationValueKind.Boolean, false);
    /// <summary><c>egress.mode</c>: <c>"enforce"</c> denies what the list does not allow; <c>"report"</c> allows it and logs a would-deny line.</summary>
    public static readonly ConfigurationKey EgressModeKey = new("egress.mode", ConfigurationChoices.Mode, Policy.EgressMode.Enforce);

    public static readonly ConfigurationKey EgressDestinations = new("egress.destinations", ConfigurationValueKind.Destinations, Array.Empty<string>());

    /// <summary><c>egress.ports</c> (Evervault's): the ports of every destination entry written without its own.</summary>
    public static readonly ConfigurationKey EgressPorts = new("egress.ports", ConfigurationValueKind.Ports, null);

    /// <summary><c>egress.tls_server_name</c>: the TLS server-name check of connections to DNS-learned addresses.</summary>
    public static readonly ConfigurationKey EgressTlsServerName = new("egress.tls_server_name", ConfigurationChoices.TlsServerName, Tls.TlsServerNameMode.Require);

    public static readonly ConfigurationKey TunnelEnclaveEndpoint = new("tunnel.enclave_endpoint", ConfigurationValueKind.String, "vsock://3:4433");
    public static readonly ConfigurationKey TunnelHostEndpoint = new("tunnel.host_endpoint", ConfigurationValueKind.String, "vsock://any:4433");
    public static readonly ConfigurationKey TunnelStatusTimeout = Milliseconds("tunnel.status_timeout_ms", 10_000);

    public static readonly ConfigurationKey EnclaveProxyListen = new(
        "enclave.proxy_listen", ConfigurationValueKind.ListenAddresses, new IPEndPoint[] { new(IPAddress.Loopback, 4444), new(IPAddress.IPv6Loopback, 4444) });
    public static readonly ConfigurationKey EnclaveDnsListen = new("enclave.dns_listen", ConfigurationValueKind.ListenAddresses, new IPEndPoint[] { new(IPAddress.Loopback, 53), new(IPAddress.IPv6Loopback, 53) });
    public static readonly ConfigurationKey EnclaveDnsQueryTimeout = Milliseconds("enclave.dns_query_timeout_ms", 5_000);
    public static readonly ConfigurationKey EnclaveNetfilter = new("enclave.netfilter", ConfigurationChoices.Netfilter, NetfilterBackend.Auto);

    /// <summary><c>enclave.max_connections</c>; 0 derives the limit from RLIMIT_NOFILE.</summary>
    public static readonly ConfigurationKey EnclaveMaxConnections = new("enclave.max_connections", ConfigurationValueKind.Integer, 0L, 0, int.MaxValue);

    /// <summary><c>enclave.max_pending_connections</c>: connections accepted and not yet relaying, at once; 0 derives
    /// the limit from the processor count.</summary>
    public static readonly ConfigurationKey EnclaveMaxPendingConnections = new("enclave.max_pending_connections", ConfigurationValueKind.Integer, 0L, 0, int.MaxValue);

    /// <summary><c>enclave.failover_attempts</c>: other addresses of the same name tried when the destination refuses, is
    /// unreachable or times out; 0 turns failover off.</summary>
    public static readonly ConfigurationKey EnclaveFailoverAttempts = new("enclave.failover_attempts", ConfigurationValueKind.Integer, 2L, 0, 16);

    /// <summary><c>enclave.audit_log</c>: one JSON line per connection, to <c>"stdout"</c> or an absolute path; none by default.</summary>
    public static readonly ConfigurationKey EnclaveAuditLog = new("enclave.audit_log", ConfigurationValueKind.AuditLog, null);

    /// <summary><c>enclave.report_denials</c>: what the enclave tells the parent of its own denials (docs/tunnel-protocol.md, "Denial reports").</summary>
    public static readonly ConfigurationKey EnclaveReportDenials = new("enclave.report_denials", ConfigurationChoices.ReportDenials, Denials.DenialDetail.Destinations);

    public static readonly ConfigurationKey HostConnectTimeout = Milliseconds("host.connect_timeout_ms", 5_000);
    public static readonly ConfigurationKey HostHeaderTimeout = Milliseconds("host.header_timeout_ms", 5_000);
    public static readonly ConfigurationKey HostDnsUpstreams = new("host.dns_upstreams", ConfigurationValueKind.DnsUpstreams, Array.Empty<IPEndPoint>());
    public static readonly ConfigurationKey HostDnsTimeout = Milliseconds("host.dns_timeout_ms", 2_000);
    public static readonly ConfigurationKey HostMetricsListen = new("host.metrics_listen", ConfigurationValueKind.ListenAddress, null);
    /// <summary><c>host.max_streams</c>; 0 derives the limit from RLIMIT_NOFILE.</summary>
    public static readonly ConfigurationKey HostMaxStreams = new("host.max_streams", ConfigurationValueKind.Integer, 0L, 0, int.MaxValue);
    public static readonly ConfigurationKey HostKeepAliveIdle = Seconds("host.keepalive_idle_seconds", 60, 0, MaxKeepAliveSeconds);
    public static readonly ConfigurationKey HostKeepAliveInterval = Seconds("host.keepalive_interval_seconds", 10, 1, MaxKeepAliveSeconds);
    /// <summary><c>[[host.enclaves]]</c>: the policy file of each enclave CID; none: every CID gets this file's.</summary>
    public static readonly ConfigurationKey HostEnclaves = new("host.enclaves", ConfigurationValueKind.Enclaves, Array.Empty<EnclaveMapping>());

    public static readonly ConfigurationKey HostKeepAliveProbes = new("host.keepalive_probes", ConfigurationValueKind.Integer, 6L, 1, 127);

    /// <summary><c>host.audit_log</c>: one JSON line per tunnel stream that reached a decision, to <c>"stdout"</c> or an absolute path; none by default.</summary>
    public static readonly ConfigurationKey HostAuditLog = new("host.audit_log", ConfigurationValueKind.AuditLog, null);
    public static readonly ConfigurationKey HostInternalNetworks = new("host.internal_networks", ConfigurationValueKind.Networks, Array.Empty<string>());

    public static readonly ConfigurationKey DnsTtlFloor = Seconds("dns.ttl_floor_seconds", 30, 0, MaxSeconds);
    public static readonly ConfigurationKey DnsGrace = Seconds("dns.grace_seconds", 60, 0, MaxSeconds);
    public static readonly ConfigurationKey DnsCacheMaxEntries = new("dns.cache_max_entries", ConfigurationValueKind.Integer, 65_536L, 1, int.MaxValue);

    /// <summary><c>relay.idle_timeout_seconds</c>; 0 means no timeout (<see cref="Timeout.InfiniteTimeSpan"/>).</summary>
    public static readonly ConfigurationKey RelayIdleTimeout = Seconds("relay.idle_timeout_seconds", 3_600, 0, MaxSeconds);

    /// <summary><c>relay.half_closed_timeout_seconds</c>; 0 means none (only the idle timeout).</summary>
    public static readonly ConfigurationKey RelayHalfClosedTimeout = Seconds("relay.half_closed_timeout_seconds", 120, 0, MaxSeconds);
    public static readonly ConfigurationKey RelayShutdownDrain = Seconds("relay.shutdown_drain_seconds", 10, 0, 3_600);
    public static readonly ConfigurationKey RelaySplice = new("relay.splice", ConfigurationValueKind.Boolean, true);

    /// <summary>Gets every key, in the order of <c>docs/configuration.md</c>.</summary>
    public static IReadOnlyList<ConfigurationKey> All { get; } =
    [
        EgressEnabled, EgressModeKey, EgressDestinations, EgressPorts, EgressTlsServerName,
        TunnelEnclaveEndpoint, TunnelHostEndpoint, TunnelStatusTimeout,
        EnclaveProxyListen, EnclaveDnsListen, EnclaveDnsQueryTimeout, EnclaveNetfilter, EnclaveMaxConnections, EnclaveMaxPendingConnections, EnclaveFailoverAttempts, EnclaveAuditLog, EnclaveReportDenials,
        HostConnectTimeout, HostHeaderTimeout, HostDnsUpstreams, HostDnsTimeout, HostMetricsListen, HostMaxStreams,
        HostKeepAliveIdle, HostKeepAliveInterval, HostKeepAliveProbes, HostEnclaves, HostAuditLog, HostInternalNetworks,
        DnsTtlFloor, DnsGrace, DnsCacheMaxEntries,
        RelayIdleTimeout, RelayHalfClosedTimeout, RelayShutdownDrain, RelaySplice,
    ];

    /// <summary>Gets the sections, in order: <c>egress</c>, <c>tunnel</c>, <c>enclave</c>, <c>host</c>, <c>dns</c>, <c>relay</c>.</summary>
    public static IReadOnlyList<string> Sections { get; } = [.. All.Select(key => key.Section).Distinct()];

    /// <summary>Finds a key by section and name; null when there is none.</summary>
    public static ConfigurationKey? Find(string section, string name) =>
        All.FirstOrDefault(key => key.Section == section && key.Name == name);

    /// <summary>Gets the names of a section's keys, e.g. for a near-miss suggestion.</summary>
    public static string[] NamesIn(string section) => [.. All.Where(key => key.Section == section).Select(key => key.Name)];

    private static ConfigurationKey Milliseconds(string path, long defaultValue) =>
        new(path, ConfigurationValueKind.Integer, defaultValue, 1, MaxMilliseconds, ConfigurationUnit.Milliseconds);

    private static ConfigurationKey Seconds(string path, long defaultValue, long min, long max) =>
        new(path, ConfigurationValueKind.Integer, defaultValue, min, max, ConfigurationUnit.Seconds);
}
