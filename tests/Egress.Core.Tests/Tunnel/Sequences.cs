using System.Buffers;

namespace Egress.Tests.Tunnel;

/// <summary>Builds multi-segment sequences so parsers see every possible segment boundary.</summary>
internal static class Sequences
{
    /// <summary>A sequence over <paramref name="bytes"/> cut at each of <paramref name="cuts"/> (clamped, sorted; repeats give empty segments).</summary>
    public static ReadOnlySequence<byte> Split(byte[] bytes, IEnumerable<int> cuts)
    {
        var positions = cuts.Select(c => Math.Clamp(c, 0, bytes.Length)).Order().Append(bytes.Length).ToArray();
        var first = new TestSegment(bytes.AsMemory(0, positions[0]), null);
        TestSegment last = first;
        for (int i = 1; i < positions.Length; i++)
        {
            last = new TestSegment(bytes.AsMemory(positions[i - 1], positions[i] - positions[i - 1]), last);
        }

        return new ReadOnlySequence<byte>(first, 0, last, last.Memory.Length);
    }

    /// <summary>A sequence holding each byte of <paramref name="bytes"/> in its own segment.</summary>
    public static ReadOnlySequence<byte> OneBytePerSegment(byte[] bytes) => Split(bytes, Enumerable.Range(1, Math.Max(0, bytes.Length - 1)));

    /// <summary>Concatenates byte arrays.</summary>
    public static byte[] Concat(params byte[][] parts) => parts.SelectMany(p => p).ToArray();
}
