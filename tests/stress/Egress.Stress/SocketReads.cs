using System.Net.Sockets;

namespace Egress.Stress;

/// <summary>Reads that fill a buffer exactly.</summary>
internal static class SocketReads
{
    /// <summary>Fills <paramref name="buffer"/>; false when the peer closed first.</summary>
    public static async ValueTask<bool> ReadExactlyAsync(Socket socket, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        int received = 0;
        while (received < buffer.Length)
        {
            int read = await socket.ReceiveAsync(buffer[received..], SocketFlags.None, cancellationToken).ConfigureAwait(false);
            if (read == 0)
            {
                return false;
            }

            received += read;
        }

        return true;
    }

    /// <summary>Reads one length-prefixed DNS message; null when the peer closed first.</summary>
    public static async ValueTask<byte[]?> ReadFrameAsync(Socket socket, CancellationToken cancellationToken)
    {
        byte[] prefix = new byte[2];
        if (!await ReadExactlyAsync(socket, prefix, cancellationToken).ConfigureAwait(false))
        {
            return null;
        }

        byte[] message = new byte[(prefix[0] << 8) | prefix[1]];
        return await ReadExactlyAsync(socket, message, cancellationToken).ConfigureAwait(false) ? message : null;
    }
}
