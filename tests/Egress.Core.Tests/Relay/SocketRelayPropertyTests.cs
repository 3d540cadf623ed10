using Egress.Relay;
using FsCheck;
using PropertyAttribute = FsCheck.NUnit.PropertyAttribute;

namespace Egress.Tests.Relay;

#pragma warning disable NUnit1027 // FsCheck's [Property] generates the arguments.

public sealed class SocketRelayPropertyTests
{
    [Property(MaxTest = 60)]
    public bool EveryByteArrivesInOrderBothWays(PositiveInt seed, bool tcp, bool splice, NonEmptyArray<PositiveInt> chunksUp, NonEmptyArray<PositiveInt> chunksDown)
    {
        var random = new Random(seed.Get);
        byte[] up = DuplexRelayTests.RandomBytes(random.Next(0, 400_000), random.Next());
        byte[] down = DuplexRelayTests.RandomBytes(random.Next(0, 400_000), random.Next());
        int scale = random.Next(1, 20_000);
        return Relay(tcp ? SocketTransport.Tcp : SocketTransport.Unix, new RelayOptions { UseSplice = splice }, up, down, Sizes(chunksUp, scale), Sizes(chunksDown, scale))
            .GetAwaiter().GetResult();
    }

    private static int[] Sizes(NonEmptyArray<PositiveInt> chunks, int scale)
        => Array.ConvertAll(chunks.Get, c => (int)Math.Min((long)c.Get * scale, 1_000_000));

    private static async Task<bool> Relay(SocketTransport transport, RelayOptions options, byte[] up, byte[] down, int[] chunksUp, int[] chunksDown)
    {
        using SocketPair front = await SocketPair.ConnectAsync(transport);
        using SocketPair back = await SocketPair.ConnectAsync(transport);
        Task<RelayResult> run = SocketRelay.RunAsync(front.Right, back.Left, options, CancellationToken.None);
        Task<byte[]> atClient = SocketIo.ReadToEndAsync(front.Left);
        Task<byte[]> atServer = SocketIo.ReadToEndAsync(back.Right);
        Task sendUp = SocketIo.SendChunkedAsync(front.Left, up, chunksUp, shutdown: true);
        Task sendDown = SocketIo.SendChunkedAsync(back.Right, down, chunksDown, shutdown: true);
        await Task.WhenAll(sendUp, sendDown, atClient, atServer).WaitAsync(TimeSpan.FromSeconds(30));
        RelayResult result = await run;
        return (await atServer).AsSpan().SequenceEqual(up)
            && (await atClient).AsSpan().SequenceEqual(down)
            && result.BytesAToB == up.Length
            && result.BytesBToA == down.Length
            && result.FirstCause == RelayShutdownCause.BothCompleted
            && result.Error is null;
    }
}
