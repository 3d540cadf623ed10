using Egress.Dns;
using Egress.Dns.Wire;
using Egress.Tests.Dns.Vectors;

namespace Egress.Tests.Dns;

public sealed class DnsNameTests
{
    private static readonly byte[] Header = new byte[12];

    [Test]
    public void DecodesACompressedNameFromARealResponseKeepingItsCase()
    {
        byte[] response = Convert.FromHexString(DnsVectors.MixedCaseAaaaResponse);
        const int CnameOwner = 12 + 12 + 4; // the answer's owner is a pointer to the question name

        Assert.That(Decode(response, CnameOwner, out int end), Is.EqualTo("WwW.B.TeSt"));
        Assert.That(end, Is.EqualTo(CnameOwner + 2));
    }

    [Test]
    public void DecodesTheRootNameAsEmpty()
    {
        byte[] message = [.. Header, 0];

        Assert.That(Decode(message, 12, out int end), Is.EqualTo(string.Empty));
        Assert.That(end, Is.EqualTo(13));
    }

    [Test]
    public void SelfPointerIsALoop()
    {
        byte[] message = [.. Header, 0xC0, 12];

        AssertError(message, 12, DnsParseError.PointerLoop);
    }

    [Test]
    public void TwoStepPointerLoopIsALoopFromEitherEnd()
    {
        // 12: "a" -> pointer to 16; 16: "b" -> pointer to 12.
        byte[] message = [.. Header, 1, (byte)'a', 0xC0, 16, 1, (byte)'b', 0xC0, 12];

        AssertError(message, 12, DnsParseError.PointerLoop);
        AssertError(message, 16, DnsParseError.PointerLoop);
    }

    [Test]
    public void ForwardPointerIsRejectedEvenWhenItsTargetIsAValidName()
    {
        byte[] message = [.. Header, 0xC0, 14, 1, (byte)'a', 0];

        AssertError(message, 12, DnsParseError.PointerLoop);
        Assert.That(Decode(message, 14, out _), Is.EqualTo("a"));
    }

    [Test]
    public void PointerIntoTheBytesAlreadyReadIsALoop()
    {
        // 12: "abc" then a pointer to 13 (inside the label just read, after the name's start).
        byte[] message = [.. Header, 3, (byte)'a', (byte)'b', (byte)'c', 0xC0, 13];

        AssertError(message, 12, DnsParseError.PointerLoop);
    }

    [TestCase(20)]
    [TestCase(21)]
    [TestCase(0x3FFF)]
    public void PointerAtOrBeyondTheEndOfTheMessageIsOutOfRange(int target)
    {
        byte[] message = [.. Header, 1, (byte)'a', (byte)(0xC0 | (target >> 8)), (byte)target, 0, 0, 0, 0];

        Assert.That(message, Has.Length.EqualTo(20));
        AssertError(message, 12, DnsParseError.PointerOutOfRange);
    }

    [Test]
    public void PointerCutInHalfIsTruncated()
    {
        byte[] message = [.. Header, 1, (byte)'a', 0xC0];

        AssertError(message, 12, DnsParseError.Truncated);
    }

    [Test]
    public void LabelRunningPastTheEndIsTruncated()
    {
        byte[] message = [.. Header, 5, (byte)'a', (byte)'b'];

        AssertError(message, 12, DnsParseError.Truncated);
    }

    [Test]
    public void NameWithoutTerminatingZeroIsTruncated()
    {
        byte[] message = [.. Header, 1, (byte)'a'];

        AssertError(message, 12, DnsParseError.Truncated);
    }

    [Test]
    public void OffsetAtTheEndIsTruncated()
    {
        AssertError(Header, 12, DnsParseError.Truncated);
    }

    [Test]
    public void LabelOf63OctetsIsAccepted()
    {
        byte[] message = [.. Header, 63, .. Enumerable.Repeat((byte)'x', 63), 0];

        Assert.That(Decode(message, 12, out int end), Is.EqualTo(new string('x', 63)));
        Assert.That(end, Is.EqualTo(message.Length));
    }

    [TestCase(64)]
    [TestCase(0x7F)]
    public void LengthOctetFrom64To127IsALabelTooLong(int length)
    {
        byte[] message = [.. Header, (byte)length, .. Enumerable.Repeat((byte)'x', length), 0];

        AssertError(message, 12, DnsParseError.LabelTooLong);
    }

    [TestCase(0x80)]
    [TestCase(0xBF)]
    public void LengthOctetWithPrefix10IsABadLabelType(int lengthOctet)
    {
        byte[] message = [.. Header, (byte)lengthOctet, 0, 0, 0];

        AssertError(message, 12, DnsParseError.BadLabelType);
    }

    [Test]
    public void NameOf255OctetsIsAcceptedAnd256IsTooLong()
    {
        byte[] longest = [.. Header, .. Labels(63, 63, 63, 61), 0];
        byte[] tooLong = [.. Header, .. Labels(63, 63, 63, 62), 0];

        Assert.That(longest.Length - 12, Is.EqualTo(255));
        Assert.That(Decode(longest, 12, out _), Has.Length.EqualTo(DnsMessage.MaxNameLength));
        AssertError(tooLong, 12, DnsParseError.NameTooLong);
    }

    [Test]
    public void NameLengthCountsTheLabelsReachedThroughPointers()
    {
        // 12: a 193-octet name; then a 63-octet label followed by a pointer to it: 64 + 193 = 257 octets.
        byte[] message = [.. Header, .. Labels(63, 63, 63), 0, .. Labels(63), 0xC0, 12];
        int second = 12 + 193;

        Assert.That(Decode(message, 12, out _), Has.Length.EqualTo(63 * 3 + 2));
        AssertError(message, second, DnsParseError.NameTooLong);
    }

    [Test]
    public void FollowsAtMost128Pointers()
    {
        // 12: "a"; then 129 pointers, each pointing at the one before it (the first at the name "a").
        var message = new List<byte>(Header) { 1, (byte)'a', 0 };
        int previous = 12;
        for (int i = 0; i < 129; i++)
        {
            int here = message.Count;
            message.Add((byte)(0xC0 | (previous >> 8)));
            message.Add((byte)previous);
            previous = here;
        }

        byte[] bytes = [.. message];
        int pointer128 = previous - 2;

        Assert.That(Decode(bytes, pointer128, out int end), Is.EqualTo("a"));
        Assert.That(end, Is.EqualTo(pointer128 + 2));
        AssertError(bytes, previous, DnsParseError.PointerLoop);
    }

    /// <summary>A name that cannot be decoded is still shown in a log line, escaped as dig writes it, never raw.</summary>
    [TestCase(new byte[] { 1, (byte)'*', 6, (byte)'e', (byte)'g', (byte)'r', (byte)'e', (byte)'s', (byte)'s', 0 }, "*.egress.")]
    [TestCase(new byte[] { 3, (byte)'a', (byte)' ', (byte)'b', 1, (byte)'x', 0 }, "a\\032b.x.")]
    [TestCase(new byte[] { 3, (byte)'a', (byte)'.', 10, 2, (byte)'\\', 0x1B, 0 }, "a\\046\\010.\\092\\027.")]
    [TestCase(new byte[] { 2, (byte)'a', (byte)'b', 0xC0, 12 }, "ab.(compression pointer)")]
    [TestCase(new byte[] { 70, (byte)'a' }, "(label length 70)")]
    [TestCase(new byte[] { 5, (byte)'a', (byte)'b' }, "ab(cut short)")]
    [TestCase(new byte[] { 0 }, ".")]
    public void DescribeShowsAnyNameEscaped(byte[] name, string expected)
    {
        byte[] message = [.. Header, .. name];

        Assert.That(DnsName.Describe(message, 12), Is.EqualTo(expected));
    }

    [Test]
    public void DescribeStopsAtItsLimit()
    {
        byte[] label = [63, .. Enumerable.Repeat((byte)0x01, 63)];
        byte[] message = [.. Header, .. label, .. label, 0];

        string described = DnsName.Describe(message, 12);
        Assert.That(described, Has.Length.EqualTo(DnsName.MaxDescribed + 3));
        Assert.That(described, Does.StartWith(@"\001\001").And.EndWith("..."));
    }

    [TestCase((byte)'.')]
    [TestCase((byte)' ')]
    [TestCase((byte)'*')]
    [TestCase((byte)'\\')]
    [TestCase((byte)0)]
    [TestCase((byte)0xC3)]
    public void DecodeRejectsLabelBytesWithoutAnUnambiguousTextForm(byte bad)
    {
        // "api" + bad + "stripe" . "com": a '.' inside a label would otherwise read as "api.stripe.com".
        byte[] message = [.. Header, 10, (byte)'a', (byte)'p', (byte)'i', bad, (byte)'s', (byte)'t', (byte)'r', (byte)'i', (byte)'p', (byte)'e', 3, (byte)'c', (byte)'o', (byte)'m', 0];
        Span<char> text = stackalloc char[DnsName.MaxTextLength];

        Assert.That(DnsName.Decode(message, 12, text, out int length, out _), Is.EqualTo(DnsParseError.BadCharacter));
        Assert.That(length, Is.Zero);
        Assert.That(DnsName.Skip(message, 12, out int end), Is.EqualTo(DnsParseError.None));
        Assert.That(end, Is.EqualTo(message.Length));
    }

    [Test]
    public void DecodeAcceptsLettersDigitsHyphenAndUnderscore()
    {
        byte[] message = new DnsMessageBuilder().Bytes(Header).Name("_Sip._tcp.Xn--bcher-kva.Example-1.test").ToArray();

        Assert.That(Decode(message, 12, out _), Is.EqualTo("_Sip._tcp.Xn--bcher-kva.Example-1.test"));
    }

    [Test]
    public void EqualIgnoresAsciiCaseAcrossPointers()
    {
        // 12: "WWW.Example.TEST"; then "www" + pointer to "Example.TEST"; then "www.example.tesT".
        var builder = new DnsMessageBuilder().Bytes(Header).Name("WWW.Example.TEST");
        int compressed = builder.Offset;
        builder.Labels("www").Pointer(16);
        int plain = builder.Offset;
        byte[] message = builder.Name("www.example.tesT").ToArray();

        Assert.That(Equal(message, 12, compressed), Is.True);
        Assert.That(Equal(message, compressed, plain), Is.True);
        Assert.That(Equal(message, 16, plain), Is.False);
    }

    [Test]
    public void EqualTellsPrefixesAndNonAsciiCaseApart()
    {
        var builder = new DnsMessageBuilder().Bytes(Header).Name("a.b");
        int longer = builder.Offset;
        builder.Name("a.b.c");
        int upperNonAscii = builder.Offset;
        builder.Bytes(1, 0xC3, 0);
        int lowerNonAscii = builder.Offset;
        byte[] message = builder.Bytes(1, 0xE3, 0).ToArray();

        Assert.That(Equal(message, 12, longer), Is.False);
        Assert.That(Equal(message, longer, 12), Is.False);
        Assert.That(Equal(message, upperNonAscii, lowerNonAscii), Is.False);
    }

    [Test]
    public void EqualReportsAMalformedName()
    {
        byte[] message = [.. Header, 1, (byte)'a', 0, 1, (byte)'a', 0xC0, 17];

        Assert.That(DnsName.Equal(message, 12, 15, out bool equal), Is.EqualTo(DnsParseError.PointerLoop));
        Assert.That(equal, Is.False);
    }

    [Test]
    public void CopyUncompressedExpandsPointers()
    {
        byte[] response = Convert.FromHexString(DnsVectors.WwwBTestAResponse);
        byte[] destination = new byte[DnsName.MaxWireLength];

        Assert.That(DnsName.CopyUncompressed(response, 28, destination, out int written, out int end), Is.EqualTo(DnsParseError.None));
        Assert.That(Convert.ToHexStringLower(destination, 0, written), Is.EqualTo("037777770162047465737400"));
        Assert.That(end, Is.EqualTo(30));
    }

    private static byte[] Labels(params int[] lengths) =>
        [.. lengths.SelectMany(length => new[] { (byte)length }.Concat(Enumerable.Repeat((byte)'x', length)))];

    private static string Decode(byte[] message, int offset, out int end)
    {
        char[] text = new char[DnsName.MaxTextLength];
        DnsParseError error = DnsName.Decode(message, offset, text, out int length, out end);
        Assert.That(error, Is.EqualTo(DnsParseError.None));
        Assert.That(DnsName.Skip(message, offset, out int skipEnd), Is.EqualTo(DnsParseError.None));
        Assert.That(skipEnd, Is.EqualTo(end));
        return new string(text, 0, length);
    }

    private static bool Equal(byte[] message, int a, int b)
    {
        Assert.That(DnsName.Equal(message, a, b, out bool equal), Is.EqualTo(DnsParseError.None));
        return equal;
    }

    private static void AssertError(byte[] message, int offset, DnsParseError expected)
    {
        char[] text = new char[DnsName.MaxTextLength];
        byte[] wire = new byte[DnsName.MaxWireLength];
        Assert.Multiple(() =>
        {
            Assert.That(DnsName.Skip(message, offset, out int end), Is.EqualTo(expected));
            Assert.That(end, Is.Zero);
            Assert.That(DnsName.Decode(message, offset, text, out int length, out _), Is.EqualTo(expected));
            Assert.That(length, Is.Zero);
            Assert.That(DnsName.CopyUncompressed(message, offset, wire, out int written, out _), Is.EqualTo(expected));
            Assert.That(written, Is.Zero);
        });
    }
}
