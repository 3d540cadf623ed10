using Egress.Configuration;
using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Reflection;
using Egress.Connections;
using Egress.Diagnostics;
using Egress.Gateway;
using Egress.Policy;
using Egress.Relay;
using Egress.Sockets;
using Egress.Tests.Diagnostics;
using Egress.Tests.Relay;
using Egress.Tunnel;
using Microsoft.Extensions.Diagnostics.Metrics.Testing;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;

namespace Egress.Tests.Gateway;

/// <summary>
/// The parent's side of stream reuse (docs/tunnel-protocol.md, "Stream reuse"): a real <see cref="TunnelGateway"/> on
/// a Unix socket, the enclave's half written by hand (requests, DATA and END frames), loopback echo destinations and a
/// FakeTimeProvider for the idle limit between requests.
/// </summary>
/// <remarks>Run twice: with the library's defaults, and as egress-host runs: <see cref="RelayOptions.EndOnEpollThread"/>
/// (a clean relay's end and the next request's refusal stay on the epoll thread) and
/// <see cref="TunnelGatewayOptions.HandlersOnAcceptThread"/> (a new stream's handler starts on the accepting thread).</remarks>
[TestFixture(false)]
[TestFixture(true)]
public sealed class TunnelStreamReuseTests(bool endOnEpollThread)
{
    private static readonly TimeSpan HangGuard = TimeSpan.FromSeconds(10);

    private string _directory = null!;
    private TunnelEndpoint _endpoint = null!;
    private TelemetryProbe _probe = null!;
    private MetricCollector<long> _reuses = null!;
    private FakeTimeProvider _time = null!;
    private TunnelGateway? _gateway;

    [SetUp]
    public void SetUp()
    {
        _directory = Directory.CreateTempSubdirectory("egress-reuse-").FullName;
        _endpoint = TunnelEndpoint.Parse($"unix:{_directory}/tunnel.sock");
        _probe = new TelemetryProbe(TunnelSide.Host);
        _reuses = new MetricCollector<long>(_probe.Meters, EgressMetrics.MeterName, "egress.tunnel.reuses");
        _time = new FakeTimeProvider();
    }

    [TearDown]
    public async Task TearDown()
    {
        if (_gateway is not null)
        {
            await _gateway.DisposeAsync();
        }

        _reuses.Dispose();
        _probe.Dispose();
        Directory.Delete(_directory, recursive: true);
    }

    [Test]
    public async Task AStreamWhoseConnectionEndedCleanCarriesTheNextRequestDecidedAndLoggedAlike()
    {
        StartGateway();
        using var first = new EchoServer();
        using var second = new EchoServer();
        using Socket stream = await _endpoint.ConnectAsync(CancellationToken.None);

        var one = await CleanConnectionAsync(stream, first.EndPoint, 1, "first"u8.ToArray());
        var two = await CleanConnectionAsync(stream, second.EndPoint, 2, "second"u8.ToArray());
        await _probe.WaitForEventAsync(210);
        await WaitUntilAsync(() => _probe.EventIds.Count(id => id == 210) == 2);

        Assert.Multiple(() =>
        {
            Assert.That(one, Is.EqualTo(("first", (TunnelEndCause?)TunnelEndCause.Fin)));
            Assert.That(two, Is.EqualTo(("second", (TunnelEndCause?)TunnelEndCause.Fin)), "the second request on the same stream was served");
            Assert.That(_probe.EventIds, Is.EqualTo(new[] { 201, 220, 251, 203, 210, 203, 210 }), "each request connected and closed like one on a new stream");
            Assert.That(_probe.Connections, Is.EqualTo(new[] { ("allowed", "static_entry"), ("allowed", "static_entry") }));
            Assert.That(_probe.TunnelErrors, Is.Empty);
            Assert.That(_reuses.GetMeasurementSnapshot().Sum(m => m.Value), Is.EqualTo(1));
        });
    }

    /// <summary>
    /// What waits for an idle relayed stream's whole life, one state machine each (issue 15: idle RSS per relayed
    /// connection): the listener's RunAsync (the task it tracks, no wrapper task around it), then the handler's
    /// HandleAsync, which awaits the relay itself. Before, a wrapper (72 B) and RunAsync (336 B, counted in a heap
    /// snapshot of 9,338 connections) waited there too, and later ConnectAndRelayAsync (320 B) between HandleAsync and
    /// the relay: reading, deciding, dialling and answering the request hold no layer for the relay's life.
    /// </summary>
    [Test]
    public async Task AnIdleRelayedStreamWaitsInTwoMethodsAboveTheRelay()
    {
        StartGateway();
        using var echo = new EchoServer();
        using Socket stream = await _endpoint.ConnectAsync(CancellationToken.None);
        await TunnelWire.SendAsync(stream, TunnelRequest.ForTcp(echo.EndPoint).AsVersion2(1));
        Assert.That((await TunnelWire.ReadResponseAsync(stream).WaitAsync(HangGuard)).Status, Is.EqualTo(TunnelStatus.Ok));
        IReadOnlyList<string> chain = [];
        var deadline = DateTime.UtcNow + HangGuard;
        while (!chain.Contains("FinishFramedAsync") && DateTime.UtcNow < deadline)
        {
            // Until the handler's task is tracked, its entry is a placeholder (ConnectionListener.Reserve), and the
            // status may reach this test first: the entry is read again on every turn, not once.
            await Task.Delay(5);
            chain = LiveConnections(_gateway!) is [Task tracked] ? AwaitChain.Of(tracked) : [];
        }

        TestContext.Out.WriteLine(string.Join(" -> ", chain));
        Assert.That(chain.Take(3), Is.EqualTo(new[] { "RunAsync", "HandleAsync", "FinishFramedAsync" }), string.Join(" -> ", chain));
    }

    /// <summary>
    /// What a pooled stream keeps on the parent while it waits for its next request (issue 15: idle memory; the enclave
    /// keeps a few such streams open for its whole life). It waits for readability holding no buffer: the 4 KiB it reads a
    /// request into is rented only once the stream is readable. Checked in each waiting method's state machine, and as the
    /// managed heap retained per waiting stream over many, after a full collection.
    /// </summary>
    [Test]
    [NonParallelizable] // 200 waiting streams at once: the process-wide waiter count and heap other fixtures read
    public async Task AStreamWaitingForItsNextRequestHoldsNoBuffer()
    {
        const int Streams = 200;
        // Lines and measurements go nowhere: the probe's would keep a record of each connection.
        using var meters = new TestMeterFactory();
        StartGateway(loggerFactory: NullLoggerFactory.Instance, metrics: new EgressMetrics(meters, TunnelSide.Host));
        using var echo = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        echo.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        echo.Listen();
        var echoEndPoint = (IPEndPoint)echo.LocalEndPoint!;
        var echoing = EchoEachAsync(echo);
        var streams = new List<Socket>(Streams + 1);
        try
        {
            streams.Add(await _endpoint.ConnectAsync(CancellationToken.None));
            await CleanConnectionAsync(streams[0], echoEndPoint, 1, "warm"u8.ToArray()); // first use: code and shared state
            await WaitUntilAsync(() => WaitingForTheNextRequest() == 1);
            long before = FramedRelayAllocationTests.LiveBytes();
            for (int i = 1; i <= Streams; i++)
            {
                streams.Add(await _endpoint.ConnectAsync(CancellationToken.None));
                await CleanConnectionAsync(streams[i], echoEndPoint, (ulong)i + 1, "one"u8.ToArray()); // one at a time
            }

            await WaitUntilAsync(() => WaitingForTheNextRequest() == Streams + 1);
            long perStream = (FramedRelayAllocationTests.LiveBytes() - before) / Streams;
            TestContext.Out.WriteLine($"{perStream} B retained per stream waiting for its next request (both ends' sockets included)");

            var waits = LiveConnections(_gateway!).Select(AwaitChain.MachinesOf)
                .Select(chain => chain.Single(machine => machine.GetType().Name.Contains("NextRequestAsync", StringComparison.Ordinal)))
                .ToList();
            Assert.Multiple(() =>
            {
                Assert.That(waits, Has.Count.EqualTo(Streams + 1), "every stream is open, waiting for its next request");
                Assert.That(waits.Select(wait => AwaitChain.Local(wait, "head")), Has.All.Null, "no waiting stream holds its request buffer");
                // 3,800-7,000 B measured, with either fixture's switches, as what ran before in the process varies (the
                // sockets of both ends, the handler's state machines, the idle limit's timer and registrations); about
                // 14,000 B with the request buffer rented before the wait. A coarse guard against a larger buffer held
                // while waiting: the request buffer itself is the assertion above.
                Assert.That(perStream, Is.LessThan(12_000), $"{perStream} B retained per waiting stream");
            });
        }
        finally
        {
            foreach (Socket stream in streams)
            {
                stream.Dispose();
            }

            echo.Dispose();
            await echoing.WaitAsync(HangGuard);
        }
    }

    /// <summary>How many of the gateway's streams wait for their next request.</summary>
    private int WaitingForTheNextRequest() =>
        LiveConnections(_gateway!).Count(task => AwaitChain.Of(task).Contains("NextRequestAsync"));

    /// <summary>Echoes each connection <paramref name="listener"/> accepts, one after the other, and half-closes after
    /// its client's half-close; ends when the listener is closed.</summary>
    private static async Task EchoEachAsync(Socket listener)
    {
        byte[] buffer = new byte[256];
        while (true)
        {
            Socket accepted;
            try
            {
                accepted = await listener.AcceptAsync();
            }
            catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
            {
                return;
            }

            using (accepted)
            {
                for (int read; (read = await accepted.ReceiveAsync(buffer)) > 0;)
                {
                    await accepted.SendAsync(buffer.AsMemory(0, read));
                }

                accepted.Shutdown(SocketShutdown.Send);
            }
        }
    }

    [Test]
    public async Task AStreamWhoseDestinationClosedFirstCarriesTheNextRequest()
    {
        // An HTTP server answering "Connection: close" (nginx in benchmarks/run.sh's http section): it reads the
        // request, answers and closes before the application does, so END(FIN) goes to the enclave first.
        StartGateway();
        using var server = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        server.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        server.Listen();
        var serving = AnswerAndCloseAsync(server);
        using var echo = new EchoServer();
        using Socket stream = await _endpoint.ConnectAsync(CancellationToken.None);
        await TunnelWire.SendAsync(stream, TunnelRequest.ForTcp((IPEndPoint)server.LocalEndPoint!).AsVersion2(1));
        Assert.That((await TunnelWire.ReadResponseAsync(stream).WaitAsync(HangGuard)).Status, Is.EqualTo(TunnelStatus.Ok));
        await stream.SendAsync(Frames.Data("GET"u8));

        var answered = await Frames.ReadUntilEndAsync(stream).WaitAsync(HangGuard);
        await serving.WaitAsync(HangGuard);
        await stream.SendAsync(Frames.End(TunnelEndCause.Fin)); // the application closes after the answer
        var next = await CleanConnectionAsync(stream, echo.EndPoint, 2, "next"u8.ToArray());
        await WaitUntilAsync(() => _probe.EventIds.Count(id => id == 210) == 2);

        Assert.Multiple(() =>
        {
            Assert.That(answered, Is.EqualTo(("200"u8.ToArray(), (TunnelEndCause?)TunnelEndCause.Fin)), "the answer, then the destination's FIN");
            Assert.That(next, Is.EqualTo(("next", (TunnelEndCause?)TunnelEndCause.Fin)), "the next request rode the same stream");
            Assert.That(_probe.Logs.Lines.Where(line => line.Contains(" closed: ")), Has.All.Contains("BothCompleted (END sent FIN, received FIN)"));
            Assert.That(_reuses.GetMeasurementSnapshot().Sum(m => m.Value), Is.EqualTo(1));
        });
    }

    /// <summary>
    /// A reused stream's next request is read, checked and dialled on the epoll thread that saw it; one refused there
    /// (denied, or its destination refused) is answered with its status and its line is written from the thread pool,
    /// where a logger that blocks (the library's caller chooses it) stalls no other socket's wake-ups; on that epoll
    /// thread where the process's loggers never block (<see cref="RelayOptions.EndOnEpollThread"/>). Report mode's
    /// would-deny line always leaves first (a flood of them is what that mode is for).
    /// </summary>
    [TestCase(true, EgressMode.Enforce, TestName = "{m}(denied)")]
    [TestCase(false, EgressMode.Enforce, TestName = "{m}(connect refused)")]
    [TestCase(false, EgressMode.Report, TestName = "{m}(report mode: would deny, then connect refused)")]
    public async Task ANextRequestRefusedIsAnsweredAndItsLineWrittenOffTheEpollThreadsUnlessAllowed(bool denied, EgressMode mode)
    {
        var recorder = new EpollThreadRecorder();
        using var loggerFactory = LoggerFactory.Create(builder => builder.AddProvider(recorder).SetMinimumLevel(LogLevel.Debug));
        using var echo = new EchoServer();
        // Report mode: only the echo server's port is allowed, so a closed port of the same address is would-denied (a
        // Warning line), dialled, and refused. (Loopback is not this parent's here: an entry naming one of its own
        // addresses on one port does not open its other ports, in report mode neither.)
        StartGateway(loggerFactory: loggerFactory, mode: mode, destinations: mode == EgressMode.Report ? $"127.0.0.1:{echo.EndPoint.Port}" : "127.0.0.1",
            parentAddresses: mode == EgressMode.Report ? () => [("eth0", IPAddress.Parse("198.51.100.50"))] : null);
        using Socket stream = await _endpoint.ConnectAsync(CancellationToken.None);
        await CleanConnectionAsync(stream, echo.EndPoint, 1, "first"u8.ToArray());
        await WaitUntilAsync(() => recorder.Lines.Any(line => line.EventId == 210));
        await Task.Delay(50); // the gateway waits for the next request: its wake-up is the epoll thread's

        IPEndPoint refused = denied ? new IPEndPoint(IPAddress.Parse("127.0.0.2"), 7) : ClosedLoopbackPort();
        await TunnelWire.SendAsync(stream, TunnelRequest.ForTcp(refused).AsVersion2(2));
        var response = await TunnelWire.ReadResponseAsync(stream).WaitAsync(HangGuard);
        int afterAnswer = await stream.ReceiveAsync(new byte[1], SocketFlags.None).WaitAsync(HangGuard);
        int eventId = denied ? 202 : 204;
        await WaitUntilAsync(() => recorder.Lines.Any(line => line.EventId == eventId));

        Assert.Multiple(() =>
        {
            Assert.That(response.Status, Is.EqualTo(denied ? TunnelStatus.DeniedByPolicy : TunnelStatus.ConnectionRefused));
            Assert.That(afterAnswer, Is.Zero, "a refused request ends the stream after its status");
            var refusalLines = recorder.Lines.Where(line => line.EventId == eventId).Select(line => line.OnEpollThread).ToList();
            Assert.That(refusalLines, Has.Count.EqualTo(1), "the refusal's line");
            if (!endOnEpollThread || mode != EgressMode.Report)
            {
                // Report mode with the switch: the would-deny line moved the request to the pool, and the dial's
                // failure comes back on an epoll thread or not, as the connect fails at once or a moment later.
                Assert.That(refusalLines, Is.EqualTo(new[] { endOnEpollThread }), "where the refusal's line is written");
            }
            Assert.That(recorder.Lines.Where(line => line.EventId == 460).Select(line => line.OnEpollThread),
                Is.EqualTo(mode == EgressMode.Report ? new[] { false } : Array.Empty<bool>()), "report mode's would-deny line too");
        });
    }

    /// <summary>
    /// A relayed connection's end (its Closed line, the destination's close, the wait for the stream's next request) runs
    /// on the epoll thread its relay ended on only when the process allows it (<see cref="RelayOptions.EndOnEpollThread"/>:
    /// egress-host, whose logger never blocks); by default from the pool. Either way the stream carries the next request.
    /// </summary>
    [Test]
    public async Task ARelayedConnectionsEndStaysOnItsEpollThreadOnlyWhenAllowed()
    {
        var recorder = new EpollThreadRecorder();
        using var loggerFactory = LoggerFactory.Create(builder => builder.AddProvider(recorder).SetMinimumLevel(LogLevel.Debug));
        StartGateway(loggerFactory: loggerFactory);
        using var first = new EchoServer(); // an echo server serves one connection
        using var second = new EchoServer();
        using Socket stream = await _endpoint.ConnectAsync(CancellationToken.None);

        var one = await CleanConnectionAsync(stream, first.EndPoint, 1, "first"u8.ToArray());
        var two = await CleanConnectionAsync(stream, second.EndPoint, 2, "second"u8.ToArray());
        await WaitUntilAsync(() => recorder.Lines.Count(line => line.EventId == 210) == 2);

        Assert.Multiple(() =>
        {
            Assert.That(one.Echoed, Is.EqualTo("first"));
            Assert.That(two.Echoed, Is.EqualTo("second"), "the stream carried the next request");
            Assert.That(recorder.Lines.Where(line => line.EventId == 210).Select(line => line.OnEpollThread),
                Is.EqualTo(new[] { endOnEpollThread, endOnEpollThread }), "where each Closed line was written");
        });
    }

    /// <summary>
    /// The wait for a reused stream's next request reads what is there: bytes past the request in that read (its early
    /// data, docs/tunnel-protocol.md) go to the relay, and a request that arrives in pieces is read whole.
    /// </summary>
    [TestCase(true)]
    [TestCase(false)]
    public async Task ANextRequestWithFramesBehindItOrInPiecesLosesNothing(bool framesBehind)
    {
        StartGateway();
        using var first = new EchoServer();
        using var echo = new EchoServer();
        using Socket stream = await _endpoint.ConnectAsync(CancellationToken.None);
        await CleanConnectionAsync(stream, first.EndPoint, 1, "first"u8.ToArray());

        byte[] request = Request(TunnelRequest.ForTcp(echo.EndPoint).AsVersion2(2));
        byte[] frames = [.. Frames.Data("second"u8), .. Frames.End(TunnelEndCause.Fin)];
        if (framesBehind)
        {
            await stream.SendAsync((byte[])[.. request, .. frames]); // 35 bytes: all in the first read
        }
        else
        {
            await stream.SendAsync(request.AsMemory(0, 3)); // not even the prefix
            await Task.Delay(50);
            await stream.SendAsync(request.AsMemory(3));
        }

        var response = await TunnelWire.ReadResponseAsync(stream).WaitAsync(HangGuard);
        if (!framesBehind)
        {
            await stream.SendAsync(frames);
        }

        var (echoed, cause) = await Frames.ReadUntilEndAsync(stream).WaitAsync(HangGuard);
        Assert.Multiple(() =>
        {
            Assert.That(response.Status, Is.EqualTo(TunnelStatus.Ok));
            Assert.That(System.Text.Encoding.ASCII.GetString(echoed), Is.EqualTo("second"));
            Assert.That(cause, Is.EqualTo(TunnelEndCause.Fin));
        });
    }

    /// <summary>A reused stream's next request of any length (up to a 253-byte host hint) is read whole, and one shorter
    /// than another is not mistaken for more (the wait read 64 bytes at most before early data).</summary>
    [TestCase(0)]
    [TestCase(44)]
    [TestCase(45)]
    [TestCase(253)]
    public async Task ANextRequestOfAnyLengthIsReadWhole(int hintLength)
    {
        StartGateway();
        using var first = new EchoServer();
        using var echo = new EchoServer();
        using Socket stream = await _endpoint.ConnectAsync(CancellationToken.None);
        await CleanConnectionAsync(stream, first.EndPoint, 1, "first"u8.ToArray());

        string? hint = hintLength == 0 ? null : string.Concat(Enumerable.Repeat("a.", 127))[..(hintLength - 1)] + "z";
        await TunnelWire.SendAsync(stream, TunnelRequest.ForTcp(echo.EndPoint, hint).AsVersion2(2));
        var response = await TunnelWire.ReadResponseAsync(stream).WaitAsync(HangGuard);
        await stream.SendAsync((byte[])[.. Frames.Data("second"u8), .. Frames.End(TunnelEndCause.Fin)]);
        var (echoed, cause) = await Frames.ReadUntilEndAsync(stream).WaitAsync(HangGuard);

        Assert.Multiple(() =>
        {
            Assert.That(Request(TunnelRequest.ForTcp(echo.EndPoint, hint).AsVersion2(2)), Has.Length.EqualTo(20 + hintLength), "the request's length");
            Assert.That(response.Status, Is.EqualTo(TunnelStatus.Ok));
            Assert.That(System.Text.Encoding.ASCII.GetString(echoed), Is.EqualTo("second"));
            Assert.That(cause, Is.EqualTo(TunnelEndCause.Fin));
        });
    }

    /// <summary>The enclave closing a stream kept for reuse wakes the gateway's wait on an epoll thread; the line saying
    /// so (Debug) and the close are done from the pool.</summary>
    [Test]
    public async Task AnIdleStreamClosedByTheEnclaveIsLoggedAndClosedOffTheEpollThreads()
    {
        var recorder = new EpollThreadRecorder();
        using var loggerFactory = LoggerFactory.Create(builder => builder.AddProvider(recorder).SetMinimumLevel(LogLevel.Debug));
        using var echo = new EchoServer();
        StartGateway(loggerFactory: loggerFactory);
        using (Socket stream = await _endpoint.ConnectAsync(CancellationToken.None))
        {
            await CleanConnectionAsync(stream, echo.EndPoint, 1, "only"u8.ToArray());
            await WaitUntilAsync(() => recorder.Lines.Any(line => line.EventId == 210));
            await Task.Delay(50); // the gateway waits for the next request
        }

        await WaitUntilAsync(() => recorder.Lines.Any(line => line.EventId == 231));
        Assert.That(recorder.Lines.Where(line => line.EventId == 231).Select(line => line.OnEpollThread), Is.EqualTo(new[] { false }));
    }

    [Test]
    public async Task TheNextRequestReadWithTheEndFrameIsNotLost()
    {
        StartGateway();
        using var first = new EchoServer();
        using var second = new EchoServer();
        using Socket stream = await _endpoint.ConnectAsync(CancellationToken.None);
        await TunnelWire.SendAsync(stream, TunnelRequest.ForTcp(first.EndPoint).AsVersion2(1));
        Assert.That((await TunnelWire.ReadResponseAsync(stream).WaitAsync(HangGuard)).Status, Is.EqualTo(TunnelStatus.Ok));

        // END(FIN) and the next request in one send: the parent's relay reads them in one receive.
        byte[] next = Request(TunnelRequest.ForTcp(second.EndPoint).AsVersion2(2));
        await stream.SendAsync((byte[])[.. Frames.Data("x"u8), .. Frames.End(TunnelEndCause.Fin), .. next]);
        var echoed = await Frames.ReadUntilEndAsync(stream).WaitAsync(HangGuard);
        var response = await TunnelWire.ReadResponseAsync(stream).WaitAsync(HangGuard);

        Assert.Multiple(() =>
        {
            Assert.That(echoed, Is.EqualTo(("x"u8.ToArray(), (TunnelEndCause?)TunnelEndCause.Fin)));
            Assert.That(response.Status, Is.EqualTo(TunnelStatus.Ok), "the request that came with the END frame was answered");
        });
    }

    [Test]
    public async Task AnIdleStreamIsKeptUpToTheIdleLimitThenClosedQuietly()
    {
        StartGateway();
        using var echo = new EchoServer();
        using Socket stream = await _endpoint.ConnectAsync(CancellationToken.None);
        await CleanConnectionAsync(stream, echo.EndPoint, 1, "a"u8.ToArray());
        await _probe.WaitForEventAsync(210);
        // The idle limit's timer is armed when the handler waits for the next request, which may come after the log line:
        // advancing the clock before that (a loaded CI run did) moved the limit out of reach and the test hung.
        await WaitUntilAsync(() => WaitingForTheNextRequest() == 1);

        _time.Advance(TunnelStreamHandler.DefaultIdleBetweenRequests - TimeSpan.FromSeconds(1));
        await Task.Delay(100);
        bool openBefore = !stream.Poll(0, SelectMode.SelectRead);
        _time.Advance(TimeSpan.FromSeconds(1));
        SocketError end = await SocketIo.ReadUntilEndAsync(stream).WaitAsync(HangGuard);
        await _probe.WaitForEventAsync(231);

        Assert.Multiple(() =>
        {
            Assert.That(openBefore, Is.True, "still open just before the limit");
            Assert.That(end, Is.EqualTo(SocketError.Success), "closed with FIN once idle for the limit");
            Assert.That(_probe.Logs.Lines.Last(), Does.Contain("idle for 60 s"));
            Assert.That(_probe.TunnelErrors, Is.Empty, "a normal end, not a failure");
            Assert.That(_probe.Connections, Has.Count.EqualTo(1));
        });
    }

    [Test]
    public async Task TheEnclaveClosingAnIdleStreamIsANormalEnd()
    {
        StartGateway();
        using var echo = new EchoServer();
        Socket stream = await _endpoint.ConnectAsync(CancellationToken.None);
        await CleanConnectionAsync(stream, echo.EndPoint, 1, "a"u8.ToArray());
        await _probe.WaitForEventAsync(210);

        stream.Dispose();
        await _probe.WaitForEventAsync(231);

        Assert.Multiple(() =>
        {
            Assert.That(_probe.EventIds, Is.EqualTo(new[] { 201, 220, 251, 203, 210, 231 }), "no closed-before-request or failure line");
            Assert.That(_probe.Logs.Lines.Last(), Does.Contain("closed by the enclave"));
            Assert.That(_probe.TunnelErrors, Is.Empty);
        });
    }

    [TestCase((byte)TunnelEndCause.Reset)]
    [TestCase((byte)TunnelEndCause.Error)]
    public async Task AStreamWhoseConnectionWasAbortedIsClosedNotReused(byte code)
    {
        var cause = (TunnelEndCause)code;
        StartGateway();
        using var echo = new EchoServer();
        using Socket stream = await _endpoint.ConnectAsync(CancellationToken.None);
        await TunnelWire.SendAsync(stream, TunnelRequest.ForTcp(echo.EndPoint).AsVersion2(1));
        Assert.That((await TunnelWire.ReadResponseAsync(stream).WaitAsync(HangGuard)).Status, Is.EqualTo(TunnelStatus.Ok));

        await stream.SendAsync(Frames.End(cause));
        var answered = await Frames.ReadUntilEndAsync(stream).WaitAsync(HangGuard);
        SocketError end = await SocketIo.ReadUntilEndAsync(stream).WaitAsync(HangGuard);
        await _probe.WaitForEventAsync(210);

        Assert.Multiple(() =>
        {
            Assert.That(answered.Cause, Is.Not.EqualTo(TunnelEndCause.Fin));
            Assert.That(end, Is.EqualTo(SocketError.Success), "closed after the aborted connection");
            Assert.That(_probe.EventIds, Does.Not.Contain(231), "never waited for another request");
        });
    }

    [Test]
    public async Task AVersion1StreamIsClosedAfterItsConnection()
    {
        StartGateway();
        using var echo = new EchoServer();
        using Socket stream = await _endpoint.ConnectAsync(CancellationToken.None);
        await TunnelWire.SendAsync(stream, TunnelRequest.ForTcp(echo.EndPoint), [1, 2]);
        Assert.That((await TunnelWire.ReadResponseAsync(stream).WaitAsync(HangGuard)).Status, Is.EqualTo(TunnelStatus.Ok));
        stream.Shutdown(SocketShutdown.Send);

        Assert.That(await TunnelWire.ReadToEndAsync(stream).WaitAsync(HangGuard), Is.EqualTo(new byte[] { 1, 2 }), "raw bytes, then the end of the stream");
        await _probe.WaitForEventAsync(210);
        Assert.That(_probe.EventIds, Does.Not.Contain(231));
    }

    [Test]
    public async Task AStopClosesStreamsWaitingBetweenRequestsAtOnce()
    {
        StartGateway(shutdownDrain: TimeSpan.FromMinutes(10)); // on the fake clock: the drain never expires by itself
        using var echo = new EchoServer();
        using Socket stream = await _endpoint.ConnectAsync(CancellationToken.None);
        await CleanConnectionAsync(stream, echo.EndPoint, 1, "a"u8.ToArray());
        await _probe.WaitForEventAsync(210);

        await _gateway!.StopAsync().WaitAsync(HangGuard);

        Assert.Multiple(async () =>
        {
            Assert.That(await SocketIo.ReadUntilEndAsync(stream).WaitAsync(HangGuard), Is.EqualTo(SocketError.Success));
            Assert.That(_probe.Logs.Lines.Last(line => line.Contains("between requests")), Does.Contain("stopping"));
        });
    }

    /// <summary>One version 2 connection on <paramref name="stream"/> to an echo server, ended clean: request, Ok,
    /// DATA + END(FIN), then the echo and the parent's END.</summary>
    private static async Task<(string Echoed, TunnelEndCause? Cause)> CleanConnectionAsync(Socket stream, IPEndPoint echo, ulong id, byte[] payload)
    {
        await TunnelWire.SendAsync(stream, TunnelRequest.ForTcp(echo).AsVersion2(id));
        var response = await TunnelWire.ReadResponseAsync(stream).WaitAsync(HangGuard);
        Assert.That(response.Status, Is.EqualTo(TunnelStatus.Ok));
        await stream.SendAsync((byte[])[.. Frames.Data(payload), .. Frames.End(TunnelEndCause.Fin)]);
        var (echoed, cause) = await Frames.ReadUntilEndAsync(stream).WaitAsync(HangGuard);
        return (System.Text.Encoding.ASCII.GetString(echoed), cause);
    }

    /// <summary>One connection to <paramref name="server"/>: reads the 3-byte request, answers "200" and closes.</summary>
    private static async Task AnswerAndCloseAsync(Socket server)
    {
        using Socket accepted = await server.AcceptAsync();
        byte[] request = new byte[3];
        for (int read = 0; read < request.Length;)
        {
            read += await accepted.ReceiveAsync(request.AsMemory(read));
        }

        await accepted.SendAsync("200"u8.ToArray());
    }

    private static byte[] Request(TunnelRequest request)
    {
        byte[] bytes = new byte[TunnelCodec.MaxRequestLength];
        return bytes.AsSpan(0, TunnelCodec.WriteRequest(request, bytes)).ToArray();
    }

    private static async Task WaitUntilAsync(Func<bool> condition)
    {
        for (var deadline = DateTime.UtcNow + HangGuard; !condition() && DateTime.UtcNow < deadline;)
        {
            await Task.Delay(10);
        }
    }

    /// <summary>The tasks the gateway's listener tracks, one per live stream (its private fields).</summary>
    private static List<Task> LiveConnections(TunnelGateway gateway)
    {
        var listener = (ConnectionListener)typeof(TunnelGateway).GetField("_listener", BindingFlags.Instance | BindingFlags.NonPublic)!.GetValue(gateway)!;
        var connections = (ConcurrentDictionary<long, Task>)typeof(ConnectionListener)
            .GetField("_connections", BindingFlags.Instance | BindingFlags.NonPublic)!.GetValue(listener)!;
        return [.. connections.Values];
    }

    private static IPEndPoint ClosedLoopbackPort()
    {
        using var probe = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        probe.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return (IPEndPoint)probe.LocalEndPoint!; // bound, never listening, and closed: connects are refused
    }

    private void StartGateway(
        TimeSpan? shutdownDrain = null, ILoggerFactory? loggerFactory = null, EgressMode mode = EgressMode.Enforce, string destinations = "127.0.0.1",
        Func<IEnumerable<(string Interface, IPAddress Address)>>? parentAddresses = null, EgressMetrics? metrics = null)
    {
        var policy = EgressPolicy.Create(true, [destinations], new AllowlistCache(new AllowlistCacheOptions()), mode);
        var options = new TunnelGatewayOptions
        {
            Listen = _endpoint,
            Relay = new RelayOptions { TimeProvider = _time, EndOnEpollThread = endOnEpollThread },
            Metrics = metrics ?? _probe.Metrics,
            DnsUpstreams = [new IPEndPoint(IPAddress.Loopback, 9)],
            ShutdownDrain = shutdownDrain ?? TimeSpan.FromSeconds(5),
            HandlersOnAcceptThread = endOnEpollThread,
        };
        _gateway = new TunnelGateway(options, policy, loggerFactory ?? _probe.LoggerFactory, connect: null, parentAddresses);
        _gateway.Start();
    }

    /// <summary>Each line's event id and whether it was written on one of <see cref="SocketReadiness"/>'s epoll threads.</summary>
    private sealed class EpollThreadRecorder : ILoggerProvider
    {
        private readonly ConcurrentQueue<(int EventId, bool OnEpollThread)> _lines = new();

        public IReadOnlyList<(int EventId, bool OnEpollThread)> Lines => [.. _lines];

        public ILogger CreateLogger(string categoryName) => new Recorder(_lines);

        public void Dispose()
        {
        }

        private sealed class Recorder(ConcurrentQueue<(int EventId, bool OnEpollThread)> lines) : ILogger
        {
            public IDisposable? BeginScope<TState>(TState state)
                where TState : notnull => null;

            public bool IsEnabled(LogLevel logLevel) => true;

            public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
                lines.Enqueue((eventId.Id, SocketReadiness.OnEpollThread));
        }
    }
}
