using System.Buffers.Binary;

namespace Egress.Dns.Wire;

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
    /// Writes what a UDP client gets instead of a response too large for it: the response with TC=1, cut after the
    /// last whole record that fits <paramref name="limit"/> (RFC 2181 §9 lets a truncated answer keep the records
    /// that fit, as dnsmasq and BIND do; a stub resolver that does not retry over TCP still gets addresses), with
    /// the section counts set to the records kept. The response's own OPT record, and anything after it, is not
    /// kept; an OPT record is appended instead when the query has EDNS (room for it is kept), as on every answer the
    /// forwarder makes up (<see cref="DnsMessage.AppendOpt"/>). The client sees TC=1 and may retry over TCP.
    /// </summary>
    /// <param name="query">The client's query.</param>
    /// <param name="queryQuestionEnd">Where the query's question section ends.</param>
    /// <param name="response">The full response.</param>
    /// <param name="limit">The largest message the client takes (at least 512).</param>
    /// <param name="destination">Receives the answer; it may be the buffer that holds <paramref name="response"/>
    /// (the kept records stay where they are). The answer is cut to fit it too.</param>
    /// <returns>The number of bytes written, or -1 when the response has no readable single question or the
    /// question alone does not fit.</returns>
    public static int WriteTruncated(ReadOnlySpan<byte> query, int queryQuestionEnd, ReadOnlySpan<byte> response, int limit, Span<byte> destination)
    {
        if (!DnsHeader.TryRead(response, out DnsHeader header) || header.QdCount != 1
            || DnsName.Skip(response, DnsHeader.Length, out int nameEnd) != DnsParseError.None
            || response.Length - nameEnd < 4
            || DnsName.Skip(response[..nameEnd], DnsHeader.Length, out _) != DnsParseError.None)
        {
            return -1;
        }

        int reserve = DnsEdns.Read(query, queryQuestionEnd).State == DnsEdnsState.Present ? DnsEdns.OptLength : 0;
        int room = Math.Min(limit, destination.Length) - reserve;
        int length = nameEnd + 4;
        if (room < length)
        {
            return -1;
        }

        // Keep a prefix of whole records. Every kept name must read within the kept prefix: pointers only point
        // backwards, but a hostile name can point back into earlier bytes and run on from there past what is kept
        // (found by the hostile-input properties). Stop at the first record that does not fit, cannot be read (in
        // the whole response or in the prefix), or is the response's OPT.
        Span<ushort> kept = stackalloc ushort[3];
        ReadOnlySpan<int> counts = [header.AnCount, header.NsCount, header.ArCount];
        int section = 0;
        while (section < 3)
        {
            if (kept[section] == counts[section])
            {
                section++;
                continue;
            }

            if (DnsName.Skip(response, length, out int ownerEnd) != DnsParseError.None || response.Length - ownerEnd < RecordFixedLength)
            {
                break;
            }

            int end = ownerEnd + RecordFixedLength + BinaryPrimitives.ReadUInt16BigEndian(response[(ownerEnd + 8)..]);
            if (end > response.Length || end > room || BinaryPrimitives.ReadUInt16BigEndian(response[ownerEnd..]) == OptType
                || DnsName.Skip(response[..end], length, out _) != DnsParseError.None)
            {
                break;
            }

            length = end;
            kept[section]++;
        }

        response[..length].CopyTo(destination);
        BinaryPrimitives.WriteUInt16BigEndian(destination[2..], (ushort)(header.Flags | 0x0200));
        BinaryPrimitives.WriteUInt16BigEndian(destination[6..], kept[0]);
        BinaryPrimitives.WriteUInt16BigEndian(destination[8..], kept[1]);
        BinaryPrimitives.WriteUInt16BigEndian(destination[10..], kept[2]);
        return length + DnsMessage.AppendOpt(query, queryQuestionEnd, destination, length, header.ResponseCode, infoCode: null);
    }

    /// <summary>
    /// Rewrites a screened query (<see cref="DnsScreening.Screen"/> found one question, and at most one well-formed OPT
    /// record) in place to what is forwarded, the same for the enclave's forwarder and the parent's:
    /// <list type="bullet">
    /// <item>the header: the ID; of the flags only RD and AD (RFC 1035 §4.1.1, RFC 6840 §5.7; AA, TC, RA, Z and RCODE
    /// mean nothing in a query). CD is cleared: with it, a validating resolver answers what failed DNSSEC validation
    /// (RFC 4035 §3.2.2), and both hosts learn addresses from the answer (a security review: code in the enclave set CD
    /// to have a spoofed address that the resolver held as bogus allowed); QDCOUNT 1, ANCOUNT and NSCOUNT 0, ARCOUNT 1
    /// with EDNS, else 0;</item>
    /// <item>the question as asked (its name cannot hold a compression pointer: nothing precedes it);</item>
    /// <item>with EDNS, an OPT record of its own (RFC 6891 §6.1.2): the client's UDP payload size (512 at least),
    /// VERSION 0, the DO bit (RFC 3225), no options.</item>
    /// </list>
    /// Nothing else the client put in the message is forwarded: records in any section, EDNS options (padding, cookies,
    /// client subnet, any code), bytes after the last record. Forwarded as they were, they carried up to 64 KB of the
    /// app's choosing per query for an allowed name to the resolvers (a red-team trial); now such a query carries only
    /// its question and those few flags (docs/threat-model.md, "DNS as a channel").
    /// </summary>
    /// <param name="query">The screened query; rewritten in place.</param>
    /// <param name="questionEnd">Where its question section ends.</param>
    /// <returns>The forwarded query's length, never more than the query's (an OPT record without options is the
    /// shortest there is).</returns>
    public static int Minimize(Span<byte> query, int questionEnd)
    {
        DnsEdns opt = DnsEdns.Read(query, questionEnd);
        bool edns = opt.State == DnsEdnsState.Present;
        int payloadSize = ClientUdpLimit(query, questionEnd); // read before the rewrite: the OPT record may sit anywhere after the question
        query[2] &= 0x01; // RD (QR and OPCODE are 0 in a screened query)
        query[3] &= 0x20; // AD; not CD (above)
        BinaryPrimitives.WriteUInt16BigEndian(query[4..], 1);
        BinaryPrimitives.WriteUInt16BigEndian(query[6..], 0);
        BinaryPrimitives.WriteUInt16BigEndian(query[8..], 0);
        BinaryPrimitives.WriteUInt16BigEndian(query[10..], (ushort)(edns ? 1 : 0));
        if (!edns)
        {
            return questionEnd;
        }

        Span<byte> record = query[questionEnd..];
        record[0] = 0; // the root
        BinaryPrimitives.WriteUInt16BigEndian(record[1..], OptType);
        BinaryPrimitives.WriteUInt16BigEndian(record[3..], (ushort)payloadSize);
        BinaryPrimitives.WriteUInt32BigEndian(record[5..], opt.DnssecOk ? 0x8000u : 0u); // EXTENDED-RCODE 0, VERSION 0
        BinaryPrimitives.WriteUInt16BigEndian(record[9..], 0);
        return questionEnd + DnsEdns.OptLength;
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
