using System.Buffers.Binary;

namespace Egress.Dns.Wire;

/// <summary>Whether a query carries an EDNS OPT record (RFC 6891), and whether it can be read.</summary>
internal enum DnsEdnsState
{
    /// <summary>No OPT record: the client does not do EDNS, so no answer may carry one (RFC 6891 §7).</summary>
    Absent,

    /// <summary>Exactly one well-formed OPT record in the additional section.</summary>
    Present,

    /// <summary>The records after the question cannot be read, there is more than one OPT record, an OPT record
    /// sits outside the additional section or has an owner other than the root, or its options do not fill its
    /// RDATA exactly.</summary>
    Malformed,
}

/// <summary>
/// The EDNS OPT record of a query (RFC 6891 §6.1.2), as far as a responder that synthesizes answers needs it, and
/// the OPT record such an answer carries. Nothing here throws on malformed input.
/// </summary>
/// <param name="State">Whether the query has an OPT record.</param>
/// <param name="Version">The query's EDNS VERSION.</param>
/// <param name="DnssecOk">The query's DO bit (RFC 3225), which the answer copies.</param>
internal readonly record struct DnsEdns(DnsEdnsState State, byte Version, bool DnssecOk)
{
    /// <summary>The OPT record TYPE.</summary>
    public const ushort OptType = 41;

    /// <summary>The UDP payload size synthesized answers advertise: the DNS Flag Day 2020 value, which fits an
    /// IPv6 minimum MTU without fragmentation.</summary>
    public const ushort AdvertisedPayloadSize = 1232;

    /// <summary>The RFC 8914 Extended DNS Error option code.</summary>
    public const ushort ExtendedErrorOptionCode = 15;

    /// <summary>
    /// The EDE INFO-CODE of a denial: 15 Blocked, "the domain is on a blocklist due to an internal security policy
    /// imposed by the operator of the server resolving or forwarding the query" (RFC 8914 §4.16). The allowlist is
    /// exactly such an operator policy (everything outside it is blocked). Not 17 Filtered, which is filtering
    /// the client asked for, and not 18 Prohibited, which is about an unauthorized client rather than the name:
    /// every client in the enclave may ask, and would get the same answer for another name.
    /// </summary>
    public const ushort InfoCodeBlocked = 15;

    /// <summary>
    /// The EDE INFO-CODE of a query refused because its client (or all clients together) has too many queries in
    /// flight: 0 Other (RFC 8914 §4.1), with an EXTRA-TEXT that says so; no code of the IANA registry names a
    /// resolver's own admission limit.
    /// </summary>
    public const ushort InfoCodeOther = 0;

    /// <summary>
    /// The EDE INFO-CODE of a SERVFAIL made up because no answer came in time (the upstreams', or the parent's through
    /// the tunnel): 22 No Reachable Authority, "the resolver could not reach any of the authoritative name servers (or
    /// they potentially refused to reply)" (RFC 8914 §4.23), as forwarders use it for their upstreams.
    /// </summary>
    public const ushort InfoCodeNoReachableAuthority = 22;

    /// <summary>
    /// The EDE INFO-CODE of a SERVFAIL made up because the way to an answer failed (an upstream refused or was
    /// unreachable, the tunnel DNS stream to the parent failed): 23 Network Error, "an unreachable server due to a
    /// network error" (RFC 8914 §4.24).
    /// </summary>
    public const ushort InfoCodeNetworkError = 23;

    /// <summary>The EDE EXTRA-TEXT of <see cref="InfoCodeNoReachableAuthority"/>.</summary>
    public static ReadOnlySpan<byte> NoAnswerExtraText => "egress: no DNS upstream answered"u8;

    /// <summary>The EDE EXTRA-TEXT of <see cref="InfoCodeNetworkError"/>.</summary>
    public static ReadOnlySpan<byte> NetworkErrorExtraText => "egress: upstream or tunnel failed"u8;

    /// <summary>The EDE EXTRA-TEXT of a denial.</summary>
    public static ReadOnlySpan<byte> DeniedExtraText => "egress policy: name not in allowlist"u8;

    /// <summary>The EDE EXTRA-TEXT of a denial because egress is disabled (<c>[egress] enabled</c> is not true).</summary>
    public static ReadOnlySpan<byte> DisabledExtraText => "egress policy: egress disabled"u8;

    /// <summary>The EDE EXTRA-TEXT of a SERVFAIL (Blocked) for an answer that holds internal-range addresses.</summary>
    public static ReadOnlySpan<byte> InternalAddressesExtraText => "egress policy: internal addresses"u8;

    /// <summary>The EDE EXTRA-TEXT of a query refused for load (<see cref="InfoCodeOther"/>).</summary>
    public static ReadOnlySpan<byte> OverloadedExtraText => "egress: too many queries in flight"u8;

    /// <summary>The EXTRA-TEXT synthesized answers carry with <paramref name="infoCode"/>.</summary>
    public static ReadOnlySpan<byte> ExtraTextOf(ushort infoCode) => infoCode switch
    {
        InfoCodeBlocked => DeniedExtraText,
        InfoCodeNoReachableAuthority => NoAnswerExtraText,
        InfoCodeNetworkError => NetworkErrorExtraText,
        _ => OverloadedExtraText,
    };

    /// <summary>An OPT record without options: owner, TYPE, CLASS, TTL, RDLENGTH.</summary>
    public const int OptLength = 1 + 10;

    /// <summary>The longest OPT record <see cref="WriteOpt"/> writes: with the denial's EDE option (no EXTRA-TEXT is
    /// longer than the denial's 36 bytes).</summary>
    public const int MaxOptLength = OptLength + 4 + 2 + 36;

    private const int RecordFixedLength = 10;
    private const byte BadVersExtendedRcode = 1;

    /// <summary>True when the query asks for an EDNS version this responder does not implement (only 0 is).</summary>
    public bool IsUnsupportedVersion => State == DnsEdnsState.Present && Version != 0;

    /// <summary>Finds the OPT record among the records after the question.</summary>
    /// <param name="query">The query.</param>
    /// <param name="questionEnd">Where the records after the question section start.</param>
    /// <returns>What was found.</returns>
    public static DnsEdns Read(ReadOnlySpan<byte> query, int questionEnd)
    {
        if (!DnsHeader.TryRead(query, out DnsHeader header) || questionEnd < DnsHeader.Length || questionEnd > query.Length)
        {
            return new DnsEdns(DnsEdnsState.Malformed, 0, false);
        }

        int records = header.AnCount + header.NsCount + header.ArCount;
        int firstAdditional = header.AnCount + header.NsCount;
        int offset = questionEnd;
        DnsEdns found = new(DnsEdnsState.Absent, 0, false);
        for (int i = 0; i < records; i++)
        {
            if (DnsName.Skip(query, offset, out int nameEnd) != DnsParseError.None || query.Length - nameEnd < RecordFixedLength)
            {
                return new DnsEdns(DnsEdnsState.Malformed, 0, false);
            }

            ReadOnlySpan<byte> fixedFields = query.Slice(nameEnd, RecordFixedLength);
            int dataOffset = nameEnd + RecordFixedLength;
            int dataLength = BinaryPrimitives.ReadUInt16BigEndian(fixedFields[8..]);
            if (query.Length - dataOffset < dataLength)
            {
                return new DnsEdns(DnsEdnsState.Malformed, 0, false);
            }

            if (BinaryPrimitives.ReadUInt16BigEndian(fixedFields) == OptType)
            {
                // RFC 6891 §6.1.1: one OPT at most, in the additional section, owned by the root.
                if (found.State != DnsEdnsState.Absent || i < firstAdditional || nameEnd != offset + 1
                    || !OptionsFill(query.Slice(dataOffset, dataLength)))
                {
                    return new DnsEdns(DnsEdnsState.Malformed, 0, false);
                }

                uint ttl = BinaryPrimitives.ReadUInt32BigEndian(fixedFields[4..]);
                found = new DnsEdns(DnsEdnsState.Present, (byte)(ttl >> 16), (ttl & 0x8000) != 0);
            }

            offset = dataOffset + dataLength;
        }

        return found;
    }

    /// <summary>
    /// Writes the OPT record of a synthesized answer to a query with this OPT record: the advertised payload size,
    /// the upper 8 bits of <paramref name="rcode"/> as EXTENDED-RCODE, VERSION 0, DO copied (RFC 3225 §3), and,
    /// when <paramref name="infoCode"/> is set, one Extended DNS Error option (RFC 8914 §2).
    /// </summary>
    /// <param name="destination">Receives the record; <see cref="MaxOptLength"/> bytes suffice for the denial.</param>
    /// <param name="rcode">The full 12-bit RCODE.</param>
    /// <param name="infoCode">The EDE INFO-CODE, or null for no EDE option.</param>
    /// <param name="extraText">The EDE EXTRA-TEXT (UTF-8, not NUL-terminated).</param>
    /// <returns>The number of bytes written.</returns>
    public int WriteOpt(Span<byte> destination, int rcode, ushort? infoCode, ReadOnlySpan<byte> extraText)
    {
        int optionLength = infoCode is null ? 0 : 4 + 2 + extraText.Length;
        destination[0] = 0;
        BinaryPrimitives.WriteUInt16BigEndian(destination[1..], OptType);
        BinaryPrimitives.WriteUInt16BigEndian(destination[3..], AdvertisedPayloadSize);
        uint ttl = ((uint)(rcode >> 4) << 24) | (DnssecOk ? 0x8000u : 0u);
        BinaryPrimitives.WriteUInt32BigEndian(destination[5..], ttl);
        BinaryPrimitives.WriteUInt16BigEndian(destination[9..], (ushort)optionLength);
        if (infoCode is ushort code)
        {
            BinaryPrimitives.WriteUInt16BigEndian(destination[11..], ExtendedErrorOptionCode);
            BinaryPrimitives.WriteUInt16BigEndian(destination[13..], (ushort)(2 + extraText.Length));
            BinaryPrimitives.WriteUInt16BigEndian(destination[15..], code);
            extraText.CopyTo(destination[17..]);
        }

        return OptLength + optionLength;
    }

    /// <summary>The 12-bit BADVERS RCODE (RFC 6891 §6.1.3): 16.</summary>
    public static int BadVers => BadVersExtendedRcode << 4;

    private static bool OptionsFill(ReadOnlySpan<byte> data)
    {
        while (data.Length > 0)
        {
            if (data.Length < 4)
            {
                return false;
            }

            int length = BinaryPrimitives.ReadUInt16BigEndian(data[2..]);
            if (data.Length - 4 < length)
            {
                return false;
            }

            data = data[(4 + length)..];
        }

        return true;
    }
}
