using System.Net.Sockets;
using System.Runtime.InteropServices;

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
    public static void ResetIfProcessEnds(Socket socket)
    {
        Span<int> on = [1, 0]; // struct linger { int l_onoff = 1; int l_linger = 0; }, in the machine's byte order
        socket.SetRawSocketOption(SolSocket, SoLinger, MemoryMarshal.AsBytes(on));
    }

    /// <summary>Closes the socket with FIN whatever its SO_LINGER (an abortive one inherited from its listener,
    /// <c>EgressProxy.Bind</c>): linger off, then close; the bytes still queued are delivered, as after any close.</summary>
    /// <param name="socket">The socket to close; one already closed (reset by its relay) is left as it is.</param>
    public static void CloseGracefully(Socket socket)
    {
        ArgumentNullException.ThrowIfNull(socket);
        try
        {
            Span<byte> off = stackalloc byte[8]; // struct linger { int l_onoff = 0; int l_linger = 0; }
            off.Clear();
            socket.SetRawSocketOption(SolSocket, SoLinger, off);
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            // Already closed (reset), or not a socket with linger: closing below is all that is left.
        }

        socket.Dispose();
    }

    private const int SolSocket = 1; // SOL_SOCKET (Linux)
    private const int SoLinger = 13; // SO_LINGER (Linux)
}
