using System.Net.Sockets;

namespace Egress.Sockets;

/// <summary>SO_REUSEADDR alone on a TCP listener, so a restarted host binds its port at once while connections of the
/// one before it are still in TIME_WAIT.</summary>
internal static class SocketAddressReuse
{
    // <asm-generic/socket.h>: SOL_SOCKET 1, SO_REUSEADDR 2 (every Linux architecture .NET runs on).
    private const int SolSocket = 1;
    private const int SoReuseAddr = 2;

    /// <summary>
    /// Sets SO_REUSEADDR and nothing else. The runtime's <see cref="SocketOptionName.ReuseAddress"/> sets SO_REUSEPORT
    /// too on Linux, which lets a second process bind the same address and port without an error and take a share of
    /// its connections (socket(7)): a second egress-host started by mistake would then serve half the streams, silently.
    /// With SO_REUSEADDR alone a second listener on the address fails with EADDRINUSE (on Linux; elsewhere the runtime's
    /// option is set, with that platform's meaning).
    /// </summary>
    /// <param name="socket">A TCP socket, before bind(2).</param>
    /// <exception cref="SocketException">The option cannot be set.</exception>
    /// <exception cref="ObjectDisposedException">The socket is closed.</exception>
    public static void Set(Socket socket)
    {
        ArgumentNullException.ThrowIfNull(socket);
        if (OperatingSystem.IsLinux())
        {
            socket.SetRawSocketOption(SolSocket, SoReuseAddr, BitConverter.GetBytes(1));
        }
        else
        {
            socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
        }
    }
}
