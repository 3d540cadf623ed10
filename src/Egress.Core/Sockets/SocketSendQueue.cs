using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace Egress.Sockets;

/// <summary>What a socket's send queue still holds: bytes written that the peer has not taken yet.</summary>
internal static partial class SocketSendQueue
{
    /// <summary>SIOCOUTQ (= TIOCOUTQ, 0x5411 on x64 and arm64): for TCP, the bytes sent but not acknowledged by the
    /// peer plus those not sent yet; for a Unix socket, the bytes its peer has not read.</summary>
    private const nuint OutQueue = 0x5411;

    [LibraryImport("libc", EntryPoint = "ioctl", SetLastError = true)]
    private static partial int Ioctl(SafeSocketHandle fd, nuint request, out int value);

    /// <summary>The bytes <paramref name="socket"/>'s peer has not taken yet; 0 when that cannot be known (not Linux, a
    /// closed socket, a socket type without the ioctl).</summary>
    /// <param name="socket">The socket to ask.</param>
    public static int Pending(Socket socket)
    {
        ArgumentNullException.ThrowIfNull(socket);
        if (!OperatingSystem.IsLinux())
        {
            return 0;
        }

        try
        {
            return Ioctl(socket.SafeHandle, OutQueue, out int value) == 0 ? value : 0;
        }
        catch (ObjectDisposedException)
        {
            return 0;
        }
    }
}
