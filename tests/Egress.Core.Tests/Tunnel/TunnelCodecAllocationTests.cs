using System.Buffers;
using System.Net;
using Egress.Tunnel;

namespace Egress.Tests.Tunnel;

/// <summary>Asserts allocated bytes (not time): the per-connection header path must not allocate.</summary>
[NonParallelizable]
public sealed class TunnelCodecAllocationTests
{
    private const int Iterations = 2000;

    [Test]
    public void EncodeAndDecodeRequestWithoutHintAllocateNothing()
    {
        TunnelRequest[] requests =
        [
            TunnelRequest.ForTcp(new IPEndPoint(IPAddress.Parse("198.51.100.7"), 443)),
            TunnelRequest.ForTcp(new IPEndPoint(IPAddress.Parse("2001:db8::1"), 587)),
            TunnelRequest.ForDns(),
        ];
        byte[] scratch = new byte[TunnelCodec.MaxRequestLength];
        ReadOnlySequence<byte>[] multiSegment = requests.Select(r => Sequences.OneBytePerSegment(TunnelCodecRequestTests.Encode(r))).ToArray();

        int Run()
        {
            int matches = 0;
            for (int i = 0; i < requests.Length; i++)
            {
                int length = TunnelCodec.WriteRequest(requests[i], scratch);
                var single = new ReadOnlySequence<byte>(scratch, 0, length);
                var multi = multiSegment[i];
                if (TunnelCodec.TryReadRequest(ref single, out TunnelRequest a) == TunnelReadResult.Complete && a == requests[i]
                    && TunnelCodec.TryReadRequest(ref multi, out TunnelRequest b) == TunnelReadResult.Complete && b == requests[i])
                {
                    matches++;
                }
            }

            return matches;
        }

        var (allocated, matches, rounds) = Measure(Run);

        Assert.Multiple(() =>
        {
            Assert.That(matches, Is.EqualTo(rounds * Iterations * requests.Length), "every round trip matched");
            Assert.That(allocated, Is.Zero);
        });
    }

    [Test]
    public void EncodeAndDecodeResponseWithoutDetailAllocateNothing()
    {
        var response = new TunnelResponse(TunnelStatus.Ok);
        byte[] scratch = new byte[TunnelCodec.MaxResponseLength];

        int Run()
        {
            int length = TunnelCodec.WriteResponse(response, scratch);
            var buffer = new ReadOnlySequence<byte>(scratch, 0, length);
            return TunnelCodec.TryReadResponse(ref buffer, out TunnelResponse decoded) == TunnelReadResult.Complete && decoded == response ? 1 : 0;
        }

        var (allocated, matches, rounds) = Measure(Run);

        Assert.Multiple(() =>
        {
            Assert.That(matches, Is.EqualTo(rounds * Iterations));
            Assert.That(allocated, Is.Zero);
        });
    }

    [Test]
    public void DecodingAHintAllocatesOnlyTheHintString()
    {
        // Control for the tests above: the measurement does see allocations when there are some.
        byte[] encoded = Hex.Bytes(TunnelCodecRequestTests.GoldenTcpV4WithHint);

        int Run()
        {
            var buffer = new ReadOnlySequence<byte>(encoded);
            return TunnelCodec.TryReadRequest(ref buffer, out TunnelRequest decoded) == TunnelReadResult.Complete && decoded.HostHint!.Length == 15 ? 1 : 0;
        }

        var (allocated, matches, rounds) = Measure(Run);
        long perDecode = allocated / Iterations; // allocated is per round of Iterations decodes

        Assert.Multiple(() =>
        {
            Assert.That(matches, Is.EqualTo(rounds * Iterations));
            Assert.That(perDecode, Is.InRange(1, 64), "one 15-char string (~56 bytes on 64-bit)");
        });
    }

    /// <summary>
    /// Bytes allocated by <see cref="Iterations"/> calls of <paramref name="run"/>: the least of several rounds
    /// (<see cref="Allocations.LeastPerRound"/>). Also what the calls returned, summed over every round, and how many rounds ran.
    /// </summary>
    private static (long Allocated, int Result, int Rounds) Measure(Func<int> run)
    {
        int result = 0;
        int rounds = 0;
        long allocated = Allocations.LeastPerRound(() =>
        {
            rounds++;
            for (int i = 0; i < Iterations; i++)
            {
                result += run();
            }
        });

        return (allocated, result, rounds);
    }
}
