using System.Net.Sockets;

namespace Egress.Sockets;

/// <summary>TCP urgent data (MSG_OOB) on a relayed socket: kept in the byte stream, so that no byte is lost.</summary>
internal static class SocketUrgentData
{
    /// <summary>
    /// Sets SO_OOBINLINE: an urgent byte the peer sends with MSG_OOB is read in line, where it was sent, by ordinary
    /// receives. Without it the kernel takes that byte out of the stream (it is read only with MSG_OOB, which the relay
    /// never asks for), so a relayed telnet Data Mark or FTP ABOR sequence would arrive one byte short. The relay
    /// forwards the byte as ordinary data: the urgent mark itself does not cross the relay.
    /// </summary>
    /// <param name="socket">A TCP socket the relay reads from, or the listener that accepts them: an accepted socket
    /// inherits the option from its listener.</param>
    public static void KeepInLine(Socket socket)
    {
        ArgumentNullException.ThrowIfNull(socket);
        socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.OutOfBandInline, true);
    }
}
