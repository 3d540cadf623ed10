using System.Buffers;
using System.Text;
using Egress.Tunnel;

namespace Egress.Tests.Tunnel;

public sealed class TunnelCodecResponseTests
{
    internal const string GoldenOk = "01 00 00";
    internal const string GoldenDenied = "01 01 10 6E 6F 74 20 69 6E 20 61 6C 6C 6F 77 6C 69 73 74";

    [Test]
    public void EveryStatusRoundTripsWithAndWithoutDetail([Values] TunnelStatus status, [Values(null, "why: \u00e9\u4e2d\U0001F600")] string? detail)
    {
        var response = new TunnelResponse(status, detail);
        var buffer = new ReadOnlySequence<byte>(Encode(response));

        Assert.Multiple(() =>
        {
            Assert.That(TunnelCodec.TryReadResponse(ref buffer, out TunnelResponse decoded), Is.EqualTo(TunnelReadResult.Complete));
            Assert.That(decoded, Is.EqualTo(response));
            Assert.That(buffer.IsEmpty, Is.True);
        });
    }

    [Test]
    public void StatusBytesAreTheDocumentedValues()
    {
        byte[] expected = [0, 1, 2, 3, 4, 5, 6, 7, 8];
        TunnelStatus[] statuses =
        [
            TunnelStatus.Ok, TunnelStatus.DeniedByPolicy, TunnelStatus.ConnectionRefused, TunnelStatus.Unreachable,
            TunnelStatus.TimedOut, TunnelStatus.BadRequest, TunnelStatus.UnsupportedVersion, TunnelStatus.UnsupportedKind,
            TunnelStatus.Failure,
        ];

        Assert.Multiple(() =>
        {
            Assert.That(statuses.Select(s => Encode(new TunnelResponse(s))[1]), Is.EqualTo(expected));
            Assert.That(Enum.GetValues<TunnelStatus>(), Has.Length.EqualTo(9));
        });
    }

    [Test]
    public void GoldenVectorsEncodeAndDecodeExactly()
    {
        var ok = new ReadOnlySequence<byte>(Hex.Bytes(GoldenOk));
        var denied = new ReadOnlySequence<byte>(Hex.Bytes(GoldenDenied));

        Assert.Multiple(() =>
        {
            Assert.That(Encode(new TunnelResponse(TunnelStatus.Ok)), Is.EqualTo(Hex.Bytes(GoldenOk)));
            Assert.That(Encode(new TunnelResponse(TunnelStatus.DeniedByPolicy, "not in allowlist")), Is.EqualTo(Hex.Bytes(GoldenDenied)));
            Assert.That(TunnelCodec.TryReadResponse(ref ok, out TunnelResponse okResponse), Is.EqualTo(TunnelReadResult.Complete));
            Assert.That(okResponse, Is.EqualTo(new TunnelResponse(TunnelStatus.Ok, null)));
            Assert.That(TunnelCodec.TryReadResponse(ref denied, out TunnelResponse deniedResponse), Is.EqualTo(TunnelReadResult.Complete));
            Assert.That(deniedResponse, Is.EqualTo(new TunnelResponse(TunnelStatus.DeniedByPolicy, "not in allowlist")));
        });
    }

    [Test]
    public void EmptyDetailIsWrittenAsLengthZero() =>
        Assert.That(Encode(new TunnelResponse(TunnelStatus.Failure, "")), Is.EqualTo(Hex.Bytes("01 08 00")));

    [Test]
    public void AsciiDetailIsCutAt255Bytes()
    {
        string detail = new('x', 300);

        byte[] encoded = Encode(new TunnelResponse(TunnelStatus.Failure, detail));

        Assert.Multiple(() =>
        {
            Assert.That(encoded, Has.Length.EqualTo(TunnelCodec.MaxResponseLength));
            Assert.That(encoded[2], Is.EqualTo(255));
            Assert.That(Decode(encoded).Response.Detail, Is.EqualTo(new string('x', 255)));
        });
    }

    [Test]
    public void TwoByteCharacterStraddlingTheLimitIsDropped()
    {
        // 254 ASCII bytes then U+00E9 (2 bytes): the second byte would be number 256, so the character goes.
        string detail = new string('x', 254) + "\u00e9tail";

        byte[] encoded = Encode(new TunnelResponse(TunnelStatus.Failure, detail));

        Assert.Multiple(() =>
        {
            Assert.That(encoded[2], Is.EqualTo(254));
            Assert.That(Decode(encoded).Response.Detail, Is.EqualTo(new string('x', 254)));
        });
    }

    [Test]
    public void SurrogatePairStraddlingTheLimitIsDroppedWhole()
    {
        // 253 ASCII bytes then U+1F600 (4 bytes in UTF-8, a surrogate pair in UTF-16).
        string detail = new string('x', 253) + "\U0001F600";

        byte[] encoded = Encode(new TunnelResponse(TunnelStatus.Failure, detail));

        Assert.Multiple(() =>
        {
            Assert.That(encoded[2], Is.EqualTo(253));
            Assert.That(Decode(encoded).Response.Detail, Is.EqualTo(new string('x', 253)));
        });
    }

    [Test]
    public void ThreeByteCharactersFillTo255Exactly()
    {
        string detail = new('\u4e2d', 100);

        byte[] encoded = Encode(new TunnelResponse(TunnelStatus.Failure, detail));

        Assert.Multiple(() =>
        {
            Assert.That(encoded[2], Is.EqualTo(255));
            Assert.That(Decode(encoded).Response.Detail, Is.EqualTo(new string('\u4e2d', 85)));
        });
    }

    [Test]
    public void LoneSurrogateIsReplacedNotThrown()
    {
        byte[] encoded = Encode(new TunnelResponse(TunnelStatus.Failure, "a\ud800b"));

        Assert.That(Decode(encoded).Response.Detail, Is.EqualTo("a\ufffdb"));
    }

    [Test]
    public void InvalidUtf8DetailDecodesWithReplacementCharacter()
    {
        Assert.That(Decode(Hex.Bytes("01 08 03 61 FF 62")).Response.Detail, Is.EqualTo("a\ufffdb"));
    }

    [Test]
    public void WritingUndefinedStatusThrows() =>
        Assert.That(() => TunnelCodec.WriteResponse(new TunnelResponse((TunnelStatus)9), new byte[TunnelCodec.MaxResponseLength]), Throws.ArgumentException);

    [Test]
    public void WriteIntoTooSmallSpanThrows()
    {
        Assert.Multiple(() =>
        {
            Assert.That(() => TunnelCodec.WriteResponse(new TunnelResponse(TunnelStatus.Ok), new byte[2]), Throws.ArgumentException);
            Assert.That(() => TunnelCodec.WriteResponse(new TunnelResponse(TunnelStatus.Ok, "abc"), new byte[5]), Throws.ArgumentException);
            Assert.That(TunnelCodec.WriteResponse(new TunnelResponse(TunnelStatus.Ok, "abc"), new byte[6]), Is.EqualTo(6));
        });
    }

    [Test]
    public void BufferWriterOverloadWritesSameBytes()
    {
        var writer = new ArrayBufferWriter<byte>();
        TunnelCodec.WriteResponse(writer, new TunnelResponse(TunnelStatus.Ok));
        TunnelCodec.WriteResponse(writer, new TunnelResponse(TunnelStatus.DeniedByPolicy, "not in allowlist"));

        Assert.That(writer.WrittenSpan.ToArray(), Is.EqualTo(Sequences.Concat(Hex.Bytes(GoldenOk), Hex.Bytes(GoldenDenied))));
    }

    [Test]
    public void OkLeavesRelayBytesForCaller()
    {
        byte[] relay = Encoding.ASCII.GetBytes("HTTP/1.1 200 OK\r\n");
        var buffer = Sequences.OneBytePerSegment(Sequences.Concat(Hex.Bytes(GoldenOk), relay));

        Assert.Multiple(() =>
        {
            Assert.That(TunnelCodec.TryReadResponse(ref buffer, out _), Is.EqualTo(TunnelReadResult.Complete));
            Assert.That(buffer.ToArray(), Is.EqualTo(relay));
        });
    }

    [TestCase("00 00 00", TunnelReadResult.UnsupportedVersion, TestName = "{m}(version 0)")]
    [TestCase("03", TunnelReadResult.UnsupportedVersion, TestName = "{m}(version 3, first byte only)")]
    [TestCase("FF 00 00", TunnelReadResult.UnsupportedVersion, TestName = "{m}(version 255)")]
    [TestCase("01 09", TunnelReadResult.UnknownStatus, TestName = "{m}(status 9, reported before the detail length)")]
    [TestCase("01 C8 00", TunnelReadResult.UnknownStatus, TestName = "{m}(status 200)")]
    [TestCase("01 FF 00", TunnelReadResult.UnknownStatus, TestName = "{m}(status 255)")]
    [TestCase("", TunnelReadResult.Incomplete, TestName = "{m}(empty)")]
    [TestCase("01 00", TunnelReadResult.Incomplete, TestName = "{m}(no detail length)")]
    [TestCase("01 01 03 61 62", TunnelReadResult.Incomplete, TestName = "{m}(detail one byte short)")]
    public void HostileOrShortResponseGivesSpecificResult(string hex, object expectedValue)
    {
        var expected = (TunnelReadResult)expectedValue;
        byte[] bytes = Hex.Bytes(hex);
        var buffer = new ReadOnlySequence<byte>(bytes);
        var multi = Sequences.OneBytePerSegment(bytes);

        Assert.Multiple(() =>
        {
            Assert.That(TunnelCodec.TryReadResponse(ref buffer, out TunnelResponse response), Is.EqualTo(expected));
            Assert.That(response, Is.EqualTo(default(TunnelResponse)));
            Assert.That(buffer.Length, Is.EqualTo(bytes.Length), "buffer untouched");
            Assert.That(TunnelCodec.TryReadResponse(ref multi, out _), Is.EqualTo(expected), "same result over one-byte segments");
        });
    }

    internal static byte[] Encode(in TunnelResponse response)
    {
        var buffer = new byte[TunnelCodec.MaxResponseLength];
        return buffer[..TunnelCodec.WriteResponse(response, buffer)];
    }

    private static (TunnelReadResult Result, TunnelResponse Response) Decode(byte[] bytes)
    {
        var buffer = new ReadOnlySequence<byte>(bytes);
        return (TunnelCodec.TryReadResponse(ref buffer, out TunnelResponse response), response);
    }
}
