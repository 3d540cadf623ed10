using System.Net;
using Egress.Dns;
using Egress.Dns.Wire;
using Egress.Tests.Dns.Vectors;

namespace Egress.Tests.Dns;

public sealed class DnsAddressExtractionTests
{
    private static readonly string[] AllResponses =
    [
        DnsVectors.ATestAResponse, DnsVectors.WwwBTestAResponse, DnsVectors.MixedCaseAaaaResponse, DnsVectors.DeepBTestAResponse,
        DnsVectors.ManyTestAEdnsResponse, DnsVectors.ManyTestAUdpResponse, DnsVectors.ManyTestATcpResponse, DnsVectors.TxtTestTxtResponse,
        DnsVectors.NxTestAResponse, DnsVectors.UnknownAResponse, DnsVectors.ATestAEdnsResponse,
    ];

    private static IEnumerable<string> ManyAddresses => Enumerable.Range(1, 40).Select(i => $"198.18.1.{i}");

    [Test]
    public void DirectAnswer()
    {
        Assert.That(Extract(DnsVectors.ATestAResponse), Is.EqualTo(new[] { Record("198.18.0.10", 600, "a.test") }));
    }

    [Test]
    public void DirectAnswerWithAnEdnsOptRecordInTheAdditionalSection()
    {
        Assert.That(Extract(DnsVectors.ATestAEdnsResponse), Is.EqualTo(new[] { Record("198.18.0.10", 600, "a.test") }));
    }

    [Test]
    public void CnameChainCapsTheTtlAtTheCname()
    {
        // www.b.test CNAME c.test (120 s); c.test A 198.18.0.11 (3600 s).
        Assert.That(Extract(DnsVectors.WwwBTestAResponse), Is.EqualTo(new[] { Record("198.18.0.11", 120, "c.test") }));
    }

    [Test]
    public void TwoStepCnameChainTakesTheSmallestTtlOnThePath()
    {
        // deep.b.test CNAME www.b.test (60 s); www.b.test CNAME c.test (120 s); c.test A (3600 s).
        Assert.That(Extract(DnsVectors.DeepBTestAResponse), Is.EqualTo(new[] { Record("198.18.0.11", 60, "c.test") }));
    }

    [Test]
    public void MixedCaseQuestionFollowsTheChainToAnAaaaRecord()
    {
        Assert.That(Extract(DnsVectors.MixedCaseAaaaResponse), Is.EqualTo(new[] { Record("2001:db8::11", 120, "c.test") }));
    }

    [TestCase(DnsVectors.ManyTestAEdnsResponse)]
    [TestCase(DnsVectors.ManyTestATcpResponse)]
    public void LargeAnswerYieldsEveryAddress(string responseHex)
    {
        List<DnsAddressRecord> records = Extract(responseHex);

        Assert.That(records.Select(r => r.Address.ToString()), Is.EquivalentTo(ManyAddresses));
        Assert.That(records.Select(r => (r.Ttl, r.OwnerName)).Distinct(), Is.EqualTo(new[] { (TimeSpan.FromSeconds(600), "many.test") }));
    }

    [Test]
    public void TruncatedUdpAnswerYieldsTheRecordsItHolds()
    {
        byte[] response = Convert.FromHexString(DnsVectors.ManyTestAUdpResponse);
        var records = new List<DnsAddressRecord>();

        Assert.That(DnsMessage.IsTruncated(response), Is.True);
        Assert.That(DnsMessage.ExtractAddresses(response, records), Is.EqualTo(DnsParseError.None));
        Assert.That(records, Has.Count.EqualTo(30));
        Assert.That(records.Select(r => r.Address.ToString()), Is.SubsetOf(ManyAddresses).And.Unique);
    }

    [TestCase(DnsVectors.TxtTestTxtResponse)]
    [TestCase(DnsVectors.NxTestAResponse)]
    [TestCase(DnsVectors.UnknownAResponse)]
    public void ResponsesWithoutAddressesYieldNothing(string responseHex)
    {
        Assert.That(Extract(responseHex), Is.Empty);
    }

    [Test]
    public void ErrorRcodeYieldsNothingEvenWithAddressRecords()
    {
        byte[] response = DnsMessageBuilder.Response(an: 1, rcode: 3).Question("a.test").A("a.test", "192.0.2.1").ToArray();

        AssertYields(response, DnsParseError.None);
    }

    [TestCase(DnsVectors.ATestAQuery)]
    [TestCase(DnsVectors.ManyTestAEdnsQuery)]
    public void QueriesAreNotResponses(string queryHex)
    {
        AssertYields(Convert.FromHexString(queryHex), DnsParseError.NotAResponse);
    }

    [Test]
    public void ResponseWithAnOpcodeOtherThanQueryIsRejected()
    {
        byte[] response = new DnsMessageBuilder().Header(1, 0xA180, 1, 1, 0, 0).Question("a.test").A("a.test", "192.0.2.1").ToArray();

        AssertYields(response, DnsParseError.NotAResponse);
    }

    [TestCase((ushort)0, DnsParseError.NoQuestion)]
    [TestCase((ushort)2, DnsParseError.TooManyQuestions)]
    public void DemandsExactlyOneQuestion(ushort qdCount, object expectedValue)
    {
        var expected = (DnsParseError)expectedValue;
        byte[] response = DnsMessageBuilder.Response(qd: qdCount, an: 1).Question("a.test").A("a.test", "192.0.2.1").ToArray();

        AssertYields(response, expected);
    }

    [Test]
    public void UnrelatedAddressRecordsAreIgnored()
    {
        byte[] response = DnsMessageBuilder.Response(an: 3).Question("a.test")
            .A("evil.test", "203.0.113.66")
            .A("a.test", "192.0.2.1")
            .Aaaa("test", "2001:db8::66")
            .ToArray();

        AssertYields(response, DnsParseError.None, Record("192.0.2.1", 300, "a.test"));
    }

    [Test]
    public void CnameNotOnTheChainIsNotFollowed()
    {
        byte[] response = DnsMessageBuilder.Response(an: 3).Question("a.test")
            .Cname("other.test", "evil.test")
            .A("evil.test", "203.0.113.66")
            .A("a.test", "192.0.2.1")
            .ToArray();

        AssertYields(response, DnsParseError.None, Record("192.0.2.1", 300, "a.test"));
    }

    [Test]
    public void UnrelatedAdditionalRecordsAreIgnored()
    {
        byte[] response = DnsMessageBuilder.Response(an: 1, ar: 1).Question("a.test")
            .A("a.test", "192.0.2.1")
            .A("glue.test", "203.0.113.66")
            .ToArray();

        AssertYields(response, DnsParseError.None, Record("192.0.2.1", 300, "a.test"));
    }

    [Test]
    public void AddressOnTheChainInTheAdditionalSectionIsIgnored()
    {
        byte[] response = DnsMessageBuilder.Response(an: 1, ar: 1).Question("a.test")
            .Cname("a.test", "b.test")
            .A("b.test", "203.0.113.66")
            .ToArray();

        AssertYields(response, DnsParseError.None);
    }

    [Test]
    public void ChainIsFollowedWhateverTheRecordOrderAndCase()
    {
        byte[] response = DnsMessageBuilder.Response(an: 4).Question("WwW.B.TeSt", 28)
            .Aaaa("c.TEST", "2001:db8::1", ttl: 3000)
            .Cname("x.b.test", "C.test", ttl: 30)
            .Cname("X.B.TEST", "c.test", ttl: 50)
            .Cname("www.b.test", "x.B.test", ttl: 100)
            .ToArray();

        // The first CNAME owned by x.b.test wins; the owner name is the chain's spelling of the target.
        AssertYields(response, DnsParseError.None, Record("2001:db8::1", 30, "C.test"));
    }

    [Test]
    public void AddressesOfEveryNameOnTheChainAreCollected()
    {
        byte[] response = DnsMessageBuilder.Response(an: 3).Question("a.test")
            .A("a.test", "192.0.2.1", ttl: 500)
            .Cname("a.test", "b.test", ttl: 200)
            .A("b.test", "192.0.2.2", ttl: 400)
            .ToArray();

        AssertYields(response, DnsParseError.None, Record("192.0.2.1", 500, "a.test"), Record("192.0.2.2", 200, "b.test"));
    }

    [Test]
    public void CnameLoopIsAnError()
    {
        byte[] response = DnsMessageBuilder.Response(an: 3).Question("a.test")
            .Cname("a.test", "b.test")
            .Cname("b.test", "a.test")
            .A("a.test", "192.0.2.1")
            .ToArray();

        AssertYields(response, DnsParseError.CnameChainTooLong);
    }

    [Test]
    public void CnameToItselfIsAnError()
    {
        byte[] response = DnsMessageBuilder.Response(an: 2).Question("a.test").Cname("a.test", "A.test").A("a.test", "192.0.2.1").ToArray();

        AssertYields(response, DnsParseError.CnameChainTooLong);
    }

    [Test]
    public void ChainOfSixteenCnamesIsFollowed()
    {
        byte[] response = Chain(16);

        AssertYields(response, DnsParseError.None, Record("192.0.2.1", 300, "n16.test"));
    }

    [Test]
    public void ChainOfSeventeenCnamesIsAnError()
    {
        Assert.That(DnsMessage.MaxCnameChainLength, Is.EqualTo(16));
        AssertYields(Chain(17), DnsParseError.CnameChainTooLong);
    }

    [Test]
    public void TtlWithTheTopBitSetReadsAsZero()
    {
        byte[] response = DnsMessageBuilder.Response(an: 1).Question("a.test").A("a.test", "192.0.2.1", ttl: 0x80000001).ToArray();

        AssertYields(response, DnsParseError.None, Record("192.0.2.1", 0, "a.test"));
    }

    [TestCase(1)]
    [TestCase(2)]
    [TestCase(40)]
    public void AnswerCountLargerThanTheRecordsPresentIsTruncated(int extra)
    {
        byte[] response = Convert.FromHexString(DnsVectors.ManyTestATcpResponse);
        response[7] += (byte)extra;

        AssertYields(response, DnsParseError.Truncated);
    }

    [TestCase(9)] // NSCOUNT
    [TestCase(11)] // ARCOUNT
    public void OtherSectionCountLargerThanTheRecordsPresentIsTruncated(int countLowByte)
    {
        byte[] response = Convert.FromHexString(DnsVectors.ATestAResponse);
        response[countLowByte] = 1;

        AssertYields(response, DnsParseError.Truncated);
    }

    [Test]
    public void RdLengthBeyondTheMessageIsTruncated()
    {
        byte[] response = DnsMessageBuilder.Response(an: 1).Question("a.test").Name("a.test").Fixed(1, 300, 5).Bytes(192, 0, 2, 1).ToArray();

        AssertYields(response, DnsParseError.Truncated);
    }

    [Test]
    public void ARecordWithFiveBytesOfDataIsMalformed()
    {
        byte[] response = DnsMessageBuilder.Response(an: 1).Question("a.test").Name("a.test").Fixed(1, 300, 5).Bytes(192, 0, 2, 1, 9).ToArray();

        AssertYields(response, DnsParseError.BadRecordLength);
    }

    [Test]
    public void AaaaRecordWithFourBytesOfDataIsMalformed()
    {
        byte[] response = DnsMessageBuilder.Response(an: 1).Question("a.test", 28).Name("a.test").Fixed(28, 300, 4).Bytes(192, 0, 2, 1).ToArray();

        AssertYields(response, DnsParseError.BadRecordLength);
    }

    [Test]
    public void RecordOfAnotherClassIsNotCheckedAsAnAddress()
    {
        byte[] response = DnsMessageBuilder.Response(an: 2).Question("a.test")
            .Name("a.test").Fixed(1, 300, 5, @class: 3).Bytes(1, 2, 3, 4, 5)
            .A("a.test", "192.0.2.1")
            .ToArray();

        AssertYields(response, DnsParseError.None, Record("192.0.2.1", 300, "a.test"));
    }

    [TestCase(7)] // RDLENGTH shorter than the target name: the name runs into the next record
    [TestCase(9)] // RDLENGTH longer than the target name: trailing bytes inside the CNAME's RDATA
    public void CnameWhoseTargetDoesNotFillItsDataIsMalformed(int rdLength)
    {
        byte[] response = DnsMessageBuilder.Response(an: 2).Question("a.test")
            .Name("a.test").Fixed(5, 300, (ushort)rdLength).Name("b.test").Bytes(rdLength == 9 ? new byte[] { 0 } : [])
            .A("b.test", "192.0.2.1")
            .ToArray();

        AssertYields(response, DnsParseError.BadRecordLength);
    }

    [Test]
    public void CompressedCnameTargetIsFollowed()
    {
        // Target "www" + pointer to "b.test" inside the question "x.b.test" (offset 14).
        var builder = DnsMessageBuilder.Response(an: 2).Question("x.b.test").Name("x.b.test").Fixed(5, 300, 6).Labels("www").Pointer(14);
        byte[] response = builder.Name("www.b.test").Fixed(1, 300, 4).Bytes(192, 0, 2, 7).ToArray();

        AssertYields(response, DnsParseError.None, Record("192.0.2.7", 300, "www.b.test"));
    }

    [Test]
    public void MalformedRecordAnywhereYieldsNothing()
    {
        // The answer is fine; a record in the additional section (offset 46) has a pointer to itself at 48.
        byte[] response = DnsMessageBuilder.Response(an: 1, ar: 1).Question("a.test")
            .A("a.test", "192.0.2.1")
            .Bytes(1, (byte)'x', 0xC0, 48).Fixed(1, 300, 4).Bytes(1, 2, 3, 4)
            .ToArray();

        AssertYields(response, DnsParseError.PointerLoop);
    }

    [Test]
    public void ChainNameWithoutATextFormYieldsNothing()
    {
        byte[] response = DnsMessageBuilder.Response(an: 3).Question("a.test")
            .A("a.test", "192.0.2.1")
            .Name("a.test").Fixed(5, 300, 8).Bytes(1, (byte)' ').Name("test")
            .Bytes(1, (byte)' ').Name("test").Fixed(1, 300, 4).Bytes(192, 0, 2, 2)
            .ToArray();

        AssertYields(response, DnsParseError.BadCharacter);
    }

    [Test]
    public void UnrelatedNameWithoutATextFormIsIgnored()
    {
        byte[] response = DnsMessageBuilder.Response(an: 2).Question("a.test")
            .Bytes(1, (byte)'.').Name("test").Fixed(1, 300, 4).Bytes(203, 0, 113, 66)
            .A("a.test", "192.0.2.1")
            .ToArray();

        AssertYields(response, DnsParseError.None, Record("192.0.2.1", 300, "a.test"));
    }

    [Test]
    public void AddsToTheCallersCollectionWithoutClearingIt()
    {
        var existing = Record("192.0.2.99", 1, "earlier.test");
        var records = new List<DnsAddressRecord> { existing };

        Assert.That(DnsMessage.ExtractAddresses(Convert.FromHexString(DnsVectors.ATestAResponse), records), Is.EqualTo(DnsParseError.None));
        Assert.That(records, Is.EqualTo(new[] { existing, Record("198.18.0.10", 600, "a.test") }));
    }

    [Test]
    public void NullCollectionIsRejected()
    {
        Assert.That(() => DnsMessage.ExtractAddresses(Convert.FromHexString(DnsVectors.ATestAResponse), null!), Throws.ArgumentNullException);
    }

    [TestCaseSource(nameof(AllResponses))]
    public void EveryTruncationOfARealResponseIsAnErrorAndYieldsNothing(string responseHex)
    {
        byte[] response = Convert.FromHexString(responseHex);
        var records = new List<DnsAddressRecord>();
        for (int length = 0; length < response.Length; length++)
        {
            DnsParseError error = DnsMessage.ExtractAddresses(response.AsSpan(0, length), records);

            Assert.That(error, Is.EqualTo(DnsParseError.Truncated), $"length {length}");
            Assert.That(records, Is.Empty, $"length {length}");
        }
    }

    private static byte[] Chain(int cnames)
    {
        var builder = DnsMessageBuilder.Response(an: (ushort)(cnames + 1)).Question("n0.test");
        for (int i = 0; i < cnames; i++)
        {
            builder.Cname($"n{i}.test", $"n{i + 1}.test");
        }

        return builder.A($"n{cnames}.test", "192.0.2.1").ToArray();
    }

    private static DnsAddressRecord Record(string address, int ttlSeconds, string owner) =>
        new(IPAddress.Parse(address), TimeSpan.FromSeconds(ttlSeconds), owner);

    private static List<DnsAddressRecord> Extract(string responseHex)
    {
        var records = new List<DnsAddressRecord>();
        Assert.That(DnsMessage.ExtractAddresses(Convert.FromHexString(responseHex), records), Is.EqualTo(DnsParseError.None));
        return records;
    }

    private static void AssertYields(byte[] response, DnsParseError expected, params DnsAddressRecord[] records)
    {
        var results = new List<DnsAddressRecord>();
        Assert.That(DnsMessage.ExtractAddresses(response, results), Is.EqualTo(expected));
        Assert.That(results, Is.EqualTo(records));
    }
}
