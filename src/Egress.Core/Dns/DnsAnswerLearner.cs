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
}
