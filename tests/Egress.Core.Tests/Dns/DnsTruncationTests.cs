using Egress.Dns;
using Egress.Dns.Wire;
using Egress.Tests.Dns.Vectors;

namespace Egress.Tests.Dns;

/// <summary>
/// A UDP answer larger than the client takes keeps every whole record that fits, with TC=1 (as dnsmasq does),
/// instead of none. The vector is dnsmasq's real answer for many.test: 40 A records, each 16 bytes with a pointer
/// to the question name, then dnsmasq's OPT record.
/// </summary>
public sealed class DnsTruncationTests
{
    // Header (12) + question "many.test" A IN (15).
    private const int QuestionEnd = 27;
    private const int RecordLength = 16;

    private static readonly byte[] ManyResponse = Convert.FromHexString(DnsVectors.ManyTestAEdnsResponse);

    [Test]
    public void AClassicQueryGetsThe30WholeRecordsThatFit512Bytes()
    {
        byte[] query = DnsMessageBuilder.Query().Question("many.test").ToArray();
        byte[] destination = new byte[4096];

        int length = DnsForwarding.WriteTruncated(query, query.Length, ManyResponse, 512, destination);

        // (512 - 27) / 16 = 30 records: 507 bytes. ID and flags from the response, TC added (0x8580 -> 0x8780),
        // ANCOUNT 30, ARCOUNT 0 (dnsmasq's OPT is not kept: the query had no EDNS).
        Assert.That(length, Is.EqualTo(QuestionEnd + (30 * RecordLength)));
        Assert.That(Convert.ToHexStringLower(destination, 0, 12), Is.EqualTo("100587800001001e00000000"));
        Assert.That(destination.AsSpan(12, length - 12).SequenceEqual(ManyResponse.AsSpan(12, length - 12)), Is.True);
        AssertReadsBackWithAddresses(destination.AsSpan(0, length).ToArray(), 30);
    }

    [Test]
    public void AnEdnsQueryFor512BytesGets29RecordsAndAnOptRecord()
    {
        byte[] query = DnsMessageBuilder.Query(ar: 1).Question("many.test").Opt(512, 0).ToArray();
        byte[] destination = new byte[4096];

        int length = DnsForwarding.WriteTruncated(query, QuestionEnd, ManyResponse, 512, destination);

        // 11 bytes kept for the OPT record: (512 - 27 - 11) / 16 = 29 records, then OPT (payload 1232, no options).
        int recordsEnd = QuestionEnd + (29 * RecordLength);
        Assert.That(length, Is.EqualTo(recordsEnd + 11));
        Assert.That(Convert.ToHexStringLower(destination, 0, 12), Is.EqualTo("100587800001001d00000001"));
        Assert.That(destination.AsSpan(12, recordsEnd - 12).SequenceEqual(ManyResponse.AsSpan(12, recordsEnd - 12)), Is.True);
        Assert.That(Convert.ToHexStringLower(destination, recordsEnd, 11), Is.EqualTo("00002904d0000000000000"));
        AssertReadsBackWithAddresses(destination.AsSpan(0, length).ToArray(), 29);
    }

    [Test]
    public void ARecordWhoseOwnerNameReadsPastTheKeptPrefixIsNotKept()
    {
        // Found by DnsHostileInputProperties (a mutated www.b.test answer): answer 1's owner is a pointer back into
        // the question's type and class, from where the name runs on through answer 1 and into answer 2. Answer 2
        // is not kept (the OPT record takes its place), so answer 1, kept, would no longer read back.
        byte[] response = Convert.FromHexString(
            "100485800001000300000000046465F870016204746573740000010001C01A000500010000003C000C037777770162047465737414"
            + "C029000500010000007800080163047465737400C0410001000100000E100004C612000B");
        byte[] query = DnsMessageBuilder.Query(ar: 1).Question("a.test").Opt(512, 0).ToArray();
        byte[] destination = new byte[2048];

        int length = DnsForwarding.WriteTruncated(query, 24, response, 512, destination);

        byte[] answer = destination.AsSpan(0, length).ToArray();
        Assert.That(DnsName.Skip(answer, DnsHeader.Length, out int questionEnd), Is.EqualTo(DnsParseError.None));
        Assert.That(DnsMessage.ReadEdns(answer, questionEnd + 4).State, Is.EqualTo(DnsEdnsState.Present), "the truncated answer reads back");
        Assert.That(Convert.ToHexStringLower(answer, 6, 6), Is.EqualTo("000000000001"), "no answer record kept; the OPT record");
    }

    [Test]
    public void TheAnswerInPlaceOfTheResponseIsTheSame()
    {
        // The forwarder writes the truncated answer over the response it holds.
        byte[] query = DnsMessageBuilder.Query().Question("many.test").ToArray();
        byte[] separate = new byte[4096];
        int expected = DnsForwarding.WriteTruncated(query, query.Length, ManyResponse, 512, separate);
        byte[] buffer = new byte[4096];
        ManyResponse.CopyTo(buffer, 0);

        int length = DnsForwarding.WriteTruncated(query, query.Length, buffer.AsSpan(0, ManyResponse.Length), 512, buffer);

        Assert.That(buffer[..length], Is.EqualTo(separate[..expected]));
    }

    [Test]
    public void ARecordLargerThanTheRoomLeavesTheQuestionOnly()
    {
        byte[] query = DnsMessageBuilder.Query().Question("t.test", 16).ToArray();
        byte[] response = DnsMessageBuilder.Response(an: 2).Question("t.test", 16)
            .Name("t.test").Fixed(16, 300, 600).Bytes(new byte[600])
            .A("t.test", "198.18.1.1").ToArray();
        byte[] destination = new byte[4096];

        int length = DnsForwarding.WriteTruncated(query, query.Length, response, 512, destination);

        // A later record that would fit is not kept either: the answer is a prefix, so no pointer can dangle.
        Assert.That(Convert.ToHexStringLower(destination, 0, length), Is.EqualTo("123483800001000000000000" + "017404746573740000100001"));
    }

    [Test]
    public void RecordsAcrossSectionsAreCountedPerSection()
    {
        byte[] query = DnsMessageBuilder.Query().Question("a.test").ToArray();
        byte[] response = DnsMessageBuilder.Response(an: 1, ns: 1, ar: 2).Question("a.test")
            .A("a.test", "198.18.1.1").A("ns.test", "198.18.1.2").A("x.test", "198.18.1.3").A("y.test", "198.18.1.4").ToArray();
        byte[] destination = new byte[4096];
        int room = response.Length - 1; // all but the last record

        int length = DnsForwarding.WriteTruncated(query, query.Length, response, room, destination);

        Assert.That(DnsHeader.TryRead(destination.AsSpan(0, length), out DnsHeader header), Is.True);
        Assert.That((header.IsTruncated, header.AnCount, header.NsCount, header.ArCount), Is.EqualTo((true, (ushort)1, (ushort)1, (ushort)1)));
        Assert.That(destination[..length], Is.EqualTo(response[..length]).Using<byte[]>((a, b) => a.AsSpan(12).SequenceEqual(b.AsSpan(12))));
    }

    [TestCase("cut inside the 3rd record", 2)]
    [TestCase("RDLENGTH past the end in the 3rd record", 2)]
    [TestCase("pointer loop in the 3rd record's owner", 2)]
    [TestCase("OPT in the answer section as the 2nd record", 1)]
    public void AnUnreadableRecordEndsTheKeptPrefix(string what, int expectedKept)
    {
        byte[] query = DnsMessageBuilder.Query().Question("a.test").ToArray();
        DnsMessageBuilder builder = DnsMessageBuilder.Response(an: 4).Question("a.test");
        byte[] response = what switch
        {
            "cut inside the 3rd record" => builder.A("a.test", "198.18.1.1").A("a.test", "198.18.1.2").A("a.test", "198.18.1.3").ToArray()[..^2],
            "RDLENGTH past the end in the 3rd record" => builder.A("a.test", "198.18.1.1").A("a.test", "198.18.1.2").Name("a.test").Fixed(1, 300, 40).Bytes(1, 2, 3, 4).ToArray(),
            "pointer loop in the 3rd record's owner" => builder.A("a.test", "198.18.1.1").A("a.test", "198.18.1.2").Pointer(1000).Fixed(1, 300, 4).Bytes(1, 2, 3, 4).ToArray(),
            _ => builder.A("a.test", "198.18.1.1").Opt(512, 0).A("a.test", "198.18.1.3").ToArray(),
        };
        byte[] destination = new byte[4096];

        int length = DnsForwarding.WriteTruncated(query, query.Length, response, 512, destination);

        Assert.That(DnsHeader.TryRead(destination.AsSpan(0, length), out DnsHeader header), Is.True);
        Assert.That((header.IsTruncated, (int)header.AnCount), Is.EqualTo((true, expectedKept)));
        Assert.That(DnsMessage.ReadEdns(destination.AsSpan(0, length), 24).State, Is.EqualTo(DnsEdnsState.Absent));
    }

    private static void AssertReadsBackWithAddresses(byte[] answer, int count)
    {
        var records = new List<DnsAddressRecord>();
        Assert.That(DnsMessage.ExtractAddresses(answer, records), Is.EqualTo(DnsParseError.None));
        Assert.That(records, Has.Count.EqualTo(count));
    }
}
