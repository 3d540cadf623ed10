using System.Runtime.InteropServices;
using System.Security.Cryptography;

namespace Egress.IntegrationTests.Infrastructure;

/// <summary>A fast seeded byte stream (xorshift64*); the same seed gives the same bytes however it is chunked.</summary>
internal sealed class DeterministicBytes
{
    private readonly byte[] block = new byte[64 * 1024];
    private ulong state;
    private int position;

    public DeterministicBytes(ulong seed)
    {
        state = seed == 0 ? 0x9E3779B97F4A7C15UL : seed;
        position = block.Length;
    }

    public void Fill(Span<byte> destination)
    {
        while (!destination.IsEmpty)
        {
            if (position == block.Length)
            {
                Refill();
            }

            var count = Math.Min(destination.Length, block.Length - position);
            block.AsSpan(position, count).CopyTo(destination);
            position += count;
            destination = destination[count..];
        }
    }

    /// <summary>The SHA-256 of the first <paramref name="length"/> bytes for <paramref name="seed"/>.</summary>
    public static byte[] Sha256(ulong seed, long length)
    {
        var source = new DeterministicBytes(seed);
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var buffer = new byte[64 * 1024];
        while (length > 0)
        {
            var count = (int)Math.Min(buffer.Length, length);
            source.Fill(buffer.AsSpan(0, count));
            hash.AppendData(buffer, 0, count);
            length -= count;
        }

        return hash.GetHashAndReset();
    }

    private void Refill()
    {
        var words = MemoryMarshal.Cast<byte, ulong>(block.AsSpan());
        for (var i = 0; i < words.Length; i++)
        {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            words[i] = state * 0x2545F4914F6CDD1DUL;
        }

        position = 0;
    }
}
