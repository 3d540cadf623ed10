using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Testing;

namespace Egress.Tests;

/// <summary>
/// Microsoft's FakeLogCollector behind a real <see cref="ILoggerFactory"/> (every level), with the waits tests need:
/// log records are written after the socket work they describe, so a test waits for the record it expects.
/// </summary>
internal sealed class LogCapture : IDisposable
{
    private static readonly TimeSpan DefaultWait = TimeSpan.FromSeconds(10);

    public LogCapture()
    {
        Factory = LoggerFactory.Create(builder => builder.AddProvider(new FakeLoggerProvider(Collector)).SetMinimumLevel(LogLevel.Trace));
    }

    /// <summary>Gets the records.</summary>
    public FakeLogCollector Collector { get; } = new();

    /// <summary>Gets the factory to hand to the component under test.</summary>
    public ILoggerFactory Factory { get; }

    /// <summary>Gets the records logged so far.</summary>
    public IReadOnlyList<FakeLogRecord> Records => Collector.GetSnapshot();

    /// <summary>Gets the event ids logged so far, in order.</summary>
    public IReadOnlyList<int> EventIds => [.. Records.Select(r => r.Id.Id)];

    /// <summary>The value of <paramref name="key"/> (a message template's hole, e.g. <c>Name</c>) in every record with
    /// <paramref name="eventId"/>, in order: what a log line says, without matching its text.</summary>
    public IReadOnlyList<string?> Values(int eventId, string key) =>
        [.. Records.Where(r => r.Id.Id == eventId).Select(r => r.GetStructuredStateValue(key))];

    /// <summary>Gets every record as <c>Level: message</c> (plus <c> | exception type: message</c>), for the tests
    /// whose point is the text of a line.</summary>
    public IReadOnlyList<string> Lines => [.. Records.Select(Format)];

    /// <summary>Waits for the first record with <paramref name="eventId"/>.</summary>
    public Task<FakeLogRecord> WaitForEventAsync(int eventId, TimeSpan? timeout = null) =>
        WaitForAsync(r => r.Id.Id == eventId, $"event {eventId}", timeout);

    /// <summary>Waits for the first line (as in <see cref="Lines"/>) containing <paramref name="text"/>.</summary>
    public async Task<string> WaitForLineAsync(string text, TimeSpan? timeout = null) =>
        Format(await WaitForAsync(r => Format(r).Contains(text, StringComparison.Ordinal), $"a line containing \"{text}\"", timeout));

    public void Dispose() => Factory.Dispose();

    private static string Format(FakeLogRecord record) => record.Exception is null
        ? $"{record.Level}: {record.Message}"
        : $"{record.Level}: {record.Message} | {record.Exception.GetType().Name}: {record.Exception.Message}";

    private async Task<FakeLogRecord> WaitForAsync(Func<FakeLogRecord, bool> match, string what, TimeSpan? timeout)
    {
        var deadline = DateTime.UtcNow + (timeout ?? DefaultWait);
        while (true)
        {
            if (Records.FirstOrDefault(match) is { } record)
            {
                return record;
            }

            if (DateTime.UtcNow > deadline)
            {
                Assert.Fail($"no record is {what}; records:\n{string.Join('\n', Lines)}");
            }

            await Task.Delay(10);
        }
    }
}
