using System.Buffers.Binary;
using System.Globalization;
using System.Net;
using Egress.Dns.Wire;
using Egress.Policy;
using Microsoft.Extensions.Logging;

namespace Egress.Dns;

/// <summary>
/// Teaches a policy the addresses an answer gives for its question name (following CNAMEs): each A/AAAA goes to
/// <see cref="EgressPolicy.Learn"/> under the question name with the chain's TTL. Internal-range answers are not
/// learned (the policy refuses them unless an address entry covers them) and are logged as rebinding refusals. Before
/// an answer reaches an app in the enclave, <see cref="RefuseInternal"/> finds every internal address a stub resolver
/// could take from it, on the chain or not, and says when the answer must be refused whole.
/// </summary>
internal static class DnsAnswerLearner
{
    /// <summary>How many refused addresses of one answer are logged one by one (event 308); the removal's line
    /// (event 324) counts them all, so an answer of thousands of internal records writes a few lines, not thousands.</summary>
    public const int LoggedRefusalsPerAnswer = 8;

    private const ushort TypeSvcb = 64;
    private const ushort TypeHttps = 65;
    private const ushort SvcKeyIPv4Hint = 4;
    private const ushort SvcKeyIPv6Hint = 6;

    [ThreadStatic]
    private static List<DnsAddressRecord>? t_records;

    /// <summary>Learns from <paramref name="response"/>; returns how many addresses were learned.</summary>
    /// <param name="policy">The policy that learns.</param>
    /// <param name="name">The question name.</param>
    /// <param name="response">The answer.</param>
    /// <param name="logger">Where learned addresses (Debug), rebinding refusals (Warning, the first
    /// <see cref="LoggedRefusalsPerAnswer"/>) the cache's evictions (Warning, event 326) and names still allowed that lost
    /// their place at an address (Warning, event 329; each at most once a minute) are logged.</param>
    /// <param name="refused">Receives each internal-range address refused (DNS rebinding protection), as an
    /// <see cref="AddressValue"/>, when given.</param>
    public static int Learn(EgressPolicy policy, string name, ReadOnlySpan<byte> response, ILogger logger, HashSet<UInt128>? refused = null)
    {
        List<DnsAddressRecord> records = t_records ??= [];
        records.Clear();
        DnsParseError error = DnsMessage.ExtractAddresses(response, records);
        if (error != DnsParseError.None)
        {
            DnsLog.Unlearnable(logger, name, error);
            return 0;
        }

        int learned = 0;
        int logged = 0;
        foreach (DnsAddressRecord record in records)
        {
            LearnResult result = policy.Learn(name, record.Address, record.Ttl);
            if (result.IsLearned)
            {
                learned++;
                DnsLog.Learned(logger, record.Address, name, record.Ttl.TotalSeconds);
            }
            else if (result.Outcome == LearnOutcome.InternalRange
                && (refused?.Add(AddressValue.Of(record.Address)) ?? true) && logged++ < LoggedRefusalsPerAnswer)
            {
                DnsLog.RebindingRefused(logger, name, record.Address, result);
            }
        }

        records.Clear();
        if (learned > 0 && policy.Cache.TryTakeEvictionWarning(out long evicted))
        {
            DnsLog.CacheEvicted(logger, evicted, policy.Cache.MaxEntries);
        }

        if (learned > 0 && policy.Cache.TryTakeDisplacementWarning(out long displaced, out var last))
        {
            DnsLog.NameDisplaced(logger, last!.Name, last.Address, last.By, AllowlistCache.MaxNamesPerAddress, displaced);
        }

        return learned;
    }

    /// <summary>
    /// Adds to <paramref name="refused"/> every address of an answer-section A/AAAA record (class IN) that the policy
    /// refuses as internal, whether or not its owner is on the question's CNAME chain (<see cref="Learn"/> reads only
    /// the chain), and logs the first few not already there. A stub resolver that ignores owner names (musl takes every
    /// address record of the answer section) would otherwise hand the app an address nothing checked, and so would any
    /// resolver given an answer whose chain <see cref="Learn"/> could not follow (more than
    /// <see cref="DnsMessage.MaxCnameChainLength"/> links, a name with no text form). Finds, and refuses the answer for,
    /// what such a resolver reads differently from this one: musl skips an owner name byte by byte (any byte from 1 to
    /// 127 is part of it, a 0 ends it, one above 127 is a pointer), passes only the low byte of TYPE and never reads
    /// CLASS.
    /// </summary>
    /// <param name="policy">The policy that decides which addresses are internal.</param>
    /// <param name="name">The question name, for the log.</param>
    /// <param name="response">The answer.</param>
    /// <param name="logger">Where refusals are logged (Warning, event 308).</param>
    /// <param name="refused">The addresses refused so far (<see cref="AddressValue"/>s); receives the others.</param>
    /// <returns>Null; or why the answer must not reach the app (its addresses could not all be checked, or one a stub
    /// resolver reads outside the answer section's A/AAAA records is internal): the header, question or a record cannot
    /// be read; an answer-section owner name holds a 0 byte or one above 127 inside a label; an answer-section A or AAAA
    /// record is of a class other than IN (Go's resolver reads any class); a record whose TYPE's low byte is 1 or 28
    /// and whose data is 4 or 16 bytes holds an internal address (musl reads no CLASS and only that byte of TYPE); an
    /// SVCB or HTTPS record's <c>ipv4hint</c>/<c>ipv6hint</c> holds an internal address (RFC 9460 §7.3), or its
    /// parameters cannot be read; or an address record in the authority or additional section is internal.</returns>
    public static string? RefuseInternal(EgressPolicy policy, string name, ReadOnlySpan<byte> response, ILogger logger, HashSet<UInt128> refused)
    {
        if (!DnsHeader.TryRead(response, out DnsHeader header))
        {
            return Unreadable(DnsParseError.Truncated);
        }

        DnsParseError error = DnsMessage.CheckQuestionCount(header);
        int offset = 0;
        if (error == DnsParseError.None)
        {
            error = DnsName.Skip(response, DnsHeader.Length, out offset);
            offset += 4; // QTYPE and QCLASS
            if (error == DnsParseError.None && offset > response.Length)
            {
                error = DnsParseError.Truncated;
            }
        }

        for (int i = 0; i < header.AnCount && error == DnsParseError.None; i++)
        {
            error = DnsRecord.TryRead(response, offset, out DnsRecord record, out offset);
            if (error != DnsParseError.None)
            {
                break;
            }

            if (!HasPlainLabels(response, record.OwnerOffset))
            {
                return "an answer-section owner name holds a 0 byte or a byte above 127 inside a label, where a stub resolver "
                    + "that skips names byte by byte (musl) would read the record's fields";
            }

            if (record.Class == DnsRecord.ClassInternet && record.Type is TypeSvcb or TypeHttps
                && HintRefusal(policy, response.Slice(record.DataOffset, record.DataLength), record.Type) is { } hint)
            {
                return hint;
            }

            if (!record.IsAddress && record.Type is DnsRecord.TypeA or DnsRecord.TypeAaaa)
            {
                // Go's resolver takes an A or AAAA record of any class, and reads 4 or 16 bytes where its data starts
                // whatever its length (past its end, even): no such record of another class is checked, or answers.
                return string.Create(
                    CultureInfo.InvariantCulture,
                    $"an answer-section {(record.Type == DnsRecord.TypeA ? "A" : "AAAA")} record of CLASS {record.Class}, which a stub resolver that reads no CLASS (Go's, musl) takes for an address record");
            }

            bool lookalike = !record.IsAddress && (((record.Type & 0xFF) == DnsRecord.TypeA && record.DataLength == 4)
                || ((record.Type & 0xFF) == DnsRecord.TypeAaaa && record.DataLength == 16));
            if (!record.IsAddress && !lookalike)
            {
                continue;
            }

            UInt128 value = AddressValue.Of(response.Slice(record.DataOffset, record.DataLength));
            if (!policy.RefusesAsInternal(value, out string? rangeName))
            {
                continue;
            }

            if (lookalike)
            {
                return string.Create(
                    CultureInfo.InvariantCulture,
                    $"a record of TYPE {record.Type} CLASS {record.Class} holds the internal address {AddressValue.ToAddress(value)}, and a stub resolver that reads only TYPE's low byte and no CLASS (musl) takes it for an address record");
            }

            if (refused.Add(value) && refused.Count <= LoggedRefusalsPerAnswer)
            {
                DnsLog.RebindingRefused(logger, name, AddressValue.ToAddress(value), new LearnResult(LearnOutcome.InternalRange, rangeName));
            }
        }

        // The authority and additional sections: glibc and musl never read addresses there, but a client that asks for
        // SRV or MX records may connect to the address records beside the answer.
        for (int i = 0; i < header.NsCount + header.ArCount && error == DnsParseError.None; i++)
        {
            error = DnsRecord.TryRead(response, offset, out DnsRecord record, out offset);
            if (error != DnsParseError.None || !record.IsAddress)
            {
                continue;
            }

            UInt128 value = AddressValue.Of(response.Slice(record.DataOffset, record.DataLength));
            if (policy.RefusesAsInternal(value, out _))
            {
                return string.Create(
                    CultureInfo.InvariantCulture,
                    $"the {(i < header.NsCount ? "authority" : "additional")} section holds the internal address {AddressValue.ToAddress(value)}, which a client reading the records beside an SRV or MX answer would connect to");
            }
        }

        return error == DnsParseError.None ? null : Unreadable(error);
    }

    /// <summary>Why an SVCB or HTTPS record's data (RFC 9460 §2.2: SvcPriority, TargetName, then SvcParams of key,
    /// length and value) must not reach the app: an <c>ipv4hint</c> or <c>ipv6hint</c> (keys 4 and 6, §7.3) holding an
    /// internal address, which a client may connect to before it resolves the target; or parameters that cannot be
    /// read. Null when neither.</summary>
    private static string? HintRefusal(EgressPolicy policy, ReadOnlySpan<byte> data, ushort type)
    {
        string kind = type == TypeHttps ? "HTTPS" : "SVCB";
        int position = 2;
        if (data.Length < 3 || DnsName.Skip(data, position, out position) != DnsParseError.None)
        {
            // The target is never compressed (RFC 9460 §2.2), so it reads inside the record's own data.
            return $"an {kind} record's target name cannot be read, so its address hints could not be checked";
        }

        while (position < data.Length)
        {
            if (data.Length - position < 4)
            {
                return ParametersUnreadable(kind);
            }

            ushort key = BinaryPrimitives.ReadUInt16BigEndian(data[position..]);
            int length = BinaryPrimitives.ReadUInt16BigEndian(data[(position + 2)..]);
            position += 4;
            int size = key switch { SvcKeyIPv4Hint => 4, SvcKeyIPv6Hint => 16, _ => 0 };
            if (data.Length - position < length || (size > 0 && length % size != 0))
            {
                return ParametersUnreadable(kind);
            }

            for (int hint = position; size > 0 && hint < position + length; hint += size)
            {
                UInt128 value = AddressValue.Of(data.Slice(hint, size));
                if (policy.RefusesAsInternal(value, out _))
                {
                    return string.Create(
                        CultureInfo.InvariantCulture,
                        $"an {kind} record's {(size == 4 ? "ipv4hint" : "ipv6hint")} holds the internal address {AddressValue.ToAddress(value)}, which a client may connect to before it resolves the target");
                }
            }

            position += length;
        }

        return null;

        static string ParametersUnreadable(string kind) => $"an {kind} record's parameters cannot be read, so its address hints could not be checked";
    }

    private static string Unreadable(DnsParseError error) =>
        $"the answer cannot be read ({error}), so its addresses could not be checked for internal ranges";

    /// <summary>Whether every label of the name at <paramref name="offset"/> holds only bytes from 1 to 127.</summary>
    private static bool HasPlainLabels(ReadOnlySpan<byte> message, int offset)
    {
        var reader = new DnsNameReader(message, offset);
        while (reader.Next(out ReadOnlySpan<byte> label) == DnsParseError.None && !label.IsEmpty)
        {
            if (label.IndexOfAnyExceptInRange((byte)1, (byte)127) >= 0)
            {
                return false;
            }
        }

        return true;
    }
}
