using System.Text;
using System.Text.Json;
using Egress.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Console;

namespace Egress.Tests.Hosting;

[TestFixture]
public sealed class BatchedConsoleLoggerProviderTests
{
    // Disposing the host flushes the log lines, waiting at most this long: never reached with a memory stream, but
    // the hosts' 1.5 s could be on a loaded machine, and the tests read the stream right after.
    private static readonly TimeSpan FlushTimeout = TimeSpan.FromSeconds(30);

    [Test]
    public void TheHostsWriteJsonLinesWithTheConsoleLoggersFieldsThroughTheBatchedLoggerOnly()
    {
        var stdout = new MemoryStream();
        using (var host = HostRuntime.CreateBuilder(LogLevel.Information, json: true, TimeSpan.FromSeconds(1), () => stdout, FlushTimeout).Build())
        {
            var providers = host.Services.GetServices<ILoggerProvider>().Select(p => p.GetType()).ToArray();
            Assert.That(providers, Is.EqualTo(new[] { typeof(BatchedConsoleLoggerProvider) }), "the runtime's console logger is replaced, not joined");
            var logger = host.Services.GetRequiredService<ILoggerFactory>().CreateLogger("Egress.Test");
            HostLog.Starting(logger, "v1.2.3");
            logger.LogDebug("below the level");
        }

        var lines = Lines(stdout);
        Assert.That(lines, Has.Length.EqualTo(1), string.Join('\n', lines));
        using var json = JsonDocument.Parse(lines[0]);
        var root = json.RootElement;
        Assert.Multiple(() =>
        {
            Assert.That(root.GetProperty("Timestamp").GetString(), Does.Match(@"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$"));
            Assert.That(root.GetProperty("EventId").GetInt32(), Is.EqualTo(1));
            Assert.That(root.GetProperty("LogLevel").GetString(), Is.EqualTo("Information"));
            Assert.That(root.GetProperty("Category").GetString(), Is.EqualTo("Egress.Test"));
            Assert.That(root.GetProperty("Message").GetString(), Is.EqualTo("starting v1.2.3"));
            Assert.That(root.GetProperty("State").GetProperty("Version").GetString(), Is.EqualTo("v1.2.3"));
        });
    }

    [Test]
    public void TheHostsWriteOneTextLinePerEventWithAUtcTimestamp()
    {
        var stdout = new MemoryStream();
        using (var host = HostRuntime.CreateBuilder(LogLevel.Information, json: false, TimeSpan.FromSeconds(1), () => stdout, FlushTimeout).Build())
        {
            var logger = host.Services.GetRequiredService<ILoggerFactory>().CreateLogger("Egress.Test");
            HostLog.Starting(logger, "v1.2.3");
            logger.LogWarning(new InvalidOperationException("boom"), "second {Name}", "line");
        }

        var lines = Lines(stdout);
        Assert.That(lines, Has.Length.EqualTo(2), string.Join('\n', lines));
        Assert.That(lines[0], Does.Match(@"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z info: Egress\.Test\[1\] starting v1\.2\.3$"));
        Assert.That(lines[1], Does.Match(@"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z warn: Egress\.Test\[0\] second line System\.InvalidOperationException: boom$"));
    }

    [Test]
    public async Task AStartFailuresErrorLineComesAfterTheLogLinesWrittenBeforeIt()
    {
        var output = new List<string>();
        var builder = HostRuntime.CreateBuilder(LogLevel.Information, json: false, TimeSpan.FromSeconds(1), () => new LineStream(output), FlushTimeout);
        builder.Services.AddHostedService<FailingListener>();
        using var host = builder.Build();

        var code = await HostRuntime.RunAsync(host, error: new LineWriter(output));

        Assert.That(code, Is.EqualTo(HostRuntime.RuntimeError));
        Assert.That(output, Has.Count.EqualTo(2));
        Assert.That(output[0], Does.Contain("starting v1.2.3"));
        Assert.That(output[1], Is.EqualTo("error: 127.0.0.1:4444 is in use\n"), "the error is the last line");
    }

    [Test]
    public void LinesDroppedAreCountedInALineOfTheSameFormat()
    {
        using var services = new ServiceCollection().AddLogging(logging => logging.AddJsonConsole()).BuildServiceProvider();
        var options = new ConsoleLoggerOptions { FormatterName = ConsoleFormatterNames.Json };
        var stdout = new MemoryStream();
        using (var provider = new BatchedConsoleLoggerProvider(options, services.GetServices<ConsoleFormatter>(), stdout,
            capacity: 1, delay: TimeSpan.FromHours(1), TimeSpan.FromSeconds(10)))
        {
            var logger = provider.CreateLogger("Egress.Test");
            for (var i = 0; i < 3; i++)
            {
                logger.LogInformation("line {Number}", i);
            }
        }

        var lines = Lines(stdout);
        Assert.That(lines, Has.Length.EqualTo(1), string.Join('\n', lines));
        using var json = JsonDocument.Parse(lines[0]);
        var root = json.RootElement;
        Assert.Multiple(() =>
        {
            Assert.That(root.GetProperty("Category").GetString(), Is.EqualTo(BatchedConsoleLoggerProvider.Category));
            Assert.That(root.GetProperty("EventId").GetInt32(), Is.EqualTo(3));
            Assert.That(root.GetProperty("LogLevel").GetString(), Is.EqualTo("Warning"));
            Assert.That(root.GetProperty("State").GetProperty("Count").GetInt64(), Is.EqualTo(3));
        });
    }

    [Test]
    public void UnderSystemdLinesCarryJournaldsPriorityPrefixAndNoTimestamp()
    {
        using var services = new ServiceCollection().AddLogging(logging => logging.AddSystemdConsole()).BuildServiceProvider();
        var options = new ConsoleLoggerOptions { FormatterName = ConsoleFormatterNames.Systemd };
        var stdout = new MemoryStream();
        using (var provider = new BatchedConsoleLoggerProvider(options, services.GetServices<ConsoleFormatter>(), stdout,
            capacity: 1024, delay: TimeSpan.Zero, TimeSpan.FromSeconds(10)))
        {
            HostLog.Starting(provider.CreateLogger("Egress.Test"), "v1.2.3");
            provider.CreateLogger("Egress.Test").LogError("failed {Name}", "here");
        }

        Assert.That(Lines(stdout), Is.EqualTo(new[] { "<6>Egress.Test[1] starting v1.2.3", "<3>Egress.Test[0] failed here" }));
    }

    [Test]
    public void AFormatterNameWithoutAFormatterIsRefused()
    {
        using var services = new ServiceCollection().AddLogging(logging => logging.AddSimpleConsole()).BuildServiceProvider();
        var options = new ConsoleLoggerOptions { FormatterName = "xml" };
        Assert.That(() => new BatchedConsoleLoggerProvider(options, services.GetServices<ConsoleFormatter>(), new MemoryStream(), 1024,
            TimeSpan.Zero, TimeSpan.FromSeconds(1)), Throws.InvalidOperationException.With.Message.Contains("xml"));
    }

    [Test]
    public void ReplacingWithoutAConsoleLoggerIsRefused()
    {
        var services = new ServiceCollection();
        services.AddLogging(logging =>
            Assert.That(() => BatchedConsoleLoggerProvider.ReplaceConsoleLogger(logging, () => new MemoryStream(), FlushTimeout), Throws.InvalidOperationException));
    }

    /// <summary>A listener that logs a line and then cannot bind, both within the writer's batching delay.</summary>
    private sealed class FailingListener(ILoggerFactory loggers) : IHostedService
    {
        public Task StartAsync(CancellationToken cancellationToken)
        {
            HostLog.Starting(loggers.CreateLogger("Egress.Test"), "v1.2.3");
            throw new IOException("127.0.0.1:4444 is in use");
        }

        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    }

    /// <summary>stdout, appending what each write holds to a list shared with <see cref="LineWriter"/> (stderr).</summary>
    private sealed class LineStream(List<string> output) : MemoryStream
    {
        public override void Write(byte[] buffer, int offset, int count)
        {
            lock (output)
            {
                output.Add(Encoding.UTF8.GetString(buffer, offset, count));
            }
        }
    }

    private sealed class LineWriter(List<string> output) : StringWriter
    {
        public override Task WriteLineAsync(string? value)
        {
            lock (output)
            {
                output.Add(value + "\n");
            }

            return Task.CompletedTask;
        }
    }

    private static string[] Lines(MemoryStream stdout) =>
        Encoding.UTF8.GetString(stdout.ToArray()).Split('\n', StringSplitOptions.RemoveEmptyEntries);
}
