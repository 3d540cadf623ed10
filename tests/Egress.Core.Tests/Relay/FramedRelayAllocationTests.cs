using System.Net;
using System.Net.Sockets;
using Egress.Relay;

namespace Egress.Tests.Relay;

/// <summary>
/// What the framed (version 2) relay allocates while bytes flow: counted, not timed. The data path's steady state is a
/// direction waiting for room at its destination (a slow reader); such a wait must not allocate a state machine.
/// </summary>
[NonParallelizable] // counts the process's allocations
public sealed class FramedRelayAllocationTests
{
    private const int Payload = 16 * 1024 * 1024;
    private const int WarmUp = 2 * 1024 * 1024;

    [Test]
    public async Task WaitingForRoomAtTheApplicationAllocatesNothingPerWait()
    {
        if (!OperatingSystem.IsLinux())
        {
            Assert.Ignore("splice(2) is Linux only");
        }

        // Connected with blocking calls only: a socket that never ran an asynchronous operation stays in blocking mode, so
        // the test's own sends and receives are plain system calls (on a socket in non-blocking mode the runtime emulates
        // a blocking call with an operation object per wait, which would be counted here).
        using var app = BlockingPair.Connect(new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp), new IPEndPoint(IPAddress.Loopback, 0));
        using var tunnel = BlockingPair.Connect(new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified), null);
        app.Left.ReceiveBufferSize = 64 * 1024; // fixed sizes: no autotuning to megabytes that would never fill
        app.Right.SendBufferSize = 64 * 1024;
        var session = new SocketRelaySession(app.Right, tunnel.Left, RelaySide.B, new RelayOptions { UseSplice = true });
        Task<RelayResult> relay = session.RunAsync(ReadOnlyMemory<byte>.Empty, ReadOnlyMemory<byte>.Empty, CancellationToken.None);

        // The far side writes DATA frames of 60,000 bytes into the tunnel; the application reads slowly (about 1 ms per
        // 64 KiB), so the relay's pipe fills faster than the application's socket drains. Plain blocking calls on
        // threads of their own: the test's side allocates nothing while it counts.
        const int FramePayload = 60_000;
        byte[] frame = Frames.Data(new byte[FramePayload]);
        const long Total = (long)(WarmUp + Payload) / FramePayload * FramePayload;
        byte[] sink = new byte[64 * 1024];
        long received = 0;
        using var warmedUp = new ManualResetEventSlim();
        using var measure = new ManualResetEventSlim();
        var sender = new Thread(() =>
        {
            for (long frames = Total / FramePayload; frames > 0; frames--)
            {
                for (int sent = 0; sent < frame.Length;)
                {
                    sent += tunnel.Right.Send(frame.AsSpan(sent), SocketFlags.None);
                }
            }
        });
        var reader = new Thread(() =>
        {
            while (received < Total)
            {
                int got = app.Left.Receive(sink, SocketFlags.None);
                if (got == 0)
                {
                    return;
                }

                received += got;
                if (received >= WarmUp && !warmedUp.IsSet)
                {
                    warmedUp.Set();
                    measure.Wait();
                }

                Thread.Sleep(1);
            }
        });
        sender.Start();
        reader.Start();
        Assert.That(warmedUp.Wait(TimeSpan.FromSeconds(30)), Is.True, "the first bytes came through");
        int waitsBefore = session.DrainWaits;
        long allocatedBefore = GC.GetTotalAllocatedBytes(precise: true);
        measure.Set();
        Assert.That(reader.Join(TimeSpan.FromSeconds(60)), Is.True, "everything came through");
        long allocated = GC.GetTotalAllocatedBytes(precise: true) - allocatedBefore;
        int waits = session.DrainWaits - waitsBefore;
        sender.Join();

        app.Left.Dispose();
        tunnel.Right.Dispose();
        await relay.WaitAsync(TimeSpan.FromSeconds(30));

        Assert.Multiple(() =>
        {
            Assert.That(received, Is.EqualTo(Total));
            Assert.That(session.SplicedBToA, Is.GreaterThan(Payload / 2), "the payloads were spliced (the path under test)");
            Assert.That(waits, Is.GreaterThanOrEqualTo(50), "the relay waited for room at the application");
            // Before: 240–320 B per wait, of which 150–190 B were DrainPipeAsync's state machine, boxed anew on every wait;
            // after: 115–125 B. The rest is not that method's (inlining the drain, as v1 does, measured the same): the
            // other waits of the loop (the zero-byte receive on an empty tunnel) and the runtime's socket engine.
            Assert.That((double)allocated / waits, Is.LessThan(200), $"{allocated} B allocated over {waits} waits");
        });
    }

    /// <summary>Two connected sockets made with blocking calls only (Left: the connecting side, Right: the accepted one).</summary>
    private sealed class BlockingPair(Socket left, Socket right, string? directory) : IDisposable
    {
        public Socket Left { get; } = left;

        public Socket Right { get; } = right;

        /// <param name="listener">A new socket of the family wanted.</param>
        /// <param name="at">Where to listen; null: a Unix socket in a new temporary directory.</param>
        public static BlockingPair Connect(Socket listener, EndPoint? at)
        {
            string? directory = at is null ? Directory.CreateTempSubdirectory("egress-alloc-").FullName : null;
            using (listener)
            {
                listener.Bind(at ?? new UnixDomainSocketEndPoint(Path.Combine(directory!, "s")));
                listener.Listen(1);
                var left = new Socket(listener.AddressFamily, SocketType.Stream, listener.ProtocolType);
                left.Connect(listener.LocalEndPoint!); // completes into the backlog
                return new BlockingPair(left, listener.Accept(), directory);
            }
        }

        public void Dispose()
        {
            Left.Dispose();
            Right.Dispose();
            if (directory is not null)
            {
                Directory.Delete(directory, recursive: true);
            }
        }
    }
}
