using System.Net.Sockets;

namespace Egress.Sockets;

/// <summary>
/// send(2) without waiting, for the sends that normally find room: the relay's small copies and the tunnel handshake.
/// A socket keeps the event args of its first asynchronous send (about 360 bytes with its callback) for the rest of its
/// life, so an idle connection that once sent a few bytes asynchronously holds them; a send that completes here never
/// creates them. The caller sends whatever is left (the socket was full) asynchronously, as before.
/// </summary>
internal static class SocketSendNow
{
    /// <summary>Sends what <paramref name="socket"/> takes now: on Linux in either mode (our own send(2) with
    /// MSG_DONTWAIT, <see cref="SocketNative.SendNow"/>, which gives the socket no asynchronous context); elsewhere the
    /// socket must be in non-blocking mode.</summary>
    /// <returns>Bytes sent: 0 when the socket has no room (EAGAIN).</returns>
    /// <exception cref="SocketException">The send failed (e.g. ECONNRESET, EPIPE), as the asynchronous send would have.</exception>
    /// <exception cref="ObjectDisposedException">The socket is closed.</exception>
    public static int NonBlocking(Socket socket, ReadOnlySpan<byte> bytes)
    {
        if (bytes.IsEmpty)
        {
            return 0;
        }

        if (OperatingSystem.IsLinux())
        {
            return SocketNative.SendNow(socket.SafeHandle, bytes);
        }

        int sent = socket.Send(bytes, SocketFlags.None, out SocketError error);
        return error switch
        {
            SocketError.Success => sent,
            SocketError.WouldBlock => 0,
            _ => throw new SocketException((int)error),
        };
    }

    /// <summary>As <see cref="NonBlocking"/> for a socket in either mode: a blocking socket is switched to non-blocking
    /// mode for this one send and back (the mode its owner sees is unchanged).</summary>
    /// <inheritdoc cref="NonBlocking"/>
    public static int AnyMode(Socket socket, ReadOnlySpan<byte> bytes)
    {
        if (bytes.IsEmpty)
        {
            return 0;
        }

        bool blocking = socket.Blocking;
        if (!blocking || OperatingSystem.IsLinux())
        {
            return NonBlocking(socket, bytes);
        }

        socket.Blocking = false;
        try
        {
            return NonBlocking(socket, bytes);
        }
        finally
        {
            socket.Blocking = true;
        }
    }
}
