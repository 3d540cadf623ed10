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

    public TelemetryProbe(string side)
    {
        Logs = new FakeLogCollector();
        Logger = new FakeLogger(Logs);
        LoggerFactory = Microsoft.Extensions.Logging.LoggerFactory.Create(builder => builder.AddProvider(new FakeLoggerProvider(Logs)).SetMinimumLevel(LogLevel.Trace));
        Metrics = new EgressMetrics(_meters, side);
        _connections = new MetricCollector<long>(_meters, EgressMetrics.MeterName, "egress.connections");
        _tunnelErrors = new MetricCollector<long>(_meters, EgressMetrics.MeterName, "egress.tunnel.errors");
    }

    public FakeLogCollector Logs { get; }

    public FakeLogger Logger { get; }

    public ILoggerFactory LoggerFactory { get; }

    public EgressMetrics Metrics { get; }

    /// <summary>The event ids logged so far, in order.</summary>
    public IReadOnlyList<int> EventIds => [.. Logs.GetSnapshot().Select(r => r.Id.Id)];

    /// <summary>Every <c>egress.connections</c> count so far as (outcome, reason).</summary>
    public IReadOnlyList<(string? Outcome, string? Reason)> Connections =>
        [.. _connections.GetMeasurementSnapshot().Select(m => ((string?)m.Tags["egress.outcome"], (string?)m.Tags["egress.reason"]))];

    /// <summary>Every <c>egress.tunnel.errors</c> count so far, by <c>egress.error</c>.</summary>
    public IReadOnlyList<string?> TunnelErrors => [.. _tunnelErrors.GetMeasurementSnapshot().Select(m => (string?)m.Tags["egress.error"])];

    /// <summary>Waits until a record with <paramref name="eventId"/> is logged (logged after the socket work it describes).</summary>
    public async Task WaitForEventAsync(int eventId)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (!EventIds.Contains(eventId))
        {
            if (DateTime.UtcNow > deadline)
            {
                Assert.Fail($"event {eventId} was not logged; events: {string.Join(", ", EventIds)}");
            }

            await Task.Delay(10);
        }
    }

    public void Dispose()
    {
        _connections.Dispose();
        _tunnelErrors.Dispose();
        LoggerFactory.Dispose();
        _meters.Dispose();
    }
}
