using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using Egress.Connections;
using Microsoft.Extensions.Logging;

namespace Egress.Tests.Connections;

/// <summary>
/// The bound on connections being set up at once (<see cref="ConnectionSetupLimit"/>, <c>enclave.max_pending_connections</c>):
/// the listener accepts no more while the limit's connections are being set up (the rest wait in the kernel's listen
/// backlog), and a place is free again once its connection is set up, ends, or is refused.
/// </summary>
public sealed class ConnectionSetupLimitTests
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
    public async Task NoMoreThanTheLimitAreAcceptedWhileBeingSetUpAndTheRestWaitInTheBacklog()
    {
        var limit = new ConnectionSetupLimit(2, "enclave.max_pending_connections");
        var setups = new ConcurrentQueue<ConnectionSetup>();
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var listener = Start(async (socket, setup, _) =>
        {
            using (socket)
            {
                setups.Enqueue(setup);
                await release.Task;
            }
        }, limit, out IPEndPoint endPoint);

        var clients = new List<Socket>();
        try
        {
            for (int i = 0; i < 5; i++)
            {
                clients.Add(await ConnectAsync(endPoint)); // the kernel completes the handshake: queued in the backlog
            }

            await WaitUntilAsync(() => listener.ActiveConnections == 2);
            await Task.Delay(200);
            Assert.That(listener.ActiveConnections, Is.EqualTo(2), "two being set up: the other three stay in the backlog");
            Assert.That(limit.Pending, Is.EqualTo(2));
            Assert.That(limit.Waits, Is.GreaterThanOrEqualTo(1), "the accept loop waited for a place");

            Assert.That(setups.TryDequeue(out ConnectionSetup? first), Is.True);
            first!.Complete(); // set up (relaying): its place goes to the next connection, the connection stays
            await WaitUntilAsync(() => listener.ActiveConnections == 3);
            await Task.Delay(100);
            Assert.That(listener.ActiveConnections, Is.EqualTo(3), "one place freed, one more accepted");

            release.SetResult(); // every handler ends: each place is given back, the last two are accepted too
            await WaitUntilAsync(() => setups.Count == 4 && listener.ActiveConnections == 0 && limit.Pending == 0);
        }
        finally
        {
            release.TrySetResult();
            clients.ForEach(c => c.Dispose());
        }
    }

    [Test]
    public async Task AHandlerThatEndsWithoutCompletingGivesItsPlaceBack()
    {
        var limit = new ConnectionSetupLimit(1, "enclave.max_pending_connections");
        int handled = 0;
        await using var listener = Start((socket, _, _) =>
        {
            socket.Dispose(); // denied, failed: never set up
            Interlocked.Increment(ref handled);
            return Task.CompletedTask;
        }, limit, out IPEndPoint endPoint);

        for (int i = 0; i < 4; i++)
        {
            using Socket client = await ConnectAsync(endPoint);
        }

        await WaitUntilAsync(() => Volatile.Read(ref handled) == 4);
        await WaitUntilAsync(() => limit.Pending == 0);
    }

    [Test]
    public async Task AThrowingHandlerGivesItsPlaceBack()
    {
        var limit = new ConnectionSetupLimit(1, "enclave.max_pending_connections");
        int handled = 0;
        await using var listener = Start((socket, _, _) =>
        {
            Interlocked.Increment(ref handled);
            throw new InvalidOperationException("handler bug");
        }, limit, out IPEndPoint endPoint);

        using Socket first = await ConnectAsync(endPoint);
        using Socket second = await ConnectAsync(endPoint);

        await WaitUntilAsync(() => Volatile.Read(ref handled) == 2);
        await WaitUntilAsync(() => limit.Pending == 0);
    }

    [Test]
    public async Task AConnectionRefusedByTheAdmissionDoesNotHoldItsPlace()
    {
        var limit = new ConnectionSetupLimit(1, "enclave.max_pending_connections");
        var admission = new ConnectionAdmission(1, "enclave.max_connections", "connection", new DescriptorBudget(1024, capacity: 0));
        await using var listener = Start((socket, _, _) => Task.CompletedTask, limit, out IPEndPoint endPoint, admission);

        for (int i = 0; i < 3; i++)
        {
            using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            SocketError end;
            try
            {
                await client.ConnectAsync(endPoint).WaitAsync(HangGuard);
                end = await EndOfAsync(client);
            }
            catch (SocketException ex)
            {
                end = ex.SocketErrorCode; // reset before the connect's completion was seen
            }

            Assert.That(end, Is.EqualTo(SocketError.ConnectionReset), $"connection {i} refused (reset), not left waiting");
        }

        await WaitUntilAsync(() => limit.Pending == 0);
    }

    [Test]
    public async Task StopEndsTheAcceptLoopWhileItWaitsForAPlace()
    {
        var limit = new ConnectionSetupLimit(1, "enclave.max_pending_connections");
        var listener = Start(async (socket, _, aborted) =>
        {
            using (socket)
            {
                await Task.Delay(Timeout.Infinite, aborted).ContinueWith(_ => { }, TaskScheduler.Default);
            }
        }, limit, out IPEndPoint endPoint);
        using Socket first = await ConnectAsync(endPoint);
        using Socket second = await ConnectAsync(endPoint);
        await WaitUntilAsync(() => listener.ActiveConnections == 1 && limit.Waits == 1);

        await listener.DisposeAsync().AsTask().WaitAsync(HangGuard);

        Assert.That(listener.ActiveConnections, Is.Zero);
        Assert.That(limit.Pending, Is.Zero, "the aborted connection's place and the waiting loop's place are both back");
    }

    [Test]
    public void CompletingTwiceGivesThePlaceBackOnce()
    {
        var limit = new ConnectionSetupLimit(2, "enclave.max_pending_connections");
        Assert.That(limit.TakeAsync(CancellationToken.None).AsTask().Result, Is.True);
        Assert.That(limit.TakeAsync(CancellationToken.None).AsTask().Result, Is.True);
        ConnectionSetup setup = limit.Hold();

        setup.Complete();
        setup.Complete();

        Assert.That(limit.Pending, Is.EqualTo(1));
        Assert.That(setup.IsComplete, Is.True);
        Assert.That(ConnectionSetup.None.IsComplete, Is.True, "no place to give back");
    }

    [Test]
    public void TheDerivedLimitIs32PerProcessorAndAtLeast16()
    {
        Assert.That(ConnectionSetupLimit.DerivedLimit(2), Is.EqualTo(64));
        Assert.That(ConnectionSetupLimit.DerivedLimit(1), Is.EqualTo(32));
        Assert.That(ConnectionSetupLimit.DerivedLimit(0), Is.EqualTo(32), "an unknown count counts as one processor");
        Assert.That(new ConnectionSetupLimit(0, "enclave.max_pending_connections").Limit, Is.EqualTo(ConnectionSetupLimit.DerivedLimit(Environment.ProcessorCount)));
        Assert.That(new ConnectionSetupLimit(0, "enclave.max_pending_connections").LimitText(),
            Does.StartWith($"(enclave.max_pending_connections = {ConnectionSetupLimit.DerivedLimit(Environment.ProcessorCount)}, derived from {Environment.ProcessorCount} processors)"));
        Assert.That(new ConnectionSetupLimit(7, "enclave.max_pending_connections").LimitText(), Is.EqualTo("(enclave.max_pending_connections = 7)"));
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

    private static async Task<SocketError> EndOfAsync(Socket client)
    {
        try
        {
            int got = await client.ReceiveAsync(new byte[1].AsMemory(), SocketFlags.None).AsTask().WaitAsync(HangGuard);
            return got == 0 ? SocketError.Success : SocketError.MessageSize;
        }
        catch (SocketException ex)
        {
            return ex.SocketErrorCode;
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
        Func<Socket, ConnectionSetup, CancellationToken, Task> handler, ConnectionSetupLimit limit, out IPEndPoint endPoint, ConnectionAdmission? admission = null)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        socket.Listen(64);
        endPoint = (IPEndPoint)socket.LocalEndPoint!;
        var listener = new ConnectionListener(socket, "test listener", handler, _logger) { SetupLimit = limit, Admission = admission };
        listener.Start();
        return listener;
    }
}
