using Egress.Dns;
using Egress.Dns.Wire;
using Egress.Tests.Dns.Vectors;

namespace Egress.Tests.Dns;

public sealed class DnsMessageIdTests
{
    [Test]
    public void ReadsTheIdOfARealResponse()
    {
        Assert.That(DnsMessage.ReadId(Convert.FromHexString(DnsVectors.DeepBTestAResponse)), Is.EqualTo(0x1004));
    }

    [Test]
    public void WriteIdRewritesOnlyTheFirstTwoBytes()
    {
        byte[] original = Convert.FromHexString(DnsVectors.ManyTestATcpResponse);
        byte[] message = (byte[])original.Clone();

        DnsMessage.WriteId(message, 0xCAFE);

        Assert.That(DnsMessage.ReadId(message), Is.EqualTo(0xCAFE));
        Assert.That(message[..2], Is.EqualTo(new byte[] { 0xCA, 0xFE }));
        Assert.That(message[2..], Is.EqualTo(original[2..]));
    }

    [Test]
    public void IdOfAOneByteMessageCannotBeReadOrWritten()
    {
        Assert.That(() => DnsMessage.ReadId(new byte[1]), Throws.InstanceOf<ArgumentOutOfRangeException>());
        Assert.That(() => DnsMessage.WriteId(new byte[1], 1), Throws.InstanceOf<ArgumentOutOfRangeException>());
    }

    [TestCase(DnsVectors.ManyTestAUdpResponse, true)]
    [TestCase(DnsVectors.ManyTestATcpResponse, false)]
    [TestCase(DnsVectors.ManyTestAEdnsResponse, false)]
    [TestCase("000002", true)]
    [TestCase("0000fd", false)]
    [TestCase("0000", false)]
    [TestCase("", false)]
    public void IsTruncatedReadsTheTcBit(string messageHex, bool truncated)
    {
        Assert.That(DnsMessage.IsTruncated(Convert.FromHexString(messageHex)), Is.EqualTo(truncated));
    }
}
