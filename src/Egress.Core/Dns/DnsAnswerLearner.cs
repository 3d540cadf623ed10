using System.Buffers.Binary;
using System.Net;
using Egress.Dns.Wire;
using Egress.Policy;
using Microsoft.Extensions.Logging;

namespace Egress.Dns;

/// <summary>
/// Teaches a policy the addresses an answer gives for its question name (following CNAMEs): each A/AAAA goes to
/// <see cref="EgressPolicy.Learn"/> under the question name with the chain's TTL. Internal-range answers are not
/// learned (the policy refuses them unless an address entry covers them) and are logged as rebinding refusals.
/// </summary>
internal static class DnsAnswerLearner
{
    [ThreadStatic]
    private static List<DnsAddressRecord>? t_records;

    /// <summary>Learns from <paramref name="response"/>; returns how many addresses were learned.</summary>
    /// <param name="policy">The policy that learns.</param>
    /// <param name="name">The question name.</param>
    /// <param name="response">The answer.</param>
    /// <param name="logger">Where learned addresses (Debug) and rebinding refusals (Warning) are logged.</param>
    /// <param name="refused">Receives each internal-range address refused (DNS rebinding protection), when given.</param>
    public static int Learn(EgressPolicy policy, string name, ReadOnlySpan<byte> response, ILogger logger, ICollection<IPAddress>? refused = null)
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
        foreach (DnsAddressRecord record in records)
        {
            LearnResult result = policy.Learn(name, record.Address, record.Ttl);
            if (result.IsLearned)
            {
                learned++;
                DnsLog.Learned(logger, record.Address, name, record.Ttl.TotalSeconds);
            }
            else if (result.Outcome == LearnOutcome.InternalRange)
            {
                DnsLog.RebindingRefused(logger, name, record.Address, result);
                refused?.Add(record.Address);
            }
        }

        records.Clear();
        return learned;
    }

    /// <summary>
    /// Adds to <paramref name="refused"/> every address of an answer-section A/AAAA record (class IN) that the policy
    /// refuses as internal, whether or not its owner is on the question's CNAME chain (<see cref="Learn"/> reads only
    /// the chain), and logs each one not already there. A stub resolver that ignores owner names (musl takes every
    /// address record of the answer section) would otherwise hand the app an address nothing checked, and so would any
    /// resolver given an answer whose chain <see cref="Learn"/> could not follow (more than
    /// <see cref="DnsMessage.MaxCnameChainLength"/> links, a name with no text form).
    /// </summary>
    /// <param name="policy">The policy that decides which addresses are internal.</param>
    /// <param name="name">The question name, for the log.</param>
    /// <param name="response">The answer.</param>
    /// <param name="logger">Where refusals are logged (Warning, event 308).</param>
    /// <param name="refused">The addresses refused so far; receives the others.</param>
    /// <returns><see cref="DnsParseError.None"/>, or why the header, question or an answer-section record cannot be
    /// read, in which case the answer's addresses are unchecked and it must not reach the app.</returns>
    public static DnsParseError RefuseInternal(EgressPolicy policy, string name, ReadOnlySpan<byte> response, ILogger logger, List<IPAddress> refused)
    {
        if (!DnsHeader.TryRead(response, out DnsHeader header))
        {
            return DnsParseError.Truncated;
        }

        DnsParseError error = DnsMessage.CheckQuestionCount(header);
        if (error == DnsParseError.None)
        {
            error = DnsName.Skip(response, DnsHeader.Length, out int offset);
            offset += 4; // QTYPE and QCLASS
            if (error == DnsParseError.None && offset > response.Length)
            {
                error = DnsParseError.Truncated;
            }

            for (int i = 0; i < header.AnCount && error == DnsParseError.None; i++)
            {
                error = DnsRecord.TryRead(response, offset, out DnsRecord record, out offset);
                if (error == DnsParseError.None && record.IsAddress)
                {
                    ReadOnlySpan<byte> data = response.Slice(record.DataOffset, record.DataLength);
                    UInt128 value = data.Length == 4
                        ? AddressValue.FromIPv4(BinaryPrimitives.ReadUInt32BigEndian(data))
                        : BinaryPrimitives.ReadUInt128BigEndian(data);
                    if (policy.RefusesAsInternal(value, out string? rangeName) && !Holds(refused, value))
                    {
                        IPAddress address = AddressValue.ToAddress(value);
                        refused.Add(address);
                        DnsLog.RebindingRefused(logger, name, address, new LearnResult(LearnOutcome.InternalRange, rangeName));
                    }
                }
            }
        }

        return error;
    }

    private static bool Holds(List<IPAddress> addresses, UInt128 value)
    {
        foreach (IPAddress address in addresses)
        {
            if (AddressValue.Of(address) == value)
            {
                return true;
            }
        }

        return false;
    }
}
