using System.Net;
using System.Net.Sockets;
using System.Text;
using Egress.Gateway;
using Egress.Policy;
using Egress.Proxy;
using Egress.Tunnel;

namespace Egress.Tests.Gateway;

/// <summary>
/// A real <see cref="TunnelGateway"/> on a Unix socket in a temp directory, driven by raw tunnel requests; the
/// destinations are loopback servers (127.0.0.1 is internal, so policies list it explicitly).
/// </summary>
public sealed class TunnelGatewayTests
{
    private static readonly TimeSpan HangGuard = TimeSpan.FromSeconds(10);

    private string _directory = null!;
    private TunnelEndpoint _endpoint = null!;
    private LogCapture _logs = null!;
    private TunnelGateway? _gateway;

    [SetUp]
    public void CreateDirectory()
    {
        _directory = Directory.CreateTempSubdirectory("egress-gw-").FullName;
        _endpoint = TunnelEndpoint.Parse($"unix:{_directory}/tunnel.sock");
        _logs = new LogCapture();
    }

    [TearDown]
    public async Task StopGateway()
    {
        if (_gateway is not null)
        {
            await _gateway.DisposeAsync();
        }

        _logs.Dispose();
        Directory.Delete(_directory, recursive: true);
    }

    /// <summary>A library user's trial: <c>Relay = null!</c> or <c>DnsUpstreams = null!</c> threw NullReferenceException,
    /// and <c>Listen = null!</c> constructed and threw it at Start, where the constructor documents ArgumentNullException.</summary>
    [TestCase("Listen")]
    [TestCase("Relay")]
    [TestCase("DnsUpstreams")]
    public void AnOptionSetToNullIsAnArgumentNullExceptionNamingIt(string property)
    {
        var options = new TunnelGatewayOptions
        {
            Listen = property == "Listen" ? null! : _endpoint,
            Relay = property == "Relay" ? null! : Egress.Relay.RelayOptions.Default,
            DnsUpstreams = property == "DnsUpstreams" ? null! : [new IPEndPoint(IPAddress.Loopback, 53)],
        };
        var policy = EgressPolicy.Create(true, ["*"], new AllowlistCache(new AllowlistCacheOptions()));

        var error = Assert.Throws<ArgumentNullException>(() => new TunnelGateway(options, policy, _logs.Factory));
        Assert.That(error!.ParamName, Is.EqualTo("options." + property));
    }

    // A field trial: the derived stream limit showed only in the first refusal, so nobody could see it before reaching it.
    [TestCase(0)]
    [TestCase(400)]
    public void TheStartLineNamesTheStreamLimitsAndWhereTheyCameFrom(int maxStreams)
    {
        StartGateway(["127.0.0.1"], maxStreams: maxStreams);

        string? limits = _logs.Values(201, "Limits").Single();
        Assert.That(
            limits,
            maxStreams == 0
                ? Does.Match(@"^host\.max_streams = \d+ \(derived from RLIMIT_NOFILE = \d+\), DNS streams at most \d+ per enclave$")
                : Is.EqualTo("host.max_streams = 400, DNS streams at most 50 per enclave"));
    }

    [Test]
    public async Task StreamsRefusedAtTheLimitAreLoggedOnceASecondPerKindWithTheCountHeldBack()
    {
        // An enclave app opening connections in a loop at the parent's stream limit: every stream is answered with the
        // limit, and the log gets a line a second per request kind, so the flood of TCP refusals holds back no DNS one.
        var time = new Microsoft.Extensions.Time.Testing.FakeTimeProvider();
        StartGateway(["127.0.0.1"], maxStreams: 1, time: time);
        using var first = new EchoServer();
        using var later = new EchoServer();
        using Socket held = await TunnelWire.ConnectAsync(_endpoint);
        await TunnelWire.SendAsync(held, TunnelRequest.ForTcp(first.EndPoint));
        Assert.That(await TunnelWire.ReadResponseAsync(held).WaitAsync(HangGuard), Is.EqualTo(new TunnelResponse(TunnelStatus.Ok)));

        var limit = new TunnelResponse(TunnelStatus.Failure, "parent: stream limit reached (host.max_streams = 1)");
        for (var i = 0; i < 3; i++)
        {
            Assert.That((await RequestAsync(TunnelRequest.ForTcp(later.EndPoint))).Response, Is.EqualTo(limit));
        }

        Assert.That((await RequestAsync(TunnelRequest.ForDns())).Response, Is.EqualTo(limit));
        await WaitForEventCountAsync(211, 2);
        time.Advance(TimeSpan.FromSeconds(2)); // the flood has ended: a whole interval after the last line's interval
        await _logs.WaitForEventAsync(16);

        Assert.That(_logs.Values(211, "Kind"), Is.EqualTo(new[] { "TcpConnect", "Dns" }));
        Assert.That(_logs.Values(211, "HeldBack"), Is.EqualTo(new[] { "0", "0" }));
        Assert.That(_logs.Values(16, "HeldBack"), Is.EqualTo(new[] { "2" }), "the two TCP lines held back are counted once no line came for an interval after");
        Assert.That(later.Accepted.IsCompleted, Is.False, "a refused stream dials nothing");
    }

    private async Task WaitForEventCountAsync(int eventId, int count)
    {
        for (var deadline = DateTime.UtcNow + HangGuard; _logs.EventIds.Count(id => id == eventId) < count;)
        {
            Assert.That(DateTime.UtcNow, Is.LessThan(deadline), () => $"{count} lines of event {eventId} expected: {string.Join(" | ", _logs.Lines)}");
            await Task.Delay(10);
        }
    }

    [Test]
    public async Task AllowedDestinationIsAnsweredOkThenRelayedBothWaysWithHalfClose()
    {
        StartGateway(["127.0.0.1"]);
        using var echo = new EchoServer();
        byte[] payload = Encoding.ASCII.GetBytes("sent in the same write as the header");
        byte[] more = new byte[256 * 1024];
        Random.Shared.NextBytes(more);

        using Socket stream = await TunnelWire.ConnectAsync(_endpoint);
        await TunnelWire.SendAsync(stream, TunnelRequest.ForTcp(echo.EndPoint, "echo.example"), payload);
        TunnelResponse response = await TunnelWire.ReadResponseAsync(stream).WaitAsync(HangGuard);
        Task<byte[]> echoed = TunnelWire.ReadToEndAsync(stream);
        await stream.SendAsync(more);
        stream.Shutdown(SocketShutdown.Send);

        Assert.That(response, Is.EqualTo(new TunnelResponse(TunnelStatus.Ok)));
        Assert.That(await echoed.WaitAsync(HangGuard), Is.EqualTo(payload.Concat(more).ToArray()), "echo up to the half-close, then end of stream");
        Assert.That(await echo.Served.WaitAsync(HangGuard), Is.EqualTo(payload.Length + more.Length));
        string total = (payload.Length + more.Length).ToString(System.Globalization.CultureInfo.InvariantCulture);
        Assert.That(
            await _logs.WaitForLineAsync(", connected"),
            Is.EqualTo($"Information: connection to {echo.EndPoint} (for echo.example) allowed: static entry \"127.0.0.1\", connected"));
        await _logs.WaitForEventAsync(210);
        Assert.That((_logs.Values(210, "BytesOut"), _logs.Values(210, "BytesIn")), Is.EqualTo((new[] { total }, new[] { total })));
        Assert.That(_logs.Values(210, "Cause"), Is.EqualTo(new[] { "BothCompleted" }));
    }

    /// <summary>Version 2 early data (docs/tunnel-protocol.md, "Early data"): the application's first bytes as a DATA frame
    /// in the request's send. The status comes first (the echo of those bytes could come no sooner than their relay),
    /// and they are counted with the rest.</summary>
    [Test]
    public async Task AVersion2RequestWithEarlyDataIsAnsweredBeforeTheEarlyBytesAreRelayed()
    {
        StartGateway(["127.0.0.1"]);
        using var echo = new EchoServer();
        byte[] request = new byte[TunnelCodec.MaxRequestLength];
        int length = TunnelCodec.WriteRequest(TunnelRequest.ForTcp(echo.EndPoint).AsVersion2(7), request);

        using Socket stream = await TunnelWire.ConnectAsync(_endpoint);
        await stream.SendAsync((byte[])[.. request.AsSpan(0, length), .. Egress.Tests.Relay.Frames.Data("early"u8)]);
        TunnelResponse response = await TunnelWire.ReadResponseAsync(stream).WaitAsync(HangGuard);
        await stream.SendAsync((byte[])[.. Egress.Tests.Relay.Frames.Data(" and later"u8), .. Egress.Tests.Relay.Frames.End(TunnelEndCause.Fin)]);
        var (echoed, cause) = await Egress.Tests.Relay.Frames.ReadUntilEndAsync(stream).WaitAsync(HangGuard);
        await _logs.WaitForEventAsync(210);

        Assert.Multiple(() =>
        {
            Assert.That(response, Is.EqualTo(new TunnelResponse(TunnelStatus.Ok) { Version = TunnelCodec.Version2 }), "the status before any echo");
            Assert.That((Encoding.ASCII.GetString(echoed), cause), Is.EqualTo(("early and later", (TunnelEndCause?)TunnelEndCause.Fin)));
            Assert.That(_logs.Values(210, "BytesOut"), Is.EqualTo(new[] { "15" }));
        });
    }

    /// <summary>A trial: an app holding 1,500 connections against egress-host's 373 streams took every stream, and every
    /// DNS query of the enclave failed (SERVFAIL) while they were held. The last streams of the limit (an eighth, at most
    /// 8) are kept for DNS and denial reports: a new stream's first connection beyond the rest is refused.</summary>
    [Test]
    public async Task RelayedConnectionsLeaveTheLastStreamsOfTheLimitForDns()
    {
        StartGateway(["127.0.0.1"], maxStreams: 16); // 2 kept
        using var echo = new EchoServer();
        var held = new List<Socket>();
        try
        {
            for (int i = 0; i < 14; i++)
            {
                Socket stream = await TunnelWire.ConnectAsync(_endpoint);
                held.Add(stream);
                await TunnelWire.SendAsync(stream, TunnelRequest.ForTcp(echo.EndPoint));
                Assert.That(await TunnelWire.ReadResponseAsync(stream).WaitAsync(HangGuard), Is.EqualTo(new TunnelResponse(TunnelStatus.Ok)), $"connection {i + 1} of 14");
            }

            (TunnelResponse refused, _) = await RequestAsync(TunnelRequest.ForTcp(echo.EndPoint));
            Assert.That(refused, Is.EqualTo(new TunnelResponse(
                TunnelStatus.Failure, "parent: stream limit reached for relayed connections (host.max_streams = 16): the last 2 streams are kept for DNS and denial reports")));
            Assert.That(ProxyLog.IsParentLimit(refused.Status, refused.Detail), Is.True, "the enclave logs it as a parent's limit, rate-limited");

            using Socket dns = await TunnelWire.ConnectAsync(_endpoint);
            await TunnelWire.SendAsync(dns, TunnelRequest.ForDns());
            Assert.That((await TunnelWire.ReadResponseAsync(dns).WaitAsync(HangGuard)).Status, Is.EqualTo(TunnelStatus.Ok), "a DNS stream takes a kept one");
        }
        finally
        {
            held.ForEach(s => s.Dispose());
        }
    }

    [Test]
    public async Task StreamBeyondTheLimitIsAnsweredWithTheLimitAndAClosedStreamFreesItsPlace()
    {
        StartGateway(["127.0.0.1"], maxStreams: 1);
        using var first = new EchoServer();
        using var later = new EchoServer();
        using Socket held = await TunnelWire.ConnectAsync(_endpoint);
        await TunnelWire.SendAsync(held, TunnelRequest.ForTcp(first.EndPoint));
        Assert.That(await TunnelWire.ReadResponseAsync(held).WaitAsync(HangGuard), Is.EqualTo(new TunnelResponse(TunnelStatus.Ok)));

        (TunnelResponse refused, byte[] rest) = await RequestAsync(TunnelRequest.ForTcp(later.EndPoint));

        Assert.That(refused, Is.EqualTo(new TunnelResponse(TunnelStatus.Failure, "parent: stream limit reached (host.max_streams = 1)")));
        Assert.That(rest, Is.Empty, "the stream ends after the status");
        Assert.That((await _logs.WaitForEventAsync(211)).GetStructuredStateValue("Target"), Is.EqualTo($"{later.EndPoint}"));
        Assert.That(_logs.Lines, Has.Some.StartsWith($"Warning: rejected TcpConnect stream to {later.EndPoint}: stream limit reached"));
        Assert.That(_logs.Values(211, "Reason"), Is.EqualTo(new[] { "stream limit reached (host.max_streams = 1)" }));
        Assert.That(later.Accepted.IsCompleted, Is.False, "a refused stream dials nothing");

        held.Shutdown(SocketShutdown.Send);
        await TunnelWire.ReadToEndAsync(held).WaitAsync(HangGuard);
        // The held stream's handler releases its place just after the relay ends; until then a request is refused.
        TunnelResponse response = refused;
        for (var deadline = DateTime.UtcNow + HangGuard; response.Status != TunnelStatus.Ok && DateTime.UtcNow < deadline;)
        {
            (response, _) = await RequestAsync(TunnelRequest.ForTcp(later.EndPoint));
        }

        Assert.That(response, Is.EqualTo(new TunnelResponse(TunnelStatus.Ok)), "served once the held stream has closed");
    }

    [Test]
    public async Task DestinationNotListedIsDeniedWithTheReason()
    {
        StartGateway(["127.0.0.1", "api.example.com"]);

        (TunnelResponse response, byte[] rest) = await RequestAsync(TunnelRequest.ForTcp(new IPEndPoint(IPAddress.Parse("198.51.100.7"), 443), "api.example.com"));

        Assert.That(response, Is.EqualTo(new TunnelResponse(
            TunnelStatus.DeniedByPolicy, "parent: denied: never learned from an allowed name (the parent could not re-learn the address from its hint: its DNS upstreams refused or were unreachable)")));
        Assert.That(rest, Is.Empty, "the stream ends after the status");
        Assert.That((await _logs.WaitForEventAsync(202)).GetStructuredStateValue("Hint"), Is.EqualTo("api.example.com"));
    }

    [Test]
    public async Task InternalAddressIsDeniedEvenWithAllowAll()
    {
        StartGateway(["*"]);

        (TunnelResponse response, byte[] rest) = await RequestAsync(TunnelRequest.ForTcp(new IPEndPoint(IPAddress.Parse("169.254.169.254"), 80)));

        Assert.That(response, Is.EqualTo(new TunnelResponse(TunnelStatus.DeniedByPolicy, "parent: denied: internal range link-local 169.254.0.0/16 (instance metadata)")));
        Assert.That(rest, Is.Empty);
    }

    [Test]
    public async Task IPv4MappedInternalAddressIsDeniedToo()
    {
        StartGateway(["*"]);

        (TunnelResponse response, _) = await RequestAsync(TunnelRequest.ForTcp(new IPEndPoint(IPAddress.Parse("::ffff:169.254.169.254"), 80)));

        Assert.That(response.Status, Is.EqualTo(TunnelStatus.DeniedByPolicy));
    }

    [Test]
    public async Task ClosedPortIsConnectionRefused()
    {
        StartGateway(["127.0.0.1"]);
        // Bound but not listening: the port stays ours, and the kernel answers a SYN with RST.
        using var bound = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        bound.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        var closed = (IPEndPoint)bound.LocalEndPoint!;

        (TunnelResponse response, byte[] rest) = await RequestAsync(TunnelRequest.ForTcp(closed));

        Assert.That(response, Is.EqualTo(new TunnelResponse(TunnelStatus.ConnectionRefused, "Connection refused")));
        Assert.That(rest, Is.Empty);
        Assert.That((await _logs.WaitForEventAsync(204)).GetStructuredStateValue("Status"), Is.EqualTo("ConnectionRefused"));
    }

    [Test]
    public async Task BroadcastDestinationIsUnreachable()
    {
        // TCP to a broadcast address fails locally with ENETUNREACH: no packet leaves the machine.
        StartGateway(["255.255.255.255"]);

        (TunnelResponse response, _) = await RequestAsync(TunnelRequest.ForTcp(new IPEndPoint(IPAddress.Broadcast, 80)));

        Assert.That(response, Is.EqualTo(new TunnelResponse(TunnelStatus.Unreachable, "Network is unreachable")));
    }

    [Test]
    public async Task DestinationThatNeverAnswersTimesOut()
    {
        StartGateway(["127.0.0.1"], connectTimeout: TimeSpan.FromMilliseconds(200));
        // A listener whose accept queue is full drops further SYNs: a deterministic local blackhole.
        using var full = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        full.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        full.Listen(0);
        var blackhole = (IPEndPoint)full.LocalEndPoint!;
        var fillers = await FillAcceptQueueAsync(blackhole);
        try
        {
            (TunnelResponse response, byte[] rest) = await RequestAsync(TunnelRequest.ForTcp(blackhole));

            Assert.That(response, Is.EqualTo(new TunnelResponse(TunnelStatus.TimedOut, "no answer within 200 ms")));
            Assert.That(rest, Is.Empty);
        }
        finally
        {
            fillers.ForEach(s => s.Dispose());
        }
    }

    [TestCase(new byte[] { 3, 1, 0, 8, 4, 127, 0, 0, 1, 0, 80, 0 }, TunnelStatus.UnsupportedVersion, "invalid request: UnsupportedVersion")]
    [TestCase(new byte[] { 1, 9, 0, 0 }, TunnelStatus.UnsupportedKind, "invalid request: UnsupportedKind")]
    [TestCase(new byte[] { 1, 1, 0xFF, 0xFF }, TunnelStatus.BadRequest, "invalid request: Oversize")]
    [TestCase(new byte[] { 1, 1, 0, 8, 5, 127, 0, 0, 1, 0, 80, 0 }, TunnelStatus.BadRequest, "invalid request: InvalidAddressFamily")]
    [TestCase(new byte[] { 1, 1, 0, 8, 4, 127, 0, 0, 1, 0, 0, 0 }, TunnelStatus.BadRequest, "invalid request: InvalidPort")]
    [TestCase(new byte[] { 1, 1, 0, 9, 4, 127, 0, 0, 1, 0, 80, 0, 0 }, TunnelStatus.BadRequest, "invalid request: LengthMismatch")]
    public async Task MalformedHeaderIsAnsweredWithItsStatusThenClosed(byte[] header, TunnelStatus status, string detail)
    {
        StartGateway(["127.0.0.1"]);
        using Socket stream = await TunnelWire.ConnectAsync(_endpoint);
        await stream.SendAsync(header);

        TunnelResponse response = await TunnelWire.ReadResponseAsync(stream).WaitAsync(HangGuard);
        byte[] rest = await TunnelWire.ReadToEndAsync(stream).WaitAsync(HangGuard);

        Assert.That(response, Is.EqualTo(new TunnelResponse(status, detail)));
        Assert.That(rest, Is.Empty);
    }

    [Test]
    public async Task SlowHeaderIsAnsweredBadRequestAfterTheHeaderTimeoutThenClosed()
    {
        StartGateway(["127.0.0.1"], headerTimeout: TimeSpan.FromMilliseconds(200));
        using Socket stream = await TunnelWire.ConnectAsync(_endpoint);
        await stream.SendAsync(new byte[] { TunnelCodec.Version });

        TunnelResponse response = await TunnelWire.ReadResponseAsync(stream).WaitAsync(HangGuard);
        byte[] rest = await TunnelWire.ReadToEndAsync(stream).WaitAsync(HangGuard);

        Assert.That(response, Is.EqualTo(new TunnelResponse(TunnelStatus.BadRequest, "no complete request within the header timeout")));
        Assert.That(rest, Is.Empty);
        Assert.That((await _logs.WaitForEventAsync(207)).GetStructuredStateValue("TimeoutMs"), Is.EqualTo("200"));
    }

    [Test]
    public async Task StreamsClosedBeforeARequestDoNotDisturbTheGateway()
    {
        StartGateway(["127.0.0.1"]);
        using (await TunnelWire.ConnectAsync(_endpoint))
        {
        }

        using (Socket partial = await TunnelWire.ConnectAsync(_endpoint))
        {
            await partial.SendAsync(new byte[] { 1, 1, 0 });
            partial.Shutdown(SocketShutdown.Send);
            Assert.That(await TunnelWire.ReadToEndAsync(partial).WaitAsync(HangGuard), Is.Empty, "no answer to a truncated header");
        }

        using var echo = new EchoServer();
        (TunnelResponse response, _) = await RequestAsync(TunnelRequest.ForTcp(echo.EndPoint));

        Assert.That(response.Status, Is.EqualTo(TunnelStatus.Ok));
        await _logs.WaitForEventAsync(208);
        Assert.That(_logs.EventIds, Has.None.EqualTo(12), "no handler failed");
    }

    [Test]
    public async Task StopAbortsLiveStreamsAfterTheDrainAndResetsTheDestination()
    {
        StartGateway(["127.0.0.1"], drain: TimeSpan.FromMilliseconds(100));
        using var echo = new EchoServer();
        using Socket stream = await TunnelWire.ConnectAsync(_endpoint);
        await TunnelWire.SendAsync(stream, TunnelRequest.ForTcp(echo.EndPoint));
        Assert.That((await TunnelWire.ReadResponseAsync(stream).WaitAsync(HangGuard)).Status, Is.EqualTo(TunnelStatus.Ok));
        await echo.Accepted.WaitAsync(HangGuard);

        await _gateway!.StopAsync().WaitAsync(HangGuard);

        var error = Assert.ThrowsAsync<SocketException>(async () => await echo.Served.WaitAsync(HangGuard));
        Assert.That(error!.SocketErrorCode, Is.EqualTo(SocketError.ConnectionReset), "the destination sees RST, not a clean end");
        Assert.That((await _logs.WaitForEventAsync(13)).GetStructuredStateValue("Count"), Is.EqualTo("1"));
        Assert.That((await _logs.WaitForEventAsync(210)).GetStructuredStateValue("Cause"), Is.EqualTo("Cancelled"));
        using var late = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        Assert.That(() => late.Connect(_endpoint.EndPoint), Throws.InstanceOf<SocketException>(), "no longer accepting");
    }

    [TestCase(SocketError.ConnectionRefused, TunnelStatus.ConnectionRefused)]
    [TestCase(SocketError.NetworkUnreachable, TunnelStatus.Unreachable)]
    [TestCase(SocketError.HostUnreachable, TunnelStatus.Unreachable)]
    [TestCase(SocketError.NetworkDown, TunnelStatus.Unreachable)]
    [TestCase(SocketError.HostDown, TunnelStatus.Unreachable)]
    [TestCase(SocketError.AddressNotAvailable, TunnelStatus.Unreachable)]
    [TestCase(SocketError.TimedOut, TunnelStatus.TimedOut)]
    [TestCase(SocketError.AccessDenied, TunnelStatus.Failure)]
    [TestCase(SocketError.ConnectionReset, TunnelStatus.Failure)]
    public void DialerMapsSocketErrorsToStatuses(SocketError error, TunnelStatus status) =>
        Assert.That(DestinationDialer.StatusFor(error), Is.EqualTo(status));

    private static async Task<List<Socket>> FillAcceptQueueAsync(IPEndPoint listener)
    {
        var connected = new List<Socket>();
        for (int i = 0; i < 16; i++)
        {
            var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            connected.Add(socket);
            using var timeout = new CancellationTokenSource(TimeSpan.FromMilliseconds(300));
            try
            {
                await socket.ConnectAsync(listener, timeout.Token);
            }
            catch (OperationCanceledException)
            {
                return connected;
            }
        }

        Assert.Fail("the accept queue never filled up");
        return connected;
    }

    private void StartGateway(
        string[] destinations, TimeSpan? headerTimeout = null, TimeSpan? connectTimeout = null, TimeSpan? drain = null, int maxStreams = 0,
        TimeProvider? time = null)
    {
        var policy = EgressPolicy.Create(true, destinations, new AllowlistCache(new AllowlistCacheOptions()));
        var options = new TunnelGatewayOptions
        {
            Listen = _endpoint,
            HeaderTimeout = headerTimeout ?? TimeSpan.FromSeconds(5),
            ConnectTimeout = connectTimeout ?? TimeSpan.FromSeconds(5),
            ShutdownDrain = drain ?? TimeSpan.FromSeconds(5),
            MaxStreams = maxStreams,
            Relay = new Egress.Relay.RelayOptions { TimeProvider = time ?? TimeProvider.System },
            // Never this machine's resolvers: a hint's re-learning asked them (off the machine) for api.example.com.
            DnsUpstreams = [new IPEndPoint(IPAddress.Loopback, 9)],
        };
        _gateway = new TunnelGateway(options, policy, _logs.Factory);
        _gateway.Start();
    }

    private async Task<(TunnelResponse Response, byte[] Remainder)> RequestAsync(TunnelRequest request)
    {
        using Socket stream = await TunnelWire.ConnectAsync(_endpoint);
        await TunnelWire.SendAsync(stream, request);
        TunnelResponse response = await TunnelWire.ReadResponseAsync(stream).WaitAsync(HangGuard);
        if (response.Status == TunnelStatus.Ok)
        {
            return (response, []);
        }

        return (response, await TunnelWire.ReadToEndAsync(stream).WaitAsync(HangGuard));
    }
}
