using Egress.Dns.Wire;

namespace Egress.Tests.Dns;

public sealed class DnsQueryWriterTests
{
    [TestCase("a.x.test", (ushort)1)]
    [TestCase("API.Example.com.", (ushort)28)]
    public void WrittenQueryParsesBackToItsQuestion(string name, ushort type)
    {
        byte[] buffer = new byte[DnsQueryWriter.MaxLength];

        int length = DnsQueryWriter.Write(0x1234, name, type, buffer);

        Assert.That(DnsMessage.TryParseQuestion(buffer.AsSpan(0, length), out DnsQuestion question, out int end), Is.EqualTo(DnsParseError.None));
        Assert.That((question.Name, question.Type, end, DnsMessage.ReadId(buffer)), Is.EqualTo((name.TrimEnd('.'), type, length, (ushort)0x1234)));
        Assert.That(buffer.AsSpan(0, length).ToArray(), Is.EqualTo(DnsQueryBytes.Build(0x1234, name.TrimEnd('.'), type)));
    }

    [TestCase("")]
    [TestCase(".")]
    [TestCase("a..b")]
    [TestCase(".a")]
    [TestCase("é.test")]
    public void InvalidNameIsNotWritten(string name) =>
        Assert.That(DnsQueryWriter.Write(1, name, 1, new byte[DnsQueryWriter.MaxLength]), Is.EqualTo(-1));

    [Test]
    public void OverlongLabelIsNotWritten() =>
        Assert.That(DnsQueryWriter.Write(1, new string('a', 64) + ".test", 1, new byte[DnsQueryWriter.MaxLength]), Is.EqualTo(-1));
}
