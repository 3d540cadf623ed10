using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;

namespace Egress.Tests;

/// <summary>An <see cref="ILoggerFactory"/> whose loggers keep every formatted line (any level), for assertions on log contents.</summary>
internal sealed class CollectingLoggerFactory : ILoggerFactory
{
    private readonly ConcurrentQueue<string> _lines = new();

    /// <summary>Every line logged so far, as <c>Level: message</c> (plus <c> | exception type: message</c> when one was given).</summary>
    public IReadOnlyList<string> Lines => [.. _lines];

    public ILogger CreateLogger(string categoryName) => new Logger(_lines);

    /// <summary>Waits until a line containing <paramref name="text"/> is logged (log lines are written after the socket work they describe).</summary>
    public async Task<string> WaitForLineAsync(string text, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(10));
        while (true)
        {
            var line = _lines.FirstOrDefault(l => l.Contains(text, StringComparison.Ordinal));
            if (line is not null)
            {
                return line;
            }

            if (DateTime.UtcNow > deadline)
            {
                Assert.Fail($"no log line contains \"{text}\"; lines:\n{string.Join('\n', _lines)}");
            }

            await Task.Delay(10);
        }
    }

    public void AddProvider(ILoggerProvider provider) => throw new NotSupportedException();

    public void Dispose()
    {
    }

    private sealed class Logger(ConcurrentQueue<string> lines) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            lines.Enqueue(exception is null
                ? $"{logLevel}: {formatter(state, exception)}"
                : $"{logLevel}: {formatter(state, exception)} | {exception.GetType().Name}: {exception.Message}");
    }
}
