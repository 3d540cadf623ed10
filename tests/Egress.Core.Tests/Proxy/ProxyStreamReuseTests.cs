using Egress.Configuration;
using System.Net;
using System.Net.Sockets;
using System.Reflection;
using Egress.Diagnostics;
using Egress.Interception;
using Egress.Policy;
using Egress.Proxy;
using Egress.Relay;
using Egress.Sockets;
using Egress.Tests.Diagnostics;
using Egress.Tests.Relay;
using Egress.Tests.Sockets;
using Egress.Tunnel;
using Microsoft.Extensions.Diagnostics.Metrics.Testing;
using Microsoft.Extensions.Time.Testing;

namespace Egress.Tests.Proxy;

/// <summary>
/// The enclave's side of stream reuse (docs/tunnel-protocol.md, "Stream reuse"): a <see cref="ProxyConnectionHandler"/>
/// with a <see cref="TunnelStreamPool"/>, a scripted version 2 parent on a loopback listener, loopback application
/// sockets and a FakeTimeProvider for the pool's expiry. Each test counts the tunnel streams opened.
/// </summary>
public sealed class ProxyStreamReuseTests
{
    private static readonly TimeSpan HangGuard = TimeSpan.FromSeconds(10);
    private static readonly TimeSpan Expiry = TimeSpan.FromSeconds(20);
    private static readonly IPEndPoint Listed = new(IPAddress.Parse("198.51.100.20"), 443);

    private TelemetryProbe _probe = null!;
    private MetricCollector<long> _reuses = null!;
    private FakeTimeProvider _time = null!;
    private Socket _parentListener = null!;
    private TunnelStreamPool _pool = null!;
    private int _tunnelsOpened;

    [SetUp]
    public void SetUp()
    {
        _probe = new TelemetryProbe(TunnelSide.Enclave);
        _reuses = new MetricCollector<long>(_probe.Meters, EgressMetrics.MeterName, "egress.tunnel.reuses");
        _time = new FakeTimeProvider();
        _parentListener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        _parentListener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        _parentListener.Listen();
        _pool = new TunnelStreamPool(2, Expiry, _time);
        _tunnelsOpened = 0;
    }

    [TearDown]
    public void TearDown()
    {
        _pool.Dispose();
        _parentListener.Dispose();
        _reuses.Dispose();
        _probe.Dispose();
    }

    [Test]
    public async Task AStreamThatEndedCleanIsPooledAndCarriesTheNextConnection()
    {
        using var handler = Handler();
        using Socket parent = await CleanConnectionAsync(handler, parent: null);
        int pooledAfterFirst = _pool.Count;

        await CleanConnectionAsync(handler, parent);

        Assert.Multiple(() =>
        {
            Assert.That(pooledAfterFirst, Is.EqualTo(1), "returned, not closed");
            Assert.That(_tunnelsOpened, Is.EqualTo(1), "the second connection opened no stream");
            Assert.That(_pool.Count, Is.EqualTo(1), "and went back again");
            Assert.That(_reuses.GetMeasurementSnapshot().Sum(m => m.Value), Is.EqualTo(1));
            Assert.That(_probe.Connections, Is.EqualTo(new[] { ("allowed", "static_entry"), ("allowed", "static_entry") }));
        });
    }

    [Test]
    public async Task AStreamWhoseDestinationClosedFirstIsPooledAndCarriesTheNextConnection()
    {
        // An HTTP server answering "Connection: close" (nginx in benchmarks/run.sh's http section): the parent's
        // END(FIN) comes before the application has closed; the application reads the answer, then closes.
        using var handler = Handler();
        var (app, accepted) = await AppPairAsync();
        Socket parent;
        using (app)
        {
            var handling = handler.HandleAsync(accepted, CancellationToken.None);
            parent = await AcceptTunnelAsync();
            var (read, _) = await TunnelHandshake.ReadRequestAsync(parent, CancellationToken.None).AsTask().WaitAsync(HangGuard);
            Assert.That(read, Is.EqualTo(TunnelReadResult.Complete));
            await SendOkAsync(parent);
            await app.SendAsync("GET"u8.ToArray());
            await parent.SendAsync((byte[])[.. Frames.Data("200"u8), .. Frames.End(TunnelEndCause.Fin)]);
            Assert.That(await SocketIo.ReadToEndAsync(app).WaitAsync(HangGuard), Is.EqualTo("200"u8.ToArray()), "the answer, then FIN");
            app.Shutdown(SocketShutdown.Send);
            Assert.That(await Frames.ReadUntilEndAsync(parent).WaitAsync(HangGuard), Is.EqualTo(("GET"u8.ToArray(), (TunnelEndCause?)TunnelEndCause.Fin)));
            var result = await handling.WaitAsync(HangGuard);
            Assert.That(result.Relay?.FirstCause, Is.EqualTo(RelayShutdownCause.BothCompleted));
        }

        using (parent)
        {
            int pooledAfterFirst = _pool.Count;
            await CleanConnectionAsync(handler, parent);

            Assert.Multiple(() =>
            {
                Assert.That(pooledAfterFirst, Is.EqualTo(1), "returned, not closed");
                Assert.That(_tunnelsOpened, Is.EqualTo(1), "the second connection opened no stream");
                Assert.That(_reuses.GetMeasurementSnapshot().Sum(m => m.Value), Is.EqualTo(1));
            });
        }
    }

    /// <summary>The retry after a stale pooled stream sends the connection's early data again: the parent that closed
    /// the pooled stream never answered, so it relayed none of it (docs/tunnel-protocol.md, "Early data").</summary>
    [Test]
    public async Task APooledStreamTheParentClosesBeforeAnsweringHasItsEarlyDataSentAgainOnTheNewStream()
    {
        using var handler = Handler();
        using Socket stale = await CleanConnectionAsync(handler, parent: null);

        var (app, accepted) = await AppPairAsync();
        using (app)
        {
            await app.SendAsync("GET"u8.ToArray());
            await EarlyDataWire.QueuedAsync(accepted, 3);
            var handling = handler.HandleAsync(accepted, CancellationToken.None);
            var (_, onStale) = await EarlyDataWire.RequestAndEarlyBytesAsync(stale, Frames.Data("GET"u8).Length);
            stale.Shutdown(SocketShutdown.Both);

            using Socket fresh = await AcceptTunnelAsync();
            var (request, onFresh) = await EarlyDataWire.RequestAndEarlyBytesAsync(fresh, Frames.Data("GET"u8).Length);
            await SendOkAsync(fresh);
            app.Shutdown(SocketShutdown.Send);
            var rest = await Frames.ReadUntilEndAsync(fresh).WaitAsync(HangGuard);
            await fresh.SendAsync((byte[])[.. Frames.Data("200"u8), .. Frames.End(TunnelEndCause.Fin)]);
            var result = await handling.WaitAsync(HangGuard);

            Assert.Multiple(() =>
            {
                Assert.That(onStale, Is.EqualTo(Frames.Data("GET"u8)), "sent with the request on the pooled stream");
                Assert.That(onFresh, Is.EqualTo(Frames.Data("GET"u8)), "and again with the retry's");
                Assert.That(request.Version, Is.EqualTo(TunnelCodec.Version2));
                Assert.That(rest, Is.EqualTo((Array.Empty<byte>(), (TunnelEndCause?)TunnelEndCause.Fin)), "nothing relayed twice");
                Assert.That((result.Relay!.BytesAToB, result.Relay.FirstCause), Is.EqualTo((3L, RelayShutdownCause.BothCompleted)));
                Assert.That(_probe.EventIds, Does.Contain(131), "the retry is logged (Debug)");
            });
        }
    }

    [TestCase(false)]
    [TestCase(true)]
    public async Task APooledStreamTheParentClosesBeforeAnsweringIsRetriedOnceOnANewStream(bool reset)
    {
        using var handler = Handler();
        using Socket stale = await CleanConnectionAsync(handler, parent: null);

        var (app, accepted) = await AppPairAsync();
        using (app)
        {
            var handling = handler.HandleAsync(accepted, CancellationToken.None);

            // The race of the parent's idle close: the request was sent on the pooled stream, which then closes unanswered.
            await TunnelHandshake.ReadRequestAsync(stale, CancellationToken.None).AsTask().WaitAsync(HangGuard);
            if (reset)
            {
                SocketReset.Reset(stale);
            }
            else
            {
                stale.Shutdown(SocketShutdown.Both);
            }

            using Socket fresh = await AcceptTunnelAsync();
            await ServeCleanAsync(fresh, app);
            var result = await handling.WaitAsync(HangGuard);

            Assert.Multiple(() =>
            {
                Assert.That(result.Outcome, Is.EqualTo(ConnectionOutcome.Relayed));
                Assert.That(_tunnelsOpened, Is.EqualTo(2));
                Assert.That(_probe.EventIds, Does.Contain(131), "the retry logged at Debug");
                Assert.That(_probe.TunnelErrors, Is.Empty, "not a tunnel failure");
                Assert.That(_reuses.GetMeasurementSnapshot(), Is.Empty, "the connection went on a new stream");
            });
        }
    }

    [Test]
    public async Task TheRetryIsOnlyOnce()
    {
        using var handler = Handler();
        using Socket stale = await CleanConnectionAsync(handler, parent: null);

        var (app, accepted) = await AppPairAsync();
        using (app)
        {
            var handling = handler.HandleAsync(accepted, CancellationToken.None);
            await TunnelHandshake.ReadRequestAsync(stale, CancellationToken.None).AsTask().WaitAsync(HangGuard);
            stale.Shutdown(SocketShutdown.Both);
            using (Socket fresh = await AcceptTunnelAsync())
            {
                await TunnelHandshake.ReadRequestAsync(fresh, CancellationToken.None).AsTask().WaitAsync(HangGuard);
                fresh.Shutdown(SocketShutdown.Both); // a new stream closed unanswered is the parent's failure, not staleness
            }

            var result = await handling.WaitAsync(HangGuard);

            Assert.Multiple(() =>
            {
                Assert.That(result.Outcome, Is.EqualTo(ConnectionOutcome.TunnelUnavailable), "the parent closed it unanswered: it stopped, crashed or is at its limit");
                Assert.That(_tunnelsOpened, Is.EqualTo(2), "no third attempt");
            });
        }
    }

    [Test]
    public async Task ARefusalOnAPooledStreamIsTheConnectionsOutcomeNotARetry()
    {
        using var handler = Handler();
        using Socket parent = await CleanConnectionAsync(handler, parent: null);

        var (app, accepted) = await AppPairAsync();
        using (app)
        {
            var handling = handler.HandleAsync(accepted, CancellationToken.None);
            await TunnelHandshake.ReadRequestAsync(parent, CancellationToken.None).AsTask().WaitAsync(HangGuard);
            await TunnelHandshake.SendResponseAsync(parent, new TunnelResponse(TunnelStatus.DeniedByPolicy, "parent: no") { Version = TunnelCodec.Version2 }, CancellationToken.None);
            var result = await handling.WaitAsync(HangGuard);

            Assert.Multiple(() =>
            {
                Assert.That(result.Outcome, Is.EqualTo(ConnectionOutcome.ParentRefused));
                Assert.That(_tunnelsOpened, Is.EqualTo(1));
                Assert.That(_probe.EventIds, Does.Not.Contain(131));
                Assert.That(_pool.Count, Is.Zero, "a refused stream is not returned");
            });
        }
    }

    [Test]
    public async Task AStreamTheParentClosedWhileIdleIsSkippedWithoutARetry()
    {
        using var handler = Handler();
        Socket closed = await CleanConnectionAsync(handler, parent: null);
        closed.Dispose();
        await Task.Delay(50); // the FIN reaches the pooled stream

        using Socket fresh = await CleanConnectionAsync(handler, parent: null);

        Assert.Multiple(() =>
        {
            Assert.That(_tunnelsOpened, Is.EqualTo(2));
            Assert.That(_probe.EventIds, Does.Not.Contain(131), "found dead when rented: no request was sent on it");
        });
    }

    [TestCase((byte)TunnelEndCause.Reset)]
    [TestCase((byte)TunnelEndCause.Error)]
    [TestCase((byte)TunnelEndCause.Stopping)]
    public async Task AStreamWhoseConnectionWasAbortedIsClosedNotPooled(byte code)
    {
        using var handler = Handler();
        var (app, accepted) = await AppPairAsync();
        using (app)
        {
            var handling = handler.HandleAsync(accepted, CancellationToken.None);
            using Socket parent = await AcceptTunnelAsync();
            await TunnelHandshake.ReadRequestAsync(parent, CancellationToken.None).AsTask().WaitAsync(HangGuard);
            await SendOkAsync(parent);
            await parent.SendAsync(Frames.End((TunnelEndCause)code));
            await Frames.ReadUntilEndAsync(parent).WaitAsync(HangGuard);
            await handling.WaitAsync(HangGuard);

            Assert.Multiple(async () =>
            {
                Assert.That(_pool.Count, Is.Zero);
                Assert.That(await SocketIo.ReadUntilEndAsync(parent).WaitAsync(HangGuard), Is.EqualTo(SocketError.Success), "closed");
            });
        }
    }

    [Test]
    public async Task AVersion1StreamIsNeverPooled()
    {
        using var handler = Handler(TunnelCodec.Version);
        var (app, accepted) = await AppPairAsync();
        using (app)
        {
            var handling = handler.HandleAsync(accepted, CancellationToken.None);
            using Socket parent = await AcceptTunnelAsync();
            var (_, request) = await TunnelHandshake.ReadRequestAsync(parent, CancellationToken.None).AsTask().WaitAsync(HangGuard);
            await TunnelHandshake.SendResponseAsync(parent, new TunnelResponse(TunnelStatus.Ok), CancellationToken.None);
            app.Shutdown(SocketShutdown.Send);
            parent.Shutdown(SocketShutdown.Send);
            await SocketIo.ReadUntilEndAsync(parent).WaitAsync(HangGuard);
            var result = await handling.WaitAsync(HangGuard);

            Assert.Multiple(() =>
            {
                Assert.That(request.Version, Is.EqualTo(TunnelCodec.Version));
                Assert.That(result.Relay!.FirstCause, Is.EqualTo(RelayShutdownCause.BothCompleted));
                Assert.That(_pool.Count, Is.Zero);
            });
        }
    }

    [Test]
    public async Task PooledStreamsAreClosedAfterTheExpiryByTheTrimTimer()
    {
        using var handler = Handler();
        using Socket parent = await CleanConnectionAsync(handler, parent: null);

        _time.Advance(Expiry / 2);
        await Task.Delay(50);
        bool openAtHalf = !parent.Poll(0, SelectMode.SelectRead);
        _time.Advance(Expiry / 2);

        Assert.Multiple(async () =>
        {
            Assert.That(openAtHalf, Is.True);
            Assert.That(await SocketIo.ReadUntilEndAsync(parent).WaitAsync(HangGuard), Is.EqualTo(SocketError.Success), "closed by the trim at the expiry");
            Assert.That(_pool.Count, Is.Zero);
        });
    }

    [Test]
    public async Task DisposingTheHandlerClosesThePooledStreams()
    {
        var handler = Handler();
        using Socket parent = await CleanConnectionAsync(handler, parent: null);

        handler.Dispose();

        Assert.That(await SocketIo.ReadUntilEndAsync(parent).WaitAsync(HangGuard), Is.EqualTo(SocketError.Success));
    }

    [Test]
    public async Task TheProductionHandlersTunnelStreamsNeverGetTheRuntimesAsynchronousContext()
    {
        if (!OperatingSystem.IsLinux())
        {
            Assert.Ignore("the runtime's asynchronous context is avoided on Linux only");
        }

        // The handler egress-enclave runs (EgressProxy's): its tunnel streams, which only its relay reads and writes, are
        // connected without the runtime's connect, whose asynchronous context an idle connection would hold for its life.
        using var handler = new ProxyConnectionHandler(Options(), Policy(), _probe.Logger, _ => Original);
        using Socket parent = await CleanConnectionAsync(handler, parent: null);
        var pool = (TunnelStreamPool)typeof(ProxyConnectionHandler).GetField("_pool", BindingFlags.Instance | BindingFlags.NonPublic)!.GetValue(handler)!;
        using Socket? stream = pool.TryRent();

        Assert.That(stream, Is.Not.Null, "the clean stream was pooled");
        Assert.That(SocketReadinessConnectTests.AsyncContext(stream!), Is.Null, "no runtime asynchronous context on the tunnel stream");
    }

    /// <summary>
    /// One application connection through <paramref name="handler"/>, served by the scripted parent on
    /// <paramref name="parent"/> (null: the stream the handler opens, accepted here) and ended clean both ways.
    /// </summary>
    /// <returns>The parent's end of the stream, still open.</returns>
    private async Task<Socket> CleanConnectionAsync(ProxyConnectionHandler handler, Socket? parent)
    {
        var (app, accepted) = await AppPairAsync();
        using (app)
        {
            var handling = handler.HandleAsync(accepted, CancellationToken.None);
            parent ??= await AcceptTunnelAsync();
            await ServeCleanAsync(parent, app);
            var result = await handling.WaitAsync(HangGuard);
            Assert.That(result.Outcome, Is.EqualTo(ConnectionOutcome.Relayed));
            return parent;
        }
    }

    /// <summary>The parent's part of a clean connection: request, Ok (version 2), the app's bytes up to END(FIN), a reply
    /// and END(FIN); the app sees the reply and a clean end.</summary>
    private static async Task ServeCleanAsync(Socket parent, Socket app)
    {
        var (read, request) = await TunnelHandshake.ReadRequestAsync(parent, CancellationToken.None).AsTask().WaitAsync(HangGuard);
        Assert.That((read, request.Version), Is.EqualTo((TunnelReadResult.Complete, TunnelCodec.Version2)));
        await SendOkAsync(parent);
        await app.SendAsync("ping"u8.ToArray());
        app.Shutdown(SocketShutdown.Send);
        Assert.That(await Frames.ReadUntilEndAsync(parent).WaitAsync(HangGuard), Is.EqualTo(("ping"u8.ToArray(), (TunnelEndCause?)TunnelEndCause.Fin)));
        await parent.SendAsync((byte[])[.. Frames.Data("pong"u8), .. Frames.End(TunnelEndCause.Fin)]);
        Assert.That(await SocketIo.ReadToEndAsync(app).WaitAsync(HangGuard), Is.EqualTo("pong"u8.ToArray()));
    }

    private static Task SendOkAsync(Socket parent) =>
        TunnelHandshake.SendResponseAsync(parent, new TunnelResponse(TunnelStatus.Ok) { Version = TunnelCodec.Version2 }, CancellationToken.None).AsTask();

    private static async Task<(Socket App, Socket Accepted)> AppPairAsync()
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen();
        var app = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await app.ConnectAsync(listener.LocalEndPoint!);
        return (app, await listener.AcceptAsync());
    }

    private async Task<Socket> AcceptTunnelAsync() => await _parentListener.AcceptAsync().WaitAsync(HangGuard);

    private EgressProxyOptions Options() => new()
    {
        Tunnel = TunnelEndpoint.Parse($"tcp://{_parentListener.LocalEndPoint}"),
        StatusTimeout = TimeSpan.FromSeconds(5),
        Relay = new RelayOptions { TimeProvider = _time },
        Metrics = _probe.Metrics,
    };

    private static EgressPolicy Policy() => EgressPolicy.Create(true, [Listed.Address.ToString()], new AllowlistCache(new AllowlistCacheOptions()));

    private static OriginalDestinationResult Original { get; } = new(OriginalDestinationStatus.Redirected, Listed, null);

    private ProxyConnectionHandler Handler(byte version = TunnelCodec.Version2)
    {
        var options = Options();
        return new ProxyConnectionHandler(options, Policy(), _probe.Logger, _ => Original, cancellationToken =>
        {
            Interlocked.Increment(ref _tunnelsOpened);
            return options.Tunnel.ConnectAsync(cancellationToken);
        }, version, _pool);
    }
}
