using System.Net.Sockets;

namespace Egress.Sockets;

/// <summary>Abortive close of a stream socket: the peer sees RST (ECONNRESET), not FIN.</summary>
internal static class SocketReset
{
    /// <summary>Closes the socket abortively: SO_LINGER 0 makes the kernel send RST instead of FIN. Use for denials and errors.</summary>
    /// <param name="socket">The socket to reset; already closed sockets are ignored.</param>
    public static void Reset(Socket socket)
    {
        ArgumentNullException.ThrowIfNull(socket);
        try
        {
            socket.LingerState = new LingerOption(enable: true, seconds: 0);
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            // Not a socket that supports linger, or already closed: closing below is all that is left.
        }

        socket.Dispose();
    }

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
    public static void CloseGracefully(Socket socket)
    {
        ArgumentNullException.ThrowIfNull(socket);
        try
        {
            socket.LingerState = Off;
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            // Already closed (reset), or not a socket with linger: closing below is all that is left.
        }

        socket.Dispose();
    }

    // Shared, never changed: the runtime copies them into its setsockopt call.
    private static readonly LingerOption Abortive = new(enable: true, seconds: 0);
    private static readonly LingerOption Off = new(enable: false, seconds: 0);
}
