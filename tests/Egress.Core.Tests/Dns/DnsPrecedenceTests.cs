using System.Buffers;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using Egress.Dns;
using Egress.Dns.Wire;

namespace Egress.Tests.Dns;

/// <summary>
/// DNS must not wait behind connection work (issue 13, stress suite scenario 1): a flood of thousands of connections
/// fills the .NET thread pool's FIFO queue with their continuations, and the victim's queries used to wait behind
/// them (558 ms p99 against 8.6 ms unloaded on a quiet machine). Here the pool is starved outright (every worker
/// blocked, more blocked work queued): the forwarder, the tunnel DNS streams on both sides and the parent's upstream
/// sockets must answer anyway, each on its own thread. Non-parallelisable: it starves the whole process's pool.
/// </summary>
[NonParallelizable]
public sealed class DnsPrecedenceTests
{
    private static readonly TimeSpan Answered = TimeSpan.FromSeconds(1);

    [Test]
    public async Task AQueryIsAnsweredEndToEndWhileTheThreadPoolIsStarved()
    {
        using var upstream = new ThreadedUpstream();
        await using var harness = await DnsTunnelHarness.StartAsync([upstream.EndPoint]);

        // Open both tunnel DNS streams (round robin) while the pool still runs: opening one is connection work.
        for (ushort id = 1; id <= 4; id++)
        {
            await harness.UdpAsync(DnsQueryBytes.Build(id, "warm.x.test"));
        }

        using var client = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp) { ReceiveTimeout = 5000 };
        client.Connect(harness.EndPoint);
        byte[] answer = new byte[512];
        int received;
        TimeSpan took;
        string state = string.Empty;
        using (ThreadPoolStarvation.Start())
        {
            var clock = Stopwatch.StartNew();
            client.Send(DnsQueryBytes.Build(0x7777, "victim.x.test"));
            received = Receive(client, answer);
            took = clock.Elapsed;
            if (received <= DnsHeader.Length || took >= Answered)
            {
                state = DescribeDnsThreads(harness); // while still starved: where each DNS thread waits
            }
        }

        Assert.Multiple(() =>
        {
            Assert.That(received, Is.GreaterThan(DnsHeader.Length), "answered" + state);
            Assert.That(DnsMessage.ReadId(answer), Is.EqualTo(0x7777));
            Assert.That(took, Is.LessThan(Answered), "not behind the starved pool" + state);
        });
    }

    [Test]
    public void AStreamPipeDeliversWhatArrivesWhileTheThreadPoolIsStarved()
    {
        var (connected, accepted) = ConnectedPair();
        using var peer = connected;
        using var pipe = DnsStreamPipe.Start(accepted, "test dns stream");
        using var delivered = new ManualResetEventSlim();
        _ = ReadOneAsync(pipe, delivered);

        bool inTime;
        using (ThreadPoolStarvation.Start())
        {
            peer.Send("query"u8);
            inTime = delivered.Wait(Answered);
        }

        Assert.That(inTime, Is.True, "the read completed on the pipe's own thread");
    }

    [Test]
    public async Task AnAsynchronouslyAcceptedStreamWaitsInPollOnItsOwnThreadNotForTheSocketEventThread()
    {
        Assume.That(OperatingSystem.IsLinux(), "reads /proc/self/task/TID/syscall");
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(1);
        using var peer = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        Task<Socket> accepting = listener.AcceptAsync();
        await peer.ConnectAsync(listener.LocalEndPoint!);
        Socket accepted = await accepting;
        peer.Send("h"u8);
        Assert.That(await accepted.ReceiveAsync(new byte[1], SocketFlags.None), Is.EqualTo(1)); // as the tunnel handshake does: non-blocking from now on
        const string ThreadName = "dns poll test";
        using var pipe = DnsStreamPipe.Start(accepted, ThreadName);
        Assume.That(pipe.OwnThread, Is.True);

        // The thread, idle, is blocked in the kernel: in poll (x64: poll 7 or ppoll 271; arm64: ppoll 73), woken by
        // the socket itself, not in futex (x64 202, arm64 98) waiting for .NET's socket event thread to wake it.
        int[] pollCalls = RuntimeInformation.ProcessArchitecture == Architecture.Arm64 ? [73] : [7, 271];
        int? syscall = null;
        var waited = Stopwatch.StartNew();
        while (waited.Elapsed < TimeSpan.FromSeconds(5) && (syscall is null || !pollCalls.Contains(syscall.Value)))
        {
            await Task.Delay(20);
            syscall = BlockedSyscall(ThreadName);
        }

        Assert.That(syscall, Is.AnyOf(pollCalls.Cast<object>().ToArray()), "the syscall the DNS thread waits in");

        using var delivered = new ManualResetEventSlim();
        _ = ReadOneAsync(pipe, delivered);
        peer.Send("query"u8);
        Assert.That(delivered.Wait(TimeSpan.FromSeconds(5)), Is.True, "what arrives is read after the poll");
    }

    /// <summary>A loopback TCP connection made with blocking calls only: the peer's socket, and the accepted one (for the
    /// pipe; the caller owns both).</summary>
    private static (Socket Peer, Socket Accepted) ConnectedPair()
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(1);
        var peer = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        peer.Connect(listener.LocalEndPoint!);
        return (peer, listener.Accept());
    }

    /// <summary>For a failure's message: the process's DNS threads (name, state, system call, kernel wait channel), the
    /// stream threads counted, the pool's threads and queue, and both hosts' log lines (this test failed in 2 of 12 full
    /// runs on 6 December without saying where the victim's query stopped).</summary>
    private static string DescribeDnsThreads(DnsTunnelHarness harness)
    {
        var lines = new List<string>
        {
            $"DnsStreamPipe.Threads {DnsStreamPipe.Threads}; pool threads {ThreadPool.ThreadCount}, queued {ThreadPool.PendingWorkItemCount}",
        };
        foreach (string task in Directory.GetDirectories("/proc/self/task"))
        {
            try
            {
                string name = File.ReadAllText(Path.Combine(task, "comm")).Trim();
                if (name.StartsWith("dns", StringComparison.Ordinal) || name.StartsWith("test upstream", StringComparison.Ordinal))
                {
                    string status = File.ReadLines(Path.Combine(task, "status")).FirstOrDefault(l => l.StartsWith("State:", StringComparison.Ordinal)) ?? "?";
                    string syscall = File.ReadAllText(Path.Combine(task, "syscall")).Split(' ')[0].Trim();
                    string wchan = File.ReadAllText(Path.Combine(task, "wchan")).Trim();
                    lines.Add($"{Path.GetFileName(task)} {name}: {status}, syscall {syscall}, wchan {wchan}");
                }
            }
            catch (IOException)
            {
                // The thread ended meanwhile.
            }
        }

        lines.Add("enclave log:");
        lines.AddRange(harness.EnclaveLog.Lines.TakeLast(20));
        lines.Add("parent log:");
        lines.AddRange(harness.ParentLog.Lines.TakeLast(20));
        return "\n" + string.Join('\n', lines);
    }

    /// <summary>The number of the system call the thread named <paramref name="name"/> is blocked in (null: none found, or running).</summary>
    private static int? BlockedSyscall(string name)
    {
        foreach (string task in Directory.GetDirectories("/proc/self/task"))
        {
            try
            {
                if (File.ReadAllText(Path.Combine(task, "comm")).Trim() != name)
                {
                    continue;
                }

                string first = File.ReadAllText(Path.Combine(task, "syscall")).Split(' ')[0].Trim();
                return int.TryParse(first, NumberStyles.Integer, CultureInfo.InvariantCulture, out int number) ? number : null;
            }
            catch (IOException)
            {
                // The thread ended meanwhile.
            }
        }

        return null;
    }

    [Test]
    public async Task DisposingAStreamPipeEndsItsReceiveThreadAndCompletesTheReader()
    {
        var (connected, accepted) = ConnectedPair();
        using var peer = connected;
        var pipe = DnsStreamPipe.Start(accepted, "test dns stream");

        var read = pipe.Input.ReadAsync().AsTask();
        await Task.Delay(50);
        pipe.Dispose();
        var result = await read.WaitAsync(TimeSpan.FromSeconds(5));

        Assert.That(result.IsCompleted, Is.True, "the blocked receive woke and the input completed");
    }

    // A review: a receive thread blocked in a flush (a megabyte nobody read) never woke on Dispose, and kept its place
    // among DnsStreamPipe.MaxThreads.
    [Test]
    public async Task DisposingAStreamPipeWhoseInputNobodyReadsEndsItsReceiveThread()
    {
        var (connected, accepted) = ConnectedPair();
        using var peer = connected;
        int before = DnsStreamPipe.Threads;
        var pipe = DnsStreamPipe.Start(accepted, "test dns stream");
        _ = peer.SendAsync(new byte[1_250_000], SocketFlags.None).ContinueWith(static _ => { }, TaskScheduler.Default);
        await Task.Delay(500); // the input holds its megabyte; the receive thread waits in its flush

        pipe.Dispose();
        DateTime giveUp = DateTime.UtcNow + TimeSpan.FromSeconds(5);
        while (DnsStreamPipe.Threads > before && DateTime.UtcNow < giveUp)
        {
            await Task.Delay(20);
        }

        Assert.That(DnsStreamPipe.Threads, Is.EqualTo(before), "the receive thread ended");
    }

    [Test]
    public async Task CloseAsyncSendsWhatWasWrittenAndThenEndOfStream()
    {
        var (connected, accepted) = ConnectedPair();
        using var peer = connected;
        var pipe = DnsStreamPipe.Start(accepted, "test dns stream");

        pipe.Output.Write("answer"u8);
        await pipe.CloseAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(5));
        byte[] buffer = new byte[64];
        int total = 0, got;
        peer.ReceiveTimeout = 5000;
        while ((got = peer.Receive(buffer.AsSpan(total))) > 0)
        {
            total += got;
        }

        Assert.That(buffer.AsSpan(0, total).ToArray(), Is.EqualTo("answer"u8.ToArray()));
    }

    [Test]
    public async Task StreamsBeyondTheThreadLimitReceiveOnThePoolAndStillDeliver()
    {
        var peers = new List<Socket>();
        var pipes = new List<DnsStreamPipe>();
        try
        {
            for (int i = 0; i <= DnsStreamPipe.MaxThreads; i++)
            {
                var (peer, accepted) = ConnectedPair();
                peers.Add(peer);
                pipes.Add(DnsStreamPipe.Start(accepted, "test dns stream"));
            }

            int threads = DnsStreamPipe.Threads;
            foreach (Socket peer in peers)
            {
                peer.Send("q"u8);
            }

            foreach (DnsStreamPipe pipe in pipes)
            {
                var read = await pipe.Input.ReadAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(5));
                Assert.That(read.Buffer.Length, Is.EqualTo(1));
            }

            Assert.Multiple(() =>
            {
                Assert.That(threads, Is.LessThanOrEqualTo(DnsStreamPipe.MaxThreads));
                Assert.That(pipes.Last().OwnThread, Is.False, "the one beyond the limit is on the pool");
            });
        }
        finally
        {
            pipes.ForEach(p => p.Dispose());
            peers.ForEach(p => p.Dispose());
        }
    }

    /// <summary>A thread that cannot be started (pthread_create failing at the process's limits) threw out of
    /// <see cref="DnsStreamPipe.Start"/> and kept its slot in the thread count for good.</summary>
    [Test]
    public async Task AThreadThatCannotStartFallsBackToThePoolAndGivesItsSlotBack()
    {
        var (connected, accepted) = ConnectedPair();
        using var peer = connected;
        int before = DnsStreamPipe.Threads;
        var start = DnsStreamPipe.StartThread;
        DnsStreamPipe.StartThread = (_, _, _) => throw new OutOfMemoryException("Thread failed to start.");
        DnsStreamPipe pipe;
        try
        {
            pipe = DnsStreamPipe.Start(accepted, "test dns stream");
        }
        finally
        {
            DnsStreamPipe.StartThread = start;
        }

        using (pipe)
        {
            peer.Send("q"u8);
            var read = await pipe.Input.ReadAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(5));

            Assert.Multiple(() =>
            {
                Assert.That(read.Buffer.Length, Is.EqualTo(1), "delivered from the pool");
                Assert.That(pipe.OwnThread, Is.False);
                Assert.That(DnsStreamPipe.Threads, Is.EqualTo(before), "the slot is given back");
            });
        }
    }

    [Test]
    public void ADnsThreadRunsTenNiceLevelsAboveTheThreadThatStartedIt()
    {
        int? starter = DnsThread.CurrentNice();
        var seen = new TaskCompletionSource<int?>(TaskCreationOptions.RunContinuationsAsynchronously);
        DnsThread.Start("test dns thread", _ => seen.SetResult(DnsThread.CurrentNice()), null);
        int? nice = seen.Task.WaitAsync(TimeSpan.FromSeconds(5)).GetAwaiter().GetResult();

        Assume.That(starter, Is.Not.Null, "Linux only");
        Assume.That(nice, Is.Not.EqualTo(starter), "raising a priority needs root or CAP_SYS_NICE");
        Assert.That(nice, Is.EqualTo(Math.Max(-20, starter!.Value - DnsThread.PriorityBoost)));
    }

    private static async Task ReadOneAsync(DnsStreamPipe pipe, ManualResetEventSlim delivered)
    {
        var result = await pipe.Input.ReadAsync().ConfigureAwait(false);
        if (result.Buffer.Length > 0)
        {
            delivered.Set();
        }
    }

    private static int Receive(Socket socket, byte[] buffer)
    {
        try
        {
            return socket.Receive(buffer);
        }
        catch (SocketException ex) when (ex.SocketErrorCode is SocketError.TimedOut or SocketError.WouldBlock)
        {
            return 0;
        }
    }

    /// <summary>Blocks every thread-pool worker (and the ones the pool adds meanwhile) until disposed.</summary>
    private sealed class ThreadPoolStarvation : IDisposable
    {
        private readonly ManualResetEventSlim _release = new();
        private int _blocked;

        public static ThreadPoolStarvation Start()
        {
            var starvation = new ThreadPoolStarvation();
            int items = (Environment.ProcessorCount * 4) + 64;
            for (int i = 0; i < items; i++)
            {
                ThreadPool.UnsafeQueueUserWorkItem(
                    static state =>
                    {
                        Interlocked.Increment(ref state._blocked);
                        state._release.Wait();
                    },
                    starvation,
                    preferLocal: false);
            }

            // Every worker there is now is blocked once the count stops growing for a moment.
            var settle = Stopwatch.StartNew();
            int seen = -1;
            while (settle.Elapsed < TimeSpan.FromSeconds(2) && seen != Volatile.Read(ref starvation._blocked))
            {
                seen = Volatile.Read(ref starvation._blocked);
                Thread.Sleep(100);
            }

            return starvation;
        }

        public void Dispose()
        {
            _release.Set();
        }
    }

    /// <summary>An upstream resolver on a thread of its own: answers every query with its question and no records.</summary>
    private sealed class ThreadedUpstream : IDisposable
    {
        private readonly Socket _socket = new(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        private readonly Thread _thread;

        public ThreadedUpstream()
        {
            _socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
            EndPoint = (IPEndPoint)_socket.LocalEndPoint!;
            _thread = new Thread(Serve) { IsBackground = true, Name = "test upstream" };
            _thread.Start();
        }

        public IPEndPoint EndPoint { get; }

        public void Dispose()
        {
            _socket.Dispose();
        }

        private void Serve()
        {
            byte[] buffer = new byte[4096];
            EndPoint from = new IPEndPoint(IPAddress.Any, 0);
            while (true)
            {
                int received;
                try
                {
                    received = _socket.ReceiveFrom(buffer, ref from);
                }
                catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
                {
                    return;
                }

                if (received < DnsHeader.Length)
                {
                    continue;
                }

                buffer[2] |= 0x80; // QR: a response, NOERROR, the question echoed, no records
                try
                {
                    _socket.SendTo(buffer.AsSpan(0, received), from);
                }
                catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
                {
                    return;
                }
            }
        }
    }
}
