using System.Net;
using System.Text;
using System.Text.Json;
using Egress.Gateway;
using Egress.Hosting;
using Egress.Policy;
using Egress.Proxy;
using Egress.Relay;
using Egress.Tunnel;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Console;

namespace Egress.Tests.Diagnostics;

/// <summary>
/// A value that reads as part of a sentence (the connection id, the END causes, the host hint) is its fragment in the
/// line's text and its bare value in <c>--log-format json</c>'s <c>State</c>, through the hosts' own logger and JSON
/// formatter. Before, <c>State</c> held the fragment: <c>"Connection": ", conn 00000000000000ab"</c>.
/// </summary>
public sealed class LogFragmentTests
{
    private static readonly IPEndPoint Destination = new(IPAddress.Parse("198.51.100.7"), 443);
    private static readonly PolicyDecision Allowed = new(true, DecisionReason.StaticEntry, "198.51.100.7");

    /// <summary>A rate-limited failure line (one template since the held-back form became a fragment): nothing after
    /// the first line of a burst, the count after one that follows held-back lines, and the bare count as its field.</summary>
    [Test]
    public void AFailureLinesHeldBackCountIsItsSuffixAndItsFieldTheCount()
    {
        var lines = LogJson(logger =>
        {
            ProxyLog.TunnelUnavailable(logger, Destination, "unix:/run/t.sock", "Connection refused", new Egress.Diagnostics.HeldBackLines(0));
            ProxyLog.TunnelUnavailable(logger, Destination, "unix:/run/t.sock", "Connection refused", new Egress.Diagnostics.HeldBackLines(3));
        });

        Assert.Multiple(() =>
        {
            Assert.That(Message(lines[0]), Is.EqualTo("connection to 198.51.100.7:443 failed: tunnel unix:/run/t.sock unavailable: Connection refused"));
            Assert.That(Message(lines[1]), Is.EqualTo("connection to 198.51.100.7:443 failed: tunnel unix:/run/t.sock unavailable: Connection refused (3 more such lines held back since the last one: at most 10 a second)"));
            Assert.That((State(lines[0], "HeldBack"), State(lines[1], "HeldBack")), Is.EqualTo(("0", "3")));
        });
    }

    [Test]
    public void AVersion2ConnectionsLinesReadAsBeforeAndTheirFieldsHoldTheBareValues()
    {
        var lines = LogJson(logger =>
        {
            GatewayLog.Connected(logger, Destination, new HostHintText("api.example.com"), Allowed, new ConnectionIdText(0xab));
            GatewayLog.Closed(logger, Destination, 10, 20, RelayShutdownCause.BothCompleted,
                new RelayEnds(new FramedStreamEnd(TunnelEndCause.Fin, TunnelEndCause.Reset)), 12.4, new ConnectionIdText(0xab));
            ProxyLog.Allowed(logger, Destination, Allowed, new ConnectionIdText(0xab));
        });

        Assert.Multiple(() =>
        {
            Assert.That(Message(lines[0]), Is.EqualTo($"connection to 198.51.100.7:443 (for api.example.com) {Allowed}, connected, conn 00000000000000ab"));
            Assert.That(State(lines[0], "Hint"), Is.EqualTo("api.example.com"));
            Assert.That(State(lines[0], "ConnectionId"), Is.EqualTo("00000000000000ab"));
            Assert.That(Message(lines[1]), Is.EqualTo("connection to 198.51.100.7:443 closed: 10 bytes out, 20 bytes in, BothCompleted (END sent FIN, received RST), 12 ms, conn 00000000000000ab"));
            Assert.That(State(lines[1], "Ends"), Is.EqualTo("sent FIN, received RST"));
            Assert.That(State(lines[1], "ConnectionId"), Is.EqualTo("00000000000000ab"));
            Assert.That(Message(lines[2]), Is.EqualTo($"connection to 198.51.100.7:443 {Allowed}, conn 00000000000000ab"));
            Assert.That(State(lines[2], "ConnectionId"), Is.EqualTo("00000000000000ab"));
        });
    }

    [Test]
    public void AVersion1ConnectionWithoutAHintHasNoFragmentsAndEmptyFields()
    {
        var lines = LogJson(logger =>
        {
            GatewayLog.Connected(logger, Destination, new HostHintText(null), Allowed, new ConnectionIdText(0));
            GatewayLog.Closed(logger, Destination, 10, 20, RelayShutdownCause.BReadError, new RelayEnds(null), 3, new ConnectionIdText(0));
        });

        Assert.Multiple(() =>
        {
            Assert.That(Message(lines[0]), Is.EqualTo($"connection to 198.51.100.7:443 {Allowed}, connected"));
            Assert.That(State(lines[0], "Hint"), Is.Empty);
            Assert.That(State(lines[0], "ConnectionId"), Is.Empty);
            Assert.That(Message(lines[1]), Is.EqualTo("connection to 198.51.100.7:443 closed: 10 bytes out, 20 bytes in, BReadError, 3 ms"));
            Assert.That(State(lines[1], "Ends"), Is.Empty);
        });
    }

    [TestCase("line", ", conn 00000000000000ab")]
    [TestCase("", "00000000000000ab")]
    [TestCase(null, "00000000000000ab")]
    public void TheConnectionIdFormatsTheSameThroughStringsAndSpans(string? format, string expected)
    {
        var text = new ConnectionIdText(0xab);
        Span<char> buffer = stackalloc char[64];

        Assert.That(text.TryFormat(buffer, out int written, format, null), Is.True);
        Assert.That(buffer[..written].ToString(), Is.EqualTo(expected));
        Assert.That(text.ToString(format, null), Is.EqualTo(expected));
        Assert.That(text.TryFormat(buffer[..(expected.Length - 1)], out _, format, null), Is.False, "too short a span is refused, not cut");
    }

    [TestCase("line", " (for api.example.com)")]
    [TestCase(null, "api.example.com")]
    public void TheHostHintFormatsTheSameThroughStringsAndSpans(string? format, string expected)
    {
        var text = new HostHintText("api.example.com");
        Span<char> buffer = stackalloc char[64];

        Assert.That(text.TryFormat(buffer, out int written, format, null), Is.True);
        Assert.That(buffer[..written].ToString(), Is.EqualTo(expected));
        Assert.That(text.ToString(format, null), Is.EqualTo(expected));
        Assert.That(text.TryFormat(buffer[..(expected.Length - 1)], out _, format, null), Is.False, "too short a span is refused, not cut");
    }

    [TestCase("line", " (END sent FIN, received no END)")]
    [TestCase(null, "sent FIN, received no END")]
    public void TheEndsFormatTheSameThroughStringsAndSpans(string? format, string expected)
    {
        var text = new RelayEnds(new FramedStreamEnd(TunnelEndCause.Fin, null));
        Span<char> buffer = stackalloc char[64];

        Assert.That(text.TryFormat(buffer, out int written, format, null), Is.True);
        Assert.That(buffer[..written].ToString(), Is.EqualTo(expected));
        Assert.That(text.ToString(format, null), Is.EqualTo(expected));
    }

    private static JsonElement[] LogJson(Action<ILogger> log)
    {
        using var services = new ServiceCollection().AddLogging(logging => logging.AddJsonConsole()).BuildServiceProvider();
        var options = new ConsoleLoggerOptions { FormatterName = ConsoleFormatterNames.Json };
        var stdout = new MemoryStream();
        using (var provider = new BatchedConsoleLoggerProvider(options, services.GetServices<ConsoleFormatter>(), stdout,
            capacity: 1 << 16, delay: TimeSpan.Zero, TimeSpan.FromSeconds(10)))
        {
            log(provider.CreateLogger("Egress.Test"));
        }

        return [.. Encoding.UTF8.GetString(stdout.ToArray()).Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(line => JsonDocument.Parse(line).RootElement.Clone())];
    }

    private static string? Message(JsonElement line) => line.GetProperty("Message").GetString();

    private static string? State(JsonElement line, string key) => line.GetProperty("State").GetProperty(key).GetString();
}
