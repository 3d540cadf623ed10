using System.Buffers.Binary;

namespace Egress.Dns;

/// <summary>
/// Wire checks both forwarders share: the UDP size a client can take, the truncated stand-in answer for a
/// response that does not fit it, and whether a response answers a query. Nothing here allocates or throws on
/// malformed input.
/// </summary>
internal static class DnsForwarding
{
    /// <summary>The largest UDP message a client without EDNS accepts (RFC 1035 §4.2.1).</summary>
    public const int ClassicUdpLimit = 512;

    /// <summary>The largest message a UDP datagram can carry.</summary>
    public const int MaxUdpMessage = 65507;

    private const ushort OptType = 41;
    private const int RecordFixedLength = 10;

    /// <summary>
    /// The largest UDP response the client of <paramref name="query"/> accepts: the payload size of its EDNS OPT
    /// record (RFC 6891 §6.2.3; values below 512 count as 512), else 512.
    /// </summary>
    /// <param name="query">A query whose question ends at <paramref name="questionEnd"/>.</param>
    /// <param name="questionEnd">The offset just after the question.</param>
    /// <returns>The limit in bytes.</returns>
    public static int ClientUdpLimit(ReadOnlySpan<byte> query, int questionEnd)
    {
        if (!DnsHeader.TryRead(query, out DnsHeader header))
        {
            return ClassicUdpLimit;
        }

        int offset = questionEnd;
        int records = header.AnCount + header.NsCount + header.ArCount;
        int firstAdditional = header.AnCount + header.NsCount;
        for (int i = 0; i < records; i++)
        {
            if (DnsName.Skip(query, offset, out int nameEnd) != DnsParseError.None || query.Length - nameEnd < RecordFixedLength)
            {
                return ClassicUdpLimit;
            }

            ushort type = BinaryPrimitives.ReadUInt16BigEndian(query[nameEnd..]);
            ushort @class = BinaryPrimitives.ReadUInt16BigEndian(query[(nameEnd + 2)..]);
            int rdLength = BinaryPrimitives.ReadUInt16BigEndian(query[(nameEnd + 8)..]);
            if (i >= firstAdditional && type == OptType)
            {
                return Math.Clamp((int)@class, ClassicUdpLimit, MaxUdpMessage);
            }

            offset = nameEnd + RecordFixedLength + rdLength;
            if (offset > query.Length)
            {
                return ClassicUdpLimit;
            }
        }

        return ClassicUdpLimit;
    }

    /// <summary>
    /// Writes what a UDP client gets instead of a response too large for it: the response's header with TC=1 and
    /// its question, no records (RFC 2181 §9), so the client asks again over TCP; plus an OPT record when the
    /// query has EDNS (RFC 6891 §7), as every synthesized answer (<see cref="DnsMessage.AppendOpt"/>).
    /// </summary>
    /// <param name="query">The client's query.</param>
    /// <param name="queryQuestionEnd">Where the query's question section ends.</param>
    /// <param name="response">The full response.</param>
    /// <param name="destination">Receives the answer; <see cref="DnsMessage.MaxErrorResponseLength"/> bytes suffice.
    /// It may be the buffer that holds <paramref name="response"/>.</param>
    /// <returns>The number of bytes written, or -1 when the response has no readable single question.</returns>
    public static int WriteTruncated(ReadOnlySpan<byte> query, int queryQuestionEnd, ReadOnlySpan<byte> response, Span<byte> destination)
    {
        if (!DnsHeader.TryRead(response, out DnsHeader header) || header.QdCount != 1
            || DnsName.Skip(response, DnsHeader.Length, out int nameEnd) != DnsParseError.None
            || response.Length - nameEnd < 4)
        {
            return -1;
        }

        int length = nameEnd + 4;
        if (destination.Length < length)
        {
            return -1;
        }

        // The question name is the first name of the message, so it cannot hold a compression pointer that the
        // copy would break: the raw bytes are the question as the response wrote it.
        response[..length].CopyTo(destination);
        BinaryPrimitives.WriteUInt16BigEndian(destination[2..], (ushort)(header.Flags | 0x0200));
        destination.Slice(6, 6).Clear();
        return length + DnsMessage.AppendOpt(query, queryQuestionEnd, destination, length, header.ResponseCode, infoCode: null);
    }

    /// <summary>
    /// Whether <paramref name="response"/> answers <paramref name="query"/>: QR set, same ID, one question with the
    /// same type, class and name (ASCII case ignored, since resolvers may echo or randomise case). Guards against
    /// spoofed or stray datagrams.
    /// </summary>
    /// <param name="query">The query as sent.</param>
    /// <param name="response">A candidate response.</param>
    /// <returns>True when it matches.</returns>
    public static bool IsAnswerTo(ReadOnlySpan<byte> query, ReadOnlySpan<byte> response)
    {
        if (!DnsHeader.TryRead(query, out DnsHeader q) || !DnsHeader.TryRead(response, out DnsHeader r)
            || !r.IsResponse || r.Id != q.Id || r.QdCount != 1 || q.QdCount != 1)
        {
            return false;
        }

        if (DnsName.Skip(query, DnsHeader.Length, out int queryEnd) != DnsParseError.None
            || DnsName.Skip(response, DnsHeader.Length, out int responseEnd) != DnsParseError.None
            || queryEnd != responseEnd || query.Length < queryEnd + 4 || response.Length < responseEnd + 4)
        {
            return false;
        }

        // Both names start at the header's end and are the first names of their messages: compare raw bytes.
        ReadOnlySpan<byte> a = query[DnsHeader.Length..(queryEnd + 4)];
        ReadOnlySpan<byte> b = response[DnsHeader.Length..(responseEnd + 4)];
        for (int i = 0; i < a.Length; i++)
        {
            if (a[i] != b[i] && ToLowerAscii(a[i]) != ToLowerAscii(b[i]))
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>The header RCODE, or -1 for a message shorter than a header.</summary>
    /// <param name="message">A message.</param>
    /// <returns>The RCODE.</returns>
    public static int ResponseCode(ReadOnlySpan<byte> message) =>
        DnsHeader.TryRead(message, out DnsHeader header) ? header.ResponseCode : -1;

    private static int ToLowerAscii(byte value) => value is >= (byte)'A' and <= (byte)'Z' ? value | 0x20 : value;
}
