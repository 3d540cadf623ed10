using System.Net.Sockets;
using Egress.Tunnel;

namespace Egress.Tests.Proxy;

/// <summary>The scripted parent's and the application's side of version 2 early data (docs/tunnel-protocol.md, "Early
/// data") in the enclave proxy's tests.</summary>
internal static class EarlyDataWire
{
    private static readonly TimeSpan HangGuard = TimeSpan.FromSeconds(10);

    /// <summary>Waits until <paramref name="socket"/> (the proxy's accepted socket) has at least <paramref name="bytes"/>
    /// bytes queued: the application wrote before the proxy handles the connection.</summary>
    public static async Task QueuedAsync(Socket socket, int bytes)
    {
        var deadline = DateTime.UtcNow + HangGuard;
        while (socket.Available < bytes && DateTime.UtcNow < deadline)
        {
            await Task.Delay(1);
        }

        Assert.That(socket.Available, Is.GreaterThanOrEqualTo(bytes), "the application's bytes are queued before the proxy handles it");
    }

    /// <summary>The parent's side before it answers: the request, and the <paramref name="earlyLength"/> bytes behind it.</summary>
    public static async Task<(TunnelRequest Request, byte[] Early)> RequestAndEarlyBytesAsync(Socket parent, int earlyLength)
    {
        var (read, request, following) = await TunnelHandshake.ReadRequestAsync(parent, ReadOnlyMemory<byte>.Empty, CancellationToken.None).AsTask().WaitAsync(HangGuard);
        Assert.That(read, Is.EqualTo(TunnelReadResult.Complete));
        byte[] early = new byte[earlyLength];
        following.CopyTo(early);
        for (int filled = following.Length; filled < earlyLength;)
        {
            int got = await parent.ReceiveAsync(early.AsMemory(filled)).AsTask().WaitAsync(HangGuard);
            Assert.That(got, Is.Positive, "the stream ended before the early bytes");
            filled += got;
        }

        return (request, early);
    }
}
