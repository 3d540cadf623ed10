using System.Net;
using System.Net.Sockets;
using System.Reflection;
using System.Runtime.CompilerServices;
using Egress.Sockets;
using Egress.Tests.Relay;

namespace Egress.Tests.Sockets;

/// <summary>
/// Readiness waits of our own on epoll: data, end of stream and a close each wake a wait, a cancelled token ends it with
/// <see cref="OperationCanceledException"/> and leaves the socket usable (the descriptor left the epoll set), many waits
/// at once each wake on their own socket, and a socket read this way never gets the runtime's receive state.
/// </summary>
[TestFixture]
[Platform("Linux")]
public sealed class SocketReadinessTests
{
    private static readonly TimeSpan Within = TimeSpan.FromSeconds(10);

    [TestCase(SocketTransport.Unix)]
    [TestCase(SocketTransport.Tcp)]
    public async Task DataWakesAWaitAndIsThenReceivedWithoutWaiting(SocketTransport transport)
    {
        using SocketPair pair = await SocketPair.ConnectAsync(transport);
        ValueTask wait = SocketReadiness.WaitReadableAsync(pair.Left);
        Assert.That(wait.IsCompleted, Is.False, "nothing to read yet");
        await Task.Delay(50);
        Assert.That(wait.IsCompleted, Is.False, "still nothing to read");

        pair.Right.Send([7, 8]);
        await wait.AsTask().WaitAsync(Within);
        byte[] buffer = new byte[4];
        Assert.Multiple(() =>
        {
            Assert.That(SocketReadiness.ReceiveNow(pair.Left, buffer), Is.EqualTo(2));
            Assert.That(buffer[..2], Is.EqualTo(new byte[] { 7, 8 }));
            Assert.That(SocketReadiness.ReceiveNow(pair.Left, buffer), Is.EqualTo(-1), "nothing more: EAGAIN, not a wait");
            Assert.That(pair.Left.Blocking, Is.True, "the owner's mode is unchanged");
        });
    }

    [Test]
    public async Task AnInlineWaitContinuesOnTheEpollThreadAndAnOrdinaryOneOnThePool()
    {
        using SocketPair pair = await SocketPair.ConnectAsync(SocketTransport.Unix);
        Assert.That(SocketReadiness.OnEpollThread, Is.False);
        Task<bool> inline = Task.Run(async () =>
        {
            await SocketReadiness.WaitReadableInlineAsync(pair.Left);
            return SocketReadiness.OnEpollThread;
        });
        Task<bool> ordinary = Task.Run(async () =>
        {
            await SocketReadiness.WaitReadableAsync(pair.Right);
            return SocketReadiness.OnEpollThread;
        });
        await Task.Delay(50);
        pair.Right.Send([1]);
        pair.Left.Send([2]);
        Assert.Multiple(async () =>
        {
            Assert.That(await inline.WaitAsync(Within), Is.True);
            Assert.That(await ordinary.WaitAsync(Within), Is.False);
        });
    }

    [Test]
    public async Task LeavingTheEpollThreadMovesAnInlineContinuationToThePoolAndStaysPutAnywhereElse()
    {
        using SocketPair pair = await SocketPair.ConnectAsync(SocketTransport.Unix);
        ValueTask wait = SocketReadiness.WaitReadableInlineAsync(pair.Left);
        Assert.That(wait.IsCompleted, Is.False, "armed before anything is sent");
        Task<(bool Before, bool After, bool IsThreadPoolThread)> inline = ContinueAsync(wait);
        pair.Right.Send([1]);
        var seen = await inline.WaitAsync(Within);

        int thread = Environment.CurrentManagedThreadId;
        var awaiter = SocketReadiness.LeaveEpollThread().GetAwaiter();
        bool completedHere = awaiter.IsCompleted;
        await SocketReadiness.LeaveEpollThread();
        Assert.Multiple(() =>
        {
            Assert.That(seen, Is.EqualTo((true, false, true)), "woken on the epoll thread, continued on the pool");
            Assert.That(completedHere, Is.True, "off an epoll thread there is nothing to leave");
            Assert.That(Environment.CurrentManagedThreadId, Is.EqualTo(thread), "and the caller continues where it was");
        });

        static async Task<(bool Before, bool After, bool IsThreadPoolThread)> ContinueAsync(ValueTask wait)
        {
            await wait.ConfigureAwait(false); // continues where the wait completes: the epoll thread
            bool before = SocketReadiness.OnEpollThread;
            await SocketReadiness.LeaveEpollThread();
            return (before, SocketReadiness.OnEpollThread, Thread.CurrentThread.IsThreadPoolThread);
        }
    }

    [Test]
    public async Task InlineContinuationsAreSpreadOverOneEpollThreadPerProcessor()
    {
        Assert.That(SocketReadiness.EngineCount, Is.EqualTo(Math.Clamp(Environment.ProcessorCount, 1, 16)));
        if (SocketReadiness.EngineCount < 2)
        {
            Assert.Ignore("one processor: one epoll thread");
        }

        // Sockets until every engine has one (a descriptor's engine is its number modulo the engine count). A pair takes
        // three descriptors and gives the listener's back, so on a quiet process every Left has the same remainder: a
        // spare descriptor held open after each pair that lands on a taken engine shifts the next one.
        var pairs = new List<SocketPair>();
        var spares = new List<Socket>();
        try
        {
            var byEngine = new Dictionary<int, Socket>();
            while (byEngine.Count < SocketReadiness.EngineCount && pairs.Count < 64)
            {
                SocketPair pair = await SocketPair.ConnectAsync(SocketTransport.Unix);
                pairs.Add(pair);
                if (!byEngine.TryAdd((int)(pair.Left.Handle % SocketReadiness.EngineCount), pair.Left))
                {
                    spares.Add(new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified));
                }
            }

            Assert.That(byEngine, Has.Count.EqualTo(SocketReadiness.EngineCount));
            var threads = byEngine.Values.Select(socket => Task.Run(async () =>
            {
                await SocketReadiness.WaitReadableInlineAsync(socket);
                return (SocketReadiness.OnEpollThread, Environment.CurrentManagedThreadId);
            })).ToArray();
            await Task.Delay(50);
            foreach (SocketPair pair in pairs)
            {
                pair.Right.Send([1]);
            }

            var seen = await Task.WhenAll(threads).WaitAsync(Within);
            Assert.Multiple(() =>
            {
                Assert.That(seen.Select(s => s.OnEpollThread), Is.All.True);
                Assert.That(seen.Select(s => s.CurrentManagedThreadId).Distinct().Count(), Is.EqualTo(SocketReadiness.EngineCount),
                    "each engine's continuations run on its own thread");
            });
        }
        finally
        {
            pairs.ForEach(pair => pair.Dispose());
            spares.ForEach(spare => spare.Dispose());
        }
    }

    [Test]
    public async Task ASocketThatSharesItsPartnersEngineWakesOnItsPartnersThread()
    {
        var held = new List<IDisposable>();
        try
        {
            var (partner, other) = await TwoPairsOnDifferentEnginesAsync(held);
            nint fd = other.Left.SafeHandle.DangerousGetHandle();
            int identity = RuntimeHelpers.GetHashCode(other.Left.SafeHandle);
            int partnerEpoll = SocketReadiness.EpollFor(partner.Left.SafeHandle.DangerousGetHandle(), RuntimeHelpers.GetHashCode(partner.Left.SafeHandle));
            Assert.That(SocketReadiness.EpollFor(fd, identity), Is.Not.EqualTo(partnerEpoll), "apart by default");

            SocketReadiness.ShareEngine(other.Left, partner.Left);
            Assert.That(SocketReadiness.EpollFor(fd, identity), Is.EqualTo(partnerEpoll));
            Assert.That(SocketReadiness.EpollFor(fd, identity + 1), Is.Not.EqualTo(partnerEpoll),
                "another handle with the same descriptor number (a reused one) is served by the default");

            var threads = new[] { partner.Left, other.Left }.Select(socket => Task.Run(async () =>
            {
                await SocketReadiness.WaitReadableInlineAsync(socket);
                return Environment.CurrentManagedThreadId;
            })).ToArray();
            await Task.Delay(50);
            partner.Right.Send([1]);
            other.Right.Send([2]);
            int[] seen = await Task.WhenAll(threads).WaitAsync(Within);
            Assert.That(seen.Distinct().Count(), Is.EqualTo(1), "both continuations on the partner's epoll thread");
        }
        finally
        {
            held.ForEach(item => item.Dispose());
        }
    }

    [Test]
    public async Task ASocketAlreadyWaitedOnKeepsItsEngine()
    {
        var held = new List<IDisposable>();
        try
        {
            var (partner, first) = await TwoPairsOnDifferentEnginesAsync(held);
            nint fd = first.Left.SafeHandle.DangerousGetHandle();
            int identity = RuntimeHelpers.GetHashCode(first.Left.SafeHandle);
            int before = SocketReadiness.EpollFor(fd, identity);
            Task<int> receive = SocketReadiness.ReceiveAsync(first.Left, new byte[1]).AsTask();
            await Task.Delay(20);
            first.Right.Send([1]);
            Assert.That(await receive.WaitAsync(Within), Is.EqualTo(1)); // in its epoll set now, disabled

            // Its registration is in one set: a choice now would send the next re-arm to another (ENOENT there, then an
            // ADD that leaves it in two sets), so the choice is ignored.
            SocketReadiness.ShareEngine(first.Left, partner.Left);
            Assert.That(SocketReadiness.EpollFor(fd, identity), Is.EqualTo(before));
            receive = SocketReadiness.ReceiveAsync(first.Left, new byte[1]).AsTask();
            await Task.Delay(20);
            first.Right.Send([2]);
            Assert.That(await receive.WaitAsync(Within), Is.EqualTo(1));
        }
        finally
        {
            held.ForEach(item => item.Dispose());
        }
    }

    /// <summary>Two socket pairs whose Left descriptors fall on different engines by default (number modulo the engine
    /// count); everything opened on the way goes to <paramref name="held"/>, for the caller to dispose.</summary>
    private static async Task<(SocketPair Partner, SocketPair Other)> TwoPairsOnDifferentEnginesAsync(List<IDisposable> held)
    {
        if (SocketReadiness.EngineCount < 2)
        {
            Assert.Ignore("one processor: one epoll thread");
        }

        SocketPair partner = await SocketPair.ConnectAsync(SocketTransport.Unix);
        held.Add(partner);
        for (int i = 0; i < 64; i++)
        {
            SocketPair pair = await SocketPair.ConnectAsync(SocketTransport.Unix);
            held.Add(pair);
            if (pair.Left.Handle % SocketReadiness.EngineCount != partner.Left.Handle % SocketReadiness.EngineCount)
            {
                return (partner, pair);
            }

            held.Add(new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified)); // shifts the next pair's numbers
        }

        throw new AssertionException("no two sockets on different engines in 64 tries");
    }

    [Test]
    public async Task ASocketWithDataIsReadyAtOnce()
    {
        using SocketPair pair = await SocketPair.ConnectAsync(SocketTransport.Unix);
        pair.Right.Send([1]);
        await WaitUntilReadableAsync(pair.Left);
        Assert.That(SocketReadiness.WaitReadableAsync(pair.Left).IsCompletedSuccessfully, Is.True);
    }

    [TestCase(SocketTransport.Unix)]
    [TestCase(SocketTransport.Tcp)]
    public async Task EndOfStreamWakesAWait(SocketTransport transport)
    {
        using SocketPair pair = await SocketPair.ConnectAsync(transport);
        Task<int> receive = SocketReadiness.ReceiveAsync(pair.Left, new byte[16]).AsTask();
        await Task.Delay(50);
        Assert.That(receive.IsCompleted, Is.False);

        pair.Right.Shutdown(SocketShutdown.Send);
        Assert.That(await receive.WaitAsync(Within), Is.Zero, "end of stream");
    }

    [TestCase(SocketTransport.Unix)]
    [TestCase(SocketTransport.Tcp)]
    public async Task ClosingTheSocketWhileItIsWaitedOnEndsTheWaitAndTheClose(SocketTransport transport)
    {
        using SocketPair pair = await SocketPair.ConnectAsync(transport);
        Task<int> receive = SocketReadiness.ReceiveAsync(pair.Left, new byte[16]).AsTask();
        await Task.Delay(50);

        await Task.Run(pair.Left.Dispose).WaitAsync(Within); // the close waits for the wait to leave the epoll set
        Exception? error = Assert.CatchAsync(async () => await receive.WaitAsync(Within));
        Assert.That(error, Is.InstanceOf<ObjectDisposedException>().Or.InstanceOf<SocketException>());
    }

    [Test]
    public async Task AResetWhileWaitedOnStillResetsThePeer()
    {
        using SocketPair pair = await SocketPair.ConnectAsync(SocketTransport.Tcp);
        Task<int> receive = SocketReadiness.ReceiveAsync(pair.Left, new byte[16]).AsTask();
        await Task.Delay(50);

        await Task.Run(() => SocketReset.Reset(pair.Left)).WaitAsync(Within);
        Assert.CatchAsync(async () => await receive.WaitAsync(Within));
        var error = Assert.Throws<SocketException>(() => pair.Right.Receive(new byte[1]));
        Assert.That(error!.SocketErrorCode, Is.EqualTo(SocketError.ConnectionReset), "RST, as a reset without a wait sends");
    }

    [Test]
    public async Task AClosedSocketIsThrownAsObjectDisposed()
    {
        using SocketPair pair = await SocketPair.ConnectAsync(SocketTransport.Unix);
        pair.Left.Dispose();
        Assert.Throws<ObjectDisposedException>(() => SocketReadiness.WaitReadableAsync(pair.Left));
        Assert.CatchAsync<ObjectDisposedException>(async () => await SocketReadiness.ReceiveAsync(pair.Left, new byte[1]));
    }

    [Test]
    public async Task CancellingEndsTheWaitAndLeavesTheSocketUsable()
    {
        using SocketPair pair = await SocketPair.ConnectAsync(SocketTransport.Unix);
        using var cancel = new CancellationTokenSource();
        Task<int> receive = SocketReadiness.ReceiveAsync(pair.Left, new byte[16], cancel.Token).AsTask();
        await Task.Delay(50);

        cancel.Cancel();
        var error = Assert.CatchAsync<OperationCanceledException>(async () => await receive.WaitAsync(Within));
        Assert.That(error!.CancellationToken, Is.EqualTo(cancel.Token));

        // Waited on again (a descriptor still in the epoll set would fail the new registration) and woken by data.
        Task<int> again = SocketReadiness.ReceiveAsync(pair.Left, new byte[16]).AsTask();
        await Task.Delay(50);
        pair.Right.Send([5]);
        Assert.That(await again.WaitAsync(Within), Is.EqualTo(1));
    }

    [TestCase(SocketTransport.Unix, true)]
    [TestCase(SocketTransport.Tcp, true)]
    [TestCase(SocketTransport.Tcp, false)]
    public async Task ADrainedWaitSkipsThePollYetDataQueuedBeforeItWasArmedStillWakesIt(SocketTransport transport, bool inline)
    {
        using SocketPair pair = await SocketPair.ConnectAsync(transport);
        pair.Right.Send([9]);
        await WaitUntilReadableAsync(pair.Left);

        // The caller wrongly believes the socket drained: no poll(2), but arming the wait (epoll_ctl) finds the byte and
        // the epoll thread completes it (a lost wake-up would hang here until the timeout).
        ValueTask wait = inline
            ? SocketReadiness.WaitReadableInlineAsync(pair.Left, drained: true)
            : SocketReadiness.WaitReadableAsync(pair.Left, CancellationToken.None, drained: true);
        await wait.AsTask().WaitAsync(Within);
        Assert.That(SocketReadiness.ReceiveNow(pair.Left, new byte[4]), Is.EqualTo(1));
    }

    [Test]
    public async Task AFreshSocketsFirstWaitAddsItAndLaterWaitsReArmIt()
    {
        using SocketPair pair = await SocketPair.ConnectAsync(SocketTransport.Unix);
        nint fd = pair.Left.SafeHandle.DangerousGetHandle();
        int identity = RuntimeHelpers.GetHashCode(pair.Left.SafeHandle);
        Assert.That(SocketReadiness.WasAdded(fd, identity), Is.False, "never waited on");
        for (byte round = 1; round <= 3; round++)
        {
            Task<int> receive = SocketReadiness.ReceiveAsync(pair.Left, new byte[1]).AsTask();
            await Task.Delay(20);
            Assert.That(SocketReadiness.WasAdded(fd, identity), Is.True, $"round {round}: recorded as in the set");
            pair.Right.Send([round]);
            Assert.That(await receive.WaitAsync(Within), Is.EqualTo(1));
        }
    }

    [TestCase(true)]
    [TestCase(false)]
    public async Task AWrongGuessOfWhetherTheSocketIsInTheSetStillArmsTheWait(bool recordedButAbsent)
    {
        using SocketPair pair = await SocketPair.ConnectAsync(SocketTransport.Tcp);
        nint fd = pair.Left.SafeHandle.DangerousGetHandle();
        int identity = RuntimeHelpers.GetHashCode(pair.Left.SafeHandle);
        if (!recordedButAbsent)
        {
            // In the set (an earlier wait added it) while the record says not: EPOLL_CTL_ADD fails with EEXIST, then MOD.
            Task<int> first = SocketReadiness.ReceiveAsync(pair.Left, new byte[1]).AsTask();
            await Task.Delay(20);
            pair.Right.Send([1]);
            Assert.That(await first.WaitAsync(Within), Is.EqualTo(1));
        }

        // Recorded as in the set while it is not (EPOLL_CTL_MOD fails with ENOENT, then ADD), or the reverse.
        SocketReadiness.NoteAdded(fd, recordedButAbsent ? identity : identity + 1);
        Task<int> receive = SocketReadiness.ReceiveAsync(pair.Left, new byte[1]).AsTask();
        await Task.Delay(50);
        Assert.That(receive.IsCompleted, Is.False, "nothing sent yet");
        pair.Right.Send([2]);
        Assert.That(await receive.WaitAsync(Within), Is.EqualTo(1));
        Assert.That(SocketReadiness.WasAdded(fd, identity), Is.True);
    }

    [Test]
    public async Task ADescriptorNumberReusedAfterACloseIsWaitedOnAfresh()
    {
        int fd;
        using (SocketPair first = await SocketPair.ConnectAsync(SocketTransport.Unix))
        {
            Task<int> receive = SocketReadiness.ReceiveAsync(first.Left, new byte[1]).AsTask();
            await Task.Delay(20);
            first.Right.Send([1]);
            Assert.That(await receive.WaitAsync(Within), Is.EqualTo(1)); // its registration stays in the set, disabled
            fd = (int)first.Left.SafeHandle.DangerousGetHandle();
        }

        // The numbers are free again: the next sockets take them, and a wait on the same number is a new registration.
        using SocketPair second = await SocketPair.ConnectAsync(SocketTransport.Unix);
        Socket reused = (int)second.Left.SafeHandle.DangerousGetHandle() == fd ? second.Left : second.Right;
        Socket peer = reused == second.Left ? second.Right : second.Left;
        Task<int> again = SocketReadiness.ReceiveAsync(reused, new byte[1]).AsTask();
        await Task.Delay(50);
        Assert.That(again.IsCompleted, Is.False);
        peer.Send([2]);
        Assert.That(await again.WaitAsync(Within), Is.EqualTo(1));
    }

    [Test]
    public async Task AnAlreadyCancelledTokenEndsAtOnce()
    {
        using SocketPair pair = await SocketPair.ConnectAsync(SocketTransport.Unix);
        Assert.CatchAsync<OperationCanceledException>(
            async () => await SocketReadiness.ReceiveAsync(pair.Left, new byte[16], new CancellationToken(canceled: true)));
    }

    [Test]
    public async Task ManyWaitsEachWakeOnTheirOwnSocketAndTheirWaitersAreReused()
    {
        const int count = 100;
        var pairs = new List<SocketPair>();
        try
        {
            for (int i = 0; i < count; i++)
            {
                pairs.Add(await SocketPair.ConnectAsync(SocketTransport.Unix));
            }

            for (int round = 0; round < 3; round++)
            {
                Task<int>[] receives = [.. pairs.Select(pair => SocketReadiness.ReceiveAsync(pair.Left, new byte[16]).AsTask())];
                await Task.Delay(50);
                Assert.That(receives.Count(receive => receive.IsCompleted), Is.Zero);

                for (int i = 0; i < count; i += 2)
                {
                    pairs[i].Right.Send([(byte)i]); // every other one
                }

                await Task.WhenAll(receives.Where((_, i) => i % 2 == 0)).WaitAsync(Within);
                await Task.Delay(50);
                Assert.That(receives.Where((_, i) => i % 2 == 1).Count(receive => receive.IsCompleted), Is.Zero, "no other socket woke");

                for (int i = 1; i < count; i += 2)
                {
                    pairs[i].Right.Send([(byte)i]);
                }

                int[] received = await Task.WhenAll(receives).WaitAsync(Within);
                Assert.That(received, Is.All.EqualTo(1));
                if (round == 0)
                {
                    continue;
                }

                Assert.That(SocketReadiness.WaiterCount, Is.LessThan(count * 3), "waiters are pooled, not one per wait");
            }
        }
        finally
        {
            pairs.ForEach(pair => pair.Dispose());
        }
    }

    [Test]
    public async Task ASocketReadThisWayGetsNoRuntimeReceiveState()
    {
        FieldInfo? cached = typeof(Socket).GetField("_singleBufferReceiveEventArgs", BindingFlags.Instance | BindingFlags.NonPublic);
        Assume.That(cached, Is.Not.Null, "this runtime keeps its receive event args elsewhere");
        using SocketPair pair = await SocketPair.ConnectAsync(SocketTransport.Unix);
        Socket accepted = pair.Right; // the connected side got them from its ConnectAsync already
        Assume.That(cached!.GetValue(accepted), Is.Null);
        Task<int> receive = SocketReadiness.ReceiveAsync(accepted, new byte[16]).AsTask();
        await Task.Delay(50);
        pair.Left.Send([1, 2, 3]);
        Assert.That(await receive.WaitAsync(Within), Is.EqualTo(3));
        Assert.That(cached.GetValue(accepted), Is.Null);

        pair.Left.Send([4]);
        Assert.That(await accepted.ReceiveAsync(new byte[1].AsMemory(), SocketFlags.None).AsTask().WaitAsync(Within), Is.EqualTo(1));
        Assert.That(cached.GetValue(accepted), Is.Not.Null, "the check can fail: the runtime's own receive keeps them");
    }

    private static async Task WaitUntilReadableAsync(Socket socket)
    {
        for (int i = 0; i < 100 && !socket.Poll(0, SelectMode.SelectRead); i++)
        {
            await Task.Delay(10);
        }
    }
}

/// <summary>
/// Connect without the runtime's connect: a TCP and a Unix connect complete and carry bytes, a refused one is thrown as
/// <see cref="SocketError.ConnectionRefused"/> (what the gateway's status is made from), a cancelled token ends it, and
/// the socket gets no runtime receive event args from it.
/// </summary>
[TestFixture]
[Platform("Linux")]
public sealed class SocketReadinessConnectTests
{
    private static readonly TimeSpan Within = TimeSpan.FromSeconds(10);

    [Test]
    public async Task ATcpConnectCompletesAndTheSocketCarriesBytes()
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(1);
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await SocketReadiness.ConnectAsync(socket, listener.LocalEndPoint!, CancellationToken.None).AsTask().WaitAsync(Within);
        using Socket accepted = await listener.AcceptAsync().WaitAsync(Within);
        socket.Send([1, 2]);
        byte[] buffer = new byte[2];
        Assert.Multiple(() =>
        {
            Assert.That(accepted.Receive(buffer), Is.EqualTo(2));
            Assert.That(socket.Connected, Is.True);
            Assert.That(socket.RemoteEndPoint, Is.EqualTo(listener.LocalEndPoint));
            Assert.That(socket.Blocking, Is.True, "the owner's mode is unchanged");
            Assert.That(ReceiveEventArgs(socket), Is.Null, "no runtime receive state from the connect");
        });
    }

    [Test]
    public Task AUnixConnectCompletes() =>
        ConnectOverUnixAndReceiveAsync((socket, path) => SocketReadiness.ConnectAsync(socket, path, CancellationToken.None), static _ => { });

    [Test]
    public async Task ARefusedConnectIsThrownAsConnectionRefused()
    {
        int port;
        using (var closed = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp))
        {
            closed.Bind(new IPEndPoint(IPAddress.Loopback, 0));
            port = ((IPEndPoint)closed.LocalEndPoint!).Port; // bound, never listening: refused
        }

        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        var error = Assert.CatchAsync<SocketException>(
            async () => await SocketReadiness.ConnectAsync(socket, new IPEndPoint(IPAddress.Loopback, port), CancellationToken.None).AsTask().WaitAsync(Within));
        Assert.That(error!.SocketErrorCode, Is.EqualTo(SocketError.ConnectionRefused));
        await Task.CompletedTask;
    }

    [Test]
    public void ACancelledTokenEndsTheConnect()
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        Assert.CatchAsync<OperationCanceledException>(
            async () => await SocketReadiness.ConnectAsync(socket, new IPEndPoint(IPAddress.Loopback, 9), new CancellationToken(canceled: true)));
    }

    [Test]
    public async Task AConnectWithoutContextConnectsTheSocketWithoutTheRuntimesContextOrItsKnowledge()
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(1);
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await SocketReadiness.ConnectWithoutContextAsync(socket, listener.LocalEndPoint!, CancellationToken.None).AsTask().WaitAsync(Within);
        using Socket accepted = await listener.AcceptAsync().WaitAsync(Within);
        Assert.That(SocketSendNow.AnyMode(socket, [1, 2]), Is.EqualTo(2));
        byte[] buffer = new byte[2];
        Assert.That(accepted.Receive(buffer), Is.EqualTo(2));
        accepted.Send([3]);
        Assert.That(await SocketReadiness.ReceiveAsync(socket, buffer).AsTask().WaitAsync(Within), Is.EqualTo(1));
        Assert.That(SocketReadiness.ReceiveNow(socket, buffer), Is.EqualTo(-1), "EAGAIN");
        Assert.Multiple(() =>
        {
            Assert.That(NonBlockingDescriptor(socket), Is.True, "the descriptor is left non-blocking, for the relay");
            Assert.That(socket.Blocking, Is.True, "the runtime's view is unchanged");
            Assert.That(socket.Connected, Is.False, "the runtime does not see our connect (documented)");
            Assert.That(socket.NoDelay, Is.True);
            Assert.That(AsyncContext(socket), Is.Null, "no runtime asynchronous context from the connect, receive or send");
        });

        // The runtime's asynchronous send and receive work on it (the relay's fallback when a socket is full).
        byte[] big = new byte[4 << 20];
        Task<int> sending = socket.SendAsync(big.AsMemory(), SocketFlags.None).AsTask();
        int received = 0;
        while (received < big.Length)
        {
            received += await accepted.ReceiveAsync(new byte[64 * 1024], SocketFlags.None).WaitAsync(Within);
        }

        Assert.That(await sending.WaitAsync(Within), Is.EqualTo(big.Length));
        accepted.Send([4]);
        Assert.That(await socket.ReceiveAsync(buffer, SocketFlags.None).WaitAsync(Within), Is.EqualTo(1));

        // Closed with SO_LINGER 0, the peer sees a reset.
        SocketReset.Reset(socket);
        Assert.That(() => accepted.Receive(buffer), Throws.InstanceOf<SocketException>()
            .With.Property(nameof(SocketException.SocketErrorCode)).EqualTo(SocketError.ConnectionReset));
    }

    [Test]
    public Task AConnectWithoutContextOnAUnixSocketConnects() =>
        ConnectOverUnixAndReceiveAsync(
            (socket, path) => SocketReadiness.ConnectWithoutContextAsync(socket, path, CancellationToken.None),
            static socket => Assert.That(AsyncContext(socket), Is.Null));

    /// <summary>Connects a Unix socket to a listener with <paramref name="connect"/>, receives a byte the accepted side
    /// sends, then runs <paramref name="andThen"/> on the connected socket.</summary>
    private static async Task ConnectOverUnixAndReceiveAsync(Func<Socket, EndPoint, ValueTask> connect, Action<Socket> andThen)
    {
        string path = Path.Combine(Path.GetTempPath(), $"egress-connect-{Guid.NewGuid():N}.sock");
        try
        {
            using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            listener.Bind(new UnixDomainSocketEndPoint(path));
            listener.Listen(1);
            using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            await connect(socket, new UnixDomainSocketEndPoint(path)).AsTask().WaitAsync(Within);
            using Socket accepted = await listener.AcceptAsync().WaitAsync(Within);
            accepted.Send([7]);
            Assert.That(await SocketReadiness.ReceiveAsync(socket, new byte[1]).AsTask().WaitAsync(Within), Is.EqualTo(1));
            andThen(socket);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Test]
    public void AConnectWithoutContextThatIsRefusedIsThrownAsConnectionRefused()
    {
        int port;
        using (var closed = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp))
        {
            closed.Bind(new IPEndPoint(IPAddress.Loopback, 0));
            port = ((IPEndPoint)closed.LocalEndPoint!).Port;
        }

        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        var error = Assert.CatchAsync<SocketException>(
            async () => await SocketReadiness.ConnectWithoutContextAsync(socket, new IPEndPoint(IPAddress.Loopback, port), CancellationToken.None).AsTask().WaitAsync(Within));
        Assert.That(error!.SocketErrorCode, Is.EqualTo(SocketError.ConnectionRefused));
    }

    [Test]
    public void AConnectWithoutContextToAMissingUnixPathIsAddressNotAvailable()
    {
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        var error = Assert.CatchAsync<SocketException>(async () => await SocketReadiness.ConnectWithoutContextAsync(
            socket, new UnixDomainSocketEndPoint($"/tmp/egress-missing-{Guid.NewGuid():N}.sock"), CancellationToken.None).AsTask().WaitAsync(Within));
        Assert.That(error!.SocketErrorCode, Is.EqualTo(SocketError.AddressNotAvailable), "ENOENT, as the runtime maps it");
    }

    private static bool NonBlockingDescriptor(Socket socket) => SocketNativeTests.IsNonBlocking(socket);

    internal static object? AsyncContext(Socket socket) =>
        typeof(SafeSocketHandle).GetField("_asyncContext", BindingFlags.Instance | BindingFlags.NonPublic)!.GetValue(socket.SafeHandle);

    private static object? ReceiveEventArgs(Socket socket) =>
        typeof(Socket).GetField("_singleBufferReceiveEventArgs", BindingFlags.Instance | BindingFlags.NonPublic)?.GetValue(socket);
}
