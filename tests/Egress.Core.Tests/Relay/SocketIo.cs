using System.Net.Sockets;

namespace Egress.Tests.Relay;

/// <summary>Plain socket reads and writes for the relay tests.</summary>
internal static class SocketIo
{
    /// <summary>Sends <paramref name="data"/> in the given chunk sizes (cycled), then optionally shuts the send side down.</summary>
    public static async Task SendChunkedAsync(Socket socket, byte[] data, int[] chunks, bool shutdown)
    {
        int offset = 0;
        for (int i = 0; offset < data.Length; i++)
        {
            int size = Math.Min(chunks[i % chunks.Length], data.Length - offset);
            await socket.SendAsync(data.AsMemory(offset, size));
            offset += size;
        }

        if (shutdown)
        {
            socket.Shutdown(SocketShutdown.Send);
        }
    }

    /// <summary>Reads until end of stream.</summary>
    public static async Task<byte[]> ReadToEndAsync(Socket socket)
    {
        var received = new MemoryStream();
        byte[] buffer = new byte[64 * 1024];
        int read;
        while ((read = await socket.ReceiveAsync(buffer)) > 0)
        {
            received.Write(buffer, 0, read);
        }

        return received.ToArray();
    }

    /// <summary>Reads exactly <paramref name="length"/> bytes.</summary>
    public static async Task<byte[]> ReadExactlyAsync(Socket socket, int length)
    {
        byte[] buffer = new byte[length];
        int filled = 0;
        while (filled < length)
        {
            int read = await socket.ReceiveAsync(buffer.AsMemory(filled));
            if (read == 0)
            {
                throw new EndOfStreamException($"the stream ended after {filled} of {length} bytes");
            }

            filled += read;
        }

        return buffer;
    }

    /// <summary>Reads until the stream ends and reports how: Success for a clean end of stream, else the socket error.</summary>
    public static async Task<SocketError> ReadUntilEndAsync(Socket socket)
    {
        byte[] buffer = new byte[64 * 1024];
        try
        {
            while (await socket.ReceiveAsync(buffer) > 0)
            {
            }

            return SocketError.Success;
        }
        catch (SocketException ex)
        {
            return ex.SocketErrorCode;
        }
    }
}
