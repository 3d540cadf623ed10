using System.Net;
using Egress.Configuration;
using Egress.Diagnostics;
using Egress.Relay;
using Egress.Tunnel;

namespace Egress.Gateway;

/// <summary>Settings of the parent-side tunnel gateway.</summary>
public sealed class TunnelGatewayOptions
{
    /// <summary>Gets where tunnel streams are accepted (<c>vsock://any:PORT</c> in production). Required.</summary>
    public required TunnelEndpoint Listen { get; init; }

    /// <summary>Gets how long a new stream may take to send its request header: 1 ms to <see cref="int.MaxValue"/> ms (<c>host.header_timeout_ms</c>),
    /// default 5 s.</summary>
    public TimeSpan HeaderTimeout { get; init; } = ConfigurationKeys.HostHeaderTimeout.DefaultDuration;

    /// <summary>Gets how long a connection to a destination may take: 1 ms to <see cref="int.MaxValue"/> ms (<c>host.connect_timeout_ms</c>), default
    /// 5 s.</summary>
    public TimeSpan ConnectTimeout { get; init; } = ConfigurationKeys.HostConnectTimeout.DefaultDuration;

    /// <summary>Gets the relay settings (idle timeout, clock).</summary>
    public RelayOptions Relay { get; init; } = RelayOptions.Default;

    /// <summary>Gets where connections, relays, DNS queries and tunnel errors are counted; null (the default) records nothing.</summary>
    public EgressMetrics? Metrics { get => _metrics; init => _metrics = value; }

    private EgressMetrics? _metrics;

    /// <summary>Gets the policy of each <c>[[host.enclaves]]</c> entry (a CID, or null for "any"), with a description for
    /// the start log; empty (the default): the gateway's own policy serves every stream.</summary>
    internal IReadOnlyList<GatewayEnclave> Enclaves { get; init; } = [];

    /// <summary>Gets the CID of the VSOCK peer of an accepted stream (null: none, e.g. a <c>unix:</c> tunnel); tests
    /// replace it to map <c>unix:</c> clients as enclaves.</summary>
    internal Func<System.Net.Sockets.Socket, uint?> PeerCid { get; init; } = GatewayEnclave.PeerCidOf;

    /// <summary>Gets how long a stream whose connection ended clean waits for its next request
    /// (<see cref="TunnelStreamHandler.DefaultIdleBetweenRequests"/>; tests shorten it to race the enclave's pool).</summary>
    internal TimeSpan IdleBetweenRequests { get; init; } = TunnelStreamHandler.DefaultIdleBetweenRequests;

    /// <summary>Gets whether a new stream's handler starts on the thread that accepted it
    /// (<see cref="Connections.ConnectionListener.HandlersOnAcceptThread"/>); by default the process's runtime switch
    /// <c>Egress.Connections.HandlersOnAcceptThread</c>, which both hosts set.</summary>
    internal bool HandlersOnAcceptThread { get; init; } = Connections.ConnectionListener.HandlersOnAcceptThreadByDefault;

    /// <summary>These options for one <c>[[host.enclaves]]</c> entry (every other setting the same): its metrics, and its
    /// policy's digest and file.</summary>
    internal TunnelGatewayOptions ForEnclave(EgressMetrics? metrics, GatewayEnclave enclave)
    {
        var copy = WithPolicy(enclave.Digest, enclave.Source);
        copy._metrics = metrics;
        return copy;
    }

    /// <summary>Gets the digest of the policy these streams are decided by, compared with the one each enclave's denial
    /// report carries (<see cref="Tunnel.DenialKind.PolicyDigest"/>); null: no comparison.</summary>
    internal Configuration.PolicyDigest? PolicyDigest { get; private set; }

    /// <summary>Gets where <see cref="PolicyDigest"/>'s policy comes from, for the mismatch line, e.g.
    /// <c>/etc/egress/enclave.toml</c>; null: "this parent's enclave.toml".</summary>
    internal string? PolicySource { get; private set; }

    /// <summary>These options with the digest of the policy they decide by (the parent's own file's, or an entry's);
    /// null: no comparison.</summary>
    internal TunnelGatewayOptions WithPolicy(Configuration.PolicyDigest? digest, string? source)
    {
        var copy = (TunnelGatewayOptions)MemberwiseClone();
        copy.PolicyDigest = digest;
        copy.PolicySource = source;
        return copy;
    }

    /// <summary>Gets how long a stop lets live streams finish before aborting them: 0 to 3,600 s
    /// (<c>relay.shutdown_drain_seconds</c>), default 10 s.</summary>
    public TimeSpan ShutdownDrain { get; init; } = ConfigurationKeys.RelayShutdownDrain.DefaultDuration;

    /// <summary>Gets the resolvers DNS queries are forwarded to, in order of preference; empty (the default) means
    /// the system's resolvers (its resolv.conf), found when the gateway is created.</summary>
    public IReadOnlyList<IPEndPoint> DnsUpstreams { get; init; } = ConfigurationKeys.HostDnsUpstreams.DefaultEndPoints;

    /// <summary>Gets how many streams are served at once, counted from accept to close; a stream beyond it gets status
    /// Failure naming the limit once its request is read. 0 (the default) derives the limit from the process's
    /// open-files limit (RLIMIT_NOFILE less the descriptors open at the start and a reserve, 2 descriptors per
    /// stream: 388 at 1024 and 32,196 at 65,536 with 120 open at the start); a
    /// stream is also refused while the process's descriptors are spent.</summary>
    public int MaxStreams { get; init; } = ConfigurationKeys.HostMaxStreams.DefaultInt32;

    /// <summary>Gets how long a DNS query may take across all upstreams before the enclave gets SERVFAIL: 1 ms to <see cref="int.MaxValue"/> ms
    /// (<c>host.dns_timeout_ms</c>), default 2 s.</summary>
    public TimeSpan DnsTimeout { get; init; } = ConfigurationKeys.HostDnsTimeout.DefaultDuration;

    /// <summary>Gets how long a destination connection may be idle before the first TCP keepalive probe (default
    /// 60 s); <see cref="TimeSpan.Zero"/> leaves keepalive off. Whole seconds; a dead destination then ends the relay
    /// with a timed-out read, and the enclave's connection with it.</summary>
    public TimeSpan KeepAliveIdle { get; init; } = ConfigurationKeys.HostKeepAliveIdle.DefaultDuration;

    /// <summary>Gets the time between unanswered keepalive probes on a destination connection (default 10 s).</summary>
    public TimeSpan KeepAliveInterval { get; init; } = ConfigurationKeys.HostKeepAliveInterval.DefaultDuration;

    /// <summary>Gets how many unanswered keepalive probes end a destination connection (default 6).</summary>
    public int KeepAliveProbes { get; init; } = ConfigurationKeys.HostKeepAliveProbes.DefaultInt32;

    /// <summary>Gets where one JSON line per decided tunnel stream is written (<c>host.audit_log</c>); null: none.</summary>
    internal Audit.AuditLog? Audit { get; init; }
}
