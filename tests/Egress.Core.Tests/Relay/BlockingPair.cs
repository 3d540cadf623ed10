using System.Net;
using System.Net.Sockets;
using Egress.Sockets;

namespace Egress.Tests.Relay;

/// <summary>Two connected sockets made with blocking calls only (Left: the connecting side, Right: the accepted one).</summary>
internal sealed class BlockingPair(Socket left, Socket right, string? directory) : IDisposable
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
            // Connected as the hosts connect (the tunnel, the destination): never given the runtime's asynchronous context.
            var left = new Socket(listener.AddressFamily, SocketType.Stream, listener.ProtocolType);
            SocketReadiness.ConnectWithoutContextAsync(left, listener.LocalEndPoint!, CancellationToken.None)
                .AsTask().GetAwaiter().GetResult(); // completes into the backlog
            SocketNative.SetNonBlocking(left.SafeHandle, false); // for the test's blocking calls; a relay sets it again
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
