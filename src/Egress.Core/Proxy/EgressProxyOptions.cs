using System.Net;
using Egress.Configuration;
using Egress.Diagnostics;
using Egress.Relay;
using Egress.Tunnel;

namespace Egress.Proxy;

/// <summary>Settings of the enclave-side proxy.</summary>
public sealed class EgressProxyOptions
{
    /// <summary>Gets the addresses the proxy listens on (the DNAT targets), by default 127.0.0.1:4444 and [::1]:4444; at least one.</summary>
    public IReadOnlyList<IPEndPoint> Listen { get; init; } = ConfigurationKeys.EnclaveProxyListen.DefaultEndPoints;

    /// <summary>Gets where tunnel streams to the parent are opened. Required.</summary>
    public required TunnelEndpoint Tunnel { get; init; }

    /// <summary>Gets how long to wait for the tunnel to connect and the parent to answer a request: 1 ms to <see cref="int.MaxValue"/> ms
    /// (<c>tunnel.status_timeout_ms</c>), default 10 s.</summary>
    public TimeSpan StatusTimeout { get; init; } = ConfigurationKeys.TunnelStatusTimeout.DefaultDuration;

    /// <summary>Gets the relay settings (idle timeout, clock).</summary>
    public RelayOptions Relay { get; init; } = RelayOptions.Default;

    /// <summary>Gets where connections, relays, DNS queries and tunnel errors are counted; null (the default) records nothing.</summary>
    public EgressMetrics? Metrics { get; init; }

    /// <summary>
    /// Gets how many connections are relayed at once, counted from accept to close, over all listen addresses; a
    /// connection beyond it is reset at once and the refusal logged with the limit. 0 (the default) derives the limit
    /// from the process's open-files limit (RLIMIT_NOFILE less the descriptors open at the start and a reserve, 2
    /// descriptors per connection: 388 at 1024 and 32,196 at 65,536 with 120 open at the start); a connection is also refused while the process's descriptors are spent.
    /// </summary>
    public int MaxConnections { get; init; } = ConfigurationKeys.EnclaveMaxConnections.DefaultInt32;

    /// <summary>
    /// Gets how many connections are set up at once, over all listen addresses: accepted, and not yet relaying
    /// (original destination read, policy checked, tunnel stream opened, the parent's status received). While that
    /// many are being set up, no more are accepted: further connections wait in the kernel's listen backlog (1,024
    /// per address) instead of being accepted thousands at once and set up concurrently. 0 (the default) derives the
    /// limit from the processor count: 32 per processor, at least 16 (64 on 2 processors).
    /// </summary>
    public int MaxPendingConnections { get; init; } = ConfigurationKeys.EnclaveMaxPendingConnections.DefaultInt32;

    /// <summary>
    /// Gets how many other addresses of the same name are tried, one after another, when the parent answers that the
    /// destination refused the connection or is unreachable, for a destination allowed through an address learned from
    /// a name (the default is 2; 0 turns failover off). The application's connect() to the proxy has already succeeded,
    /// so it cannot fall over to the name's next address by itself (RFC 8305's idea, done for it); each address
    /// tried is checked and held like the first, and the parent checks it again.
    /// </summary>
    public int FailoverAttempts { get; init; } = ConfigurationKeys.EnclaveFailoverAttempts.DefaultInt32;

    /// <summary>Gets how long a stop lets live connections finish before aborting them: 0 to 3,600 s
    /// (<c>relay.shutdown_drain_seconds</c>), default 10 s.</summary>
    public TimeSpan ShutdownDrain { get; init; } = ConfigurationKeys.RelayShutdownDrain.DefaultDuration;

    /// <summary>Gets where one JSON line per decided connection is written (<c>enclave.audit_log</c>); null: none.</summary>
    internal Audit.AuditLog? Audit { get; init; }

    /// <summary>Gets where the connections the policy denies, and the TLS connections the server-name check refuses, are
    /// counted for the parent (<c>enclave.report_denials</c>); null: not counted.</summary>
    internal Denials.DenialTally? Denials { get; init; }

    /// <summary>Gets whether an accepted connection's handler starts on the thread that accepted it
    /// (<see cref="Connections.ConnectionListener.HandlersOnAcceptThread"/>); by default the process's runtime switch
    /// <c>Egress.Connections.HandlersOnAcceptThread</c>, which both hosts set.</summary>
    internal bool HandlersOnAcceptThread { get; init; } = Connections.ConnectionListener.HandlersOnAcceptThreadByDefault;
}
