using System.Buffers;
using System.Buffers.Binary;

namespace Egress.Dns.Wire;

/// <summary>
/// DNS-over-TCP framing (RFC 1035 section 4.2.2): each message is preceded by its length as a big-endian
/// 16-bit integer (RFC 7766 section 8). The one framer of every DNS stream: client DNS-over-TCP connections, tunnel
/// DNS streams in both directions and TCP to the upstream resolvers (streams read it through
/// <see cref="DnsFrameReader"/>). A zero length is a protocol error: it is never written and is reported as
/// <see cref="DnsFrameResult.Empty"/> when read.
/// </summary>
internal static class DnsTcpFraming
{
    /// <summary>The largest message a frame can carry, in bytes.</summary>
    public const int MaxMessageLength = ushort.MaxValue;

    /// <summary>The size of the length prefix, in bytes.</summary>
    public const int PrefixLength = 2;

    /// <summary>Reads one framed message from the start of <paramref name="buffer"/>.</summary>
    /// <param name="buffer">
    /// The received bytes. On <see cref="DnsFrameResult.Complete"/> it is advanced past the frame; otherwise it
    /// is left untouched.
    /// </param>
    /// <param name="message">The message without its prefix (a slice of <paramref name="buffer"/>), when complete.</param>
    /// <returns>
    /// <see cref="DnsFrameResult.Complete"/>, <see cref="DnsFrameResult.Incomplete"/>, or
    /// <see cref="DnsFrameResult.Empty"/> for a zero-length frame.
    /// </returns>
    public static DnsFrameResult TryReadMessage(ref ReadOnlySequence<byte> buffer, out ReadOnlySequence<byte> message) =>
        TryReadMessage(ref buffer, MaxMessageLength, out message);

    /// <summary>
    /// As <see cref="TryReadMessage(ref ReadOnlySequence{byte}, out ReadOnlySequence{byte})"/>, and
    /// <see cref="DnsFrameResult.TooLarge"/> (buffer untouched) as soon as the prefix declares more than
    /// <paramref name="maxMessageLength"/> bytes, before the message itself has arrived.
    /// </summary>
    internal static DnsFrameResult TryReadMessage(ref ReadOnlySequence<byte> buffer, int maxMessageLength, out ReadOnlySequence<byte> message)
    {
        message = default;
        var reader = new SequenceReader<byte>(buffer);
        if (!reader.TryReadBigEndian(out short rawLength))
        {
            return DnsFrameResult.Incomplete;
        }

        int length = (ushort)rawLength;
        if (length == 0)
        {
            return DnsFrameResult.Empty;
        }

        if (length > maxMessageLength)
        {
            return DnsFrameResult.TooLarge;
        }

        if (reader.Remaining < length)
        {
            return DnsFrameResult.Incomplete;
        }

        message = buffer.Slice(PrefixLength, length);
        buffer = buffer.Slice(message.End);
        return DnsFrameResult.Complete;
    }

    /// <summary>Writes <paramref name="message"/> with its length prefix to <paramref name="writer"/>.</summary>
    /// <exception cref="ArgumentException"><paramref name="message"/> is empty or longer than <see cref="MaxMessageLength"/>.</exception>
    public static void WriteMessage(IBufferWriter<byte> writer, ReadOnlySpan<byte> message)
    {
        ArgumentNullException.ThrowIfNull(writer);
        ThrowIfInvalid(message);
        writer.Advance(WriteMessage(message, writer.GetSpan(PrefixLength + message.Length)));
    }

    /// <summary>Writes <paramref name="message"/> with its length prefix to <paramref name="destination"/>.</summary>
    /// <returns>The number of bytes written: the message length plus <see cref="PrefixLength"/>.</returns>
    /// <exception cref="ArgumentException">
    /// <paramref name="message"/> is empty or longer than <see cref="MaxMessageLength"/>, or
    /// <paramref name="destination"/> is too small.
    /// </exception>
    public static int WriteMessage(ReadOnlySpan<byte> message, Span<byte> destination)
    {
        ThrowIfInvalid(message);
        int length = PrefixLength + message.Length;
        if (destination.Length < length)
        {
            throw new ArgumentException($"The frame needs {length} bytes.", nameof(destination));
        }

        BinaryPrimitives.WriteUInt16BigEndian(destination, (ushort)message.Length);
        message.CopyTo(destination[PrefixLength..]);
        return length;
    }

    private static void ThrowIfInvalid(ReadOnlySpan<byte> message)
    {
        if (message.IsEmpty || message.Length > MaxMessageLength)
        {
            throw new ArgumentException($"A DNS message is 1 to {MaxMessageLength} bytes; got {message.Length}.", nameof(message));
        }
    }
}
