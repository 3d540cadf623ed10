using System.Buffers.Binary;

namespace Egress.Dns.Wire;

/// <summary>The position and fixed fields of one resource record inside a DNS message (RFC 1035 §4.1.3).</summary>
/// <param name="OwnerOffset">Where the owner name starts.</param>
/// <param name="Type">The record TYPE.</param>
/// <param name="Class">The record CLASS.</param>
/// <param name="Ttl">The TTL in seconds; a value with the top bit set reads as 0 (RFC 2181 §8).</param>
/// <param name="DataOffset">Where the RDATA starts.</param>
/// <param name="DataLength">RDLENGTH.</param>
internal readonly record struct DnsRecord(int OwnerOffset, ushort Type, ushort Class, uint Ttl, int DataOffset, int DataLength)
{
    public const ushort TypeA = 1;
    public const ushort TypeCname = 5;
    public const ushort TypeAaaa = 28;
    public const ushort ClassInternet = 1;

    private const int FixedLength = 10;

    /// <summary>True for an A or AAAA record of class IN.</summary>
    public bool IsAddress => Class == ClassInternet && Type is TypeA or TypeAaaa;

    /// <summary>True for a CNAME record of class IN.</summary>
    public bool IsCname => Class == ClassInternet && Type == TypeCname;

    /// <summary>Reads and validates the record at <paramref name="offset"/>: its owner name, its fixed fields,
    /// that its RDATA lies inside the message, and for class IN that A/AAAA data is 4/16 bytes and that a CNAME
    /// target is a valid name ending exactly at the end of the RDATA.</summary>
    /// <param name="message">The whole message.</param>
    /// <param name="offset">Where the record starts.</param>
    /// <param name="record">The record read.</param>
    /// <param name="end">The offset just after the record.</param>
    /// <returns><see cref="DnsParseError.None"/> or the reason the record is malformed.</returns>
    public static DnsParseError TryRead(ReadOnlySpan<byte> message, int offset, out DnsRecord record, out int end)
    {
        record = default;
        end = 0;
        DnsParseError error = DnsName.Skip(message, offset, out int nameEnd);
        if (error != DnsParseError.None)
        {
            return error;
        }

        if (message.Length - nameEnd < FixedLength)
        {
            return DnsParseError.Truncated;
        }

        ReadOnlySpan<byte> fixedFields = message.Slice(nameEnd, FixedLength);
        uint ttl = BinaryPrimitives.ReadUInt32BigEndian(fixedFields[4..]);
        int dataOffset = nameEnd + FixedLength;
        int dataLength = BinaryPrimitives.ReadUInt16BigEndian(fixedFields[8..]);
        if (message.Length - dataOffset < dataLength)
        {
            return DnsParseError.Truncated;
        }

        var read = new DnsRecord(
            offset,
            BinaryPrimitives.ReadUInt16BigEndian(fixedFields),
            BinaryPrimitives.ReadUInt16BigEndian(fixedFields[2..]),
            ttl > int.MaxValue ? 0 : ttl,
            dataOffset,
            dataLength);
        error = read.ValidateData(message);
        if (error != DnsParseError.None)
        {
            return error;
        }

        record = read;
        end = dataOffset + dataLength;
        return DnsParseError.None;
    }

    private DnsParseError ValidateData(ReadOnlySpan<byte> message)
    {
        if (Class != ClassInternet)
        {
            return DnsParseError.None;
        }

        switch (Type)
        {
            case TypeA:
                return DataLength == 4 ? DnsParseError.None : DnsParseError.BadRecordLength;
            case TypeAaaa:
                return DataLength == 16 ? DnsParseError.None : DnsParseError.BadRecordLength;
            case TypeCname:
                // The target may point anywhere earlier in the message, but its own bytes must fill the RDATA.
                DnsParseError error = DnsName.Skip(message[..(DataOffset + DataLength)], DataOffset, out int targetEnd);
                if (error == DnsParseError.Truncated)
                {
                    return DnsParseError.BadRecordLength;
                }

                return error != DnsParseError.None || targetEnd == DataOffset + DataLength ? error : DnsParseError.BadRecordLength;
            default:
                return DnsParseError.None;
        }
    }
}
