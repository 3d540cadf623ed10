using System.Net;
using Egress.Configuration;
using Egress.Diagnostics;
using Egress.Tunnel;

namespace Egress.Dns.Forwarder;

/// <summary>Settings of the enclave's DNS forwarder.</summary>
public sealed class DnsForwarderOptions
{
    /// <summary>Gets the addresses served over both UDP and TCP (what the enclave's resolv.conf names), by
    /// default 127.0.0.1:53 and [::1]:53. Port 0 binds an ephemeral port, the same one for UDP and TCP. At least one.</summary>
    public IReadOnlyList<IPEndPoint> Listen { get; init; } = ConfigurationKeys.EnclaveDnsListen.DefaultEndPoints;

    /// <summary>Gets where tunnel DNS streams to the parent are opened. Required.</summary>
    public required TunnelEndpoint Tunnel { get; init; }

    /// <summary>Gets how long a query waits for the parent's answer before the client gets SERVFAIL: 1 ms to
    /// <see cref="int.MaxValue"/> ms (<c>enclave.dns_query_timeout_ms</c>), default 5 s.</summary>
    public TimeSpan QueryTimeout { get; init; } = ConfigurationKeys.EnclaveDnsQueryTimeout.DefaultDuration;

    /// <summary>Gets how long opening a tunnel DNS stream (connect and the parent's status) may take: 1 ms to
    /// <see cref="int.MaxValue"/> ms (<c>tunnel.status_timeout_ms</c>), default 10 s.</summary>
    public TimeSpan StatusTimeout { get; init; } = ConfigurationKeys.TunnelStatusTimeout.DefaultDuration;

    /// <summary>Gets how many long-lived tunnel DNS streams queries are spread over (1 to 16; default 2).</summary>
    public int StreamCount { get; init; } = 2;

    /// <summary>Gets how long a client's DNS-over-TCP connection may stay idle before it is closed: 1 ms to <see cref="int.MaxValue"/> ms, or
    /// <see cref="Timeout.InfiniteTimeSpan"/> for no limit; default 10 s.</summary>
    public TimeSpan TcpIdleTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Gets where connections, relays, DNS queries and tunnel errors are counted; null (the default) records nothing.</summary>
    public EgressMetrics? Metrics { get; init; }

    /// <summary>Gets the clock for timeouts.</summary>
    public TimeProvider TimeProvider { get; init; } = TimeProvider.System;

    /// <summary>Gets where the questions the policy refuses are counted for the parent (<c>enclave.report_denials</c>); null: not counted.</summary>
    internal Denials.DenialTally? Denials { get; init; }
}
