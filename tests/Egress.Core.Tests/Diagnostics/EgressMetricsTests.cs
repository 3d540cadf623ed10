using Egress.Configuration;
using System.Diagnostics.Metrics;
using System.Net;
using System.Net.Sockets;
using Egress.Diagnostics;
using Egress.Dns;
using Egress.Dns.Wire;
using Egress.Gateway;
using Egress.Policy;
using Egress.Proxy;
using Egress.Tests.Dns;
using Egress.Tests.Gateway;
using Egress.Tunnel;
using Microsoft.Extensions.Diagnostics.Metrics.Testing;

namespace Egress.Tests.Diagnostics;

/// <summary>
/// EgressMetrics as wired into a real <see cref="TunnelGateway"/> (Unix tunnel, loopback destinations) and a real
/// <see cref="EgressProxy"/>, read back with MetricCollector: the exact tags and values each event records.
/// </summary>
public sealed class EgressMetricsTests
{
    private static readonly TimeSpan HangGuard = TimeSpan.FromSeconds(10);

    private string _directory = null!;
    private TunnelEndpoint _endpoint = null!;
    private LogCapture _logs = null!;
    private TestMeterFactory _meters = null!;
    private TunnelGateway? _gateway;

    [SetUp]
    public void SetUp()
    {
        _directory = Directory.CreateTempSubdirectory("egress-metrics-").FullName;
        _endpoint = TunnelEndpoint.Parse($"unix:{_directory}/tunnel.sock");
        _logs = new LogCapture();
        _meters = new TestMeterFactory();
    }

    [TearDown]
    public async Task TearDown()
    {
        if (_gateway is not null)
        {
            await _gateway.DisposeAsync();
        }

        _meters.Dispose();
        _logs.Dispose();
        Directory.Delete(_directory, recursive: true);
    }

    /// <summary>From a library-consumer trial: any side was taken, though every dashboard filters on the two (the side
    /// is a <see cref="TunnelSide"/> now; a value outside it is refused).</summary>
    [Test]
    public void ASideOtherThanEnclaveOrHostIsRefused() =>
        Assert.That(() => new EgressMetrics(_meters, (TunnelSide)2), Throws.TypeOf<ArgumentOutOfRangeException>().With.Property("ParamName").EqualTo("side"));

    [TestCase(TunnelSide.Enclave, "enclave")]
    [TestCase(TunnelSide.Host, "parent")]
    public void TheSideTagIsEnclaveOrParent(TunnelSide side, string tag) =>
        Assert.That(new EgressMetrics(_meters, side).Side, Is.EqualTo(tag));

    /// <summary>The README's metrics list is what an operator builds a dashboard from: an instrument missing there
    /// (egress.tunnel.early_data was nearly added without it) is one nobody knows to read.</summary>
    [Test]
    public void EveryInstrumentIsNamedInTheReadme()
    {
        var names = new List<string>();
        using var listener = new MeterListener
        {
            InstrumentPublished = (instrument, _) =>
            {
                if (instrument.Meter.Scope == _meters)
                {
                    names.Add(instrument.Name);
                }
            },
        };
        _ = new EgressMetrics(_meters, TunnelSide.Host, new AllowlistCache(new AllowlistCacheOptions()));
        listener.Start(); // publishes the instruments that already exist
        string readme = RepositoryFiles.Read("README.md");

        Assert.That(names, Does.Contain("egress.connections").And.Contain("egress.tunnel.early_data").And.Contain("egress.cache.evictions"));
        Assert.That(names.Where(name => !readme.Contains($"`{name}`", StringComparison.Ordinal)), Is.Empty, "instruments the README's metrics list does not name");
    }

    [Test]
    public async Task GatewayCountsAnAllowedRelayWithItsBytesDurationAndCause()
    {
        using var connections = Collector<long>("egress.connections");
        using var active = Collector<long>("egress.connections.active");
        using var bytes = Collector<long>("egress.relay.bytes");
        using var duration = Collector<double>("egress.connection.duration");
        StartGateway(["127.0.0.1"]);
        using var echo = new EchoServer();

        using (Socket stream = await TunnelWire.ConnectAsync(_endpoint))
        {
            await TunnelWire.SendAsync(stream, TunnelRequest.ForTcp(echo.EndPoint), new byte[1000]);
            Assert.That((await TunnelWire.ReadResponseAsync(stream).WaitAsync(HangGuard)).Status, Is.EqualTo(TunnelStatus.Ok));
            stream.Shutdown(SocketShutdown.Send);
            Assert.That((await TunnelWire.ReadToEndAsync(stream).WaitAsync(HangGuard)).Length, Is.EqualTo(1000));
        }

        await duration.WaitForMeasurementsAsync(1).WaitAsync(HangGuard);
        var connection = connections.GetMeasurementSnapshot().Single();
        Assert.Multiple(() =>
        {
            Assert.That(connection.Value, Is.EqualTo(1));
            Assert.That(connection.Tags, Is.EquivalentTo(Tags(("egress.side", "parent"), ("egress.outcome", "allowed"), ("egress.reason", "static_entry"))));
            Assert.That(active.GetMeasurementSnapshot().Select(m => m.Value), Is.EqualTo(new long[] { 1, -1 }));
            Assert.That(bytes.GetMeasurementSnapshot().Select(m => (m.Value, m.Tags["egress.direction"])), Is.EquivalentTo(new[] { (1000L, (object?)"out"), (1000L, "in") }));
            Assert.That(duration.LastMeasurement!.Tags["egress.cause"], Is.EqualTo("both_completed"));
            Assert.That(duration.LastMeasurement.Value, Is.GreaterThan(0));
        });
    }

    [Test]
    public async Task GatewayCountsDenialsAndConnectFailuresByReason()
    {
        using var connections = Collector<long>("egress.connections");
        StartGateway(["127.0.0.1"]);
        using var closedListener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        closedListener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        var closed = (IPEndPoint)closedListener.LocalEndPoint!;
        closedListener.Dispose();

        await RequestAsync(TunnelRequest.ForTcp(new IPEndPoint(IPAddress.Parse("127.0.0.2"), 80)));
        await RequestAsync(TunnelRequest.ForTcp(closed));

        var seen = connections.GetMeasurementSnapshot().Select(m => ((string?)m.Tags["egress.outcome"], (string?)m.Tags["egress.reason"], m.Value));
        Assert.That(seen, Is.EqualTo(new[] { ("denied", "internal_range", 1L), ("failed", "connection_refused", 1L) }));
    }

    [Test]
    public async Task GatewayCountsTunnelErrorsByKind()
    {
        using var errors = Collector<long>("egress.tunnel.errors");
        StartGateway(["127.0.0.1"]);
        using (Socket stream = await TunnelWire.ConnectAsync(_endpoint))
        {
            await stream.SendAsync(new byte[] { 2, 1, 0, 8, 4, 127, 0, 0, 1, 0, 80, 0 });
            await TunnelWire.ReadToEndAsync(stream).WaitAsync(HangGuard);
        }

        await errors.WaitForMeasurementsAsync(1).WaitAsync(HangGuard);
        Assert.That(errors.LastMeasurement!.Tags["egress.error"], Is.EqualTo("bad_request"));
    }

    [Test]
    public async Task GatewayDnsStreamCountsQueriesByOutcomeAndEndsPromptlyWhenStopping()
    {
        using var queries = Collector<long>("egress.dns.queries");
        StartGateway(["127.0.0.1"], drain: TimeSpan.FromSeconds(30));
        using Socket stream = await TunnelWire.ConnectAsync(_endpoint);
        await TunnelWire.SendAsync(stream, TunnelRequest.ForDns());
        Assert.That((await TunnelWire.ReadResponseAsync(stream).WaitAsync(HangGuard)).Status, Is.EqualTo(TunnelStatus.Ok));
        await SendFrameAsync(stream, DnsQueryBytes.Build(7, "not-allowed.example"));
        await SendFrameAsync(stream, [0, 9, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // a header without a question: FORMERR
        await queries.WaitForMeasurementsAsync(2).WaitAsync(HangGuard);

        // The stream is idle now: a stop must close it at once instead of waiting out the 30 s drain.
        await _gateway!.StopAsync().WaitAsync(HangGuard);

        Assert.Multiple(async () =>
        {
            Assert.That(queries.GetMeasurementSnapshot().Select(m => (string?)m.Tags["egress.outcome"]), Is.EquivalentTo(new[] { "denied", "formerr" }));
            Assert.That(await TunnelWire.ReadToEndAsync(stream).WaitAsync(HangGuard), Is.Not.Empty, "the two answers, then end of stream");
            Assert.That(_logs.EventIds, Has.None.EqualTo(13), "nothing aborted");
            Assert.That(_logs.EventIds, Has.One.EqualTo(253), "the DNS stream closed");
        });
    }

    [Test]
    public async Task ProxyCountsAConnectionThatWasNotRedirected()
    {
        using var connections = Collector<long>("egress.connections");
        var options = new EgressProxyOptions
        {
            Listen = [new IPEndPoint(IPAddress.Loopback, 0)],
            Tunnel = _endpoint,
            Metrics = new EgressMetrics(_meters, TunnelSide.Enclave),
        };
        await using (var proxy = new EgressProxy(options, EgressPolicy.Create(true, [], new AllowlistCache(new AllowlistCacheOptions())), _logs.Factory))
        {
            proxy.Start();
            using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            try
            {
                await client.ConnectAsync(proxy.LocalEndPoints[0]);
            }
            catch (SocketException ex) when (ex.SocketErrorCode == SocketError.ConnectionReset)
            {
                // On loopback the proxy's reset can beat the connect's completion.
            }

            await connections.WaitForMeasurementsAsync(1).WaitAsync(HangGuard);
        }

        Assert.That(connections.LastMeasurement!.Tags, Is.EquivalentTo(Tags(("egress.side", "enclave"), ("egress.outcome", "failed"), ("egress.reason", "not_redirected"))));
    }

    [Test]
    public void CacheGaugesObserveTheCache()
    {
        var cache = new AllowlistCache(new AllowlistCacheOptions());
        _ = new EgressMetrics(_meters, TunnelSide.Host, cache);
        using var entries = Collector<int>("egress.cache.entries");
        var policy = EgressPolicy.Create(true, ["*.example"], cache);
        policy.Learn("a.example", IPAddress.Parse("198.51.100.1"), TimeSpan.FromMinutes(5));
        policy.Learn("b.example", IPAddress.Parse("198.51.100.2"), TimeSpan.FromMinutes(5));

        entries.RecordObservableInstruments();

        Assert.That(entries.LastMeasurement!.Value, Is.EqualTo(2));
        Assert.That(entries.LastMeasurement.Tags["egress.side"], Is.EqualTo("parent"));
    }

    private static KeyValuePair<string, object?>[] Tags(params (string Key, string Value)[] tags) =>
        [.. tags.Select(tag => new KeyValuePair<string, object?>(tag.Key, tag.Value))];

    private static async Task SendFrameAsync(Socket stream, byte[] message)
    {
        byte[] frame = new byte[DnsTcpFraming.PrefixLength + message.Length];
        DnsTcpFraming.WriteMessage(message, frame);
        await stream.SendAsync(frame);
    }

    private MetricCollector<T> Collector<T>(string instrument)
        where T : struct => new(_meters, EgressMetrics.MeterName, instrument);

    private void StartGateway(string[] destinations, TimeSpan? drain = null)
    {
        var policy = EgressPolicy.Create(true, destinations, new AllowlistCache(new AllowlistCacheOptions()));
        var options = new TunnelGatewayOptions
        {
            Listen = _endpoint,
            ShutdownDrain = drain ?? TimeSpan.FromSeconds(5),
            DnsUpstreams = [new IPEndPoint(IPAddress.Loopback, 9)],
            Metrics = new EgressMetrics(_meters, TunnelSide.Host),
        };
        _gateway = new TunnelGateway(options, policy, _logs.Factory);
        _gateway.Start();
    }

    private async Task RequestAsync(TunnelRequest request)
    {
        using Socket stream = await TunnelWire.ConnectAsync(_endpoint);
        await TunnelWire.SendAsync(stream, request);
        await TunnelWire.ReadResponseAsync(stream).WaitAsync(HangGuard);
        await TunnelWire.ReadToEndAsync(stream).WaitAsync(HangGuard);
    }
}
