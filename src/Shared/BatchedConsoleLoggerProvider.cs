using System.Text;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Logging.Console;
using Microsoft.Extensions.Options;

namespace Egress.Hosting;

/// <summary>
/// The hosts' console logger. Each line is formatted on the caller's thread by the console formatter the options name
/// (Microsoft.Extensions.Logging.Console's <c>simple</c>, <c>json</c> or <c>systemd</c>, so a line is exactly what the
/// console logger writes) and handed to a <see cref="LogBatchWriter"/>, which writes the lines in batches and drops
/// them, counted, rather than make a caller wait. The console logger instead wakes its writer thread and writes once
/// per line: at two lines per connection per host that was 15 % of the connections/s and 30 % of the HTTP
/// requests/s the hosts relay (docs/benchmarks.md).
/// </summary>
internal sealed class BatchedConsoleLoggerProvider : ILoggerProvider, ISupportExternalScope
{
    /// <summary>The category of the line that counts lines dropped.</summary>
    public const string Category = "Egress.Log";

    [ThreadStatic]
    private static StringWriter? t_text;

    private readonly ConsoleFormatter formatter;
    private readonly LogBatchWriter writer;
    private IExternalScopeProvider? scopes;

    /// <summary>Writes to <paramref name="output"/> with the formatter <see cref="ConsoleLoggerOptions.FormatterName"/>
    /// names among <paramref name="formatters"/>.</summary>
    /// <exception cref="InvalidOperationException">No formatter has that name, or the options ask for stderr
    /// (<see cref="ConsoleLoggerOptions.LogToStandardErrorThreshold"/>).</exception>
    public BatchedConsoleLoggerProvider(ConsoleLoggerOptions options, IEnumerable<ConsoleFormatter> formatters, Stream output,
        int capacity, TimeSpan delay, TimeSpan flushTimeout)
    {
        formatter = formatters.FirstOrDefault(f => f.Name == options.FormatterName)
            ?? throw new InvalidOperationException($"no console formatter named '{options.FormatterName}'");
        if (options.LogToStandardErrorThreshold != LogLevel.None)
        {
            throw new InvalidOperationException("every line goes to one stream: LogToStandardErrorThreshold is not supported");
        }

        writer = new LogBatchWriter(output, capacity, delay, flushTimeout, DescribeDropped);
    }

    /// <summary>
    /// Replaces the console logger that <c>AddSimpleConsole</c>, <c>AddJsonConsole</c> or <c>AddSystemdConsole</c>
    /// registered (keeping its formatters and their options) with this provider, writing to <paramref name="output"/>;
    /// its disposal waits at most <paramref name="flushTimeout"/> for the lines still queued.
    /// </summary>
    /// <exception cref="InvalidOperationException">No console logger was added first.</exception>
    public static void ReplaceConsoleLogger(ILoggingBuilder logging, Func<Stream> output, TimeSpan flushTimeout)
    {
        var console = logging.Services.FirstOrDefault(d => d.ServiceType == typeof(ILoggerProvider) && d.ImplementationType == typeof(ConsoleLoggerProvider))
            ?? throw new InvalidOperationException("add a console logger (AddSimpleConsole, AddJsonConsole, AddSystemdConsole) first");
        logging.Services.Remove(console);
        logging.Services.AddSingleton<ILoggerProvider>(services => new BatchedConsoleLoggerProvider(
            services.GetRequiredService<IOptions<ConsoleLoggerOptions>>().Value, services.GetServices<ConsoleFormatter>(), output(),
            LogBatchWriter.DefaultCapacity, LogBatchWriter.DefaultDelay, flushTimeout));
    }

    /// <inheritdoc/>
    public ILogger CreateLogger(string categoryName) => new Logger(this, categoryName);

    /// <inheritdoc/>
    public void SetScopeProvider(IExternalScopeProvider scopeProvider) => scopes = scopeProvider;

    /// <summary>Writes the lines queued (waiting at most the flush timeout) and stops.</summary>
    public void Dispose() => writer.Dispose();

    private void Write<TState>(in LogEntry<TState> entry)
    {
        var text = t_text ??= new StringWriter();
        var line = text.GetStringBuilder();
        try
        {
            formatter.Write(in entry, scopes, text);
            if (line.Length > 0)
            {
                writer.Enqueue(line);
            }
        }
        finally
        {
            // Also after a formatter that threw half-way: the thread's next line starts clean.
            line.Clear();
            if (line.Capacity > 1024)
            {
                line.Capacity = 1024;
            }
        }
    }

    // Called on the writer's thread, after the lines queued before the first one dropped.
    private byte[] DescribeDropped(long count)
    {
        var capture = new NoticeLogger(this);
        HostLog.LinesDropped(capture, count);
        return capture.Line;
    }

    private sealed class Logger(BatchedConsoleLoggerProvider provider, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => provider.scopes?.Push(state) ?? NullLogger.Instance.BeginScope(state);

        public bool IsEnabled(LogLevel logLevel) => logLevel != LogLevel.None;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (!IsEnabled(logLevel))
            {
                return;
            }

            ArgumentNullException.ThrowIfNull(formatter);
            provider.Write(new LogEntry<TState>(logLevel, category, eventId, state, exception, formatter));
        }
    }

    // Formats the count of lines dropped as a line of its own, in the same format as the others.
    private sealed class NoticeLogger(BatchedConsoleLoggerProvider provider) : ILogger
    {
        public byte[] Line { get; private set; } = [];

        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            var text = new StringWriter();
            provider.formatter.Write(new LogEntry<TState>(logLevel, Category, eventId, state, exception, formatter), null, text);
            Line = Encoding.UTF8.GetBytes(text.ToString());
        }
    }
}
