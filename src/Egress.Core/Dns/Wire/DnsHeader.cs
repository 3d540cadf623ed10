using System.Buffers.Binary;

namespace Egress.Dns.Wire;

/// <summary>The fixed 12-byte header of a DNS message (RFC 1035 §4.1.1), read from raw bytes.</summary>
internal readonly record struct DnsHeader
{
    /// <summary>The size of the header on the wire, in bytes.</summary>
    public const int Length = 12;

    private DnsHeader(ushort id, ushort flags, ushort qdCount, ushort anCount, ushort nsCount, ushort arCount)
    {
        Id = id;
        Flags = flags;
        QdCount = qdCount;
        AnCount = anCount;
        NsCount = nsCount;
        ArCount = arCount;
    }

    /// <summary>The message ID that pairs a response with its query.</summary>
    public ushort Id { get; }

    /// <summary>The raw second 16-bit word: QR, Opcode, AA, TC, RD, RA, Z, AD, CD and RCODE.</summary>
    public ushort Flags { get; }

    /// <summary>QR: true for a response, false for a query.</summary>
    public bool IsResponse => (Flags & 0x8000) != 0;

    /// <summary>The 4-bit opcode (0 is a standard QUERY).</summary>
    public byte Opcode => (byte)((Flags >> 11) & 0xF);

    /// <summary>AA: the responder is authoritative for the answer.</summary>
    public bool IsAuthoritativeAnswer => (Flags & 0x0400) != 0;

    /// <summary>TC: the message was truncated to fit the transport.</summary>
    public bool IsTruncated => (Flags & 0x0200) != 0;

    /// <summary>RD: the client asks for recursion.</summary>
    public bool RecursionDesired => (Flags & 0x0100) != 0;

    /// <summary>RA: the server offers recursion.</summary>
    public bool RecursionAvailable => (Flags & 0x0080) != 0;

    /// <summary>The AD (authentic data) bit of <see cref="Flags"/>: the responder validated every record of the answer and
    /// authority sections with DNSSEC (RFC 4035 §3.2.3, RFC 6840 §5.8).</summary>
    public const ushort AuthenticDataFlag = 0x0020;

    /// <summary>AD: the responder says the answer and authority data are DNSSEC-authentic.</summary>
    public bool AuthenticData => (Flags & AuthenticDataFlag) != 0;

    /// <summary>The 4-bit RCODE of the header (0 NOERROR, 1 FORMERR, 2 SERVFAIL, 3 NXDOMAIN, 4 NOTIMP, 5 REFUSED).
    /// An EDNS extended RCODE's upper bits live in the OPT record and are not included.</summary>
    public byte ResponseCode => (byte)(Flags & 0xF);

    /// <summary>The number of entries in the question section.</summary>
    public ushort QdCount { get; }

    /// <summary>The number of records in the answer section.</summary>
    public ushort AnCount { get; }

    /// <summary>The number of records in the authority section.</summary>
    public ushort NsCount { get; }

    /// <summary>The number of records in the additional section.</summary>
    public ushort ArCount { get; }

    /// <summary>Reads the header at the start of <paramref name="message"/>.</summary>
    /// <param name="message">A DNS message (without any TCP length prefix).</param>
    /// <param name="header">The header read, or the default value when the message is shorter than
    /// <see cref="Length"/> bytes.</param>
    /// <returns>True when the message holds a whole header.</returns>
    public static bool TryRead(ReadOnlySpan<byte> message, out DnsHeader header)
    {
        if (message.Length < Length)
        {
            header = default;
            return false;
        }

        header = new DnsHeader(
            BinaryPrimitives.ReadUInt16BigEndian(message),
            BinaryPrimitives.ReadUInt16BigEndian(message[2..]),
            BinaryPrimitives.ReadUInt16BigEndian(message[4..]),
            BinaryPrimitives.ReadUInt16BigEndian(message[6..]),
            BinaryPrimitives.ReadUInt16BigEndian(message[8..]),
            BinaryPrimitives.ReadUInt16BigEndian(message[10..]));
        return true;
    }
}
