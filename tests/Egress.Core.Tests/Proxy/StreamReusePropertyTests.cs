using Egress.Configuration;
using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using Egress.Diagnostics;
using Egress.Gateway;
using Egress.Interception;
using Egress.Policy;
using Egress.Proxy;
using Egress.Relay;
using Egress.Sockets;
using Egress.Tests.Diagnostics;
using Egress.Tests.Relay;
using Egress.Tunnel;
using Microsoft.Extensions.Diagnostics.Metrics.Testing;

namespace Egress.Tests.Proxy;

/// <summary>
/// Stream reuse end to end (docs/tunnel-protocol.md, "Stream reuse"): many concurrent application connections through
/// a real <see cref="ProxyConnectionHandler"/> (version 2 with a small pool, and a version 1 one on the same parent)
/// and a real <see cref="TunnelGateway"/> on a <c>unix:</c> tunnel, to a loopback server that plays each connection's
/// script: random sizes each way, either side half-closing first, the application or the server resetting half way.
/// The parent's idle limit between requests is random too (a few milliseconds: it closes pooled streams under the
/// enclave's feet all the time, racing its rents; or 60 s: streams are reused). Every connection's bytes carry its
/// index and are checked whole (clean) or as a prefix ending in a reset (aborted; a version 1 stream over a Unix socket
/// cannot carry a reset, which arrives as an end of stream, the limit version 2 removes): a stream that carried two
/// connections' bytes, lost a byte or mistook an abort for a clean end fails. The seed is printed with every failure.
/// </summary>
/// <remarks>Run twice: with the library's defaults, and as the hosts run (their runtime switches: a relay that ends clean
/// on an epoll thread finishes there, on both sides, and the parent starts a new stream's handler on the thread that
/// accepted it).</remarks>
[NonParallelizable]
[TestFixture(false)]
[TestFixture(true)]
public sealed class StreamReusePropertyTests(bool asTheHostsRun)
{
    private const int Connections = 40;
    private const int Concurrency = 8;
    private const int PoolCapacity = 3;
    private static readonly TimeSpan RunGuard = TimeSpan.FromSeconds(30);

    private enum Abort
    {
        None,
        App,
        Server,
    }

    public static IEnumerable<int> Seeds() => [1, 2, 3, 4, 5, 6, 7, Random.Shared.Next()];

    [TestCaseSource(nameof(Seeds))]
    public async Task EveryConnectionsBytesArriveIntactOnReusedStreams(int seed)
    {
        TestContext.Out.WriteLine($"seed {seed}, as the hosts run: {asTheHostsRun}");
        var random = new Random(seed);
        TimeSpan parentIdle = random.Next(3) switch
        {
            0 => TimeSpan.FromMilliseconds(1),
            1 => TimeSpan.FromMilliseconds(random.Next(2, 30)),
            _ => TimeSpan.FromSeconds(60),
        };
        Plan[] plans = [.. Enumerable.Range(0, Connections).Select(i => Plan.Random(i, random))];
        int[] startDelaysMs = [.. plans.Select(_ => random.Next(0, 15))];
        string context = $"seed {seed}, parent idle limit {parentIdle.TotalMilliseconds} ms";
        TestContext.Out.WriteLine(context);

        string directory = Directory.CreateTempSubdirectory("egress-reuse-prop-").FullName;
        using var parentProbe = new TelemetryProbe(TunnelSide.Host);
        using var enclaveProbe = new TelemetryProbe(TunnelSide.Enclave);
        using var reuses = new MetricCollector<long>(enclaveProbe.Meters, EgressMetrics.MeterName, "egress.tunnel.reuses");
        using var server = new ScriptServer(plans);
        var tunnel = TunnelEndpoint.Parse($"unix:{directory}/tunnel.sock");
        var gateway = new TunnelGateway(
            new TunnelGatewayOptions
            {
                Listen = tunnel,
                Metrics = parentProbe.Metrics,
                DnsUpstreams = [new IPEndPoint(IPAddress.Loopback, 9)],
                ShutdownDrain = TimeSpan.FromSeconds(1),
                IdleBetweenRequests = parentIdle,
                Relay = new RelayOptions { EndOnEpollThread = asTheHostsRun },
                HandlersOnAcceptThread = asTheHostsRun,
            },
            EgressPolicy.Create(true, ["127.0.0.1"], new AllowlistCache(new AllowlistCacheOptions())),
            parentProbe.LoggerFactory);
        var pool = new TunnelStreamPool(PoolCapacity, TunnelStreamPool.DefaultIdleExpiry, TimeProvider.System);
        int streamsOpened = 0;
        var options = new EgressProxyOptions { Tunnel = tunnel, Metrics = enclaveProbe.Metrics, Relay = new RelayOptions { EndOnEpollThread = asTheHostsRun } };
        var policy = EgressPolicy.Create(true, ["127.0.0.1"], new AllowlistCache(new AllowlistCacheOptions()));
        var original = new OriginalDestinationResult(OriginalDestinationStatus.Redirected, server.EndPoint, null);
        using var version2 = new ProxyConnectionHandler(options, policy, enclaveProbe.Logger, _ => original, cancellationToken =>
        {
            Interlocked.Increment(ref streamsOpened);
            return tunnel.ConnectAsync(cancellationToken);
        }, TunnelCodec.Version2, pool);
        using var version1 = new ProxyConnectionHandler(options, policy, enclaveProbe.Logger, _ => original, tunnel.ConnectAsync, TunnelCodec.Version);

        int mostPooled = 0;
        using var sampling = new CancellationTokenSource();
        Task sampler = Task.Run(async () =>
        {
            while (!sampling.IsCancellationRequested)
            {
                mostPooled = Math.Max(mostPooled, pool.Count);
                await Task.Delay(1);
            }
        });

        try
        {
            gateway.Start();
            using var slots = new SemaphoreSlim(Concurrency);
            Task<(AppSeen App, ProxyConnectionResult Result)>[] running = [.. plans.Select(async plan =>
            {
                await slots.WaitAsync();
                try
                {
                    await Task.Delay(startDelaysMs[plan.Index]);
                    return await RunAppAsync(plan, plan.Version1 ? version1 : version2, server);
                }
                finally
                {
                    slots.Release();
                }
            })];
            var all = Task.WhenAll(running);
            if (await Task.WhenAny(all, Task.Delay(RunGuard)) != all)
            {
                string pending = string.Join("; ", plans.Where(plan => !running[plan.Index].IsCompleted));
                Assert.Fail($"{context}: connections still running after {RunGuard.TotalSeconds} s: {pending}");
            }

            var outcomes = await all;
            await sampling.CancelAsync();
            await sampler;

            Assert.Multiple(async () =>
            {
                foreach (Plan plan in plans)
                {
                    var (app, result) = outcomes[plan.Index];
                    var seen = await server.Seen(plan.Index).WaitAsync(RunGuard);
                    string which = $"{context}: connection {plan}";
                    switch (plan.Abort)
                    {
                        case Abort.None:
                            Assert.That(app.End, Is.EqualTo(SocketError.Success), $"{which}: the app sees a clean end");
                            Assert.That(app.Received.AsSpan().SequenceEqual(plan.Down), Is.True, $"{which}: every byte to the app, intact ({app.Received.Length} of {plan.Down.Length})");
                            Assert.That(seen.End, Is.EqualTo(SocketError.Success), $"{which}: the server sees a clean end");
                            Assert.That(seen.Received.AsSpan().SequenceEqual(plan.Up), Is.True, $"{which}: every byte to the server, intact ({seen.Received.Length} of {plan.Up.Length})");
                            Assert.That((result.Outcome, result.Relay?.FirstCause), Is.EqualTo((ConnectionOutcome.Relayed, (RelayShutdownCause?)RelayShutdownCause.BothCompleted)), which);
                            break;
                        case Abort.App:
                            Assert.That(seen.End, Is.EqualTo(SocketError.ConnectionReset).Or.EqualTo(plan.Version1 ? SocketError.Success : SocketError.ConnectionReset), $"{which}: the app's reset reaches the server as a reset");
                            Assert.That(plan.Up.AsSpan().StartsWith(seen.Received) && seen.Received.Length >= plan.Partial + 4, Is.True, $"{which}: the server got a prefix of the app's bytes");
                            break;
                        case Abort.Server:
                            Assert.That(app.End, Is.EqualTo(SocketError.ConnectionReset).Or.EqualTo(plan.Version1 ? SocketError.Success : SocketError.ConnectionReset), $"{which}: the server's reset reaches the app as a reset");
                            Assert.That(plan.Down.AsSpan().StartsWith(app.Received), Is.True, $"{which}: the app got a prefix of the server's bytes");
                            break;
                    }
                }

                Assert.That(server.Unattributed, Is.Zero, $"{context}: every connection to the server was one of the scripted ones");
                Assert.That(mostPooled, Is.LessThanOrEqualTo(PoolCapacity), $"{context}: the pool stays within its capacity");
                Assert.That(enclaveProbe.TunnelErrors, Is.Empty, $"{context}: no tunnel failure on the enclave (a stale pooled stream is retried, not failed)");
                Assert.That(parentProbe.TunnelErrors, Is.Empty, $"{context}: no tunnel failure on the parent");
                int version2Connections = plans.Count(plan => !plan.Version1);
                long reused = reuses.GetMeasurementSnapshot().Sum(m => m.Value);
                Assert.That(streamsOpened + reused, Is.GreaterThanOrEqualTo(version2Connections), $"{context}: each version 2 connection on a new or a reused stream");
                if (parentIdle >= TimeSpan.FromSeconds(1))
                {
                    Assert.That(reused, Is.GreaterThan(0), $"{context}: streams were reused ({streamsOpened} opened for {version2Connections} connections)");
                }
            });
            TestContext.Out.WriteLine($"{context}: {streamsOpened} streams opened, {reuses.GetMeasurementSnapshot().Sum(m => m.Value)} reused, most pooled {mostPooled}, {enclaveProbe.EventIds.Count(id => id == 131)} stale pooled streams retried");
        }
        finally
        {
            await sampling.CancelAsync();
            await gateway.DisposeAsync();
            Directory.Delete(directory, recursive: true);
        }
    }

    /// <summary>The application's side of one connection, by its plan; returns what it received and how its stream ended.</summary>
    private static async Task<(AppSeen App, ProxyConnectionResult Result)> RunAppAsync(Plan plan, ProxyConnectionHandler handler, ScriptServer server)
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen();
        using var app = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await app.ConnectAsync(listener.LocalEndPoint!);
        Socket accepted = await listener.AcceptAsync();
        Task<ProxyConnectionResult> handling = handler.HandleAsync(accepted, CancellationToken.None);
        AppSeen seen = new([], SocketError.Success);
        switch (plan.Abort)
        {
            case Abort.None when plan.AppClosesFirst:
                await app.SendAsync(plan.Up);
                app.Shutdown(SocketShutdown.Send);
                seen = await ReadWhatArrivesAsync(app);
                break;
            case Abort.None:
                await app.SendAsync(plan.Up.AsMemory(0, 4));
                seen = await ReadWhatArrivesAsync(app);
                await app.SendAsync(plan.Up.AsMemory(4));
                app.Shutdown(SocketShutdown.Send);
                break;
            case Abort.App:
                await app.SendAsync(plan.Up.AsMemory(0, 4 + plan.Partial));
                await server.GotPartial(plan.Index).WaitAsync(RunGuard);
                SocketReset.Reset(app);
                break;
            case Abort.Server:
                await app.SendAsync(plan.Up.AsMemory(0, 4));
                seen = await ReadWhatArrivesAsync(app);
                try
                {
                    app.Shutdown(SocketShutdown.Both); // version 1: the reset arrived as an end of stream; the app closes too
                }
                catch (SocketException)
                {
                    // Reset: nothing to close.
                }

                break;
        }

        return (seen, await handling.WaitAsync(RunGuard));
    }

    private static async Task<AppSeen> ReadWhatArrivesAsync(Socket socket)
    {
        var (received, end) = await FramedRelayTests.ReadWhatArrivesAsync(socket).WaitAsync(RunGuard);
        return new AppSeen(received, end);
    }

    private sealed record AppSeen(byte[] Received, SocketError End);

    /// <summary>One connection's script. <see cref="Up"/> starts with the index (4 bytes, big-endian) so that the server
    /// knows whose bytes arrive.</summary>
    private sealed record Plan(int Index, byte[] Up, byte[] Down, bool AppClosesFirst, Abort Abort, int Partial, bool Version1)
    {
        public static Plan Random(int index, Random random)
        {
            byte[] up = DuplexRelayTests.RandomBytes(4 + Size(random), random.Next());
            BinaryPrimitives.WriteInt32BigEndian(up, index);
            byte[] down = DuplexRelayTests.RandomBytes(Size(random), random.Next());
            var abort = random.Next(6) switch { 0 => Abort.App, 1 => Abort.Server, _ => Abort.None };
            int partial = random.Next(0, Math.Min(up.Length - 4, 64 * 1024) + 1);
            if (abort == Abort.Server)
            {
                partial = random.Next(0, down.Length + 1);
            }

            return new Plan(index, up, down, random.Next(2) == 0, abort, partial, random.Next(8) == 0);
        }

        public override string ToString() =>
            $"#{Index} (up {Up.Length - 4} B, down {Down.Length} B, {(AppClosesFirst ? "app" : "server")} closes first, abort {Abort} after {Partial} B, version {(Version1 ? 1 : 2)})";

        private static int Size(Random random) => random.Next(4) switch
        {
            0 => 0,
            1 => random.Next(1, 2048),
            _ => random.Next(2048, 256 * 1024),
        };
    }

    private sealed record ServerSeen(byte[] Received, SocketError End);

    /// <summary>The destination: plays the script of the connection whose index arrives first, and records what it got.</summary>
    private sealed class ScriptServer : IDisposable
    {
        private readonly Socket _listener = new(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        private readonly Plan[] _plans;
        private readonly ConcurrentDictionary<int, TaskCompletionSource<ServerSeen>> _seen = new();
        private readonly ConcurrentDictionary<int, TaskCompletionSource> _gotPartial = new();
        private int _unattributed;

        public ScriptServer(Plan[] plans)
        {
            _plans = plans;
            _listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
            _listener.Listen(128);
            EndPoint = (IPEndPoint)_listener.LocalEndPoint!;
            _ = AcceptAsync();
        }

        public IPEndPoint EndPoint { get; }

        public int Unattributed => Volatile.Read(ref _unattributed);

        public Task<ServerSeen> Seen(int index) => Completion(_seen, index).Task;

        public Task GotPartial(int index) => Completion(_gotPartial, index).Task;

        public void Dispose() => _listener.Dispose();

        private static T Completion<T>(ConcurrentDictionary<int, T> map, int index)
            where T : class => map.GetOrAdd(index, _ => (T)Activator.CreateInstance(typeof(T), TaskCreationOptions.RunContinuationsAsynchronously)!);

        private async Task AcceptAsync()
        {
            while (true)
            {
                Socket socket;
                try
                {
                    socket = await _listener.AcceptAsync();
                }
                catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
                {
                    return;
                }

                _ = Task.Run(() => ServeAsync(socket));
            }
        }

        private async Task ServeAsync(Socket socket)
        {
            using (socket)
            {
                byte[] head = new byte[4];
                int index;
                try
                {
                    await TunnelWireRead(socket, head);
                    index = BinaryPrimitives.ReadInt32BigEndian(head);
                }
                catch (Exception ex) when (ex is SocketException or EndOfStreamException)
                {
                    Interlocked.Increment(ref _unattributed);
                    return;
                }

                if (index < 0 || index >= _plans.Length)
                {
                    Interlocked.Increment(ref _unattributed);
                    return;
                }

                Plan plan = _plans[index];
                byte[] received = [];
                SocketError end = SocketError.Success;
                try
                {
                    switch (plan.Abort)
                    {
                        case Abort.None when plan.AppClosesFirst:
                            (received, end) = await FramedRelayTests.ReadWhatArrivesAsync(socket);
                            await socket.SendAsync(plan.Down);
                            socket.Shutdown(SocketShutdown.Send);
                            break;
                        case Abort.None:
                            await socket.SendAsync(plan.Down);
                            socket.Shutdown(SocketShutdown.Send);
                            (received, end) = await FramedRelayTests.ReadWhatArrivesAsync(socket);
                            break;
                        case Abort.App:
                            byte[] partial = new byte[plan.Partial];
                            await TunnelWireRead(socket, partial);
                            Completion(_gotPartial, index).SetResult();
                            var (rest, restEnd) = await FramedRelayTests.ReadWhatArrivesAsync(socket);
                            (received, end) = ([.. partial, .. rest], restEnd);
                            break;
                        case Abort.Server:
                            await socket.SendAsync(plan.Down.AsMemory(0, plan.Partial));
                            SocketReset.Reset(socket);
                            break;
                    }
                }
                catch (Exception ex) when (ex is SocketException or EndOfStreamException or ObjectDisposedException)
                {
                    end = ex is SocketException socketError ? socketError.SocketErrorCode : SocketError.SocketError;
                }

                Completion(_seen, index).TrySetResult(new ServerSeen([.. head, .. received], end));
            }
        }

        private static async Task TunnelWireRead(Socket socket, Memory<byte> buffer)
        {
            while (!buffer.IsEmpty)
            {
                int read = await socket.ReceiveAsync(buffer);
                if (read == 0)
                {
                    throw new EndOfStreamException();
                }

                buffer = buffer[read..];
            }
        }
    }
}
