using System.Net.Sockets;
using Egress.Sockets;
using Pipelines.Sockets.Unofficial;

namespace Egress.Relay;

/// <summary>Creates and closes the socket connections that hosts hand to <see cref="DuplexRelay"/>.</summary>
internal static class RelayPipes
{
    /// <summary>Wraps a connected stream socket (TCP, Unix or VSOCK) in a pipe pair tuned for relaying.</summary>
    /// <remarks>
    /// 64 KiB segments (one socket receive each); at most about 1 MiB buffered per pipe before the producer pauses
    /// (resuming below 512 KiB). Zero-length reads are on where the socket can say how many bytes are queued
    /// (FIONREAD), so an idle connection waits without renting a receive buffer; where FIONREAD fails (AF_VSOCK on
    /// kernels without SIOCINQ support for VSOCK, such as Linux 6.1) every read waits with a rented buffer.
    /// </remarks>
    /// <param name="socket">A connected stream socket; the connection takes ownership of it.</param>
    /// <returns>The connection; close it with <see cref="CloseAsync"/>.</returns>
    public static SocketConnection CreateConnection(Socket socket) => SocketPipe.Create(socket);

    /// <summary>
    /// Completes the connection's output, waits until its send loop has written every buffered byte to the socket
    /// and shut the send side down, then disposes the connection. Disposing earlier would drop the unsent tail.
    /// </summary>
    /// <param name="connection">The connection to close.</param>
    /// <param name="cancellationToken">Stops waiting (e.g. a peer that never reads); the connection is disposed regardless.</param>
    /// <returns>A task that completes when the connection is disposed.</returns>
    public static ValueTask CloseAsync(SocketConnection connection, CancellationToken cancellationToken = default) =>
        SocketPipe.CloseAsync(connection, cancellationToken);
}
