using System.Diagnostics;
using System.Diagnostics.Metrics;
using Egress.Policy;
using Egress.Relay;

namespace Egress.Diagnostics;

/// <summary>
/// The metrics of both hosts, on the meter named <see cref="MeterName"/> (instrument names in OpenTelemetry style,
/// visible with <c>dotnet-counters monitor --counters Egress</c> and exported by egress-host in Prometheus format).
/// Every instrument carries an <c>egress.side</c> tag (<c>enclave</c> or <c>parent</c>). Pass one instance to the
/// components of a host through their options' <c>Metrics</c> property; without it they record nothing.
/// </summary>
public sealed class EgressMetrics
{
    /// <summary>The name of the meter.</summary>
    public const string MeterName = "Egress";

    /// <summary>Bucket bounds in seconds, from a quick request to an hour-long idle session.</summary>
    private static readonly double[] DurationBuckets = [0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600];

    private readonly Counter<long> _connections;
    private readonly UpDownCounter<long> _activeConnections;
    private readonly Histogram<double> _connectionDuration;
    private readonly Counter<long> _bytes;
    private readonly Counter<long> _dnsQueries;
    private readonly Counter<long> _tunnelErrors;
    private readonly Counter<long> _failovers;
    private readonly Counter<long> _serverNameRefusals;
    private readonly KeyValuePair<string, object?> _side;

    /// <summary>Creates the instruments on a meter from <paramref name="meterFactory"/>.</summary>
    /// <param name="meterFactory">The factory (from dependency injection, or <c>new ServiceCollection().AddMetrics()</c>).</param>
    /// <param name="side">Which host records: <c>enclave</c> or <c>parent</c>.</param>
    /// <param name="cache">The allowlist cache whose size and evictions are observed; null for none.</param>
    public EgressMetrics(IMeterFactory meterFactory, string side, AllowlistCache? cache = null)
    {
        ArgumentNullException.ThrowIfNull(meterFactory);
        ArgumentException.ThrowIfNullOrEmpty(side);
        _side = new("egress.side", side);
        var meter = meterFactory.Create(MeterName);
        _connections = meter.CreateCounter<long>(
            "egress.connections", "{connection}", "Connections handled, by outcome and reason.");
        _activeConnections = meter.CreateUpDownCounter<long>(
            "egress.connections.active", "{connection}", "Connections being relayed now.");
        _connectionDuration = meter.CreateHistogram<double>(
            "egress.connection.duration",
            "s",
            "How long relayed connections lasted, by the first cause of their end.",
            tags: null,
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = DurationBuckets });
        _bytes = meter.CreateCounter<long>(
            "egress.relay.bytes", "By", "Bytes relayed, by direction (out: towards the destination).");
        _dnsQueries = meter.CreateCounter<long>(
            "egress.dns.queries", "{query}", "DNS queries, by outcome.");
        _tunnelErrors = meter.CreateCounter<long>(
            "egress.tunnel.errors", "{error}", "Tunnel streams that failed, by kind.");
        _failovers = meter.CreateCounter<long>(
            "egress.connection.failovers", "{attempt}", "Other addresses of the same name tried after a destination refused, was unreachable or timed out.");
        _serverNameRefusals = meter.CreateCounter<long>(
            "egress.tls.server_name.refusals", "{connection}", "Connections to learned addresses reset because their TLS ClientHello failed the server-name check, by reason.");
        if (cache is not null)
        {
            meter.CreateObservableGauge(
                "egress.cache.entries", () => new Measurement<int>(cache.Count, _side), "{address}", "Addresses learned from DNS answers.");
            meter.CreateObservableCounter(
                "egress.cache.evictions", () => new Measurement<long>(cache.Evictions, _side), "{address}", "Learned addresses evicted by the size bound.");
        }
    }

    /// <summary>Gets the side tag's value (<c>enclave</c> or <c>parent</c>).</summary>
    internal string Side => (string)_side.Value!;

    /// <summary>Counts a connection decision (<paramref name="outcome"/>: allowed, denied, failed; <paramref name="reason"/>:
    /// a <see cref="DecisionReason"/> or <see cref="Tunnel.TunnelStatus"/> name, or what failed locally, in snake_case
    /// (see <see cref="MetricTag"/>)).</summary>
    internal void Connection(string outcome, string reason)
    {
        if (_connections.Enabled)
        {
            _connections.Add(1, _side, new("egress.outcome", outcome), new("egress.reason", reason));
        }
    }

    /// <summary>Marks a relay as started.</summary>
    internal void RelayStarted() => _activeConnections.Add(1, _side);

    /// <summary>Records a finished relay: bytes each way and its duration by cause.</summary>
    internal void RelayEnded(long bytesOut, long bytesIn, TimeSpan duration, RelayShutdownCause cause)
    {
        _activeConnections.Add(-1, _side);
        if (_bytes.Enabled)
        {
            _bytes.Add(bytesOut, _side, new("egress.direction", "out"));
            _bytes.Add(bytesIn, _side, new("egress.direction", "in"));
        }

        if (_connectionDuration.Enabled)
        {
            var tags = new TagList { _side, { "egress.cause", MetricTag.Of(cause) } };
            _connectionDuration.Record(duration.TotalSeconds, tags);
        }
    }

    /// <summary>Counts a DNS query by outcome (forwarded, truncated, denied, servfail, overloaded, formerr, notimp, badvers, dropped).</summary>
    internal void DnsQuery(string outcome)
    {
        if (_dnsQueries.Enabled)
        {
            _dnsQueries.Add(1, _side, new("egress.outcome", outcome));
        }
    }

    /// <summary>Counts a failed tunnel stream by kind (unavailable, connect_timeout, status_timeout, bad_response on the
    /// enclave; header_timeout, bad_request, unsupported_kind, stream_limit, stream_failed on the parent).</summary>
    internal void TunnelError(string kind)
    {
        if (_tunnelErrors.Enabled)
        {
            _tunnelErrors.Add(1, _side, new("egress.error", kind));
        }
    }

    /// <summary>Counts a connection refused by the TLS server-name check, by reason (not_learned, not_allowed,
    /// no_server_name, encrypted_client_hello, malformed, too_large, truncated).</summary>
    internal void ServerNameRefused(Tls.ServerNameRefusal reason)
    {
        if (_serverNameRefusals.Enabled)
        {
            _serverNameRefusals.Add(1, _side, new("egress.reason", MetricTag.Of(reason)));
        }
    }

    /// <summary>Counts one failover attempt: another address of the same name tried for a connection.</summary>
    internal void Failover() => _failovers.Add(1, _side);
}
