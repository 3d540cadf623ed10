using System.Diagnostics;
using System.Diagnostics.Metrics;
using Egress.Policy;
using Egress.Relay;
using Egress.Configuration;

namespace Egress.Diagnostics;

/// <summary>
/// The metrics of both hosts, on the meter named <see cref="MeterName"/> (instrument names in OpenTelemetry style,
/// visible with <c>dotnet-counters monitor --counters Egress</c> and exported by egress-host in Prometheus format).
/// Every instrument carries an <c>egress.side</c> tag (<c>enclave</c> or <c>parent</c>); on a parent that maps enclaves
/// to policies (<c>[[host.enclaves]]</c>) the instances the parent makes per entry add <c>egress.enclave</c> (the
/// entry's CID, or <c>any</c>). Pass one instance to the components of a host through their options' <c>Metrics</c>
/// property; without it they record nothing.
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
    private readonly Counter<long> _wouldDeny;
    private readonly Counter<long> _tunnelReuses;
    private readonly Counter<long> _earlyData;
    private readonly Counter<long> _enclaveDenials;
    private readonly KeyValuePair<string, object?> _side;

    /// <summary>The <c>egress.enclave</c> tag of <see cref="ForEnclave"/>'s instances; null: none.</summary>
    private readonly KeyValuePair<string, object?>? _enclave;

    /// <summary>The caches whose size and evictions are observed, each with its tags, shared by <see cref="ForEnclave"/>'s instances.</summary>
    private readonly List<(AllowlistCache Cache, KeyValuePair<string, object?>[] Tags)> _caches;

    /// <summary>Creates the instruments on a meter from <paramref name="meterFactory"/>.</summary>
    /// <param name="meterFactory">The factory (from dependency injection, or <c>new ServiceCollection().AddMetrics()</c>).</param>
    /// <param name="side">Which host records: <see cref="TunnelSide.Enclave"/> (the <c>egress.side</c> tag
    /// <c>enclave</c>) or <see cref="TunnelSide.Host"/> (<c>parent</c>).</param>
    /// <param name="cache">The allowlist cache whose size and evictions are observed; null for none.</param>
    /// <exception cref="ArgumentNullException"><paramref name="meterFactory"/> is null.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="side"/> is not a <see cref="TunnelSide"/>.</exception>
    public EgressMetrics(IMeterFactory meterFactory, TunnelSide side, AllowlistCache? cache = null)
    {
        ArgumentNullException.ThrowIfNull(meterFactory);

        // A TunnelSide, not the tag's text (a library trial: a string "enclave" or "parent" beside TunnelSide's Enclave and Host).
        _side = new("egress.side", side switch
        {
            TunnelSide.Enclave => "enclave",
            TunnelSide.Host => "parent",
            _ => throw new ArgumentOutOfRangeException(nameof(side), side, "not a TunnelSide: Enclave or Host"),
        });
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
        _wouldDeny = meter.CreateCounter<long>(
            "egress.policy.would_deny", "{decision}", "Decisions egress.mode = \"report\" allowed that enforce would deny, by kind (connection, dns) and reason.");
        _tunnelReuses = meter.CreateCounter<long>(
            "egress.tunnel.reuses", "{request}", "Connections carried on a tunnel stream that already carried one (enclave: sent on a pooled stream; parent: read after a clean END).");
        _earlyData = meter.CreateCounter<long>(
            "egress.tunnel.early_data", "{connection}", "Relayed connections whose application's first bytes were looked for to go with the version 2 request (enclave), by outcome: sent with it, none queued yet, or relayed after the status.");
        _enclaveDenials = meter.CreateCounter<long>(
            "egress.enclave.denials", "{denial}", "What the enclave's own policy denied, from its denial reports (parent), by kind and reason.");
        _caches = cache is null ? [] : [(cache, [_side])];
        var caches = _caches;
        meter.CreateObservableGauge(
            "egress.cache.entries", () => Observe(caches, cache => cache.Count), "{address}", "Addresses learned from DNS answers.");
        meter.CreateObservableCounter(
            "egress.cache.evictions", () => Observe(caches, cache => cache.Evictions), "{address}", "Learned addresses evicted by the size bound.");
    }

    private EgressMetrics(EgressMetrics metrics, string enclave, AllowlistCache? cache)
    {
        _connections = metrics._connections;
        _activeConnections = metrics._activeConnections;
        _connectionDuration = metrics._connectionDuration;
        _bytes = metrics._bytes;
        _dnsQueries = metrics._dnsQueries;
        _tunnelErrors = metrics._tunnelErrors;
        _failovers = metrics._failovers;
        _wouldDeny = metrics._wouldDeny;
        _serverNameRefusals = metrics._serverNameRefusals;
        _tunnelReuses = metrics._tunnelReuses;
        _earlyData = metrics._earlyData;
        _enclaveDenials = metrics._enclaveDenials;
        _side = metrics._side;
        _enclave = new("egress.enclave", enclave);
        _caches = metrics._caches;
        if (cache is not null)
        {
            lock (_caches)
            {
                _caches.Add((cache, [_side, _enclave.Value]));
            }
        }
    }

    /// <summary>The same instruments, with the tag <c>egress.enclave</c> = <paramref name="enclave"/> on every
    /// measurement, and <paramref name="cache"/> observed under it: the metrics of one <c>[[host.enclaves]]</c> entry.</summary>
    /// <param name="enclave">The entry's CID, or <c>any</c>.</param>
    /// <param name="cache">The entry's allowlist cache; null for none.</param>
    internal EgressMetrics ForEnclave(string enclave, AllowlistCache? cache) => new(this, enclave, cache);

    private static IEnumerable<Measurement<T>> Observe<T>(List<(AllowlistCache Cache, KeyValuePair<string, object?>[] Tags)> caches, Func<AllowlistCache, T> value)
        where T : struct
    {
        (AllowlistCache Cache, KeyValuePair<string, object?>[] Tags)[] observed;
        lock (caches)
        {
            observed = [.. caches];
        }

        return observed.Select(entry => new Measurement<T>(value(entry.Cache), entry.Tags));
    }

    /// <summary>The tags every measurement carries (<c>egress.side</c>, and <c>egress.enclave</c> when set) plus
    /// <paramref name="name"/> = <paramref name="value"/> when given.</summary>
    private TagList Tags(string? name = null, object? value = null)
    {
        var tags = new TagList { _side };
        if (_enclave is { } enclave)
        {
            tags.Add(enclave);
        }

        if (name is not null)
        {
            tags.Add(name, value);
        }

        return tags;
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
            var tags = Tags("egress.outcome", outcome);
            tags.Add("egress.reason", reason);
            _connections.Add(1, in tags);
        }
    }

    /// <summary>Marks a relay as started.</summary>
    internal void RelayStarted() => _activeConnections.Add(1, Tags());

    /// <summary>Records a finished relay: bytes each way and its duration by cause.</summary>
    internal void RelayEnded(long bytesOut, long bytesIn, TimeSpan duration, RelayShutdownCause cause)
    {
        _activeConnections.Add(-1, Tags());
        if (_bytes.Enabled)
        {
            _bytes.Add(bytesOut, Tags("egress.direction", "out"));
            _bytes.Add(bytesIn, Tags("egress.direction", "in"));
        }

        if (_connectionDuration.Enabled)
        {
            _connectionDuration.Record(duration.TotalSeconds, Tags("egress.cause", MetricTag.Of(cause)));
        }
    }

    /// <summary>Counts a DNS query by outcome (forwarded, truncated, denied, servfail, overloaded, formerr, notimp, badvers, dropped).</summary>
    internal void DnsQuery(string outcome)
    {
        if (_dnsQueries.Enabled)
        {
            _dnsQueries.Add(1, Tags("egress.outcome", outcome));
        }
    }

    /// <summary>Counts a failed tunnel stream by kind (unavailable, connect_timeout, status_timeout, bad_response on the
    /// enclave; header_timeout, bad_request, unsupported_kind, stream_limit, stream_failed, peer_refused on the parent).</summary>
    internal void TunnelError(string kind)
    {
        if (_tunnelErrors.Enabled)
        {
            _tunnelErrors.Add(1, Tags("egress.error", kind));
        }
    }

    /// <summary>Counts a decision report mode allowed that enforce would deny (<paramref name="kind"/>: connection or
    /// dns; <paramref name="reason"/>: the denial's <see cref="DecisionReason"/>, in snake_case).</summary>
    internal void WouldDeny(string kind, DecisionReason reason)
    {
        if (_wouldDeny.Enabled)
        {
            var tags = Tags("egress.kind", kind);
            tags.Add("egress.reason", MetricTag.Of(reason));
            _wouldDeny.Add(1, in tags);
        }
    }

    /// <summary>Counts a connection refused by the TLS server-name check, by reason (not_learned, not_allowed,
    /// no_server_name, encrypted_client_hello, malformed, too_large, truncated, timed_out).</summary>
    internal void ServerNameRefused(Tls.ServerNameRefusal reason)
    {
        if (_serverNameRefusals.Enabled)
        {
            var tags = Tags("egress.reason", MetricTag.Of(reason));
            _serverNameRefusals.Add(1, in tags);
        }
    }

    /// <summary>Counts what the enclave reported it denied (docs/tunnel-protocol.md, "Denial reports"), by
    /// <c>egress.kind</c> (connection, dns_question, server_name, other) and <c>egress.reason</c> (a decision's or a
    /// server-name refusal's reason; <c>other</c> for one this parent does not know).</summary>
    internal void EnclaveDenials(string kind, string reason, uint count)
    {
        if (_enclaveDenials.Enabled)
        {
            var tags = Tags("egress.kind", kind);
            tags.Add("egress.reason", reason);
            _enclaveDenials.Add(count, in tags);
        }
    }

    /// <summary>Counts a connection carried on a tunnel stream that already carried one (docs/tunnel-protocol.md, "Stream reuse").</summary>
    internal void TunnelStreamReused() => _tunnelReuses.Add(1, Tags());

    /// <summary>Counts a relayed connection whose first bytes were looked for as early data (docs/tunnel-protocol.md,
    /// "Early data"): <paramref name="outcome"/> is <c>sent</c> (they went with the version 2 request), <c>none</c> (the
    /// application had written nothing yet) or <c>after_status</c> (read, but relayed after the status: the parent
    /// answered in version 1, or a failover's destination has its server name checked).</summary>
    internal void EarlyData(string outcome)
    {
        var tags = Tags("egress.outcome", outcome);
        _earlyData.Add(1, in tags);
    }

    /// <summary>Counts one failover attempt: another address of the same name tried for a connection.</summary>
    internal void Failover() => _failovers.Add(1, Tags());
}
