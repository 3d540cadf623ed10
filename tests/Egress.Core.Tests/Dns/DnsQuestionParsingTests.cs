using Egress.Dns;
using Egress.Dns.Wire;
using Egress.Tests.Dns.Vectors;

namespace Egress.Tests.Dns;

public sealed class DnsQuestionParsingTests
{
    private static readonly object[] Queries =
    [
        new object[] { DnsVectors.ATestAQuery, "a.test", (ushort)1 },
        new object[] { DnsVectors.MixedCaseAaaaQuery, "WwW.B.TeSt", (ushort)28 },
        new object[] { DnsVectors.ManyTestAEdnsQuery, "many.test", (ushort)1 },
        new object[] { DnsVectors.TxtTestTxtQuery, "t.test", (ushort)16 },
    ];

    [TestCaseSource(nameof(Queries))]
    public void ParsesTheQuestionOfAQueryAsOnTheWire(string queryHex, string name, ushort type)
    {
        byte[] query = Convert.FromHexString(queryHex);
        int expectedEnd = 12 + name.Length + 2 + 4;

        Assert.That(DnsMessage.TryParseQuestion(query, out DnsQuestion question, out int end), Is.EqualTo(DnsParseError.None));
        Assert.That(question, Is.EqualTo(new DnsQuestion(name, type, 1)));
        Assert.That(end, Is.EqualTo(expectedEnd));
    }

    [TestCaseSource(nameof(Queries))]
    public void ReadsTheQuestionNameIntoACallerBuffer(string queryHex, string name, ushort type)
    {
        byte[] query = Convert.FromHexString(queryHex);
        char[] buffer = new char[DnsMessage.MaxNameLength];

        Assert.That(DnsMessage.TryReadQuestionName(query, buffer, out int length), Is.EqualTo(DnsParseError.None));
        Assert.That(new string(buffer, 0, length), Is.EqualTo(name));
    }

    [Test]
    public void TryReadQuestionNameDemandsABufferForTheLongestName()
    {
        byte[] query = Convert.FromHexString(DnsVectors.ATestAQuery);

        Assert.That(() => DnsMessage.TryReadQuestionName(query, new char[DnsMessage.MaxNameLength - 1], out _), Throws.ArgumentException);
    }

    [Test]
    public void ParsesTheRootQuestionAsAnEmptyName()
    {
        byte[] query = DnsMessageBuilder.Query().Question(string.Empty, 2).ToArray();

        Assert.That(DnsMessage.TryParseQuestion(query, out DnsQuestion question, out int end), Is.EqualTo(DnsParseError.None));
        Assert.That(question, Is.EqualTo(new DnsQuestion(string.Empty, 2, 1)));
        Assert.That(end, Is.EqualTo(17));
    }

    [TestCase((ushort)0, DnsParseError.NoQuestion)]
    [TestCase((ushort)2, DnsParseError.TooManyQuestions)]
    [TestCase((ushort)0xFFFF, DnsParseError.TooManyQuestions)]
    public void DemandsExactlyOneQuestion(ushort qdCount, object expectedValue)
    {
        var expected = (DnsParseError)expectedValue;
        byte[] query = DnsMessageBuilder.Query(qd: qdCount).Question("a.test").Question("b.test").ToArray();

        AssertFails(query, expected);
    }

    [TestCase(0x8100)] // QR set: a response
    [TestCase(0x2900)] // opcode 5: UPDATE
    [TestCase(0x1100)] // opcode 2: STATUS
    public void RejectsWhatIsNotAStandardQuery(int flags)
    {
        byte[] query = new DnsMessageBuilder().Header(1, (ushort)flags, 1, 0, 0, 0).Question("a.test").ToArray();

        AssertFails(query, DnsParseError.NotAQuery);
    }

    [Test]
    public void RejectsAResponseFromDnsmasq()
    {
        AssertFails(Convert.FromHexString(DnsVectors.ATestAResponse), DnsParseError.NotAQuery);
    }

    [Test]
    public void RejectsANameWithADotInsideALabel()
    {
        // One label "api.stripe" then "com": must not read as api.stripe.com.
        byte[] query = DnsMessageBuilder.Query().Bytes(10).Bytes("api.stripe"u8.ToArray()).Name("com").UInt16(1).UInt16(1).ToArray();

        AssertFails(query, DnsParseError.BadCharacter);
    }

    [Test]
    public void RejectsACompressionPointerIntoTheHeader()
    {
        // Offset 2 holds the flags, then QDCOUNT: bytes that differ between the enclave, the parent and the upstream
        // (the ID at offset 0 too), so a name read from there would not be the name that gets resolved.
        byte[] query = DnsMessageBuilder.Query().Pointer(2).UInt16(1).UInt16(1).ToArray();

        AssertFails(query, DnsParseError.PointerOutOfRange);
    }

    [TestCaseSource(nameof(Queries))]
    public void EveryTruncationOfARealQueryFailsOrYieldsTheWholeQuestion(string queryHex, string name, ushort type)
    {
        byte[] query = Convert.FromHexString(queryHex);
        for (int length = 0; length < query.Length; length++)
        {
            DnsParseError error = DnsMessage.TryParseQuestion(query.AsSpan(0, length), out DnsQuestion question, out int end);
            if (error == DnsParseError.None)
            {
                Assert.That(question, Is.EqualTo(new DnsQuestion(name, type, 1)), $"length {length}");
                Assert.That(end, Is.LessThanOrEqualTo(length), $"length {length}");
            }
            else
            {
                Assert.That(error, Is.EqualTo(DnsParseError.Truncated), $"length {length}");
                Assert.That(question, Is.EqualTo(default(DnsQuestion)), $"length {length}");
            }
        }
    }

    [Test]
    public void EdnsQueryCutRightAfterTheQuestionStillParses()
    {
        byte[] query = Convert.FromHexString(DnsVectors.ManyTestAEdnsQuery);
        int questionEnd = 12 + 11 + 4;

        Assert.That(DnsMessage.TryParseQuestion(query.AsSpan(0, questionEnd), out _, out _), Is.EqualTo(DnsParseError.None));
        Assert.That(DnsMessage.TryParseQuestion(query.AsSpan(0, questionEnd - 1), out _, out _), Is.EqualTo(DnsParseError.Truncated));
    }

    private static void AssertFails(byte[] query, DnsParseError expected)
    {
        Assert.That(DnsMessage.TryParseQuestion(query, out DnsQuestion question, out int end), Is.EqualTo(expected));
        Assert.That(question, Is.EqualTo(default(DnsQuestion)));
        Assert.That(end, Is.Zero);
        Assert.That(DnsMessage.TryReadQuestionName(query, new char[DnsMessage.MaxNameLength], out int length), Is.EqualTo(expected));
        Assert.That(length, Is.Zero);
    }
}
