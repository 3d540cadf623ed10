using Egress.Tunnel;
using static Egress.Fuzzing.FuzzInvariantException;

namespace Egress.Fuzzing;

/// <summary>
/// The version 2 frame reader (<see cref="TunnelFrames.TryReadHeader"/>, docs/tunnel-protocol.md) on untrusted bytes
/// read as one direction of a TCP stream, the way the framed relay reads the tunnel: header, payload as it arrives,
/// until the END frame. The contract: a defined result and no exception; the same payload and end however the bytes
/// arrive (whole, or a few at a time); a Complete header re-encodes to exactly its bytes and every shorter prefix of it
/// is Incomplete; an error is reported from the bytes already there, never from a length (no payload is buffered).
/// </summary>
internal static class TunnelFramesTarget
{
    public static FuzzVerdict Run(byte[] input)
    {
        Outcome whole = Read(input, receive: input.Length);
        Outcome trickled = Read(input, receive: 1 + (input.Length % 7));
        Require(whole == trickled, $"the outcome depends on how the bytes arrive: {whole} vs {trickled}");
        return whole.End is not null ? FuzzVerdict.Accepted : FuzzVerdict.Rejected;
    }

    /// <summary>Reads <paramref name="input"/> as it arrives <paramref name="receive"/> bytes at a time.</summary>
    private static Outcome Read(byte[] input, int receive)
    {
        int available = Math.Min(receive, input.Length);
        int position = 0;
        long payload = 0;
        uint checksum = 0;
        Span<byte> encoded = stackalloc byte[TunnelFrames.MaxHeaderLength];
        while (true)
        {
            ReadOnlySpan<byte> seen = input.AsSpan(position, available - position);
            TunnelFrameResult result = TunnelFrames.TryReadHeader(seen, out TunnelFrameHeader header);
            Require(Enum.IsDefined(result), $"undefined result {result}");
            if (result == TunnelFrameResult.Incomplete)
            {
                Require(seen.Length < TunnelFrames.MaxHeaderLength, "Incomplete with a whole header's bytes");
                if (available == input.Length)
                {
                    return new Outcome(payload, checksum, null, seen.Length == 0 ? "ended at a frame boundary" : "ended inside a header");
                }

                available = Math.Min(available + receive, input.Length);
                continue;
            }

            if (result != TunnelFrameResult.Complete)
            {
                Require(header == default, "an error returned a header");
                return new Outcome(payload, checksum, null, result.ToString());
            }

            int length = header.Length;
            Require(length <= seen.Length, "a header longer than the bytes seen");
            if (header.Type == TunnelFrameType.Data)
            {
                Require(header.PayloadLength is >= 1 and <= TunnelFrames.MaxDataLength, "a DATA length out of range");
                TunnelFrames.WriteDataHeader(encoded, header.PayloadLength);
            }
            else
            {
                Require(header.Type == TunnelFrameType.End && header.PayloadLength == 0, "an unknown frame type was accepted");
                TunnelFrames.WriteEnd(encoded, header.Cause);
            }

            Require(encoded[..length].SequenceEqual(seen[..length]), "a header does not re-encode to its bytes");
            for (int prefix = 0; prefix < length; prefix++)
            {
                Require(TunnelFrames.TryReadHeader(seen[..prefix], out _) == TunnelFrameResult.Incomplete, "a prefix of a complete header is not Incomplete");
            }

            position += length;
            if (header.Type == TunnelFrameType.End)
            {
                return new Outcome(payload, checksum, header.Cause, null);
            }

            // The payload moves as it arrives, never buffered whole.
            for (long remaining = header.PayloadLength; remaining > 0;)
            {
                if (position == available)
                {
                    if (available == input.Length)
                    {
                        return new Outcome(payload, checksum, null, "ended inside a DATA payload");
                    }

                    available = Math.Min(available + receive, input.Length);
                }

                int take = (int)Math.Min(remaining, available - position);
                foreach (byte b in input.AsSpan(position, take))
                {
                    checksum = (checksum * 31) + b;
                }

                position += take;
                payload += take;
                remaining -= take;
            }
        }
    }

    /// <summary>What one read made of the input: payload bytes (count and checksum), then an END cause or why none.</summary>
    private readonly record struct Outcome(long Payload, uint Checksum, TunnelEndCause? End, string? NoEnd);
}
