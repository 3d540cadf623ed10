using Egress.Dns;
using Egress.Dns.Wire;

namespace Egress.Tests.Dns;

public sealed class DnsForwardingTests
{
    [TestCase(null, 512)]
    [TestCase((ushort)4096, 4096)]
    [TestCase((ushort)1232, 1232)]
    [TestCase((ushort)100, 512)]
    [TestCase((ushort)65535, 65507)]
    public void ClientUdpLimitIsTheEdnsSizeElse512(ushort? edns, int expected)
    {
        byte[] query = DnsQueryBytes.Build(1, "a.x.test", ednsSize: edns);
        Assert.That(DnsMessage.TryParseQuestion(query, out _, out int questionEnd), Is.EqualTo(DnsParseError.None));

        Assert.That(DnsForwarding.ClientUdpLimit(query, questionEnd), Is.EqualTo(expected));
    }

    /// <summary>
    /// A query for an allowed name carried whatever its sender put after the question to the resolvers: records in any
    /// section, EDNS options of any code and size, bytes after the last record (a red-team trial sent 65,400 bytes in
    /// one option). What goes on is its ID, RD/AD, its question and an OPT record without options.
    /// </summary>
    [Test]
    public void AForwardedQueryIsItsQuestionAndAnOptRecordWithoutOptions()
    {
        byte[] option = [0xFD, 0xE9, 0x03, 0xE8, .. new byte[1000]]; // code 65001, 1,000 bytes
        byte[] query = [
            .. new DnsMessageBuilder().Header(0x1234, 0x07FF, 1, 1, 1, 2).Question("API.y.test", 28)
                .A("data.x.test", "198.18.0.1").A("more.x.test", "198.18.0.2").A("extra.x.test", "198.18.0.3")
                .Opt(4096, 0x8000, option).ToArray(),
            .. "card=4111111111111111"u8];
        Assert.That(DnsScreening.Screen(query, new byte[DnsMessage.MaxErrorResponseLength], out _, out int questionEnd), Is.Null);

        int length = DnsForwarding.Minimize(query, questionEnd);

        byte[] expected = new DnsMessageBuilder().Header(0x1234, 0x0120, 1, 0, 0, 1).Question("API.y.test", 28).Opt(4096, 0x8000).ToArray();
        Assert.That(query[..length], Is.EqualTo(expected));
    }

    /// <summary>From a security review: CD (checking disabled) went on to the resolvers, so code in the enclave could
    /// have a validating resolver answer the spoofed record it held as bogus (RFC 4035 §3.2.2, SERVFAIL without CD) and
    /// both hosts learned the spoofer's address for an allowed name. The forwarded query never has CD; RD and AD stay.</summary>
    [Test]
    public void AForwardedQueryNeverAsksTheResolverToSkipDnssecValidation()
    {
        byte[] query = new DnsMessageBuilder().Header(0x4242, 0x0130, 1, 0, 0, 1).Question("api.example.com", 1).Opt(1232, 0x8000).ToArray();
        Assert.That(DnsScreening.Screen(query, new byte[DnsMessage.MaxErrorResponseLength], out _, out int questionEnd), Is.Null);

        int length = DnsForwarding.Minimize(query, questionEnd);

        Assert.That(DnsHeader.TryRead(query.AsSpan(0, length), out DnsHeader header), Is.True);
        Assert.That(header.Flags, Is.EqualTo(0x0120), "RD and AD, not CD (0x0010)");
    }

    [Test]
    public void AForwardedQueryWithoutEdnsIsItsQuestionAlone()
    {
        byte[] query = DnsQueryBytes.BuildPadded(0x0D0D, "a.x.test", 3000); // a NULL record in the additional section
        Assert.That(DnsScreening.Screen(query, new byte[DnsMessage.MaxErrorResponseLength], out _, out int questionEnd), Is.Null);

        int length = DnsForwarding.Minimize(query, questionEnd);

        Assert.That(query[..length], Is.EqualTo(DnsQueryBytes.Build(0x0D0D, "a.x.test")));
    }

    [Test]
    public void ClientUdpLimitOfAQueryWhoseRecordsAreCutIs512()
    {
        byte[] query = DnsQueryBytes.Build(1, "a.x.test", ednsSize: 4096);
        Assert.That(DnsMessage.TryParseQuestion(query, out _, out int questionEnd), Is.EqualTo(DnsParseError.None));

        Assert.That(DnsForwarding.ClientUdpLimit(query.AsSpan(0, query.Length - 3), questionEnd), Is.EqualTo(512));
    }

    [Test]
    public void TruncatedStandInKeepsHeaderFlagsAndQuestionWithTcSet()
    {
        byte[] response = new DnsMessageBuilder().Header(0xABCD, 0x8580, 1, 2, 0, 0).Question("Big.x.test")
            .A("big.x.test", "198.18.1.1").A("big.x.test", "198.18.1.2").ToArray();
        byte[] destination = new byte[DnsMessage.MaxErrorResponseLength];

        byte[] query = DnsMessageBuilder.Query().Question("Big.x.test").ToArray();

        // Room for the question and one of the two records.
        int length = DnsForwarding.WriteTruncated(query, query.Length, response, response.Length - 1, destination);

        byte[] expected = new DnsMessageBuilder().Header(0xABCD, 0x8780, 1, 1, 0, 0).Question("Big.x.test").A("big.x.test", "198.18.1.1").ToArray();
        Assert.That(destination[..length], Is.EqualTo(expected));
    }

    [Test]
    public void TruncatedStandInNeedsAReadableQuestion()
    {
        byte[] response = new DnsMessageBuilder().Header(1, 0x8180, 1, 0, 0, 0).Labels("cut").ToArray();

        byte[] query = DnsMessageBuilder.Query().Question("cut").ToArray();
        Assert.That(DnsForwarding.WriteTruncated(query, query.Length, response, 512, new byte[DnsMessage.MaxErrorResponseLength]), Is.EqualTo(-1));
    }

    [Test]
    public void AnswerMatchesItsQueryIgnoringNameCase()
    {
        byte[] query = DnsQueryBytes.Build(0x1234, "Api.Y.Test", type: 28);
        byte[] answer = new DnsMessageBuilder().Header(0x1234, 0x8180, 1, 0, 0, 0).Question("aPI.y.TEST", type: 28).ToArray();

        Assert.That(DnsForwarding.IsAnswerTo(query, answer), Is.True);
    }

    [TestCase(0x1235, 0x8180, "api.y.test", (ushort)28, TestName = "wrong ID")]
    [TestCase(0x1234, 0x0180, "api.y.test", (ushort)28, TestName = "QR clear")]
    [TestCase(0x1234, 0x8180, "api.y.tesu", (ushort)28, TestName = "other name")]
    [TestCase(0x1234, 0x8180, "api.y.test", (ushort)1, TestName = "other type")]
    [TestCase(0x1234, 0x8180, "api.y.test.x", (ushort)28, TestName = "longer name")]
    public void AnswerToAnotherQueryDoesNotMatch(int id, int flags, string name, ushort type)
    {
        byte[] query = DnsQueryBytes.Build(0x1234, "api.y.test", type: 28);
        byte[] answer = new DnsMessageBuilder().Header((ushort)id, (ushort)flags, 1, 0, 0, 0).Question(name, type).ToArray();

        Assert.That(DnsForwarding.IsAnswerTo(query, answer), Is.False);
    }
}
