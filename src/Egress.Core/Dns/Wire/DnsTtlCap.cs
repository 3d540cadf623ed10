using System.Buffers.Binary;

namespace Egress.Dns.Wire;

/// <summary>
/// Lowers every resource record's TTL that is above a cap to the cap, in place, as a caching resolver with a maximum
/// TTL does (Unbound's <c>cache-max-ttl</c>). A TTL with its top bit set, which RFC 2181 §8 says to read as 0, is
/// written as 0. The OPT pseudo-record's TTL field holds the extended RCODE and EDNS flags, not a TTL (RFC 6891
/// §6.1.3), and is left alone. Lowering a TTL is what every cache does (RFC 1035 §5.2), and a validator uses the
/// smaller of an RRSIG's original TTL and the record's (RFC 4035 §5.3.3), so DNSSEC still validates.
/// </summary>
internal static class DnsTtlCap
{
    /// <summary>Caps the TTLs of <paramref name="message"/>'s records at <paramref name="maxTtl"/> seconds.</summary>
    /// <param name="message">A whole DNS message; its TTL fields are rewritten in place.</param>
    /// <param name="maxTtl">The highest TTL left, in seconds (at most 2^31−1, RFC 2181 §8).</param>
    /// <returns>How many records were lowered. The walk stops at the first record that cannot be read; the records
    /// before it keep their lowered TTLs (each one stands alone), the rest are left as they are.</returns>
    public static int Apply(Span<byte> message, uint maxTtl)
    {
        if (!DnsHeader.TryRead(message, out DnsHeader header))
        {
            return 0;
        }

        int offset = DnsHeader.Length;
        for (int i = 0; i < header.QdCount; i++)
        {
            if (DnsName.Skip(message, offset, out int nameEnd) != DnsParseError.None || message.Length - nameEnd < 4)
            {
                return 0;
            }

            offset = nameEnd + 4;
        }

        int lowered = 0;
        int recordCount = header.AnCount + header.NsCount + header.ArCount;
        for (int i = 0; i < recordCount; i++)
        {
            if (DnsRecord.TryRead(message, offset, out DnsRecord record, out int end) != DnsParseError.None)
            {
                break;
            }

            // TYPE, CLASS, TTL, RDLENGTH precede the data: the TTL is 6 bytes before it.
            Span<byte> ttlField = message.Slice(record.DataOffset - 6, 4);
            uint ttl = BinaryPrimitives.ReadUInt32BigEndian(ttlField);
            if (record.Type != DnsEdns.OptType && ttl > maxTtl)
            {
                BinaryPrimitives.WriteUInt32BigEndian(ttlField, ttl > int.MaxValue ? 0 : maxTtl);
                lowered++;
            }

            offset = end;
        }

        return lowered;
    }
}
