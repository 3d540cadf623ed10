using System.Net;
using System.Net.Sockets;
using Egress.Connections;
using Microsoft.Extensions.Logging;

namespace Egress.Tests.Connections;

public sealed class ConnectionListenerTests
{
    private static readonly TimeSpan HangGuard = TimeSpan.FromSeconds(10);

    private LogCapture _logs = null!;
    private ILogger _logger = null!;

    [SetUp]
    public void CreateLogger()
    {
        _logs = new LogCapture();
        _logger = _logs.Factory.CreateLogger("test");
    }

    [TearDown]
    public void DisposeLogs() => _logs.Dispose();

    [Test]
    public async Task StopLetsLiveConnectionsFinishWithinTheDrain()
    {
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var handled = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var listener = Start(async (socket, aborted) =>
        {
            using (socket)
            {
                await release.Task;
                handled.SetResult(aborted.IsCancellationRequested);
            }
        }, out IPEndPoint endPoint);
        using Socket client = await ConnectAsync(endPoint);
        await WaitUntilAsync(() => listener.ActiveConnections == 1);

        Task stop = listener.StopAsync(TimeSpan.FromSeconds(30));
        await Task.Delay(50);
        Assert.That(stop.IsCompleted, Is.False, "stop waits for the live connection");
        release.SetResult();
        await stop.WaitAsync(HangGuard);

        Assert.That(await handled.Task, Is.False, "finished on its own, not aborted");
        Assert.That(listener.ActiveConnections, Is.Zero);
        Assert.That(_logs.EventIds, Has.None.EqualTo(13), "nothing aborted");
        Assert.That(_logs.Values(17, "Count"), Is.EqualTo(new[] { "1" }), "the stop says what it waits for");
        Assert.That(_logs.Values(17, "DrainSeconds"), Is.EqualTo(new[] { "30" }));
        Assert.That(_logs.EventIds.Where(id => id is 17 or 18), Is.EqualTo(new[] { 17, 18 }), "and that everything ended in time");
    }

    [Test]
    public async Task StopAbortsConnectionsStillLiveAtTheDeadline()
    {
        var observed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var listener = Start(async (socket, aborted) =>
        {
            using (socket)
            {
                try
                {
                    await Task.Delay(Timeout.Infinite, aborted);
                }
                catch (OperationCanceledException)
                {
                    observed.SetResult();
                }
            }
        }, out IPEndPoint endPoint);
        using Socket first = await ConnectAsync(endPoint);
        using Socket second = await ConnectAsync(endPoint);
        await WaitUntilAsync(() => listener.ActiveConnections == 2);

        await listener.StopAsync(TimeSpan.FromMilliseconds(100)).WaitAsync(HangGuard);

        Assert.That(observed.Task.IsCompletedSuccessfully, Is.True, "the handler saw its token cancelled");
        Assert.That(listener.ActiveConnections, Is.Zero);
        Assert.That(_logs.Values(13, "Count"), Is.EqualTo(new[] { "2" }), "aborted the two live connections");
        Assert.That(_logs.EventIds.Where(id => id is 17 or 18 or 13), Is.EqualTo(new[] { 17, 13 }), "draining, then the abort; never 'every live connection ended'");
    }

    [Test]
    public async Task StoppingTokenLetsAnIdleHandlerEndBeforeTheDrain()
    {
        ConnectionListener? self = null;
        var listener = Start(async (socket, aborted) =>
        {
            using (socket)
            {
                await Task.Delay(Timeout.Infinite, self!.Stopping).ContinueWith(_ => { }, TaskScheduler.Default);
            }
        }, out IPEndPoint endPoint);
        self = listener;
        using Socket client = await ConnectAsync(endPoint);
        await WaitUntilAsync(() => listener.ActiveConnections == 1);

        await listener.StopAsync(TimeSpan.FromSeconds(30)).WaitAsync(HangGuard);

        Assert.That(listener.ActiveConnections, Is.Zero);
        Assert.That(_logs.EventIds, Has.None.EqualTo(13), "nothing aborted");
        await listener.DisposeAsync();
    }

    [Test]
    public async Task StopGivesUpOnAHandlerThatIgnoresItsAbortToken()
    {
        var release = new TaskCompletionSource();
        await using var listener = Start((socket, _) => release.Task, out IPEndPoint endPoint, abortGrace: TimeSpan.FromMilliseconds(100));
        using Socket client = await ConnectAsync(endPoint);
        await WaitUntilAsync(() => listener.ActiveConnections == 1);

        await listener.StopAsync(TimeSpan.FromMilliseconds(50)).WaitAsync(HangGuard);

        Assert.That(listener.ActiveConnections, Is.EqualTo(1), "still running, abandoned");
        Assert.That((_logs.Values(14, "Count"), _logs.Values(14, "GraceMs")), Is.EqualTo((new[] { "1" }, new[] { "100" })));
        release.SetResult();
    }

    [Test]
    public async Task StoppedListenerRefusesNewConnections()
    {
        var listener = Start((socket, _) => { socket.Dispose(); return Task.CompletedTask; }, out IPEndPoint endPoint);
        await listener.DisposeAsync();

        var error = Assert.ThrowsAsync<SocketException>(async () => await ConnectAsync(endPoint));
        Assert.That(error!.SocketErrorCode, Is.EqualTo(SocketError.ConnectionRefused));
        await listener.StopAsync(TimeSpan.Zero).WaitAsync(HangGuard);
    }

    [Test]
    public async Task ThrowingHandlerCostsOneConnectionNotTheLoop()
    {
        int calls = 0;
        await using var listener = Start((socket, _) =>
        {
            if (Interlocked.Increment(ref calls) == 1)
            {
                throw new InvalidOperationException("handler bug");
            }

            socket.Send("ok"u8);
            socket.Dispose();
            return Task.CompletedTask;
        }, out IPEndPoint endPoint);

        using Socket failed = await ConnectAsync(endPoint);
        var buffer = new byte[16];
        int firstRead = await failed.ReceiveAsync(buffer).WaitAsync(HangGuard);
        using Socket served = await ConnectAsync(endPoint);
        int secondRead = await served.ReceiveAsync(buffer).WaitAsync(HangGuard);

        Assert.That(firstRead, Is.Zero, "the failed connection's socket is closed");
        Assert.That(secondRead, Is.EqualTo(2));
        Assert.That(_logs.Records.Where(r => r.Id.Id == 12).Select(r => r.Exception?.Message), Is.EqualTo(new[] { "handler bug" }));
    }

    [Test]
    public async Task HandlersThatFinishAtOnceAreNotLeftTracked()
    {
        const int Connections = 200;
        int handled = 0;
        await using var listener = Start((socket, _) =>
        {
            socket.Dispose();
            Interlocked.Increment(ref handled);
            return Task.CompletedTask;
        }, out IPEndPoint endPoint);

        for (int i = 0; i < Connections; i++)
        {
            using Socket client = await ConnectAsync(endPoint);
        }

        await WaitUntilAsync(() => Volatile.Read(ref handled) == Connections);
        await WaitUntilAsync(() => listener.ActiveConnections == 0);
        Assert.That(listener.ActiveConnections, Is.Zero);
    }

    [Test]
    public async Task AConnectionBeyondTheAdmissionLimitIsResetAtOnceAndTheRefusalLoggedWithTheReason()
    {
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        int handled = 0;
        var admission = new ConnectionAdmission(1, "enclave.max_connections", "connection", DescriptorBudget.ForLimit(65536, 0));
        using var telemetry = new Egress.Tests.Diagnostics.TelemetryProbe(Egress.Configuration.TunnelSide.Enclave);
        await using var listener = Start(async (socket, _) =>
        {
            using (socket)
            {
                Interlocked.Increment(ref handled);
                await release.Task;
            }
        }, out IPEndPoint endPoint, admission: admission, metrics: telemetry.Metrics);

        using Socket held = await ConnectAsync(endPoint);
        await WaitUntilAsync(() => Volatile.Read(ref handled) == 1);
        var reset = Assert.ThrowsAsync<SocketException>(async () =>
        {
            // On loopback the reset may already fail the connect; else it fails the first read.
            using Socket refused = await ConnectAsync(endPoint);
            await refused.ReceiveAsync(new byte[1].AsMemory(), SocketFlags.None).AsTask().WaitAsync(HangGuard);
        });
        Assert.That(reset!.SocketErrorCode, Is.EqualTo(SocketError.ConnectionReset));
        string line = await _logs.WaitForLineAsync("refused connection from");
        Assert.That(line, Does.Contain("connection limit reached (enclave.max_connections = 1)"));
        Assert.That(line, Does.Not.Contain("more refused"), "a first line says nothing of lines held back (it said \"(0 more ...)\")");
        // A field trial: the refusals were logged (one line a second) but counted nowhere.
        Assert.That(telemetry.Connections, Is.EqualTo(new[] { ((string?)"failed", (string?)"connection_limit") }));

        release.SetResult();
        await WaitUntilAsync(() => admission.Admitted == 0);
        using Socket next = await ConnectAsync(endPoint);
        await WaitUntilAsync(() => Volatile.Read(ref handled) == 2);
        Assert.That(Volatile.Read(ref handled), Is.EqualTo(2), "served once the place is free, without a restart");
    }

    /// <summary>A trial: egress-host at its stream limit on a Unix-socket tunnel logged "refused connection from :
    /// stream limit reached"; a peer without an address is named for what it is.</summary>
    [Test]
    public async Task ARefusalOfAUnixSocketPeerNamesItForWhatItIs()
    {
        string directory = Directory.CreateTempSubdirectory("egress-listener-").FullName;
        try
        {
            var path = Path.Combine(directory, "t.sock");
            var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            socket.Bind(new UnixDomainSocketEndPoint(path));
            socket.Listen(16);
            var admission = new ConnectionAdmission(1, "host.max_streams", "stream", DescriptorBudget.ForLimit(65536, 0));
            var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            await using var listener = new ConnectionListener(socket, "gateway unix:" + path, async (s, _) =>
            {
                using (s)
                {
                    await release.Task;
                }
            }, _logger) { Admission = admission };
            listener.Start();

            using var held = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            await held.ConnectAsync(new UnixDomainSocketEndPoint(path)).WaitAsync(HangGuard);
            await WaitUntilAsync(() => admission.Admitted == 1);
            using var refused = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            await refused.ConnectAsync(new UnixDomainSocketEndPoint(path)).WaitAsync(HangGuard);

            string line = await _logs.WaitForLineAsync("refused connection from");
            Assert.That(line, Does.Contain($"gateway unix:{path}: refused connection from an unnamed Unix-socket peer: stream limit reached (host.max_streams = 1)"));
            release.SetResult();
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    /// <summary>Stress scenario 1: 3,269 refusals in 2 s each logged a Warning line; past 2,500 queued lines the
    /// console logger makes every logging thread wait, the DNS forwarder's too (the hosts no longer use it). One line a
    /// second now, each saying how many more were refused, and the count of the last second is reported when the flood ends.</summary>
    [Test]
    public async Task AFloodOfRefusalsIsLoggedOnceASecondWithTheCountOfTheRest()
    {
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var admission = new ConnectionAdmission(1, "enclave.max_connections", "connection", DescriptorBudget.ForLimit(65536, 0));
        await using var listener = Start(async (socket, _) =>
        {
            using (socket)
            {
                await release.Task;
            }
        }, out IPEndPoint endPoint, admission: admission);

        using Socket held = await ConnectAsync(endPoint);
        await WaitUntilAsync(() => admission.Admitted == 1);
        const int Refused = 50;
        for (int i = 0; i < Refused; i++)
        {
            try
            {
                using Socket refused = await ConnectAsync(endPoint);
                await refused.ReceiveAsync(new byte[1].AsMemory(), SocketFlags.None).AsTask().WaitAsync(HangGuard);
            }
            catch (SocketException)
            {
                // reset, as expected
            }
        }

        var summary = await _logs.WaitForEventAsync(16, TimeSpan.FromSeconds(10));
        release.SetResult();
        int lines = _logs.EventIds.Count(id => id == 15);
        long inLines = _logs.Values(15, "Suppressed").Sum(v => long.Parse(v!, System.Globalization.CultureInfo.InvariantCulture));
        long inSummaries = _logs.Values(16, "HeldBack").Sum(v => long.Parse(v!, System.Globalization.CultureInfo.InvariantCulture));
        Assert.Multiple(() =>
        {
            Assert.That(lines, Is.InRange(1, 3), "one line a second while the loop runs");
            Assert.That(lines + inLines + inSummaries, Is.EqualTo(Refused), "every refusal is in a line or a count");
            Assert.That(summary.GetStructuredStateValue("EventId"), Is.EqualTo("15"));
        });
    }

    [Test]
    public async Task ARefusedConnectionIsHandedToTheAnswerWithItsReason()
    {
        var answered = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        var admission = new ConnectionAdmission(1, "host.max_streams", "stream", new DescriptorBudget(1024, capacity: 0));
        await using var listener = Start((socket, _) => Task.CompletedTask, out IPEndPoint endPoint, admission: admission,
            refused: async (socket, reason, _) =>
            {
                await socket.SendAsync("no"u8.ToArray());
                answered.SetResult(reason);
            });

        using Socket client = await ConnectAsync(endPoint);
        var answer = new byte[2];
        int got = await client.ReceiveAsync(answer.AsMemory(), SocketFlags.None).AsTask().WaitAsync(HangGuard);

        Assert.That(await answered.Task.WaitAsync(HangGuard), Is.EqualTo("descriptor limit reached (0 of 0 usable descriptors in use, RLIMIT_NOFILE = 1024)"));
        Assert.That(answer.AsSpan(0, got).ToArray(), Is.EqualTo("no"u8.ToArray()));
        await WaitUntilAsync(() => listener.ActiveConnections == 0);
    }

    /// <summary>
    /// With <see cref="ConnectionListener.HandlersOnAcceptThread"/> a handler starts on the thread that accepted its
    /// connection, before the next accept, under the epoll threads' rules (what it would hand to the thread pool from an
    /// epoll thread it hands there from this thread too), which end with its synchronous part; without it, the handler
    /// starts on another thread. The second accept holds its thread until the first handler has started, so a handler
    /// moved to the pool cannot run there.
    /// </summary>
    [TestCase(true)]
    [TestCase(false)]
    public async Task AHandlerStartsOnTheAcceptingThreadOnlyWhenAsked(bool onAcceptThread)
    {
        using var listening = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        using var accepted = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        using var handlerStarted = new ManualResetEventSlim();
        int accepts = 0;
        int acceptThread = 0;
        var secondAccept = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
        var handler = new TaskCompletionSource<(int Thread, int Accepts, bool Rules)>(TaskCreationOptions.RunContinuationsAsynchronously);

        ValueTask<Socket> Accept(CancellationToken stopping)
        {
            if (Interlocked.Increment(ref accepts) == 1)
            {
                acceptThread = Environment.CurrentManagedThreadId;
                return ValueTask.FromResult(accepted);
            }

            secondAccept.TrySetResult(Egress.Sockets.SocketReadiness.OnEpollThread); // the rules, as the next accept sees them
            handlerStarted.Wait(HangGuard); // this thread is busy until the first handler has started
            return new ValueTask<Socket>(Task.Delay(Timeout.Infinite, stopping).ContinueWith<Socket>(_ => throw new OperationCanceledException(stopping), TaskScheduler.Default));
        }

        await using var listener = new ConnectionListener(
            listening,
            Accept,
            "test listener",
            (socket, _) =>
            {
                handler.TrySetResult((Environment.CurrentManagedThreadId, Volatile.Read(ref accepts), Egress.Sockets.SocketReadiness.OnEpollThread));
                handlerStarted.Set();
                return Task.CompletedTask;
            },
            _logger)
        {
            HandlersOnAcceptThread = onAcceptThread,
        };
        listener.Start();

        var (thread, acceptsAtStart, rules) = await handler.Task.WaitAsync(HangGuard);
        bool rulesAtSecondAccept = await secondAccept.Task.WaitAsync(HangGuard);

        Assert.Multiple(() =>
        {
            Assert.That(thread == acceptThread, Is.EqualTo(onAcceptThread), "the handler ran on the accepting thread");
            Assert.That(rules, Is.EqualTo(onAcceptThread), "under the epoll threads' rules");
            Assert.That(rulesAtSecondAccept, Is.False, "the rules ended with the handler's synchronous part");
            if (onAcceptThread)
            {
                Assert.That(acceptsAtStart, Is.EqualTo(1), "started before the next accept");
            }
        });
    }

    private static async Task<Socket> ConnectAsync(IPEndPoint endPoint)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            await socket.ConnectAsync(endPoint).WaitAsync(HangGuard);
            return socket;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    private static async Task WaitUntilAsync(Func<bool> condition)
    {
        var deadline = DateTime.UtcNow + HangGuard;
        while (!condition())
        {
            Assert.That(DateTime.UtcNow, Is.LessThan(deadline), "condition not reached");
            await Task.Delay(5);
        }
    }

    private ConnectionListener Start(
        Func<Socket, CancellationToken, Task> handler,
        out IPEndPoint endPoint,
        TimeSpan? abortGrace = null,
        ConnectionAdmission? admission = null,
        Func<Socket, string, CancellationToken, Task>? refused = null,
        Egress.Diagnostics.EgressMetrics? metrics = null)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        socket.Listen(512);
        endPoint = (IPEndPoint)socket.LocalEndPoint!;
        var listener = new ConnectionListener(socket, "test listener", handler, _logger) { AbortGrace = abortGrace ?? TimeSpan.FromSeconds(5), Admission = admission, Refused = refused, RefusedMetrics = metrics };
        listener.Start();
        return listener;
    }
}
