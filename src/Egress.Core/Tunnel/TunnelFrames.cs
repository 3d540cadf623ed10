using System.Buffers.Binary;

namespace Egress.Tunnel;

/// <summary>The type byte of a version 2 frame.</summary>
internal enum TunnelFrameType : byte
{
    /// <summary>Payload bytes: 1 to <see cref="TunnelFrames.MaxDataLength"/> of them follow the header.</summary>
    Data = 0,

    /// <summary>The direction's last frame: one cause byte (<see cref="TunnelEndCause"/>) follows the header.</summary>
    End = 1,
}

/// <summary>The outcome of reading a frame header.</summary>
internal enum TunnelFrameResult
{
    /// <summary>A whole header (for END, with its cause byte) was read.</summary>
    Complete,

    /// <summary>More bytes are needed; nothing wrong has been seen so far.</summary>
    Incomplete,

    /// <summary>The type byte is not a <see cref="TunnelFrameType"/>.</summary>
    UnknownType,

    /// <summary>A DATA frame declares zero payload bytes.</summary>
    EmptyData,

    /// <summary>An END frame declares a length other than 1.</summary>
    InvalidEndLength,
}

/// <summary>A decoded frame header.</summary>
/// <param name="Type">DATA or END.</param>
/// <param name="PayloadLength">DATA: the payload bytes that follow (1..<see cref="TunnelFrames.MaxDataLength"/>); END: 0 (the cause was consumed with the header).</param>
/// <param name="Cause">END: how the direction ended; DATA: <see cref="TunnelEndCause.Fin"/>, meaningless.</param>
internal readonly record struct TunnelFrameHeader(TunnelFrameType Type, int PayloadLength, TunnelEndCause Cause)
{
    /// <summary>Bytes the header occupies: 4 for DATA, 5 for END (its cause byte included).</summary>
    public int Length => Type == TunnelFrameType.Data ? TunnelFrames.HeaderLength : TunnelFrames.EndFrameLength;
}

/// <summary>
/// The frames of a version 2 TCP stream after the Ok status (docs/tunnel-protocol.md, "Version 2"). Each direction is
/// a sequence of DATA frames and exactly one END frame. Header: type (u8), length (u24, big-endian). DATA carries
/// 1..16,777,215 payload bytes; END has length 1 and carries the <see cref="TunnelEndCause"/> byte. Readers never
/// buffer a payload: they learn its length and move it on as it arrives, so a hostile length costs no memory.
/// </summary>
internal static class TunnelFrames
{
    /// <summary>Bytes of a frame header (type and length).</summary>
    public const int HeaderLength = 4;

    /// <summary>Bytes of a whole END frame (header and cause).</summary>
    public const int EndFrameLength = HeaderLength + 1;

    /// <summary>The largest DATA payload, in bytes (u24).</summary>
    public const int MaxDataLength = 0xFF_FFFF;

    /// <summary>Writes the 4-byte header of a DATA frame of <paramref name="payloadLength"/> bytes.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="payloadLength"/> is not 1..<see cref="MaxDataLength"/>.</exception>
    public static void WriteDataHeader(Span<byte> destination, int payloadLength)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(payloadLength, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(payloadLength, MaxDataLength);
        BinaryPrimitives.WriteUInt32BigEndian(destination, ((uint)TunnelFrameType.Data << 24) | (uint)payloadLength);
    }

    /// <summary>Writes a whole END frame (5 bytes) carrying <paramref name="cause"/>.</summary>
    /// <returns><see cref="EndFrameLength"/>.</returns>
    public static int WriteEnd(Span<byte> destination, TunnelEndCause cause)
    {
        BinaryPrimitives.WriteUInt32BigEndian(destination, ((uint)TunnelFrameType.End << 24) | 1u);
        destination[HeaderLength] = (byte)cause;
        return EndFrameLength;
    }

    /// <summary>Reads a frame header from the start of <paramref name="bytes"/>.</summary>
    /// <returns>
    /// <see cref="TunnelFrameResult.Complete"/> with the header (consume <see cref="TunnelFrameHeader.Length"/> bytes),
    /// <see cref="TunnelFrameResult.Incomplete"/>, or the first error, reported as soon as its bytes are there.
    /// </returns>
    public static TunnelFrameResult TryReadHeader(ReadOnlySpan<byte> bytes, out TunnelFrameHeader header)
    {
        header = default;
        if (bytes.IsEmpty)
        {
            return TunnelFrameResult.Incomplete;
        }

        var type = (TunnelFrameType)bytes[0];
        if (type is not TunnelFrameType.Data and not TunnelFrameType.End)
        {
            return TunnelFrameResult.UnknownType;
        }

        if (bytes.Length < HeaderLength)
        {
            return TunnelFrameResult.Incomplete;
        }

        int length = (int)(BinaryPrimitives.ReadUInt32BigEndian(bytes) & MaxDataLength);
        if (type == TunnelFrameType.Data)
        {
            if (length == 0)
            {
                return TunnelFrameResult.EmptyData;
            }

            header = new TunnelFrameHeader(TunnelFrameType.Data, length, TunnelEndCause.Fin);
            return TunnelFrameResult.Complete;
        }

        if (length != 1)
        {
            return TunnelFrameResult.InvalidEndLength;
        }

        if (bytes.Length < EndFrameLength)
        {
            return TunnelFrameResult.Incomplete;
        }

        header = new TunnelFrameHeader(TunnelFrameType.End, 0, (TunnelEndCause)bytes[HeaderLength]);
        return TunnelFrameResult.Complete;
    }

    /// <summary>The longest header a reader may need to see before <see cref="TryReadHeader"/> completes.</summary>
    public const int MaxHeaderLength = EndFrameLength;
}
