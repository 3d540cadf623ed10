using System.Net;

namespace Egress.Dns.Wire;

/// <summary>
/// Finds the addresses a response gives for its question name. Records are trusted only along the CNAME chain
/// that starts at the question name: an A/AAAA record owned by any other name is ignored, so a resolver (or an
/// attacker on its path) that adds unrelated address records cannot get them learned.
/// </summary>
internal static class DnsAddressExtractor
{
    /// <summary>Extracts the addresses; see <see cref="DnsMessage.ExtractAddresses"/>.</summary>
    public static DnsParseError Extract(ReadOnlySpan<byte> response, ICollection<DnsAddressRecord> results)
    {
        if (!DnsHeader.TryRead(response, out DnsHeader header))
        {
            return DnsParseError.Truncated;
        }

        if (!header.IsResponse || header.Opcode != 0)
        {
            return DnsParseError.NotAResponse;
        }

        DnsParseError error = DnsMessage.CheckQuestionCount(header);
        if (error != DnsParseError.None)
        {
            return error;
        }

        error = DnsName.Skip(response, DnsHeader.Length, out int nameEnd);
        if (error != DnsParseError.None)
        {
            return error;
        }

        if (response.Length - nameEnd < 4)
        {
            return DnsParseError.Truncated;
        }

        int answersStart = nameEnd + 4;
        error = ValidateRecords(response, answersStart, header.AnCount + header.NsCount + header.ArCount);
        if (error != DnsParseError.None || header.ResponseCode != 0)
        {
            return error;
        }

        Span<int> chain = stackalloc int[DnsMessage.MaxCnameChainLength + 1];
        Span<uint> chainTtl = stackalloc uint[DnsMessage.MaxCnameChainLength + 1];
        error = FollowChain(response, answersStart, header.AnCount, chain, chainTtl, out int chainLength);
        if (error != DnsParseError.None)
        {
            return error;
        }

        chain = chain[..chainLength];
        string?[]? owners = null;
        error = DecodeOwners(response, answersStart, header.AnCount, chain, ref owners);
        if (error != DnsParseError.None || owners is null)
        {
            return error;
        }

        return AddAddresses(response, answersStart, header.AnCount, chain, chainTtl, owners, results);
    }

    private static DnsParseError ValidateRecords(ReadOnlySpan<byte> response, int offset, int count)
    {
        for (int i = 0; i < count; i++)
        {
            DnsParseError error = DnsRecord.TryRead(response, offset, out _, out offset);
            if (error != DnsParseError.None)
            {
                return error;
            }
        }

        return DnsParseError.None;
    }

    /// <summary>Builds the chain of names from the question name: chain[0] is the question name and chain[i+1]
    /// the target of the first CNAME owned by chain[i]. chainTtl[i] is the smallest TTL of the CNAMEs that lead
    /// to chain[i] (no limit for the question name itself).</summary>
    private static DnsParseError FollowChain(ReadOnlySpan<byte> response, int answersStart, int answerCount, Span<int> chain, Span<uint> chainTtl, out int chainLength)
    {
        chain[0] = DnsHeader.Length;
        chainTtl[0] = uint.MaxValue;
        chainLength = 1;
        while (true)
        {
            DnsParseError error = FindCname(response, answersStart, answerCount, chain[chainLength - 1], out DnsRecord cname, out bool found);
            if (error != DnsParseError.None || !found)
            {
                return error;
            }

            if (chainLength == chain.Length)
            {
                return DnsParseError.CnameChainTooLong;
            }

            chain[chainLength] = cname.DataOffset;
            chainTtl[chainLength] = Math.Min(chainTtl[chainLength - 1], cname.Ttl);
            chainLength++;
        }
    }

    private static DnsParseError FindCname(ReadOnlySpan<byte> response, int offset, int answerCount, int owner, out DnsRecord cname, out bool found)
    {
        found = false;
        cname = default;
        for (int i = 0; i < answerCount; i++)
        {
            DnsParseError error = DnsRecord.TryRead(response, offset, out DnsRecord record, out offset);
            if (error == DnsParseError.None && record.IsCname)
            {
                error = DnsName.Equal(response, record.OwnerOffset, owner, out found);
                if (found)
                {
                    cname = record;
                    return DnsParseError.None;
                }
            }

            if (error != DnsParseError.None)
            {
                return error;
            }
        }

        return DnsParseError.None;
    }

    /// <summary>Decodes the text of every chain name that owns an address record, before anything is added, so a
    /// name without a text form fails the whole message. Leaves <paramref name="owners"/> null when no address
    /// record is on the chain.</summary>
    private static DnsParseError DecodeOwners(ReadOnlySpan<byte> response, int offset, int answerCount, ReadOnlySpan<int> chain, ref string?[]? owners)
    {
        Span<char> text = stackalloc char[DnsName.MaxTextLength];
        for (int i = 0; i < answerCount; i++)
        {
            DnsParseError error = DnsRecord.TryRead(response, offset, out DnsRecord record, out offset);
            int link = -1;
            if (error == DnsParseError.None && record.IsAddress)
            {
                error = FindLink(response, record.OwnerOffset, chain, out link);
            }

            if (error == DnsParseError.None && link >= 0 && owners?[link] is null)
            {
                error = DnsName.Decode(response, chain[link], text, out int length, out _);
                if (error == DnsParseError.None)
                {
                    owners ??= new string?[chain.Length];
                    owners[link] = new string(text[..length]);
                }
            }

            if (error != DnsParseError.None)
            {
                return error;
            }
        }

        return DnsParseError.None;
    }

    private static DnsParseError AddAddresses(ReadOnlySpan<byte> response, int offset, int answerCount, ReadOnlySpan<int> chain, ReadOnlySpan<uint> chainTtl, string?[] owners, ICollection<DnsAddressRecord> results)
    {
        for (int i = 0; i < answerCount; i++)
        {
            DnsParseError error = DnsRecord.TryRead(response, offset, out DnsRecord record, out offset);
            int link = -1;
            if (error == DnsParseError.None && record.IsAddress)
            {
                error = FindLink(response, record.OwnerOffset, chain, out link);
            }

            if (error != DnsParseError.None)
            {
                return error;
            }

            if (link >= 0)
            {
                var address = new IPAddress(response.Slice(record.DataOffset, record.DataLength));
                var ttl = TimeSpan.FromSeconds(Math.Min(record.Ttl, chainTtl[link]));
                results.Add(new DnsAddressRecord(address, ttl, owners[link]!));
            }
        }

        return DnsParseError.None;
    }

    /// <summary>Finds which chain name <paramref name="owner"/> equals, or -1.</summary>
    private static DnsParseError FindLink(ReadOnlySpan<byte> response, int owner, ReadOnlySpan<int> chain, out int link)
    {
        for (link = 0; link < chain.Length; link++)
        {
            DnsParseError error = DnsName.Equal(response, owner, chain[link], out bool equal);
            if (error != DnsParseError.None || equal)
            {
                return error;
            }
        }

        link = -1;
        return DnsParseError.None;
    }
}
