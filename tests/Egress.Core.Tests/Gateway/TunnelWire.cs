using System.Buffers;
using System.Net.Sockets;
using Egress.Tunnel;

namespace Egress.Tests.Gateway;

/// <summary>The enclave's half of a tunnel stream at the wire level (any request, raw bytes), for tests of the parent; the public <see cref="Egress.Tunnel.TunnelClient"/> is what an application uses.</summary>
internal static class TunnelWire
{
    public static async Task<Socket> ConnectAsync(TunnelEndpoint endpoint) =>
        await endpoint.ConnectAsync(CancellationToken.None);

    public static async Task SendAsync(Socket socket, TunnelRequest request, byte[]? payload = null)
    {
        var bytes = new byte[TunnelCodec.MaxRequestLength];
        int length = TunnelCodec.WriteRequest(request, bytes);
        await socket.SendAsync(bytes.AsMemory(0, length).ToArray().Concat(payload ?? []).ToArray());
    }

    /// <summary>Reads exactly one response header (prefix, then detail) and nothing after it.</summary>
    public static async Task<TunnelResponse> ReadResponseAsync(Socket socket)
    {
        var prefix = new byte[3];
        await ReadExactlyAsync(socket, prefix);
        var whole = new byte[3 + prefix[2]];
        prefix.CopyTo(whole, 0);
        await ReadExactlyAsync(socket, whole.AsMemory(3));
        var sequence = new ReadOnlySequence<byte>(whole);
        Assert.That(TunnelCodec.TryReadResponse(ref sequence, out TunnelResponse response), Is.EqualTo(TunnelReadResult.Complete));
        return response;
    }

    /// <summary>Reads until end of stream.</summary>
    public static async Task<byte[]> ReadToEndAsync(Socket socket)
    {
        var received = new MemoryStream();
        var buffer = new byte[64 * 1024];
        int read;
        while ((read = await socket.ReceiveAsync(buffer)) > 0)
        {
            received.Write(buffer, 0, read);
        }

        return received.ToArray();
    }

    public static async Task ReadExactlyAsync(Socket socket, Memory<byte> buffer)
    {
        while (!buffer.IsEmpty)
        {
            int read = await socket.ReceiveAsync(buffer);
            if (read == 0)
            {
                throw new EndOfStreamException($"the stream ended with {buffer.Length} bytes still expected");
            }

            buffer = buffer[read..];
        }
    }
}
