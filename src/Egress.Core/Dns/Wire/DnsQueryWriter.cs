using System.Buffers.Binary;

namespace Egress.Dns.Wire;

/// <summary>Writes a standard query (RFC 1035 §4.1: QUERY, RD=1, one question of class IN, no EDNS).</summary>
internal static class DnsQueryWriter
{
    /// <summary>The longest query: header, the longest encoded name (255 bytes), type and class.</summary>
    public const int MaxLength = DnsHeader.Length + 255 + 4;

    /// <summary>Writes a query for <paramref name="name"/> (dotted text, trailing dot optional).</summary>
    /// <param name="id">The message ID.</param>
    /// <param name="name">The name; each label 1..63 ASCII characters.</param>
    /// <param name="type">The question type, e.g. 1 (A) or 28 (AAAA).</param>
    /// <param name="destination">At least <see cref="MaxLength"/> bytes.</param>
    /// <returns>The query's length; -1 when <paramref name="name"/> is not a valid name (an empty or over-long label,
    /// over 253 characters, or not ASCII).</returns>
    public static int Write(ushort id, ReadOnlySpan<char> name, ushort type, Span<byte> destination)
    {
        if (name.EndsWith('.'))
        {
            name = name[..^1];
        }

        if (name.IsEmpty || name.Length > DnsMessage.MaxNameLength || destination.Length < MaxLength)
        {
            return -1;
        }

        BinaryPrimitives.WriteUInt16BigEndian(destination, id);
        BinaryPrimitives.WriteUInt16BigEndian(destination[2..], 0x0100); // RD
        BinaryPrimitives.WriteUInt16BigEndian(destination[4..], 1); // QDCOUNT
        destination[6..DnsHeader.Length].Clear();
        int offset = DnsHeader.Length;
        foreach (Range range in name.Split('.'))
        {
            ReadOnlySpan<char> label = name[range];
            if (label.IsEmpty || label.Length > 63 || !System.Text.Ascii.IsValid(label))
            {
                return -1;
            }

            destination[offset++] = (byte)label.Length;
            offset += System.Text.Encoding.ASCII.GetBytes(label, destination[offset..]);
        }

        destination[offset++] = 0;
        BinaryPrimitives.WriteUInt16BigEndian(destination[offset..], type);
        BinaryPrimitives.WriteUInt16BigEndian(destination[(offset + 2)..], 1); // IN
        return offset + 4;
    }
}
