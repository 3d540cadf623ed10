using System.Net;
using System.Net.Sockets;
using System.Text;
using Egress.Dns;
using Egress.Dns.Wire;
using Egress.Policy;
using Microsoft.Extensions.Logging.Abstractions;
using static Egress.Fuzzing.FuzzInvariantException;

namespace Egress.Fuzzing;

/// <summary>
/// A DNS response from an upstream resolver (hostile or spoofed), as the parent reads it: the addresses it teaches
/// the allowlist, the match against the query it answers, and the truncated copy a UDP client gets. The contract:
/// no exception; addresses only from a well-formed NOERROR response, only A/AAAA of the right size, owned by a name
/// that is the question name or a CNAME target on its chain (never learned for a name outside the chain), with a TTL
/// no longer than the record's; a truncated answer is TC=1, within its limit, and reads back. Removing the first
/// answer address (<see cref="DnsAddressRemoval"/>, as the enclave does for an internal one) leaves the message
/// untouched, or takes out exactly that address's answer records: the question reads the same, and a message that
/// parsed still parses and teaches the same addresses less that one.
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

    private static readonly EgressPolicy AllowAll = EgressPolicy.Create(true, ["*"], new AllowlistCache());

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

        CheckRemoval(message, error, records);
        CheckScreen(message);
        CheckTtlCap(message, error, records);

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

    /// <summary>As the enclave screens an answer: either it refuses the answer, or once the internal addresses it found
    /// are removed (or the removal declines, which refuses it too), no internal address is left to find.</summary>
    private static void CheckScreen(byte[] message)
    {
        var refused = new HashSet<UInt128>();
        if (DnsAnswerLearner.RefuseInternal(AllowAll, "a.test", message, NullLogger.Instance, refused) is not null || refused.Count == 0)
        {
            return;
        }

        byte[] copy = [.. message];
        int length = DnsAddressRemoval.Remove(copy, refused, out int removed);
        if (removed == 0)
        {
            return;
        }

        var left = new HashSet<UInt128>();
        Require(
            DnsAnswerLearner.RefuseInternal(AllowAll, "a.test", copy.AsSpan(0, length), NullLogger.Instance, left) is null && left.Count == 0,
            "an internal address is left in the answer after the removal");
    }

    /// <summary>As the enclave caps an answer's TTLs: the message keeps its length and what it teaches, every learned
    /// address with a TTL no longer than the cap; a second pass lowers nothing.</summary>
    private static void CheckTtlCap(byte[] message, DnsParseError error, List<DnsAddressRecord> learned)
    {
        const uint cap = 300;
        byte[] copy = [.. message];
        DnsTtlCap.Apply(copy, cap);
        var after = new List<DnsAddressRecord>();
        Require(DnsMessage.ExtractAddresses(copy, after) == error, "capping the TTLs changed whether the message parses");
        Require(
            after.Select(record => record.Address).SequenceEqual(learned.Select(record => record.Address)),
            "capping the TTLs changed the addresses learned");
        Require(after.All(record => record.Ttl <= TimeSpan.FromSeconds(cap)), "a learned TTL above the cap");
        Require(DnsTtlCap.Apply(copy, cap) == 0, "a second cap lowered a TTL");
    }

    private static void CheckRemoval(byte[] message, DnsParseError error, List<DnsAddressRecord> learned)
    {
        if (!DnsHeader.TryRead(message, out DnsHeader header) || header.QdCount != 1 || NameKey(message, DnsHeader.Length, out int questionEnd) is not { } question)
        {
            return;
        }

        // The first answer record that reads as an address, whatever its owner.
        IPAddress? target = null;
        int offset = questionEnd + 4;
        for (int i = 0; i < header.AnCount && target is null && DnsRecord.TryRead(message, offset, out DnsRecord record, out offset) == DnsParseError.None; i++)
        {
            target = record.IsAddress ? new IPAddress(message.AsSpan(record.DataOffset, record.DataLength)) : null;
        }

        if (target is null)
        {
            return;
        }

        byte[] copy = [.. message];
        int length = DnsAddressRemoval.Remove(copy, new HashSet<UInt128> { AddressValue.Of(target) }, out int removed);
        if (removed == 0)
        {
            Require(length == message.Length && copy.AsSpan().SequenceEqual(message), "a message nothing was removed from changed");
            return;
        }

        byte[] rewritten = copy[..length];
        Require(length < message.Length, "records removed but the message did not shrink");
        Require(DnsHeader.TryRead(rewritten, out DnsHeader after) && after.AnCount == header.AnCount - removed, "ANCOUNT does not match the records removed");
        Require(after.Flags == (header.Flags & ~DnsHeader.AuthenticDataFlag), "the flags after a removal are not the old ones without AD");
        Require(NameKey(rewritten, DnsHeader.Length, out _) == question, "the question reads differently after a removal");
        var left = new List<DnsAddressRecord>();
        DnsParseError errorAfter = DnsMessage.ExtractAddresses(rewritten, left);
        if (error == DnsParseError.None)
        {
            Require(errorAfter == DnsParseError.None, $"a removal made a well-formed message {errorAfter}");
            Require(
                left.Select(record => record.Address).SequenceEqual(learned.Select(record => record.Address).Where(address => !address.Equals(target))),
                "a removal changed the other addresses learned");
        }
    }

    private static void CheckLearned(byte[] message, List<DnsAddressRecord> records)
    {
        Require(DnsHeader.TryRead(message, out DnsHeader header) && header.IsResponse && header.ResponseCode == 0, "addresses from a response that is not NOERROR");

        // The names the addresses may belong to: the question name, then the target of the first CNAME owned by the
        // previous name. Gathered here independently of the extractor, with a plain name reader (names compared
        // ignoring ASCII case, as wire label bytes: a name on the chain need not have a text form).
        var chain = new List<string> { NameKey(message, DnsHeader.Length, out int questionNameEnd)! };
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
                if (record.IsCname && NameKey(message, record.OwnerOffset, out _) == chain[^1] && NameKey(message, record.DataOffset, out _) is { } target)
                {
                    chain.Add(target);
                    grown = true;
                    break;
                }
            }
        }

        foreach (DnsAddressRecord learned in records)
        {
            Require(chain.Contains(TextKey(learned.OwnerName)), $"address {learned.Address} learned for '{learned.OwnerName}', not on the question's CNAME chain");
            Require(learned.Address.AddressFamily is AddressFamily.InterNetwork or AddressFamily.InterNetworkV6, "not an IP address");
            Require(learned.Ttl >= TimeSpan.Zero && learned.Ttl <= TimeSpan.FromSeconds(uint.MaxValue), "TTL out of range");
            Require(answers.Any(record => record.IsAddress && record.Ttl >= learned.Ttl.TotalSeconds
                && message.AsSpan(record.DataOffset, record.DataLength).SequenceEqual(learned.Address.GetAddressBytes())), $"address {learned.Address} is not in an address record with a TTL at least as long");
        }
    }

    /// <summary>The name at <paramref name="offset"/> as lower-cased uncompressed labels (one char per byte), or
    /// null when it cannot be read; <paramref name="end"/> is where it ends in place.</summary>
    private static string? NameKey(byte[] message, int offset, out int end)
    {
        var key = new StringBuilder();
        end = -1;
        for (int hops = 0; hops < 256 && offset < message.Length;)
        {
            int length = message[offset];
            if (length >= 0xC0)
            {
                if (offset + 1 >= message.Length)
                {
                    return null;
                }

                end = end < 0 ? offset + 2 : end;
                offset = ((length & 0x3F) << 8) | message[offset + 1];
                hops++;
                continue;
            }

            if (length > 63 || offset + 1 + length > message.Length)
            {
                return null;
            }

            key.Append((char)length);
            foreach (byte b in message.AsSpan(offset + 1, length))
            {
                key.Append((char)(b is >= (byte)'A' and <= (byte)'Z' ? b | 0x20 : b));
            }

            if (length == 0)
            {
                end = end < 0 ? offset + 1 : end;
                return key.ToString();
            }

            offset += 1 + length;
        }

        return null;
    }

    /// <summary>A dotted name as <see cref="NameKey"/> spells it.</summary>
    private static string TextKey(string name)
    {
        var key = new StringBuilder();
        foreach (string label in name.Length == 0 ? [] : name.Split('.'))
        {
            key.Append((char)label.Length).Append(label.ToLowerInvariant());
        }

        return key.Append('\0').ToString();
    }
}
