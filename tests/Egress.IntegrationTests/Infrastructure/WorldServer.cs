using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;

namespace Egress.IntegrationTests.Infrastructure;

/// <summary>
/// A small TCP server whose listening socket was created inside a namespace (dual-stack, every address of that
/// namespace). Each accepted connection runs <see cref="ServerBehaviour"/> and is closed when it returns.
/// </summary>
internal sealed class WorldServer : IAsyncDisposable
{
    private readonly Socket listener;
    private readonly ServerBehaviour behaviour;
    private readonly CancellationTokenSource stopping = new();
    private readonly ConcurrentDictionary<Socket, Task> connections = new();
    private readonly Task acceptLoop;
    private int accepted;

    private WorldServer(string name, int port, Socket listener, ServerBehaviour behaviour)
    {
        Name = name;
        Port = port;
        this.listener = listener;
        this.behaviour = behaviour;
        acceptLoop = Task.Run(AcceptLoopAsync);
    }

    public string Name { get; }

    public int Port { get; }

    /// <summary>How many connections reached this server (the world side of the proxy).</summary>
    public int AcceptedCount => Volatile.Read(ref accepted);

    /// <summary>Failures of connection handlers (an unexpected exception is a harness bug worth seeing).</summary>
    public ConcurrentQueue<Exception> Faults { get; } = new();

    public static WorldServer Start(string namespaceName, string name, int port, ServerBehaviour behaviour)
    {
        var listener = NetworkNamespace.Run(namespaceName, () =>
        {
            var socket = new Socket(AddressFamily.InterNetworkV6, SocketType.Stream, ProtocolType.Tcp) { DualMode = true };
            try
            {
                socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
                socket.Bind(new IPEndPoint(IPAddress.IPv6Any, port));
                socket.Listen(128);
                return socket;
            }
            catch
            {
                socket.Dispose();
                throw;
            }
        });
        return new WorldServer(name, port, listener, behaviour);
    }

    public async ValueTask DisposeAsync()
    {
        await stopping.CancelAsync().ConfigureAwait(false);
        listener.Dispose();
        await acceptLoop.ConfigureAwait(false);
        foreach (var connection in connections.Keys)
        {
            connection.Dispose();
        }

        await Task.WhenAll(connections.Values).WaitAsync(TimeSpan.FromSeconds(5)).ConfigureAwait(false);
        stopping.Dispose();
    }

    private async Task AcceptLoopAsync()
    {
        while (!stopping.IsCancellationRequested)
        {
            Socket connection;
            try
            {
                connection = await listener.AcceptAsync(stopping.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or SocketException)
            {
                return;
            }

            Interlocked.Increment(ref accepted);
            connection.NoDelay = true;
            connections[connection] = Task.Run(() => ServeAsync(connection));
        }
    }

    private async Task ServeAsync(Socket connection)
    {
        try
        {
            await using var stream = new NetworkStream(connection, ownsSocket: false);
            await behaviour(stream, connection, stopping.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or ObjectDisposedException)
        {
            // A peer reset or the fixture stopping: normal for a test server.
        }
#pragma warning disable CA1031 // recorded for the test to see, never swallowed silently
        catch (Exception e)
#pragma warning restore CA1031
        {
            Faults.Enqueue(e);
        }
        finally
        {
            connection.Dispose();
            connections.TryRemove(connection, out _);
        }
    }
}
