using Egress.Relay;
using FsCheck;
using PropertyAttribute = FsCheck.NUnit.PropertyAttribute;

namespace Egress.Tests.Relay;

#pragma warning disable NUnit1027 // FsCheck's [Property] generates the arguments.

public sealed class DuplexRelayPropertyTests
{
    [Property(MaxTest = 200)]
    public bool EveryByteArrivesInOrderBothWays(byte[] fromA, byte[] fromB, NonEmptyArray<PositiveInt> chunksA, NonEmptyArray<PositiveInt> chunksB)
        => Relay(fromA, fromB, Sizes(chunksA), Sizes(chunksB)).GetAwaiter().GetResult();

    [Property(MaxTest = 25)]
    public bool LargePayloadsCrossManySegments(PositiveInt seed, NonEmptyArray<PositiveInt> chunksA, NonEmptyArray<PositiveInt> chunksB)
    {
        var random = new Random(seed.Get);
        byte[] fromA = DuplexRelayTests.RandomBytes(random.Next(0, 600_000), random.Next());
        byte[] fromB = DuplexRelayTests.RandomBytes(random.Next(0, 600_000), random.Next());
        int scale = random.Next(1, 50_000);
        return Relay(fromA, fromB, Sizes(chunksA, scale), Sizes(chunksB, scale)).GetAwaiter().GetResult();
    }

    private static int[] Sizes(NonEmptyArray<PositiveInt> chunks, int scale = 1)
        => Array.ConvertAll(chunks.Get, c => (int)Math.Min((long)c.Get * scale, 1_000_000));

    private static async Task<bool> Relay(byte[] fromA, byte[] fromB, int[] chunksA, int[] chunksB)
    {
        var a = new PipePeer();
        var b = new PipePeer();
        Task<RelayResult> run = DuplexRelay.RunAsync(a.Side, b.Side, RelayOptions.Default, CancellationToken.None);
        Task sendA = PipeIo.WriteChunkedAsync(a.Writer, fromA, chunksA, complete: true);
        Task sendB = PipeIo.WriteChunkedAsync(b.Writer, fromB, chunksB, complete: true);
        Task<byte[]> atB = PipeIo.ReadToEndAsync(b.Reader);
        Task<byte[]> atA = PipeIo.ReadToEndAsync(a.Reader);
        await Task.WhenAll(sendA, sendB, atA, atB);
        RelayResult result = await run;
        return (await atB).AsSpan().SequenceEqual(fromA)
            && (await atA).AsSpan().SequenceEqual(fromB)
            && result.BytesAToB == fromA.Length
            && result.BytesBToA == fromB.Length
            && result.FirstCause == RelayShutdownCause.BothCompleted
            && result.Error is null;
    }
}
