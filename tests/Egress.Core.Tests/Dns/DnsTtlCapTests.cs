using System.Buffers.Binary;
using Egress.Dns.Wire;

namespace Egress.Tests.Dns;

/// <summary>
/// <see cref="DnsTtlCap"/>: every record's TTL above the cap is lowered to it in place, in every section; the OPT
/// record's TTL field (EDNS flags) and every other byte stay as they were.
/// </summary>
public sealed class DnsTtlCapTests
{
    private const uint Cap = 86_400;

    /// <summary>An OPT TTL field above the cap as a number: extended RCODE bits 0x01, version 0, DO.</summary>
    private const uint OptFlags = 0x0100_8000;

    [Test]
    public void TtlsAboveTheCapAreLoweredInEverySectionAndTheRestStays()
    {
        byte[] message = Mixed(cnameTtl: 2_592_000, firstATtl: 86_401, nsTtl: 604_800);
        byte[] expected = Mixed(cnameTtl: Cap, firstATtl: Cap, nsTtl: Cap);

        int lowered = DnsTtlCap.Apply(message, Cap);

        Assert.Multiple(() =>
        {
            Assert.That(lowered, Is.EqualTo(3));
            Assert.That(Convert.ToHexString(message), Is.EqualTo(Convert.ToHexString(expected)));
            Assert.That(Ttls(message), Is.EqualTo(new uint[] { Cap, Cap, Cap, Cap, 30, OptFlags }));
        });
    }

    [Test]
    public void AnAnswerWithinTheCapIsLeftByteForByte()
    {
        byte[] message = Mixed(cnameTtl: 300, firstATtl: 60, nsTtl: Cap);
        byte[] before = (byte[])message.Clone();

        Assert.That((DnsTtlCap.Apply(message, Cap), Convert.ToHexString(message)), Is.EqualTo((0, Convert.ToHexString(before))));
    }

    /// <summary>RFC 2181 §8: a TTL with its top bit set is read as 0, and is written so (a stub that reads it unsigned
    /// would otherwise cache for 68 years).</summary>
    [Test]
    public void ATtlWithItsTopBitSetIsWrittenAsZero()
    {
        byte[] message = DnsMessageBuilder.Response(an: 1).Question("ttl.test").A("ttl.test", "198.18.0.1", ttl: 0x8000_0001).ToArray();

        Assert.That((DnsTtlCap.Apply(message, Cap), Ttls(message).Single()), Is.EqualTo((1, 0u)));
    }

    /// <summary>A record that cannot be read ends the walk: those before it are lowered, it and the rest are left.</summary>
    [Test]
    public void TheWalkStopsAtARecordItCannotRead()
    {
        byte[] whole = DnsMessageBuilder.Response(an: 2).Question("ttl.test")
            .A("ttl.test", "198.18.0.1", ttl: 999_999)
            .A("ttl.test", "198.18.0.2", ttl: 999_999)
            .ToArray();
        byte[] cut = whole[..^3]; // the second record's data runs past the end

        Assert.Multiple(() =>
        {
            Assert.That(DnsTtlCap.Apply(cut, Cap), Is.EqualTo(1));
            Assert.That(BinaryPrimitives.ReadUInt32BigEndian(cut.AsSpan(FirstTtlOffset(cut))), Is.EqualTo(Cap));
            Assert.That(cut.AsSpan(FirstTtlOffset(cut) + 4).ToArray(), Is.EqualTo(whole.AsSpan(FirstTtlOffset(whole) + 4, cut.Length - FirstTtlOffset(cut) - 4).ToArray()));
        });
    }

    [Test]
    public void AMessageWithoutAHeaderOrQuestionIsLeftAlone()
    {
        byte[] header = [0xBE, 0xEF, 0x81, 0x80, 0, 1, 0, 1];
        byte[] badQuestion = [.. DnsMessageBuilder.Response(an: 1).ToArray(), 0xC0, 0xFF];

        Assert.That((DnsTtlCap.Apply(header, Cap), DnsTtlCap.Apply(badQuestion, Cap)), Is.EqualTo((0, 0)));
    }

    /// <summary>Hostile input: after any mutation of an answer, no readable record but the OPT is left above the cap,
    /// and no byte changes but those of a readable record's TTL.</summary>
    [Test]
    public void MutatedAnswersNeverKeepATtlAboveTheCap()
    {
        byte[] seed = DnsMessageBuilder.Response(an: 2, ar: 1).Question("ttl.test")
            .Cname("ttl.test", "www.ttl.test", ttl: uint.MaxValue)
            .A("www.ttl.test", "198.18.0.1", ttl: 1_000_000)
            .Opt(1232, 0xFFFF_FFFF)
            .ToArray();
        var random = new Random(2026_12_04);
        for (int round = 0; round < 20_000; round++)
        {
            byte[] message = (byte[])seed.Clone();
            for (int flips = random.Next(1, 4); flips > 0; flips--)
            {
                message[random.Next(message.Length)] = (byte)random.Next(256);
            }

            byte[] before = (byte[])message.Clone();
            DnsTtlCap.Apply(message, Cap);

            var records = Readable(message);
            Assert.That(records.All(ttl => ttl.Type == DnsEdns.OptType || ttl.Value <= Cap), Is.True, Convert.ToHexString(before));
            bool onlyTtlBytesChanged = Enumerable.Range(0, message.Length)
                .Where(i => message[i] != before[i])
                .All(i => records.Any(ttl => ttl.Type != DnsEdns.OptType && i >= ttl.Offset && i < ttl.Offset + 4));
            Assert.That(onlyTtlBytesChanged, Is.True, Convert.ToHexString(before));
        }
    }

    /// <summary>A CNAME, two A records (the second at exactly the cap), an NS in authority, an A and an OPT in
    /// additional whose TTL field (extended RCODE 1, as BADCOOKIE's upper bits, and the DO bit) reads above the cap as
    /// a number but is flags: rewritten, the answer would change meaning.</summary>
    private static byte[] Mixed(uint cnameTtl, uint firstATtl, uint nsTtl) => DnsMessageBuilder.Response(an: 3, ns: 1, ar: 2)
        .Question("ttl.test")
        .Cname("ttl.test", "www.ttl.test", ttl: cnameTtl)
        .A("www.ttl.test", "198.18.0.1", ttl: firstATtl)
        .A("www.ttl.test", "198.18.0.2", ttl: Cap)
        .Name("ttl.test").Fixed(2, nsTtl, 5).Labels("ns").Pointer(12)
        .A("ns.ttl.test", "198.18.0.53", ttl: 30)
        .Opt(1232, OptFlags)
        .ToArray();

    private static int FirstTtlOffset(byte[] message)
    {
        DnsName.Skip(message, DnsHeader.Length, out int questionEnd);
        DnsRecord.TryRead(message, questionEnd + 4, out DnsRecord record, out _);
        return record.DataOffset - 6;
    }

    private static uint[] Ttls(byte[] message) => [.. Readable(message).Select(ttl => ttl.Value)];

    /// <summary>Each record read in order with its raw TTL field, up to the first that cannot be read.</summary>
    private static List<(ushort Type, uint Value, int Offset)> Readable(byte[] message)
    {
        var ttls = new List<(ushort, uint, int)>();
        if (!DnsHeader.TryRead(message, out DnsHeader header))
        {
            return ttls;
        }

        int offset = DnsHeader.Length;
        for (int i = 0; i < header.QdCount; i++)
        {
            if (DnsName.Skip(message, offset, out int end) != DnsParseError.None || message.Length - end < 4)
            {
                return ttls;
            }

            offset = end + 4;
        }

        for (int i = 0; i < header.AnCount + header.NsCount + header.ArCount; i++)
        {
            if (DnsRecord.TryRead(message, offset, out DnsRecord record, out int end) != DnsParseError.None)
            {
                break;
            }

            ttls.Add((record.Type, BinaryPrimitives.ReadUInt32BigEndian(message.AsSpan(record.DataOffset - 6)), record.DataOffset - 6));
            offset = end;
        }

        return ttls;
    }
}
