using System.Net.Sockets;

namespace Egress.Sockets;

/// <summary>A TCP socket's connection state, from TCP_INFO (Linux, tcp(7); <c>tcpi_state</c> is its first byte, with the
/// kernel's TCP state numbers of include/net/tcp_states.h).</summary>
internal static class TcpConnectionState
{
    private const int IpProtocolTcp = 6;
    private const int TcpInfo = 11;
    private const byte TcpClose = 7;

    /// <summary>
    /// Whether <paramref name="socket"/>'s connection is in TCP_CLOSE. For a connection that has not sent its own FIN,
    /// that is a reset (RST received) or a fatal error: a peer's FIN alone leaves it in CLOSE_WAIT. What a receive cannot
    /// tell once a send has taken the reset's error: the kernel reports a reset once, and the receives after it read end
    /// of stream, as after a FIN.
    /// </summary>
    /// <returns>False where it cannot be known: not Linux, not TCP, a closed socket.</returns>
    public static bool IsClosed(Socket socket)
    {
        if (!OperatingSystem.IsLinux() || socket.AddressFamily is not (AddressFamily.InterNetwork or AddressFamily.InterNetworkV6))
        {
            return false;
        }

        Span<byte> info = stackalloc byte[8];
        try
        {
            return socket.GetRawSocketOption(IpProtocolTcp, TcpInfo, info) > 0 && info[0] == TcpClose;
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            return false;
        }
    }
}
