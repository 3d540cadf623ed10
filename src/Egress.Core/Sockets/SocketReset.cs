using System.Net.Sockets;

namespace Egress.Sockets;

/// <summary>How a stream socket is closed: abortively (the peer sees RST, ECONNRESET) or with FIN whatever its SO_LINGER.</summary>
internal static class SocketReset
{
    /// <summary>Closes the socket abortively: SO_LINGER 0 makes the kernel send RST instead of FIN. Use for denials and errors.</summary>
    /// <param name="socket">The socket to reset; already closed sockets are ignored.</param>
    public static void Reset(Socket socket) => Close(socket, Abortive);

    /// <summary>Sets SO_LINGER 0 on a connection that is to be closed with <see cref="CloseGracefully"/> when it ends:
    /// if the process ends first (killed, crashed), the kernel resets it instead of sending a FIN that would make a
    /// transfer cut short look complete. One setsockopt(2), no allocation.</summary>
    /// <exception cref="SocketException">The option cannot be set.</exception>
    /// <exception cref="ObjectDisposedException">The socket is closed.</exception>
    public static void ResetIfProcessEnds(Socket socket) => socket.LingerState = Abortive;

    /// <summary>Closes the socket with FIN whatever its SO_LINGER (an abortive one inherited from its listener,
    /// <c>EgressProxy.Bind</c>, or set by <see cref="ResetIfProcessEnds"/>): linger off, then close; the bytes still
    /// queued are delivered, as after any close.</summary>
    /// <param name="socket">The socket to close; one already closed (reset by its relay) is left as it is.</param>
    public static void CloseGracefully(Socket socket) => Close(socket, Off);

    /// <summary>Sets <paramref name="linger"/>, then closes; a socket already closed, or without linger, is just closed.</summary>
    private static void Close(Socket socket, LingerOption linger)
    {
        ArgumentNullException.ThrowIfNull(socket);
        try
        {
            socket.LingerState = linger;
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            // Not a socket that supports linger, or already closed (reset by its relay): closing is all that is left.
        }

        socket.Dispose();
    }

    // Shared, never changed: the runtime copies them into its setsockopt call.
    private static readonly LingerOption Abortive = new(enable: true, seconds: 0);
    private static readonly LingerOption Off = new(enable: false, seconds: 0);
}
