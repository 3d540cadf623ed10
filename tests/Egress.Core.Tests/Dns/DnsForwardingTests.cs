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
