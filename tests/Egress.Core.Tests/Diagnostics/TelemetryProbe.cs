using Egress.Configuration;
using Egress.Diagnostics;
using Microsoft.Extensions.Diagnostics.Metrics.Testing;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Testing;

namespace Egress.Tests.Diagnostics;

/// <summary>
/// What one side of egress logs and counts, for outcome tests: FakeLogger records (event ids) and the
/// <c>egress.connections</c> and <c>egress.tunnel.errors</c> measurements, with their tags.
/// </summary>
internal sealed class TelemetryProbe : IDisposable
{
    private readonly TestMeterFactory _meters = new();
    private readonly MetricCollector<long> _connections;
    private readonly MetricCollector<long> _tunnelErrors;
    private readonly MetricCollector<long> _failovers;
    private readonly MetricCollector<long> _serverNameRefusals;
    private readonly MetricCollector<long> _earlyData;

    public TelemetryProbe(TunnelSide side)
    {
        Logger = new FakeLogger(Logs.Collector);
        Metrics = new EgressMetrics(_meters, side);
        _connections = new MetricCollector<long>(_meters, EgressMetrics.MeterName, "egress.connections");
        _tunnelErrors = new MetricCollector<long>(_meters, EgressMetrics.MeterName, "egress.tunnel.errors");
        _failovers = new MetricCollector<long>(_meters, EgressMetrics.MeterName, "egress.connection.failovers");
        _serverNameRefusals = new MetricCollector<long>(_meters, EgressMetrics.MeterName, "egress.tls.server_name.refusals");
        _earlyData = new MetricCollector<long>(_meters, EgressMetrics.MeterName, "egress.tunnel.early_data");
    }

    public LogCapture Logs { get; } = new();

    /// <summary>The meter factory the metrics were created on, for a collector of another instrument.</summary>
    public TestMeterFactory Meters => _meters;

    public FakeLogger Logger { get; }

    public ILoggerFactory LoggerFactory => Logs.Factory;

    public EgressMetrics Metrics { get; }

    /// <summary>The event ids logged so far, in order.</summary>
    public IReadOnlyList<int> EventIds => Logs.EventIds;

    /// <summary>Every <c>egress.connections</c> count so far as (outcome, reason).</summary>
    public IReadOnlyList<(string? Outcome, string? Reason)> Connections =>
        [.. _connections.GetMeasurementSnapshot().Select(m => ((string?)m.Tags["egress.outcome"], (string?)m.Tags["egress.reason"]))];

    /// <summary>Every <c>egress.tunnel.errors</c> count so far, by <c>egress.error</c>.</summary>
    public IReadOnlyList<string?> TunnelErrors => [.. _tunnelErrors.GetMeasurementSnapshot().Select(m => (string?)m.Tags["egress.error"])];

    /// <summary>The sum of <c>egress.connection.failovers</c> so far.</summary>
    public long Failovers => _failovers.GetMeasurementSnapshot().Sum(m => m.Value);

    /// <summary>Every <c>egress.tls.server_name.refusals</c> count so far, by <c>egress.reason</c>.</summary>
    public IReadOnlyList<string?> ServerNameRefusals => [.. _serverNameRefusals.GetMeasurementSnapshot().Select(m => (string?)m.Tags["egress.reason"])];

    /// <summary>Every <c>egress.tunnel.early_data</c> count so far, by <c>egress.outcome</c>.</summary>
    public IReadOnlyList<string?> EarlyData => [.. _earlyData.GetMeasurementSnapshot().Select(m => (string?)m.Tags["egress.outcome"])];

    /// <summary>Waits until a record with <paramref name="eventId"/> is logged (logged after the socket work it describes).</summary>

    public Task WaitForEventAsync(int eventId) => Logs.WaitForEventAsync(eventId);

    public void Dispose()
    {
        _connections.Dispose();
        _tunnelErrors.Dispose();
        _failovers.Dispose();
        _serverNameRefusals.Dispose();
        _earlyData.Dispose();
        Logs.Dispose();
        _meters.Dispose();
    }
}
