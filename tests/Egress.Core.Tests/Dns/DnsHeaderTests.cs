using Egress.Dns;
using Egress.Dns.Wire;
using Egress.Tests.Dns.Vectors;

namespace Egress.Tests.Dns;

public sealed class DnsHeaderTests
{
    [Test]
    public void ReadsEveryFieldOfARealResponse()
    {
        // dnsmasq's truncated UDP answer: flags 0x8780 = QR, AA, TC, RD, RA.
        byte[] response = Convert.FromHexString(DnsVectors.ManyTestAUdpResponse);

        Assert.That(DnsHeader.TryRead(response, out DnsHeader header), Is.True);
        Assert.Multiple(() =>
        {
            Assert.That(header.Id, Is.EqualTo(0x1006));
            Assert.That(header.Flags, Is.EqualTo(0x8780));
            Assert.That(header.IsResponse, Is.True);
            Assert.That(header.Opcode, Is.EqualTo(0));
            Assert.That(header.IsAuthoritativeAnswer, Is.True);
            Assert.That(header.IsTruncated, Is.True);
            Assert.That(header.RecursionDesired, Is.True);
            Assert.That(header.RecursionAvailable, Is.True);
            Assert.That(header.ResponseCode, Is.EqualTo(0));
            Assert.That(header.QdCount, Is.EqualTo(1));
            Assert.That(header.AnCount, Is.EqualTo(30));
            Assert.That(header.NsCount, Is.EqualTo(0));
            Assert.That(header.ArCount, Is.EqualTo(0));
        });
    }

    [Test]
    public void ReadsOpcodeRcodeAndCountsFromTheirBits()
    {
        // QR=0, opcode 5 (UPDATE), RD=0, RCODE 3; counts 0x0102, 0x0304, 0x0506, 0x0708.
        byte[] message = Convert.FromHexString("abcd28030102030405060708");

        Assert.That(DnsHeader.TryRead(message, out DnsHeader header), Is.True);
        Assert.Multiple(() =>
        {
            Assert.That(header.Id, Is.EqualTo(0xABCD));
            Assert.That(header.IsResponse, Is.False);
            Assert.That(header.Opcode, Is.EqualTo(5));
            Assert.That(header.IsAuthoritativeAnswer, Is.False);
            Assert.That(header.IsTruncated, Is.False);
            Assert.That(header.RecursionDesired, Is.False);
            Assert.That(header.RecursionAvailable, Is.False);
            Assert.That(header.ResponseCode, Is.EqualTo(3));
            Assert.That(header.QdCount, Is.EqualTo(0x0102));
            Assert.That(header.AnCount, Is.EqualTo(0x0304));
            Assert.That(header.NsCount, Is.EqualTo(0x0506));
            Assert.That(header.ArCount, Is.EqualTo(0x0708));
        });
    }

    [Test]
    public void RejectsAnythingShorterThanTwelveBytes([Range(0, 11)] int length)
    {
        byte[] response = Convert.FromHexString(DnsVectors.ATestAResponse);

        Assert.That(DnsHeader.TryRead(response.AsSpan(0, length), out DnsHeader header), Is.False);
        Assert.That(header, Is.EqualTo(default(DnsHeader)));
    }
}
