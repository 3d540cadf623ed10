using System.Buffers.Binary;

namespace Egress.Dns.Wire;

/// <summary>
/// Reads and builds raw DNS messages (RFC 1035) for a forwarder that relays messages verbatim and only inspects
/// them. Messages are spans without the TCP length prefix. Nothing here throws on malformed input: readers return
/// a <see cref="DnsParseError"/>, writers return -1.
/// </summary>
internal static class DnsMessage
{
    /// <summary>The longest dotted text form of a name (255 octets on the wire). A buffer of this many chars
    /// holds any name.</summary>
    public const int MaxNameLength = DnsName.MaxTextLength;

    /// <summary>The most CNAME records <see cref="ExtractAddresses"/> follows from the question name.</summary>
    public const int MaxCnameChainLength = 16;

    /// <summary>The largest message <see cref="WriteRefused"/>, <see cref="WriteServFail(ReadOnlySpan{byte}, Span{byte})"/>,
    /// <see cref="WriteFormErr"/> and the denial produce: a header, one uncompressed question (271 bytes) and an OPT
    /// record with an Extended DNS Error option, so it always fits a 512-byte UDP message.</summary>
    public const int MaxErrorResponseLength = DnsHeader.Length + DnsName.MaxWireLength + 4 + DnsEdns.MaxOptLength;

    private const byte RcodeFormErr = 1;
    private const byte RcodeServFail = 2;
    private const byte RcodeNxDomain = 3;
    private const byte RcodeNotImp = 4;
    private const byte RcodeRefused = 5;

    /// <summary>Reads the single question of a standard query.</summary>
    /// <param name="query">The query message.</param>
    /// <param name="question">The question (name as on the wire, without trailing dot), or the default value on
    /// error.</param>
    /// <param name="questionEnd">The offset just after the question section, or 0 on error.</param>
    /// <returns><see cref="DnsParseError.None"/>; <see cref="DnsParseError.NotAQuery"/> when QR is set or the opcode
    /// is not QUERY; <see cref="DnsParseError.NoQuestion"/> or <see cref="DnsParseError.TooManyQuestions"/> when
    /// QDCOUNT is not 1; otherwise the reason the header or question is malformed (including
    /// <see cref="DnsParseError.BadCharacter"/> for a name with no unambiguous text form).</returns>
    public static DnsParseError TryParseQuestion(ReadOnlySpan<byte> query, out DnsQuestion question, out int questionEnd)
    {
        Span<char> name = stackalloc char[MaxNameLength];
        DnsParseError error = ReadQueryQuestion(query, name, out int length, out ushort type, out ushort @class, out questionEnd);
        question = error == DnsParseError.None ? new DnsQuestion(new string(name[..length]), type, @class) : default;
        return error;
    }

    /// <summary>Reads the question name of a standard query into a caller's buffer, without allocating. Checks
    /// exactly what <see cref="TryParseQuestion"/> checks.</summary>
    /// <param name="query">The query message.</param>
    /// <param name="destination">Receives the name as on the wire, without trailing dot; must hold at least
    /// <see cref="MaxNameLength"/> chars.</param>
    /// <param name="charsWritten">The length of the name, or 0 on error.</param>
    /// <returns>As for <see cref="TryParseQuestion"/>.</returns>
    /// <exception cref="ArgumentException"><paramref name="destination"/> is shorter than <see cref="MaxNameLength"/>.</exception>
    public static DnsParseError TryReadQuestionName(ReadOnlySpan<byte> query, Span<char> destination, out int charsWritten)
    {
        if (destination.Length < MaxNameLength)
        {
            throw new ArgumentException($"The buffer must hold at least {MaxNameLength} chars.", nameof(destination));
        }

        return ReadQueryQuestion(query, destination, out charsWritten, out _, out _, out _);
    }

    /// <summary>
    /// Collects the A and AAAA addresses a response gives for its question name. Starting at the question name,
    /// a CNAME in the answer section owned by the current name (compared case-insensitively; the first one wins)
    /// moves the current name to its target, for at most <see cref="MaxCnameChainLength"/> steps. Only A/AAAA
    /// records of class IN owned by a name on that chain are collected; all others are ignored. Each address's
    /// TTL is the smallest of its own TTL and the TTLs of the CNAMEs leading to its owner, because the address
    /// stops being the answer for the question name as soon as any link of the chain expires.
    /// </summary>
    /// <param name="response">The response message.</param>
    /// <param name="results">Receives the addresses, in answer-section order. Nothing is added unless the
    /// whole message is well-formed (every record of every section, all names) and the result is
    /// <see cref="DnsParseError.None"/>.</param>
    /// <returns><see cref="DnsParseError.None"/> (with no addresses when RCODE is not NOERROR);
    /// <see cref="DnsParseError.NotAResponse"/> when QR is clear or the opcode is not QUERY;
    /// <see cref="DnsParseError.Truncated"/> when a count announces more than the message holds;
    /// <see cref="DnsParseError.CnameChainTooLong"/> for a CNAME loop or an over-long chain; otherwise the reason
    /// the message is malformed.</returns>
    public static DnsParseError ExtractAddresses(ReadOnlySpan<byte> response, ICollection<DnsAddressRecord> results)
    {
        ArgumentNullException.ThrowIfNull(results);
        return DnsAddressExtractor.Extract(response, results);
    }

    /// <summary>
    /// Writes a REFUSED answer to <paramref name="query"/>: same ID and opcode, QR=1, AA=0, TC=0, RD and CD copied,
    /// RA=1, AD=0, RCODE 5, the question copied (uncompressed), and no answer or authority records. When the query
    /// has a well-formed EDNS OPT record, the answer has one too (RFC 6891 §7: payload size 1232, VERSION 0, DO
    /// copied, no options); without one, or when it is malformed, the answer has none.
    /// </summary>
    /// <param name="query">The query to answer.</param>
    /// <param name="destination">Receives the answer; must hold at least <see cref="MaxErrorResponseLength"/> bytes.</param>
    /// <returns>The number of bytes written, or -1 when the message is not a query (QR set) or its header or single
    /// question cannot be read.</returns>
    /// <exception cref="ArgumentException"><paramref name="destination"/> is shorter than <see cref="MaxErrorResponseLength"/>.</exception>
    public static int WriteRefused(ReadOnlySpan<byte> query, Span<byte> destination) =>
        WriteErrorResponse(query, destination, RcodeRefused, questionRequired: true, infoCode: null);

    /// <summary>Writes a SERVFAIL answer (RCODE 2) to <paramref name="query"/>, built exactly like
    /// <see cref="WriteRefused"/>; with <paramref name="infoCode"/>, an RFC 8914 Extended DNS Error option with its
    /// EXTRA-TEXT (<see cref="DnsEdns.ExtraTextOf"/>) in the OPT record when the query has EDNS.</summary>
    /// <param name="query">The query to answer.</param>
    /// <param name="destination">Receives the answer; must hold at least <see cref="MaxErrorResponseLength"/> bytes.</param>
    /// <param name="infoCode">The EDE INFO-CODE (<see cref="DnsEdns.InfoCodeNoReachableAuthority"/>,
    /// <see cref="DnsEdns.InfoCodeNetworkError"/>), or null for none.</param>
    /// <returns>The number of bytes written, or -1 as for <see cref="WriteRefused"/>.</returns>
    /// <exception cref="ArgumentException"><paramref name="destination"/> is shorter than <see cref="MaxErrorResponseLength"/>.</exception>
    public static int WriteServFail(ReadOnlySpan<byte> query, Span<byte> destination, ushort? infoCode) =>
        WriteServFail(query, destination, infoCode, extraText: default);

    /// <summary>As <see cref="WriteServFail(ReadOnlySpan{byte}, Span{byte}, ushort?)"/> with the EXTRA-TEXT
    /// <paramref name="extraText"/> (empty: <see cref="DnsEdns.ExtraTextOf"/>; at most 36 bytes).</summary>
    /// <exception cref="ArgumentException"><paramref name="destination"/> is shorter than <see cref="MaxErrorResponseLength"/>.</exception>
    internal static int WriteServFail(ReadOnlySpan<byte> query, Span<byte> destination, ushort? infoCode, ReadOnlySpan<byte> extraText) =>
        WriteErrorResponse(query, destination, RcodeServFail, questionRequired: true, infoCode: infoCode, extraText);

    /// <summary>Writes a SERVFAIL answer without an Extended DNS Error (<see cref="WriteServFail(ReadOnlySpan{byte}, Span{byte}, ushort?)"/>
    /// with none).</summary>
    /// <param name="query">The query to answer.</param>
    /// <param name="destination">Receives the answer; must hold at least <see cref="MaxErrorResponseLength"/> bytes.</param>
    /// <returns>The number of bytes written, or -1 as for <see cref="WriteRefused"/>.</returns>
    /// <exception cref="ArgumentException"><paramref name="destination"/> is shorter than <see cref="MaxErrorResponseLength"/>.</exception>
    public static int WriteServFail(ReadOnlySpan<byte> query, Span<byte> destination) => WriteServFail(query, destination, null);

    /// <summary>Writes a FORMERR answer (RCODE 1) to <paramref name="query"/>, built like <see cref="WriteRefused"/>
    /// except that the question is copied only when QDCOUNT is 1 and the question can be read; otherwise the answer
    /// has QDCOUNT 0.</summary>
    /// <param name="query">The query to answer.</param>
    /// <param name="destination">Receives the answer; must hold at least <see cref="MaxErrorResponseLength"/> bytes.</param>
    /// <returns>The number of bytes written, or -1 when the message is shorter than a header or is not a query.</returns>
    /// <exception cref="ArgumentException"><paramref name="destination"/> is shorter than <see cref="MaxErrorResponseLength"/>.</exception>
    public static int WriteFormErr(ReadOnlySpan<byte> query, Span<byte> destination) =>
        WriteErrorResponse(query, destination, RcodeFormErr, questionRequired: false, infoCode: null);

    /// <summary>
    /// Writes the answer to a name the policy denies: NXDOMAIN (RCODE 3), built like <see cref="WriteRefused"/>, with
    /// an RFC 8914 Extended DNS Error option (INFO-CODE 15 Blocked, see <see cref="DnsEdns.InfoCodeBlocked"/>,
    /// EXTRA-TEXT "egress policy: name not in allowlist") in the OPT record when the query has EDNS. NXDOMAIN rather
    /// than REFUSED because it is the one final negative answer every stub resolver takes at once: musl ignores
    /// REFUSED (it waits for its timeout, then fails temporarily, and stops walking its search list), and glibc's
    /// getnameinfo turns it into EAI_AGAIN instead of falling back to the numeric address.
    /// </summary>
    /// <param name="query">The query to answer.</param>
    /// <param name="destination">Receives the answer; must hold at least <see cref="MaxErrorResponseLength"/> bytes.</param>
    /// <returns>The number of bytes written, or -1 as for <see cref="WriteRefused"/>.</returns>
    internal static int WriteDenied(ReadOnlySpan<byte> query, Span<byte> destination) => WriteDenied(query, destination, default);

    /// <summary>As <see cref="WriteDenied(ReadOnlySpan{byte}, Span{byte})"/> with the EXTRA-TEXT
    /// <paramref name="extraText"/> (empty: <see cref="DnsEdns.DeniedExtraText"/>; at most 36 bytes).</summary>
    internal static int WriteDenied(ReadOnlySpan<byte> query, Span<byte> destination, ReadOnlySpan<byte> extraText) =>
        WriteErrorResponse(query, destination, RcodeNxDomain, questionRequired: true, infoCode: DnsEdns.InfoCodeBlocked, extraText);

    /// <summary>
    /// Writes the answer to a query refused for load (its client, or all clients together, has too many queries in
    /// flight): SERVFAIL (RCODE 2), built like <see cref="WriteRefused"/>, with an RFC 8914 Extended DNS Error option
    /// (INFO-CODE 0 Other, EXTRA-TEXT "egress: too many queries in flight") when the query has EDNS. SERVFAIL because
    /// it is temporary: stub resolvers try again (or the next server) rather than cache a negative answer.
    /// </summary>
    /// <param name="query">The query to answer.</param>
    /// <param name="destination">Receives the answer; must hold at least <see cref="MaxErrorResponseLength"/> bytes.</param>
    /// <returns>The number of bytes written, or -1 as for <see cref="WriteRefused"/>.</returns>
    internal static int WriteOverloaded(ReadOnlySpan<byte> query, Span<byte> destination) =>
        WriteErrorResponse(query, destination, RcodeServFail, questionRequired: true, infoCode: DnsEdns.InfoCodeOther);

    /// <summary>Writes a NOTIMP answer (RCODE 4) for a query whose opcode is not QUERY, built like
    /// <see cref="WriteFormErr"/> (the question is copied when there is a readable one).</summary>
    /// <param name="query">The query to answer.</param>
    /// <param name="destination">Receives the answer; must hold at least <see cref="MaxErrorResponseLength"/> bytes.</param>
    /// <returns>The number of bytes written, or -1 as for <see cref="WriteFormErr"/>.</returns>
    internal static int WriteNotImp(ReadOnlySpan<byte> query, Span<byte> destination) =>
        WriteErrorResponse(query, destination, RcodeNotImp, questionRequired: false, infoCode: null);

    /// <summary>Writes a BADVERS answer (RFC 6891 §6.1.3: extended RCODE 16) to a query asking for an EDNS version
    /// other than 0, built like <see cref="WriteFormErr"/>.</summary>
    /// <param name="query">The query to answer.</param>
    /// <param name="destination">Receives the answer; must hold at least <see cref="MaxErrorResponseLength"/> bytes.</param>
    /// <returns>The number of bytes written, or -1 as for <see cref="WriteFormErr"/>.</returns>
    internal static int WriteBadVers(ReadOnlySpan<byte> query, Span<byte> destination) =>
        WriteErrorResponse(query, destination, DnsEdns.BadVers, questionRequired: false, infoCode: null);

    /// <summary>True for a query (QR clear) whose opcode is not QUERY (0): IQUERY, STATUS, NOTIFY, UPDATE...</summary>
    /// <param name="message">A message.</param>
    /// <returns>Whether it deserves NOTIMP.</returns>
    internal static bool HasUnimplementedOpcode(ReadOnlySpan<byte> message) =>
        DnsHeader.TryRead(message, out DnsHeader header) && !header.IsResponse && header.Opcode != 0;

    /// <summary>Reads the EDNS OPT record of a query whose question section ends at <paramref name="questionEnd"/>.</summary>
    /// <param name="query">The query.</param>
    /// <param name="questionEnd">Where its question section ends.</param>
    /// <returns>What was found.</returns>
    internal static DnsEdns ReadEdns(ReadOnlySpan<byte> query, int questionEnd) => DnsEdns.Read(query, questionEnd);

    /// <summary>Whether the TC (truncated) flag is set. A message shorter than 3 bytes reads as not truncated.</summary>
    /// <param name="response">The response message.</param>
    /// <returns>True when TC is set.</returns>
    public static bool IsTruncated(ReadOnlySpan<byte> response) => response.Length >= 3 && (response[2] & 0x02) != 0;

    /// <summary>Reads the message ID.</summary>
    /// <param name="message">A message of at least 2 bytes.</param>
    /// <returns>The ID.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="message"/> is shorter than 2 bytes.</exception>
    public static ushort ReadId(ReadOnlySpan<byte> message) => BinaryPrimitives.ReadUInt16BigEndian(message);

    /// <summary>Overwrites the message ID in place (for a forwarder that multiplexes queries on one stream).</summary>
    /// <param name="message">A message of at least 2 bytes.</param>
    /// <param name="id">The new ID.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="message"/> is shorter than 2 bytes.</exception>
    public static void WriteId(Span<byte> message, ushort id) => BinaryPrimitives.WriteUInt16BigEndian(message, id);

    /// <summary>Checks that a header announces exactly one question.</summary>
    internal static DnsParseError CheckQuestionCount(in DnsHeader header) => header.QdCount switch
    {
        0 => DnsParseError.NoQuestion,
        1 => DnsParseError.None,
        _ => DnsParseError.TooManyQuestions,
    };

    private static DnsParseError ReadQueryQuestion(ReadOnlySpan<byte> query, Span<char> name, out int nameLength, out ushort type, out ushort @class, out int questionEnd)
    {
        nameLength = 0;
        type = 0;
        @class = 0;
        questionEnd = 0;
        if (!DnsHeader.TryRead(query, out DnsHeader header))
        {
            return DnsParseError.Truncated;
        }

        if (header.IsResponse || header.Opcode != 0)
        {
            return DnsParseError.NotAQuery;
        }

        DnsParseError error = CheckQuestionCount(header);
        if (error != DnsParseError.None)
        {
            return error;
        }

        error = DnsName.Decode(query, DnsHeader.Length, name, out int length, out int nameEnd);
        if (error != DnsParseError.None)
        {
            return error;
        }

        if (query.Length - nameEnd < 4)
        {
            return DnsParseError.Truncated;
        }

        nameLength = length;
        type = BinaryPrimitives.ReadUInt16BigEndian(query[nameEnd..]);
        @class = BinaryPrimitives.ReadUInt16BigEndian(query[(nameEnd + 2)..]);
        questionEnd = nameEnd + 4;
        return DnsParseError.None;
    }

    /// <summary>
    /// The one place answers are synthesized (every RCODE, both forwarders): header, the question when readable
    /// (required unless <paramref name="questionRequired"/> is false), and an OPT record when the query has a
    /// well-formed one (RFC 6891 §7; with <paramref name="infoCode"/> as an Extended DNS Error option).
    /// <see cref="DnsForwarding.WriteTruncated"/> uses <see cref="AppendOpt"/> for the same OPT record.
    /// </summary>
    private static int WriteErrorResponse(
        ReadOnlySpan<byte> query, Span<byte> destination, int rcode, bool questionRequired, ushort? infoCode, ReadOnlySpan<byte> extraText = default)
    {
        if (destination.Length < MaxErrorResponseLength)
        {
            throw new ArgumentException($"The buffer must hold at least {MaxErrorResponseLength} bytes.", nameof(destination));
        }

        if (!DnsHeader.TryRead(query, out DnsHeader header) || header.IsResponse)
        {
            return -1;
        }

        int length = DnsHeader.Length;
        bool hasQuestion = false;
        int recordsStart = -1;
        if (header.QdCount == 1
            && DnsName.CopyUncompressed(query, DnsHeader.Length, destination[DnsHeader.Length..], out int nameLength, out int nameEnd) == DnsParseError.None
            && query.Length - nameEnd >= 4)
        {
            length += nameLength;
            query.Slice(nameEnd, 4).CopyTo(destination[length..]);
            length += 4;
            hasQuestion = true;
            recordsStart = nameEnd + 4;
        }
        else if (questionRequired)
        {
            return -1;
        }
        else if (header.QdCount == 0)
        {
            recordsStart = DnsHeader.Length;
        }

        const int OpcodeRdCd = 0x7800 | 0x0100 | 0x0010;
        const int QrRa = 0x8000 | 0x0080;
        BinaryPrimitives.WriteUInt16BigEndian(destination, header.Id);
        BinaryPrimitives.WriteUInt16BigEndian(destination[2..], (ushort)((header.Flags & OpcodeRdCd) | QrRa | (rcode & 0xF)));
        BinaryPrimitives.WriteUInt16BigEndian(destination[4..], hasQuestion ? (ushort)1 : (ushort)0);
        destination.Slice(6, 6).Clear();
        if (recordsStart >= 0)
        {
            length += AppendOpt(query, recordsStart, destination, length, rcode, infoCode, extraText);
        }

        return length;
    }

    /// <summary>Appends the OPT record of a synthesized answer when <paramref name="query"/> has a well-formed one,
    /// and counts it in ARCOUNT.</summary>
    /// <returns>The number of bytes appended (0 without EDNS).</returns>
    internal static int AppendOpt(
        ReadOnlySpan<byte> query, int recordsStart, Span<byte> answer, int answerLength, int rcode, ushort? infoCode, ReadOnlySpan<byte> extraText = default)
    {
        DnsEdns edns = DnsEdns.Read(query, recordsStart);
        if (infoCode is { } code && extraText.IsEmpty)
        {
            extraText = DnsEdns.ExtraTextOf(code);
        }

        int optLength = DnsEdns.OptLength + (infoCode is not null ? 4 + 2 + extraText.Length : 0);
        if (edns.State != DnsEdnsState.Present || answer.Length - answerLength < optLength)
        {
            return 0;
        }

        int written = edns.WriteOpt(answer[answerLength..], rcode, infoCode, infoCode is not null ? extraText : default);
        BinaryPrimitives.WriteUInt16BigEndian(answer[10..], (ushort)(BinaryPrimitives.ReadUInt16BigEndian(answer[10..]) + 1));
        return written;
    }
}
