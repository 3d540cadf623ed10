using System.Net.Sockets;
using Egress.Dns.Wire;
using static Egress.Fuzzing.FuzzInvariantException;

namespace Egress.Fuzzing;

/// <summary>
/// A DNS response from an upstream resolver (hostile or spoofed), as the parent reads it: the addresses it teaches
/// the allowlist, the match against the query it answers, and the truncated copy a UDP client gets. The contract:
/// no exception; addresses only from a well-formed NOERROR response, only A/AAAA of the right size, owned by a name
/// that is the question name or a CNAME target on its chain (never learned for a name outside the chain), with a TTL
/// no longer than the record's; a truncated answer is TC=1, within its limit, and reads back.
/// </summary>
internal static class DnsResponseTarget
{
    /// <summary>The query the truncated copies answer: a.test A with an EDNS OPT record.</summary>
    private static readonly byte[] EdnsQuery =
    [
        0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1,
        1, (byte)'a', 4, (byte)'t', (byte)'e', (byte)'s', (byte)'t', 0, 0, 1, 0, 1,
        0, 0, 41, 0x04, 0xD0, 0, 0, 0, 0, 0, 0,
    ];

    public static FuzzVerdict Run(byte[] message)
    {
        var records = new List<DnsAddressRecord>();
        DnsParseError error = DnsMessage.ExtractAddresses(message, records);
        Require(Enum.IsDefined(error), $"undefined parse error {error}");
        Require(error == DnsParseError.None || records.Count == 0, "addresses learned from a malformed message");
        if (records.Count > 0)
        {
            CheckLearned(message, records);
        }

        _ = DnsForwarding.ResponseCode(message);
        _ = DnsForwarding.IsAnswerTo(EdnsQuery, message);
        _ = DnsForwarding.IsAnswerTo(message, message);

        byte[] destination = new byte[4096];
        foreach (int limit in (ReadOnlySpan<int>)[512, 1232])
        {
            int length = DnsForwarding.WriteTruncated(EdnsQuery, 24, message, limit, destination);
            if (length < 0)
            {
                continue;
            }

            ReadOnlySpan<byte> cut = destination.AsSpan(0, length);
            Require(length >= DnsHeader.Length && length <= limit, $"truncated answer of {length} bytes for a limit of {limit}");
            Require(DnsHeader.TryRead(cut, out DnsHeader header) && header.IsTruncated, "truncated answer without TC");
            Require(DnsName.Skip(cut, DnsHeader.Length, out int questionEnd) == DnsParseError.None, "truncated answer's question does not read back");
            Require(DnsEdns.Read(cut, questionEnd + 4).State == DnsEdnsState.Present, "truncated answer's records do not read back");
        }

        return error == DnsParseError.None ? FuzzVerdict.Accepted : FuzzVerdict.Rejected;
    }

    private static void CheckLearned(byte[] message, List<DnsAddressRecord> records)
    {
        Require(DnsHeader.TryRead(message, out DnsHeader header) && header.IsResponse && header.ResponseCode == 0, "addresses from a response that is not NOERROR");

        // The names the addresses may belong to: the question name, then the target of each CNAME owned by the
        // previous name. Gathered here independently of the extractor, from a plain walk over the answer section.
        Span<char> text = stackalloc char[DnsMessage.MaxNameLength];
        Require(DnsName.Decode(message, DnsHeader.Length, text, out int length, out int questionNameEnd) == DnsParseError.None, "question name unreadable");
        var chain = new List<string> { new(text[..length]) };
        var answers = new List<DnsRecord>();
        int offset = questionNameEnd + 4;
        for (int i = 0; i < header.AnCount; i++)
        {
            Require(DnsRecord.TryRead(message, offset, out DnsRecord record, out offset) == DnsParseError.None, "unreadable answer record");
            answers.Add(record);
        }

        for (bool grown = true; grown && chain.Count <= DnsMessage.MaxCnameChainLength + 1;)
        {
            grown = false;
            foreach (DnsRecord record in answers)
            {
                if (record.IsCname && NameAt(message, record.OwnerOffset) is { } owner
                    && string.Equals(owner, chain[^1], StringComparison.OrdinalIgnoreCase) && NameAt(message, record.DataOffset) is { } target)
                {
                    chain.Add(target);
                    grown = true;
                    break;
                }
            }
        }

        foreach (DnsAddressRecord learned in records)
        {
            Require(chain.Contains(learned.OwnerName, StringComparer.Ordinal), $"address {learned.Address} learned for '{learned.OwnerName}', not on the question's CNAME chain");
            Require(learned.Address.AddressFamily is AddressFamily.InterNetwork or AddressFamily.InterNetworkV6, "not an IP address");
            Require(learned.Ttl >= TimeSpan.Zero && learned.Ttl <= TimeSpan.FromSeconds(uint.MaxValue), "TTL out of range");
            Require(answers.Any(record => record.IsAddress && record.Ttl >= learned.Ttl.TotalSeconds
                && message.AsSpan(record.DataOffset, record.DataLength).SequenceEqual(learned.Address.GetAddressBytes())), $"address {learned.Address} is not in an address record with a TTL at least as long");
        }
    }

    private static string? NameAt(byte[] message, int offset)
    {
        Span<char> text = stackalloc char[DnsMessage.MaxNameLength];
        return DnsName.Decode(message, offset, text, out int length, out _) == DnsParseError.None ? new string(text[..length]) : null;
    }
}
