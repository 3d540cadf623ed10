using System.Net;
using System.Net.Sockets;
using System.Text;
using Egress.Tunnel;
using Microsoft.Extensions.Time.Testing;

namespace Egress.Tests.Tunnel;

/// <summary>
/// The public tunnel client against a scripted parent on a <c>unix:</c> endpoint: each way a connect can end is a
/// result, the request on the wire is the one the parent's codec reads, and bytes sent with the status are kept.
/// </summary>
public sealed class TunnelClientTests
{
    private static readonly IPEndPoint Destination = new(IPAddress.Parse("203.0.113.7"), 443);

    private string _directory = null!;
    private TunnelEndpoint _endpoint = null!;

    [SetUp]
    public void SetUp()
    {
        _directory = Directory.CreateTempSubdirectory("egress-client-").FullName;
        _endpoint = TunnelEndpoint.Parse("unix:" + Path.Combine(_directory, "t.sock"));
    }

    [TearDown]
    public void TearDown() => Directory.Delete(_directory, recursive: true);

    [Test]
    public async Task Ok_GivesTheConnectedStream_AndTheBytesThatCameWithTheStatus()
    {
        using var listener = _endpoint.Listen();
        var parent = Task.Run(async () =>
        {
            using var stream = await listener.AcceptAsync();
            var (result, request) = await TunnelHandshake.ReadRequestAsync(stream, CancellationToken.None);
            var status = new byte[TunnelCodec.MaxResponseLength];
            int length = TunnelCodec.WriteResponse(new TunnelResponse(TunnelStatus.Ok), status);
            await stream.SendAsync(status.AsMemory(0, length).ToArray().Concat("220 banner\r\n"u8.ToArray()).ToArray());
            var echo = new byte[5];
            int read = await stream.ReceiveAsync(echo);
            await stream.SendAsync(echo.AsMemory(0, read));
            return (result, request);
        });

        var client = new TunnelClient(_endpoint);
        var connected = await client.ConnectAsync(Destination, "api.example.test", CancellationToken.None);
        using var socket = connected.Socket;

        Assert.That(connected.Error, Is.EqualTo(TunnelConnectError.None), connected.ToString());
        Assert.That(connected.Status, Is.EqualTo(TunnelStatus.Ok));
        Assert.That(Encoding.ASCII.GetString(connected.ReceivedAfterStatus.Span), Is.EqualTo("220 banner\r\n"));
        await socket!.SendAsync("hello"u8.ToArray());
        var reply = new byte[5];
        Assert.That(await socket.ReceiveAsync(reply), Is.EqualTo(5));
        Assert.That(Encoding.ASCII.GetString(reply), Is.EqualTo("hello"));

        var (readResult, sent) = await parent;
        Assert.That(readResult, Is.EqualTo(TunnelReadResult.Complete));
        Assert.That(sent.Kind, Is.EqualTo(TunnelRequestKind.TcpConnect));
        Assert.That(sent.Destination, Is.EqualTo(Destination));
        Assert.That(sent.HostHint, Is.EqualTo("api.example.test"));
    }

    /// <summary>
    /// The relay skips setting non-blocking mode on the enclave's framed streams when the client says they are
    /// (<see cref="TunnelClient.StreamsNonBlocking"/>): with its own connect they are, so a stream it hands out must be; a
    /// test's injected connect may hand out anything, so then the client claims nothing.
    /// </summary>
    [Test]
    [Platform("Linux")]
    public async Task AFramedStreamIsNonBlockingWhenTheClientSaysSo()
    {
        using var listener = _endpoint.Listen();
        var parent = Task.Run(async () =>
        {
            using var stream = await listener.AcceptAsync();
            var (_, request, _) = await TunnelHandshake.ReadRequestAsync(stream, ReadOnlyMemory<byte>.Empty, CancellationToken.None);
            await TunnelHandshake.SendResponseAsync(stream, new TunnelResponse(TunnelStatus.Ok) { Version = request.Version }, CancellationToken.None);
            await stream.ReceiveAsync(new byte[1]); // until the client closes
        });

        var client = new TunnelClient(_endpoint);
        var connected = await client.ConnectFramedAsync(Destination, null, default, CancellationToken.None);
        using (var socket = connected.Socket)
        {
            Assert.Multiple(() =>
            {
                Assert.That(connected.Error, Is.EqualTo(TunnelConnectError.None), connected.ToString());
                Assert.That(connected.Version, Is.EqualTo(TunnelCodec.Version2));
                Assert.That(client.StreamsNonBlocking, Is.True);
                Assert.That(Egress.Tests.Sockets.SocketNativeTests.IsNonBlocking(socket!), Is.True, "the stream's descriptor");
            });
        }

        await parent.WaitAsync(TimeSpan.FromSeconds(10));
        var injected = new TunnelClient(_endpoint, null, null, _ => throw new SocketException((int)SocketError.ConnectionRefused));
        Assert.That(injected.StreamsNonBlocking, Is.False);
    }

    [Test]
    public async Task ParentRefuses_IsRefused_WithTheStatusAndDetail()
    {
        using var listener = _endpoint.Listen();
        var parent = AnswerAsync(listener, new TunnelResponse(TunnelStatus.DeniedByPolicy, "never learned from an allowed name"));

        var result = await new TunnelClient(_endpoint).ConnectAsync(Destination, null, CancellationToken.None);
        await parent;

        Assert.That(result.Error, Is.EqualTo(TunnelConnectError.Refused));
        Assert.That(result.Status, Is.EqualTo(TunnelStatus.DeniedByPolicy));
        Assert.That(result.Detail, Is.EqualTo("never learned from an allowed name"));
        Assert.That(result.Socket, Is.Null);
    }

    [Test]
    public async Task NothingListens_IsTunnelUnavailable()
    {
        var result = await new TunnelClient(_endpoint).ConnectAsync(Destination, null, CancellationToken.None);

        Assert.That(result.Error, Is.EqualTo(TunnelConnectError.TunnelUnavailable));
        Assert.That(result.Detail, Is.Not.Empty);
        Assert.That(result.Socket, Is.Null);
    }

    [Test]
    public async Task OutOfDescriptors_NamesTheOpenFilesLimitNotJustDotNetsText()
    {
        // .NET says "Too many open files in system" for EMFILE too; the detail names the limit that was hit.
        var client = new TunnelClient(_endpoint, TimeSpan.FromSeconds(5), TimeProvider.System, _ => throw new SocketException((int)SocketError.TooManyOpenSockets));

        var result = await client.ConnectAsync(Destination, null, CancellationToken.None);

        Assert.That(result.Error, Is.EqualTo(TunnelConnectError.TunnelUnavailable));
        Assert.That(result.Detail, Does.StartWith("out of descriptors: the ").And.Contain("open-files limit (").And.Contain("RLIMIT_NOFILE = "));
    }

    [Test]
    public async Task ParentClosesWithoutAnswering_IsTunnelUnavailable()
    {
        using var listener = _endpoint.Listen();
        var parent = Task.Run(async () =>
        {
            using var stream = await listener.AcceptAsync();
            await TunnelHandshake.ReadRequestAsync(stream, CancellationToken.None);
        });

        var result = await new TunnelClient(_endpoint).ConnectAsync(Destination, null, CancellationToken.None);
        await parent;

        Assert.That(result.Error, Is.EqualTo(TunnelConnectError.TunnelUnavailable), "no answer came: not a bad one");
        Assert.That(result.Detail, Is.EqualTo(TunnelClient.ClosedUnanswered));
    }

    /// <summary>egress-host beyond its stream limit resets the streams it cannot answer (its request unread): a trial's
    /// enclave logged 456 bare "unavailable: Connection reset by peer" lines; the detail now says what a reset before
    /// any answer means.</summary>
    [Test]
    public async Task ParentResetsWithoutAnswering_IsTunnelUnavailableAndSaysWhy()
    {
        using var listener = _endpoint.Listen();
        var parent = Task.Run(async () =>
        {
            using var stream = await listener.AcceptAsync();
            while (stream.Available == 0)
            {
                await Task.Delay(5); // the request arrives and stays unread: closing then resets the stream
            }

            stream.Close();
        });

        var result = await new TunnelClient(_endpoint).ConnectAsync(Destination, null, CancellationToken.None);
        await parent;

        Assert.That(result.Error, Is.EqualTo(TunnelConnectError.TunnelUnavailable));
        Assert.That(result.Detail, Is.EqualTo($"Connection reset by peer: {TunnelClient.ResetUnanswered}"));
    }

    /// <summary>A parent that sent part of a status and closed did answer, badly.</summary>
    [Test]
    public async Task ParentClosesAfterPartOfAStatus_IsBadResponse()
    {
        using var listener = _endpoint.Listen();
        var parent = Task.Run(async () =>
        {
            using var stream = await listener.AcceptAsync();
            await TunnelHandshake.ReadRequestAsync(stream, CancellationToken.None);
            await stream.SendAsync(new byte[] { TunnelCodec.Version });
        });

        var result = await new TunnelClient(_endpoint).ConnectAsync(Destination, null, CancellationToken.None);
        await parent;

        Assert.That(result.Error, Is.EqualTo(TunnelConnectError.BadResponse));
        Assert.That(result.Detail, Does.StartWith(nameof(TunnelReadResult.TruncatedStream) + ": the peer closed the stream in the middle of its answer"));
    }

    [Test]
    public async Task UnknownStatusByte_IsBadResponse()
    {
        using var listener = _endpoint.Listen();
        var parent = Task.Run(async () =>
        {
            using var stream = await listener.AcceptAsync();
            await TunnelHandshake.ReadRequestAsync(stream, CancellationToken.None);
            await stream.SendAsync(new byte[] { TunnelCodec.Version, 0xEE, 0 });
        });

        var result = await new TunnelClient(_endpoint).ConnectAsync(Destination, null, CancellationToken.None);
        await parent;

        Assert.That(result.Error, Is.EqualTo(TunnelConnectError.BadResponse));
        Assert.That(result.Detail, Does.StartWith(nameof(TunnelReadResult.UnknownStatus) + ": the answer's status byte is not a status"));
    }

    /// <summary>A library user's trial: a peer answering <c>HTTP/1.1 400</c> gave the detail "UnsupportedVersion" alone,
    /// which reads like the parent's status UnsupportedVersion.</summary>
    [Test]
    public async Task APeerThatIsNotAnEgressParentIsSaidToBeOne()
    {
        using var listener = _endpoint.Listen();
        var parent = Task.Run(async () =>
        {
            using var stream = await listener.AcceptAsync();
            await stream.ReceiveAsync(new byte[512], SocketFlags.None);
            await stream.SendAsync("HTTP/1.1 400 Bad Request\r\n\r\n"u8.ToArray());
        });

        var result = await new TunnelClient(_endpoint).ConnectAsync(Destination, null, CancellationToken.None);
        await parent;

        Assert.That(result.Error, Is.EqualTo(TunnelConnectError.BadResponse));
        Assert.That(result.Detail, Does.StartWith("UnsupportedVersion: the answer does not start with a tunnel protocol version").And.Contain("not an Egress parent"));
    }

    [Test]
    public async Task ParentSilent_IsStatusTimedOut_WhenTheClockPassesTheTimeout()
    {
        using var listener = _endpoint.Listen();
        var accepted = listener.AcceptAsync();
        var clock = new FakeTimeProvider();
        var client = new TunnelClient(_endpoint, TimeSpan.FromSeconds(10), clock);

        var connecting = client.ConnectAsync(Destination, null, CancellationToken.None);
        using var stream = await accepted;
        await TunnelHandshake.ReadRequestAsync(stream, CancellationToken.None); // the request arrived; no answer
        clock.Advance(TimeSpan.FromSeconds(9));
        Assert.That(connecting.IsCompleted, Is.False, "answered before the timeout passed");
        clock.Advance(TimeSpan.FromSeconds(1));
        var result = await connecting.WaitAsync(TimeSpan.FromSeconds(30));

        Assert.That(result.Error, Is.EqualTo(TunnelConnectError.StatusTimedOut));
        Assert.That(result.Socket, Is.Null);
        // A library trial read "StatusTimedOut" with no detail.
        Assert.That(result.Detail, Is.EqualTo($"the tunnel stream to {_endpoint} was open, but no status came within 10000 ms"));
    }

    [Test]
    public async Task TunnelConnectThatHangs_IsTunnelTimedOut_NamingTheParentAndTheWait()
    {
        var clock = new FakeTimeProvider();
        var client = new TunnelClient(_endpoint, TimeSpan.FromSeconds(3), clock, async cancellationToken =>
        {
            await Task.Delay(Timeout.Infinite, cancellationToken); // a VSOCK connect the parent never accepts
            throw new InvalidOperationException("not reached");
        });

        var connecting = client.ConnectAsync(Destination, null, CancellationToken.None);
        clock.Advance(TimeSpan.FromSeconds(3));
        var result = await connecting.WaitAsync(TimeSpan.FromSeconds(30));

        Assert.That(result.Error, Is.EqualTo(TunnelConnectError.TunnelTimedOut));
        Assert.That(result.Detail, Is.EqualTo($"opening a tunnel stream to {_endpoint} did not finish within 3000 ms"));
        Assert.That(result.ToString(), Does.StartWith("TunnelTimedOut: opening a tunnel stream to "));
    }

    [Test]
    public async Task FailedAttempt_ClosesTheStream_SoTheParentStopsAtOnce()
    {
        using var listener = _endpoint.Listen();
        var accepted = listener.AcceptAsync();
        var clock = new FakeTimeProvider();
        var connecting = new TunnelClient(_endpoint, TimeSpan.FromSeconds(1), clock).ConnectAsync(Destination, null, CancellationToken.None);
        using var stream = await accepted;
        await TunnelHandshake.ReadRequestAsync(stream, CancellationToken.None);
        clock.Advance(TimeSpan.FromSeconds(1));
        await connecting.WaitAsync(TimeSpan.FromSeconds(30));

        // A unix stream socket reports the peer's close as end of stream (0), never data.
        var buffer = new byte[1];
        Assert.That(await stream.ReceiveAsync(buffer).WaitAsync(TimeSpan.FromSeconds(30)), Is.EqualTo(0));
    }

    [Test]
    public async Task CallerCancels_Throws_AndIsNotReportedAsATimeout()
    {
        using var listener = _endpoint.Listen();
        var accepted = listener.AcceptAsync();
        using var cancel = new CancellationTokenSource();
        var connecting = new TunnelClient(_endpoint).ConnectAsync(Destination, null, cancel.Token);
        using var stream = await accepted;
        await TunnelHandshake.ReadRequestAsync(stream, CancellationToken.None);

        await cancel.CancelAsync();

        Assert.That(async () => await connecting, Throws.InstanceOf<OperationCanceledException>());
    }

    [TestCase(0, null)]
    [TestCase(443, "bad name!")]
    [TestCase(443, "name_with_é")]
    public void InvalidArguments_Throw(int port, string? hostName)
    {
        var client = new TunnelClient(_endpoint);
        Assert.That(
            async () => await client.ConnectAsync(new IPEndPoint(Destination.Address, port), hostName, CancellationToken.None),
            Throws.InstanceOf<ArgumentException>());
    }

    [Test]
    public void NonPositiveStatusTimeout_Throws() =>
        Assert.That(() => new TunnelClient(_endpoint, TimeSpan.Zero), Throws.InstanceOf<ArgumentOutOfRangeException>());

    /// <summary>A library user's trial: 100 days was accepted, then every ConnectAsync threw ArgumentOutOfRangeException
    /// from the timer ('delay'), where failures are results.</summary>
    [TestCase(100 * 24 * 3600)]
    [TestCase(-1)] // TimeSpan.MaxValue
    public void AStatusTimeoutATimerCannotWaitIsRefusedAtConstruction(long seconds)
    {
        TimeSpan timeout = seconds < 0 ? TimeSpan.MaxValue : TimeSpan.FromSeconds(seconds);
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => new TunnelClient(_endpoint, timeout));
        Assert.That(error!.ParamName, Is.EqualTo("statusTimeout"));
    }

    [Test]
    public void TheLongestStatusTimeoutATimerCanWaitIsAccepted() =>
        Assert.That(new TunnelClient(_endpoint, TimeSpan.FromMilliseconds(int.MaxValue)).StatusTimeout, Is.EqualTo(TimeSpan.FromMilliseconds(int.MaxValue)));

    [Test]
    public async Task TheProxysFramedConnectGoesOnOnTheEpollThreadThePublicConnectOnThePool()
    {
        using var listener = _endpoint.Listen();
        var parent = Task.Run(async () =>
        {
            for (int i = 0; i < 2; i++)
            {
                using var stream = await listener.AcceptAsync();
                var (_, request) = await TunnelHandshake.ReadRequestAsync(stream, CancellationToken.None);
                await Task.Delay(50); // the status is waited for, not already there
                await TunnelHandshake.SendResponseAsync(stream, new TunnelResponse(TunnelStatus.Ok) { Version = request.Version }, CancellationToken.None);
            }
        });

        var client = new TunnelClient(_endpoint);
        // ConfigureAwait(false): NUnit's synchronization context would post the continuation elsewhere.
        var framed = await client.ConnectFramedAsync(Destination, null, default, CancellationToken.None).ConfigureAwait(false);
        bool framedOnEpoll = Egress.Sockets.SocketReadiness.OnEpollThread;
        await Task.Yield(); // leave the epoll thread before the next connect
        framed.Socket?.Dispose();
        var plain = await client.ConnectAsync(Destination, null, CancellationToken.None).ConfigureAwait(false);
        bool plainOnEpoll = Egress.Sockets.SocketReadiness.OnEpollThread;
        plain.Socket?.Dispose();
        await parent.WaitAsync(TimeSpan.FromSeconds(10));

        Assert.Multiple(() =>
        {
            Assert.That(framed.Error, Is.EqualTo(TunnelConnectError.None), framed.ToString());
            Assert.That(framedOnEpoll, Is.True, "the proxy's set-up continues where the status arrived, no hand-off");
            Assert.That(plain.Error, Is.EqualTo(TunnelConnectError.None), plain.ToString());
            Assert.That(plainOnEpoll, Is.False, "a library caller's code never runs on an epoll thread");
        });
    }

    private static Task AnswerAsync(Socket listener, TunnelResponse response) => Task.Run(async () =>
    {
        using var stream = await listener.AcceptAsync();
        await TunnelHandshake.ReadRequestAsync(stream, CancellationToken.None);
        await TunnelHandshake.SendResponseAsync(stream, response, CancellationToken.None);
    });
}
