using Egress.Configuration;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Egress.Gateway;
using Egress.Policy;
using Egress.Relay;
using Egress.Tests.Diagnostics;
using Egress.Tunnel;
using Microsoft.Extensions.Time.Testing;

namespace Egress.Tests.Gateway;

/// <summary>
/// Every request outcome of the parent gateway without root: a real <see cref="TunnelGateway"/> on a Unix socket,
/// loopback destinations, a fake connect where the destination must never answer, and a FakeTimeProvider for the
/// timeouts. Each test asserts the answered status, the metric tags, the log event id and how the stream ends.
/// </summary>
public sealed class TunnelStreamOutcomeTests
{
    private static readonly TimeSpan HangGuard = TimeSpan.FromSeconds(10);
    private static readonly TimeSpan ConnectTimeout = TimeSpan.FromSeconds(5);
    private static readonly TimeSpan HeaderTimeout = TimeSpan.FromSeconds(3);

    private string _directory = null!;
    private TunnelEndpoint _endpoint = null!;
    private TelemetryProbe _probe = null!;
    private FakeTimeProvider _time = null!;
    private TunnelGateway? _gateway;

    [SetUp]
    public void SetUp()
    {
        _directory = Directory.CreateTempSubdirectory("egress-gwo-").FullName;
        _endpoint = TunnelEndpoint.Parse($"unix:{_directory}/tunnel.sock");
        _probe = new TelemetryProbe(TunnelSide.Host);
        _time = new FakeTimeProvider();
    }

    [TearDown]
    public async Task TearDown()
    {
        if (_gateway is not null)
        {
            await _gateway.DisposeAsync();
        }

        _probe.Dispose();
        Directory.Delete(_directory, recursive: true);
    }

    [Test]
    public async Task InternalAddressIsDenied()
    {
        StartGateway(["*"]);

        var (response, rest) = await RequestAsync(TunnelRequest.ForTcp(new IPEndPoint(IPAddress.Parse("169.254.169.254"), 80)));

        Assert.That(response.Status, Is.EqualTo(TunnelStatus.DeniedByPolicy));
        Assert.That(rest, Is.Empty, "closed after the status");
        await AssertRecordedAsync(eventId: 202, ("denied", "internal_range"));
    }

    [Test]
    public async Task AddressNeverLearnedIsDenied()
    {
        StartGateway(["api.example.com"]);

        var (response, rest) = await RequestAsync(TunnelRequest.ForTcp(new IPEndPoint(IPAddress.Parse("198.51.100.7"), 443), "api.example.com"));

        Assert.That(response.Status, Is.EqualTo(TunnelStatus.DeniedByPolicy));
        Assert.That(rest, Is.Empty);
        await _probe.WaitForEventAsync(202);
        Assert.That(_probe.EventIds, Is.EqualTo(new[] { 201, 220, 251, 214, 202 }), "listening, own addresses, upstreams, re-learning from the hint failed (no upstream), denied");
        Assert.That(_probe.Connections, Is.EqualTo(new[] { ("denied", "never_learned") }));
    }

    [Test]
    public async Task DeniedAndFailedLinesCarryTheConnectionIdTheEnclaveSent()
    {
        // The enclave logs its side of a refused connection with the id it sent in the v2 request (and the audit records
        // of both sides carry it): the parent's denied and failed lines must name it too, or an operator cannot tell
        // which of several refusals of one destination the enclave's line is about.
        StartGateway(["127.0.0.1"]);
        using var bound = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        bound.Bind(new IPEndPoint(IPAddress.Loopback, 0));

        var (denied, _) = await RequestAsync(TunnelRequest.ForTcp(new IPEndPoint(IPAddress.Parse("169.254.169.254"), 80)).AsVersion2(0x1234));
        await _probe.WaitForEventAsync(202);
        var (refused, _) = await RequestAsync(TunnelRequest.ForTcp((IPEndPoint)bound.LocalEndPoint!).AsVersion2(0xabcdef));
        await _probe.WaitForEventAsync(204);

        Assert.Multiple(() =>
        {
            Assert.That((denied.Status, refused.Status), Is.EqualTo((TunnelStatus.DeniedByPolicy, TunnelStatus.ConnectionRefused)));
            Assert.That(_probe.Logs.Values(202, "ConnectionId"), Is.EqualTo(new[] { "0000000000001234" }));
            Assert.That(_probe.Logs.Values(204, "ConnectionId"), Is.EqualTo(new[] { "0000000000abcdef" }));
            Assert.That(_probe.Logs.Records.Single(r => r.Id.Id == 202).Message, Does.EndWith(", conn 0000000000001234"));
            Assert.That(_probe.Logs.Records.Single(r => r.Id.Id == 204).Message, Does.EndWith(", conn 0000000000abcdef"));
        });
    }

    [Test]
    public async Task RefusedConnectIsAnsweredConnectionRefused()
    {
        StartGateway(["127.0.0.1"]);
        using var bound = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        bound.Bind(new IPEndPoint(IPAddress.Loopback, 0));

        var (response, rest) = await RequestAsync(TunnelRequest.ForTcp((IPEndPoint)bound.LocalEndPoint!));

        Assert.That(response.Status, Is.EqualTo(TunnelStatus.ConnectionRefused));
        Assert.That(rest, Is.Empty);
        await AssertRecordedAsync(eventId: 204, ("failed", "connection_refused"));
    }

    [Test]
    public async Task ConnectBeyondTheTimeoutIsAnsweredTimedOut()
    {
        var dialling = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        StartGateway(["198.51.100.9"], async (_, _, cancellationToken) =>
        {
            dialling.SetResult();
            await Task.Delay(Timeout.Infinite, cancellationToken);
            throw new UnreachableException();
        });
        using Socket stream = await _endpoint.ConnectAsync(CancellationToken.None);
        await TunnelWire.SendAsync(stream, TunnelRequest.ForTcp(new IPEndPoint(IPAddress.Parse("198.51.100.9"), 443)));
        await dialling.Task.WaitAsync(HangGuard);

        _time.Advance(ConnectTimeout);
        var response = await TunnelWire.ReadResponseAsync(stream).WaitAsync(HangGuard);

        Assert.That(response, Is.EqualTo(new TunnelResponse(TunnelStatus.TimedOut, "no answer within 5000 ms")));
        Assert.That(await TunnelWire.ReadToEndAsync(stream).WaitAsync(HangGuard), Is.Empty);
        await AssertRecordedAsync(eventId: 204, ("failed", "timed_out"));
    }

    [Test]
    public async Task AllowedDestinationIsAnsweredOkAndRelayed()
    {
        StartGateway(["127.0.0.1"]);
        using var echo = new EchoServer();
        using Socket stream = await _endpoint.ConnectAsync(CancellationToken.None);
        await TunnelWire.SendAsync(stream, TunnelRequest.ForTcp(echo.EndPoint), [1, 2, 3]);

        var response = await TunnelWire.ReadResponseAsync(stream).WaitAsync(HangGuard);
        stream.Shutdown(SocketShutdown.Send);

        Assert.That(response.Status, Is.EqualTo(TunnelStatus.Ok));
        Assert.That(await TunnelWire.ReadToEndAsync(stream).WaitAsync(HangGuard), Is.EqualTo(new byte[] { 1, 2, 3 }));
        await _probe.WaitForEventAsync(210);
        Assert.That(_probe.EventIds, Is.EqualTo(new[] { 201, 220, 251, 203, 210 }), "listening, own addresses, upstreams, connected, closed");
        Assert.That(_probe.Connections, Is.EqualTo(new[] { ("allowed", "static_entry") }));
        Assert.That(_probe.TunnelErrors, Is.Empty);
    }

    [Test]
    public async Task HeaderNotCompleteInTimeIsAnsweredBadRequest()
    {
        StartGateway(["127.0.0.1"]);
        using Socket stream = await _endpoint.ConnectAsync(CancellationToken.None);
        await stream.SendAsync(new byte[] { TunnelCodec.Version });
        var reading = TunnelWire.ReadResponseAsync(stream);

        // The header deadline starts when the stream is accepted: advance until it has passed.
        for (var deadline = DateTime.UtcNow + HangGuard; !reading.IsCompleted && DateTime.UtcNow < deadline; await Task.Delay(10))
        {
            _time.Advance(HeaderTimeout);
        }

        Assert.That((await reading.WaitAsync(HangGuard)).Status, Is.EqualTo(TunnelStatus.BadRequest));
        await _probe.WaitForEventAsync(207);
        Assert.That(_probe.TunnelErrors, Is.EqualTo(new[] { "header_timeout" }));
        Assert.That(_probe.Connections, Is.Empty);
    }

    [Test]
    public async Task UndecodableRequestIsAnsweredWithItsStatus()
    {
        StartGateway(["127.0.0.1"]);
        using Socket stream = await _endpoint.ConnectAsync(CancellationToken.None);
        await stream.SendAsync(new byte[] { 1, 9, 0, 0 });

        Assert.That((await TunnelWire.ReadResponseAsync(stream).WaitAsync(HangGuard)).Status, Is.EqualTo(TunnelStatus.UnsupportedKind));
        await _probe.WaitForEventAsync(206);
        Assert.That(_probe.TunnelErrors, Is.EqualTo(new[] { "bad_request" }));
        Assert.That(_probe.Connections, Is.Empty);
    }

    private async Task AssertRecordedAsync(int eventId, (string, string) tags)
    {
        await _probe.WaitForEventAsync(eventId);
        Assert.That(_probe.EventIds, Is.EqualTo(new[] { 201, 220, 251, eventId }), "listening, own addresses, upstreams, then the outcome");
        Assert.That(_probe.Connections, Is.EqualTo(new[] { tags }));
        Assert.That(_probe.TunnelErrors, Is.Empty);
    }

    private void StartGateway(string[] destinations, DestinationDialer.Connect? connect = null)
    {
        var policy = EgressPolicy.Create(true, destinations, new AllowlistCache(new AllowlistCacheOptions()));
        var options = new TunnelGatewayOptions
        {
            Listen = _endpoint,
            HeaderTimeout = HeaderTimeout,
            ConnectTimeout = ConnectTimeout,
            Relay = new RelayOptions { TimeProvider = _time },
            Metrics = _probe.Metrics,
            DnsUpstreams = [new IPEndPoint(IPAddress.Loopback, 9)],
        };
        _gateway = new TunnelGateway(options, policy, _probe.LoggerFactory, connect);
        _gateway.Start();
    }

    private async Task<(TunnelResponse Response, byte[] Remainder)> RequestAsync(TunnelRequest request)
    {
        using Socket stream = await _endpoint.ConnectAsync(CancellationToken.None);
        await TunnelWire.SendAsync(stream, request);
        var response = await TunnelWire.ReadResponseAsync(stream).WaitAsync(HangGuard);
        return (response, await TunnelWire.ReadToEndAsync(stream).WaitAsync(HangGuard));
    }
}
