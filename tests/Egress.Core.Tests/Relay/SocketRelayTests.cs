using System.Net.Sockets;
using System.Security.Cryptography;
using Egress.Relay;
using Egress.Sockets;
using Microsoft.Extensions.Time.Testing;

namespace Egress.Tests.Relay;

/// <summary>client ⇄ (A) relay (B) ⇄ server over real socket pairs; every test both splicing and copying.</summary>
[TestFixture(true)]
[TestFixture(false)]
public sealed class SocketRelayTests(bool splice)
{
    private static readonly TimeSpan HangGuard = TimeSpan.FromSeconds(30);

    private RelayOptions Options { get; } = new() { UseSplice = splice };

    /// <summary>A library user's trial: the same socket on both sides hung, ignoring its cancellation token.</summary>
    [Test]
    public async Task TheSameSocketOnBothSidesIsAnArgumentException()
    {
        using var chain = await Chain.ConnectAsync(SocketTransport.Unix);
        var error = Assert.Throws<ArgumentException>(() => SocketRelay.RunAsync(chain.RelayA, chain.RelayA, Options, CancellationToken.None));
        Assert.That(error!.ParamName, Is.EqualTo("b"));
    }

    /// <summary>A send that had moved part of its bytes when the relay was aborted: they reached the far side, and
    /// were not counted (the count went up after the whole send). Over Unix sockets, what the server can read is
    /// exactly what the relay's sends took. The copying relay failed this; the splicing one counted each splice
    /// already (kept as the same check of it).</summary>
    [Test]
    public async Task AnAbortInTheMiddleOfASendCountsWhatWentOut()
    {
        using var chain = await Chain.ConnectAsync(SocketTransport.Unix);
        using var stop = new CancellationTokenSource();
        Task<RelayResult> relay = chain.RunAsync(Options, stop.Token);
        Task writing = Task.Run(async () =>
        {
            byte[] block = new byte[100_000];
            try
            {
                for (int i = 0; i < 100; i++)
                {
                    await chain.Client.SendAsync(block);
                }
            }
            catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
            {
                // The relay reset the connection, or the test closed it.
            }
        });
        int queued = 0;
        var giveUp = DateTime.UtcNow + HangGuard;
        for (int last = -1; queued == 0 || queued != last;)
        {
            Assert.That(DateTime.UtcNow, Is.LessThan(giveUp), "the server's queue never settled");
            last = queued;
            await Task.Delay(300); // until the server's queue is full and the relay waits in a send
            queued = chain.Server.Available;
        }

        await stop.CancelAsync();
        RelayResult result = await relay.WaitAsync(HangGuard);
        queued = chain.Server.Available;
        chain.Client.Dispose();
        await writing.WaitAsync(HangGuard);

        Assert.Multiple(() =>
        {
            Assert.That(result.FirstCause, Is.EqualTo(RelayShutdownCause.Cancelled));
            Assert.That(result.BytesAToB, Is.EqualTo(queued), "every byte the server's socket holds, and no more");
        });
    }

    [TestCase(SocketTransport.Unix)]
    [TestCase(SocketTransport.Tcp)]
    public async Task BothWaysArriveWholeAndEndCleanly(SocketTransport transport)
    {
        using var chain = await Chain.ConnectAsync(transport);
        byte[] up = DuplexRelayTests.RandomBytes(300_000, seed: 1);
        byte[] down = DuplexRelayTests.RandomBytes(500_000, seed: 2);

        Task<RelayResult> relay = chain.RunAsync(Options);
        (byte[] atServer, byte[] atClient) = await chain.ExchangeAsync(up, [1000, 70_000, 1], down, [65_536]);
        RelayResult result = await relay.WaitAsync(HangGuard);

        Assert.Multiple(() =>
        {
            Assert.That(atServer, Is.EqualTo(up));
            Assert.That(atClient, Is.EqualTo(down));
            Assert.That(result.BytesAToB, Is.EqualTo(up.Length));
            Assert.That(result.BytesBToA, Is.EqualTo(down.Length));
            Assert.That(result.FirstCause, Is.EqualTo(RelayShutdownCause.BothCompleted));
            Assert.That(result.Error, Is.Null);
        });
    }

    [TestCase(true)]
    [TestCase(false)]
    public async Task DataKeepsFlowingTowardsTheSideThatClosedFirst(bool clientClosesFirst)
    {
        using var chain = await Chain.ConnectAsync(SocketTransport.Tcp);
        Socket first = clientClosesFirst ? chain.Client : chain.Server;
        Socket second = clientClosesFirst ? chain.Server : chain.Client;
        byte[] reply = DuplexRelayTests.RandomBytes(1024 * 1024, seed: 3);

        Task<RelayResult> relay = chain.RunAsync(Options);
        await first.SendAsync("question"u8.ToArray());
        first.Shutdown(SocketShutdown.Send);
        byte[] question = await SocketIo.ReadToEndAsync(second).WaitAsync(HangGuard);
        await second.SendAsync(reply);
        second.Shutdown(SocketShutdown.Send);
        byte[] answer = await SocketIo.ReadToEndAsync(first).WaitAsync(HangGuard);
        RelayResult result = await relay.WaitAsync(HangGuard);

        Assert.Multiple(() =>
        {
            Assert.That(question, Is.EqualTo("question"u8.ToArray()));
            Assert.That(answer, Is.EqualTo(reply));
            Assert.That(clientClosesFirst ? result.BytesBToA : result.BytesAToB, Is.EqualTo(reply.Length));
            Assert.That(result.FirstCause, Is.EqualTo(RelayShutdownCause.BothCompleted));
        });
    }

    [TestCase(SocketTransport.Unix)]
    [TestCase(SocketTransport.Tcp)]
    public async Task LargeReplyAfterClientEndOfStreamIsNeverTruncated(SocketTransport transport)
    {
        const int ReplySize = 4 * 1024 * 1024;
        var failures = new List<string>();
        for (int run = 0; run < 30; run++)
        {
            using var chain = await Chain.ConnectAsync(transport);
            chain.Client.ReceiveBufferSize = 32 * 1024; // a small window keeps the tail queued inside the chain
            chain.RelayA.SendBufferSize = 64 * 1024;
            byte[] request = DuplexRelayTests.RandomBytes(1000 + run, seed: run);
            byte[] reply = DuplexRelayTests.RandomBytes(ReplySize, seed: 1000 + run);

            Task<RelayResult> relay = chain.RunAsync(Options);
            (byte[] atServer, byte[] atClient) = await chain.ExchangeAsync(request, [request.Length], reply, [ReplySize], serverWaitsForEnd: true);
            RelayResult result = await relay.WaitAsync(HangGuard);
            chain.DisposeRelaySockets();

            if (!atServer.AsSpan().SequenceEqual(request) || !SHA256.HashData(atClient).AsSpan().SequenceEqual(SHA256.HashData(reply))
                || result.BytesAToB != request.Length || result.BytesBToA != ReplySize || result.FirstCause != RelayShutdownCause.BothCompleted)
            {
                failures.Add($"run {run}: client got {atClient.Length} of {ReplySize} bytes, relay {result}");
            }
        }

        Assert.That(failures, Is.Empty);
    }

    [TestCase(true, RelayShutdownCause.AReadError)]
    [TestCase(false, RelayShutdownCause.BReadError)]
    public async Task ResetOnOneSideResetsTheOtherAndNamesTheSide(bool clientResets, RelayShutdownCause expected)
    {
        using var chain = await Chain.ConnectAsync(SocketTransport.Tcp);
        Task<RelayResult> relay = chain.RunAsync(Options);
        await chain.Server.SendAsync("hello"u8.ToArray());
        Assert.That(await SocketIo.ReadExactlyAsync(chain.Client, 5).WaitAsync(HangGuard), Is.EqualTo("hello"u8.ToArray()));

        SocketReset.Reset(clientResets ? chain.Client : chain.Server);
        SocketError otherEnd = await SocketIo.ReadUntilEndAsync(clientResets ? chain.Server : chain.Client).WaitAsync(HangGuard);
        RelayResult result = await relay.WaitAsync(HangGuard);

        Assert.Multiple(() =>
        {
            Assert.That(otherEnd, Is.EqualTo(SocketError.ConnectionReset), "the other peer must see RST, not a clean FIN");
            Assert.That(result.FirstCause, Is.EqualTo(expected));
            Assert.That(result.Error, Is.InstanceOf<SocketException>());
            Assert.That(result.BytesBToA, Is.EqualTo(5));
        });
    }

    [Test]
    public async Task AHalfCloseAfterTheConnectionWasResetIsIgnoredOnASocketTheRuntimeDidNotConnect()
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 0));
        listener.Listen(1);
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await SocketReadiness.ConnectWithoutContextAsync(socket, listener.LocalEndPoint!, CancellationToken.None).AsTask().WaitAsync(HangGuard);
        SocketReset.Reset(await listener.AcceptAsync().WaitAsync(HangGuard));
        Assert.That(socket.Poll(HangGuard, SelectMode.SelectRead), Is.True, "the reset arrived");

        // The connection is in CLOSE: shutdown(2) fails ENOTCONN, which the runtime ignores only for a socket it knows
        // connected; the relay's half-close (after the other side's FIN) must not turn that into a relay error.
        Assert.That(() => socket.Shutdown(SocketShutdown.Send), Throws.InstanceOf<SocketException>()
            .With.Property(nameof(SocketException.SocketErrorCode)).EqualTo(SocketError.NotConnected));
        Assert.That(() => SocketRelaySession.ShutdownSend(socket), Throws.Nothing);
    }

    [Test]
    public async Task IdleTimeoutResetsBothSidesAndActivityPostponesIt()
    {
        var time = new FakeTimeProvider();
        using var chain = await Chain.ConnectAsync(SocketTransport.Tcp);
        Task<RelayResult> relay = chain.RunAsync(Options with { IdleTimeout = TimeSpan.FromSeconds(30), TimeProvider = time });

        time.Advance(TimeSpan.FromSeconds(20));
        await chain.Client.SendAsync("ping"u8.ToArray());
        Assert.That(await SocketIo.ReadExactlyAsync(chain.Server, 4).WaitAsync(HangGuard), Is.EqualTo("ping"u8.ToArray()));
        time.Advance(TimeSpan.FromSeconds(20)); // 40 s after the start, 20 s after the last byte
        Assert.That(relay.IsCompleted, Is.False);

        time.Advance(TimeSpan.FromSeconds(10));
        RelayResult result = await relay.WaitAsync(HangGuard);
        SocketError client = await SocketIo.ReadUntilEndAsync(chain.Client).WaitAsync(HangGuard);
        SocketError server = await SocketIo.ReadUntilEndAsync(chain.Server).WaitAsync(HangGuard);

        Assert.Multiple(() =>
        {
            Assert.That(result.FirstCause, Is.EqualTo(RelayShutdownCause.IdleTimeout));
            Assert.That(result.Error, Is.Null);
            Assert.That(result.BytesAToB, Is.EqualTo(4));
            Assert.That(result.Duration, Is.EqualTo(TimeSpan.FromSeconds(50)));
            Assert.That(client, Is.EqualTo(SocketError.ConnectionReset));
            Assert.That(server, Is.EqualTo(SocketError.ConnectionReset));
        });
    }

    /// <summary>
    /// The client closes (or exits) and the server never answers nor closes: before, the half-closed relay held its
    /// slot for the whole idle timeout (an hour by default), and a few hundred such connections shut every other
    /// application out of the enclave's connection limit (a red-team trial). Now it ends after the half-closed
    /// timeout without a byte, counted from the half-close.
    /// </summary>
    [Test]
    public async Task AHalfClosedRelayWithoutDataEndsAfterTheHalfClosedTimeout()
    {
        var time = new FakeTimeProvider();
        using var chain = await Chain.ConnectAsync(SocketTransport.Tcp);
        Task<RelayResult> relay = chain.RunAsync(Options with
        {
            IdleTimeout = TimeSpan.FromHours(1), HalfClosedTimeout = TimeSpan.FromSeconds(120), TimeProvider = time,
        });

        time.Advance(TimeSpan.FromSeconds(600)); // open both ways: only the idle timeout applies
        Assert.That(relay.IsCompleted, Is.False);
        chain.Client.Shutdown(SocketShutdown.Send);
        Assert.That(await SocketIo.ReadUntilEndAsync(chain.Server).WaitAsync(HangGuard), Is.EqualTo(SocketError.Success), "the FIN passed on");
        time.Advance(TimeSpan.FromSeconds(119));
        Assert.That(relay.IsCompleted, Is.False);

        time.Advance(TimeSpan.FromSeconds(1));
        RelayResult result = await relay.WaitAsync(HangGuard);
        SocketError client = await SocketIo.ReadUntilEndAsync(chain.Client).WaitAsync(HangGuard);

        Assert.Multiple(() =>
        {
            Assert.That(result.FirstCause, Is.EqualTo(RelayShutdownCause.HalfClosedTimeout));
            Assert.That(result.Error, Is.TypeOf<TimeoutException>().With.Message.Contains("half-closed"));
            Assert.That(result.Duration, Is.EqualTo(TimeSpan.FromSeconds(720)));
            Assert.That(client, Is.EqualTo(SocketError.ConnectionReset));
        });
    }

    [Test]
    public async Task CancellationResetsBothSides()
    {
        using var chain = await Chain.ConnectAsync(SocketTransport.Tcp);
        using var cancel = new CancellationTokenSource();
        Task<RelayResult> relay = chain.RunAsync(Options, cancel.Token);
        await chain.Client.SendAsync("x"u8.ToArray());
        await SocketIo.ReadExactlyAsync(chain.Server, 1).WaitAsync(HangGuard);

        await cancel.CancelAsync();
        RelayResult result = await relay.WaitAsync(HangGuard);

        Assert.Multiple(async () =>
        {
            Assert.That(result.FirstCause, Is.EqualTo(RelayShutdownCause.Cancelled));
            Assert.That(result.Error, Is.Null);
            Assert.That(result.BytesAToB, Is.EqualTo(1));
            Assert.That(await SocketIo.ReadUntilEndAsync(chain.Client).WaitAsync(HangGuard), Is.EqualTo(SocketError.ConnectionReset));
            Assert.That(await SocketIo.ReadUntilEndAsync(chain.Server).WaitAsync(HangGuard), Is.EqualTo(SocketError.ConnectionReset));
        });
    }

    [Test]
    public async Task BytesAlreadyReadAreSentFirstAndCounted()
    {
        using var chain = await Chain.ConnectAsync(SocketTransport.Unix);
        byte[] banner = "220 mail.example ESMTP\r\n"u8.ToArray();
        byte[] early = "EHLO"u8.ToArray();

        // The server's next bytes are already queued when the relay starts: the banner must still come first.
        await chain.Server.SendAsync("250 ok\r\n"u8.ToArray());
        chain.Server.Shutdown(SocketShutdown.Send);
        Task<RelayResult> relay = SocketRelay.RunAsync(chain.RelayA, chain.RelayB, early, banner, Options, CancellationToken.None);
        chain.Client.Shutdown(SocketShutdown.Send);
        byte[] atClient = await SocketIo.ReadToEndAsync(chain.Client).WaitAsync(HangGuard);
        byte[] atServer = await SocketIo.ReadToEndAsync(chain.Server).WaitAsync(HangGuard);
        RelayResult result = await relay.WaitAsync(HangGuard);

        Assert.Multiple(() =>
        {
            Assert.That(atClient, Is.EqualTo("220 mail.example ESMTP\r\n250 ok\r\n"u8.ToArray()));
            Assert.That(atServer, Is.EqualTo(early));
            Assert.That(result.BytesBToA, Is.EqualTo(atClient.Length));
            Assert.That(result.BytesAToB, Is.EqualTo(early.Length));
            Assert.That(result.FirstCause, Is.EqualTo(RelayShutdownCause.BothCompleted));
        });
    }

    [TestCase(SocketTransport.Unix)]
    [TestCase(SocketTransport.Tcp)]
    public async Task BulkBytesGoThroughTheKernelPipeWhenSplicingAndThroughTheProcessOtherwise(SocketTransport transport)
    {
        using var chain = await Chain.ConnectAsync(transport);
        byte[] up = DuplexRelayTests.RandomBytes(8 * 1024 * 1024, seed: 11);
        var session = new SocketRelaySession(chain.RelayA, chain.RelayB, Options);

        Task<RelayResult> relay = session.RunAsync(ReadOnlyMemory<byte>.Empty, ReadOnlyMemory<byte>.Empty, CancellationToken.None);
        (byte[] atServer, byte[] atClient) = await chain.ExchangeAsync(up, [up.Length], [], [1]);
        RelayResult result = await relay.WaitAsync(HangGuard);

        Assert.Multiple(() =>
        {
            Assert.That(SHA256.HashData(atServer), Is.EqualTo(SHA256.HashData(up)));
            Assert.That(atClient, Is.Empty);
            Assert.That(result.BytesAToB, Is.EqualTo(up.Length));
            Assert.That(result.FirstCause, Is.EqualTo(RelayShutdownCause.BothCompleted));
            if (splice)
            {
                // Only the first few KiB after each wake-up, and the head of a full destination, are copied.
                Assert.That(session.SplicedAToB, Is.GreaterThan(up.Length / 2), "most bytes spliced");
                Assert.That(session.SplicedAToB, Is.LessThanOrEqualTo(up.Length));
            }
            else
            {
                Assert.That(session.SplicedAToB, Is.Zero);
            }
        });
    }

    [Test]
    public async Task ADestinationThatReadsSlowlyGetsEveryByteInOrder()
    {
        using var chain = await Chain.ConnectAsync(SocketTransport.Tcp);
        chain.Server.ReceiveBufferSize = 16 * 1024;
        chain.RelayB.SendBufferSize = 16 * 1024; // the relay's destination fills up and must be waited on, again and again
        byte[] up = DuplexRelayTests.RandomBytes(2 * 1024 * 1024, seed: 12);

        Task<RelayResult> relay = chain.RunAsync(Options);
        Task send = SocketIo.SendChunkedAsync(chain.Client, up, [up.Length], shutdown: true);
        var received = new MemoryStream();
        byte[] buffer = new byte[1024];
        int read;
        while ((read = await chain.Server.ReceiveAsync(buffer).WaitAsync(HangGuard)) > 0)
        {
            received.Write(buffer, 0, read);
            if (received.Length % (128 * 1024) < read)
            {
                await Task.Delay(2);
            }
        }

        await send.WaitAsync(HangGuard);
        chain.Server.Shutdown(SocketShutdown.Send);
        RelayResult result = await relay.WaitAsync(HangGuard);

        Assert.Multiple(() =>
        {
            Assert.That(SHA256.HashData(received.ToArray()), Is.EqualTo(SHA256.HashData(up)), "every byte, in order");
            Assert.That(result.BytesAToB, Is.EqualTo(up.Length));
            Assert.That(result.FirstCause, Is.EqualTo(RelayShutdownCause.BothCompleted));
        });
    }

    [Test]
    public async Task MessagesAroundTheCopyThresholdArriveWholeOneAtATime()
    {
        using var chain = await Chain.ConnectAsync(SocketTransport.Tcp);
        int[] sizes = [1, 4095, 4096, 4097, 8192, 32_768, 65_535, 65_536, 65_537, 300_000, 2];
        Task<RelayResult> relay = chain.RunAsync(Options);

        long total = 0;
        foreach (int size in sizes)
        {
            byte[] question = DuplexRelayTests.RandomBytes(size, seed: size);
            await SocketIo.SendChunkedAsync(chain.Client, question, [size], shutdown: false);
            Assert.That(await SocketIo.ReadExactlyAsync(chain.Server, size).WaitAsync(HangGuard), Is.EqualTo(question), $"{size} bytes up");

            byte[] answer = DuplexRelayTests.RandomBytes(size, seed: -size);
            await SocketIo.SendChunkedAsync(chain.Server, answer, [size], shutdown: false);
            Assert.That(await SocketIo.ReadExactlyAsync(chain.Client, size).WaitAsync(HangGuard), Is.EqualTo(answer), $"{size} bytes down");
            total += size;
        }

        chain.Client.Shutdown(SocketShutdown.Send);
        chain.Server.Shutdown(SocketShutdown.Send);
        RelayResult result = await relay.WaitAsync(HangGuard);

        Assert.Multiple(() =>
        {
            Assert.That(result.BytesAToB, Is.EqualTo(total));
            Assert.That(result.BytesBToA, Is.EqualTo(total));
            Assert.That(result.FirstCause, Is.EqualTo(RelayShutdownCause.BothCompleted));
        });
    }

    /// <summary>client ⇄ relayA, relayB ⇄ server.</summary>
    private sealed class Chain : IDisposable
    {
        private readonly SocketPair _front;
        private readonly SocketPair _back;

        private Chain(SocketPair front, SocketPair back)
        {
            _front = front;
            _back = back;
        }

        public Socket Client => _front.Left;

        public Socket RelayA => _front.Right;

        public Socket RelayB => _back.Left;

        public Socket Server => _back.Right;

        public static async Task<Chain> ConnectAsync(SocketTransport transport) =>
            new(await SocketPair.ConnectAsync(transport), await SocketPair.ConnectAsync(transport));

        public Task<RelayResult> RunAsync(RelayOptions options, CancellationToken cancellationToken = default) =>
            SocketRelay.RunAsync(RelayA, RelayB, options, cancellationToken);

        /// <summary>
        /// Client sends <paramref name="up"/>, server sends <paramref name="down"/> (after the client's end of stream when
        /// <paramref name="serverWaitsForEnd"/>), each then shuts down; returns what each end read to its end of stream.
        /// </summary>
        public async Task<(byte[] AtServer, byte[] AtClient)> ExchangeAsync(
            byte[] up, int[] upChunks, byte[] down, int[] downChunks, bool serverWaitsForEnd = false)
        {
            Task<byte[]> atClient = SocketIo.ReadToEndAsync(Client);
            Task sendUp = SocketIo.SendChunkedAsync(Client, up, upChunks, shutdown: true);
            Task<byte[]> atServer = SocketIo.ReadToEndAsync(Server);
            if (serverWaitsForEnd)
            {
                await atServer.WaitAsync(HangGuard);
            }

            Task sendDown = SocketIo.SendChunkedAsync(Server, down, downChunks, shutdown: true);
            await Task.WhenAll(sendUp, sendDown, atServer, atClient).WaitAsync(HangGuard);
            return (await atServer, await atClient);
        }

        public void DisposeRelaySockets()
        {
            RelayA.Dispose();
            RelayB.Dispose();
        }

        public void Dispose()
        {
            _front.Dispose();
            _back.Dispose();
        }
    }
}
