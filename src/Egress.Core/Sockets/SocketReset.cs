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
}
