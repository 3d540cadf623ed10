using System.Buffers;
using System.Net;
using Egress.Tunnel;

namespace Egress.Tests.Tunnel;

public sealed class TunnelCodecRequestTests
{
    internal const string GoldenTcpV4WithHint = "01 01 00 17 04 C6 33 64 07 01 BB 0F 61 70 69 2E 65 78 61 6D 70 6C 65 2E 63 6F 6D";
    internal const string GoldenTcpV6 = "01 01 00 14 06 20 01 0D B8 00 00 00 00 00 00 00 00 00 00 00 01 02 4B 00";
    internal const string GoldenDns = "01 02 00 00";

    private static readonly TunnelRequest s_goldenV4 = TunnelRequest.ForTcp(new IPEndPoint(IPAddress.Parse("198.51.100.7"), 443), "api.example.com");
    private static readonly TunnelRequest s_goldenV6 = TunnelRequest.ForTcp(new IPEndPoint(IPAddress.Parse("2001:db8::1"), 587));

    private static IEnumerable<TestCaseData> RoundTripCases()
    {
        yield return new TestCaseData("198.51.100.7", 443, null).SetName("{m}(v4, no hint)");
        yield return new TestCaseData("0.0.0.1", 1, "a").SetName("{m}(v4, 1-char hint, port 1)");
        yield return new TestCaseData("255.255.255.255", 65535, "Mail-1.Example_Host.com").SetName("{m}(v4, hint, port 65535)");
        yield return new TestCaseData("2001:db8::1", 587, null).SetName("{m}(v6, no hint)");
        yield return new TestCaseData("2001:db8:ffff:ffff:ffff:ffff:ffff:fffe", 8443, new string('z', 253)).SetName("{m}(v6, 253-char hint)");
        yield return new TestCaseData("::ffff:192.0.2.1", 25, "smtp.example").SetName("{m}(v4-mapped v6, hint)");
    }

    [TestCaseSource(nameof(RoundTripCases))]
    public void TcpRequestRoundTrips(string address, int port, string? hint)
    {
        var request = TunnelRequest.ForTcp(new IPEndPoint(IPAddress.Parse(address), port), hint);
        byte[] encoded = Encode(request);
        var buffer = new ReadOnlySequence<byte>(encoded);

        TunnelReadResult result = TunnelCodec.TryReadRequest(ref buffer, out TunnelRequest decoded);

        Assert.Multiple(() =>
        {
            Assert.That(result, Is.EqualTo(TunnelReadResult.Complete));
            Assert.That(decoded, Is.EqualTo(request));
            Assert.That(decoded.Destination, Is.EqualTo(new IPEndPoint(IPAddress.Parse(address), port)));
            Assert.That(decoded.HostHint, Is.EqualTo(hint));
            Assert.That(buffer.Length, Is.Zero);
            Assert.That(encoded, Has.Length.EqualTo(4 + 1 + (address.Contains(':', StringComparison.Ordinal) ? 16 : 4) + 2 + 1 + (hint?.Length ?? 0)));
        });
    }

    [Test]
    public void DnsRequestRoundTrips()
    {
        var buffer = new ReadOnlySequence<byte>(Encode(TunnelRequest.ForDns()));

        Assert.Multiple(() =>
        {
            Assert.That(TunnelCodec.TryReadRequest(ref buffer, out TunnelRequest decoded), Is.EqualTo(TunnelReadResult.Complete));
            Assert.That(decoded, Is.EqualTo(TunnelRequest.ForDns()));
            Assert.That(buffer.Length, Is.Zero);
        });
    }

    [Test]
    public void GoldenVectorsEncodeExactly()
    {
        Assert.Multiple(() =>
        {
            Assert.That(Encode(s_goldenV4), Is.EqualTo(Hex.Bytes(GoldenTcpV4WithHint)));
            Assert.That(Encode(s_goldenV6), Is.EqualTo(Hex.Bytes(GoldenTcpV6)));
            Assert.That(Encode(TunnelRequest.ForDns()), Is.EqualTo(Hex.Bytes(GoldenDns)));
        });
    }

    [Test]
    public void GoldenVectorsDecodeExactly()
    {
        Assert.Multiple(() =>
        {
            Assert.That(Decode(Hex.Bytes(GoldenTcpV4WithHint)), Is.EqualTo((TunnelReadResult.Complete, s_goldenV4)));
            Assert.That(Decode(Hex.Bytes(GoldenTcpV6)), Is.EqualTo((TunnelReadResult.Complete, s_goldenV6)));
            Assert.That(Decode(Hex.Bytes(GoldenDns)), Is.EqualTo((TunnelReadResult.Complete, TunnelRequest.ForDns())));
        });
    }

    [Test]
    public void BufferWriterOverloadWritesSameBytes()
    {
        var writer = new ArrayBufferWriter<byte>();
        TunnelCodec.WriteRequest(writer, s_goldenV4);
        TunnelCodec.WriteRequest(writer, TunnelRequest.ForDns());

        Assert.That(writer.WrittenSpan.ToArray(), Is.EqualTo(Sequences.Concat(Hex.Bytes(GoldenTcpV4WithHint), Hex.Bytes(GoldenDns))));
    }

    [Test]
    public void WriteIntoTooSmallSpanThrowsAndExactSizeWorks()
    {
        int length = Hex.Bytes(GoldenTcpV4WithHint).Length;

        Assert.Multiple(() =>
        {
            Assert.That(() => TunnelCodec.WriteRequest(s_goldenV4, new byte[length - 1]), Throws.ArgumentException);
            Assert.That(TunnelCodec.WriteRequest(s_goldenV4, new byte[length]), Is.EqualTo(length));
            Assert.That(() => TunnelCodec.WriteRequest(TunnelRequest.ForDns(), new byte[3]), Throws.ArgumentException);
        });
    }

    [Test]
    public void LargestRequestFitsMaxRequestLength()
    {
        var request = TunnelRequest.ForTcp(new IPEndPoint(IPAddress.IPv6Loopback, 1), new string('a', 253));

        Assert.That(TunnelCodec.WriteRequest(request, new byte[TunnelCodec.MaxRequestLength]), Is.EqualTo(4 + 1 + 16 + 2 + 1 + 253));
    }

    [Test]
    public void WritingDefaultRequestThrows() =>
        Assert.That(() => TunnelCodec.WriteRequest(default(TunnelRequest), new byte[TunnelCodec.MaxRequestLength]), Throws.ArgumentException);

    [Test]
    public void CompleteLeavesFollowingBytesForCaller()
    {
        byte[] relay = [0xDE, 0xAD, 0xBE, 0xEF];
        var buffer = new ReadOnlySequence<byte>(Sequences.Concat(Hex.Bytes(GoldenTcpV6), relay));

        Assert.Multiple(() =>
        {
            Assert.That(TunnelCodec.TryReadRequest(ref buffer, out _), Is.EqualTo(TunnelReadResult.Complete));
            Assert.That(buffer.ToArray(), Is.EqualTo(relay));
        });
    }

    [Test]
    public void TwoBackToBackRequestsReadInTurn()
    {
        var buffer = new ReadOnlySequence<byte>(Sequences.Concat(Hex.Bytes(GoldenDns), Hex.Bytes(GoldenTcpV4WithHint)));

        Assert.Multiple(() =>
        {
            Assert.That(TunnelCodec.TryReadRequest(ref buffer, out TunnelRequest first), Is.EqualTo(TunnelReadResult.Complete));
            Assert.That(first.Kind, Is.EqualTo(TunnelRequestKind.Dns));
            Assert.That(TunnelCodec.TryReadRequest(ref buffer, out TunnelRequest second), Is.EqualTo(TunnelReadResult.Complete));
            Assert.That(second, Is.EqualTo(s_goldenV4));
            Assert.That(buffer.IsEmpty, Is.True);
        });
    }

    // Hostile inputs: each must give its specific error, and must not be mistaken for a shorter valid header.
    [TestCase("00", TunnelReadResult.UnsupportedVersion, TestName = "{m}(version 0, reported from the first byte)")]
    [TestCase("00 01 00 00", TunnelReadResult.UnsupportedVersion, TestName = "{m}(version 0)")]
    [TestCase("03 01 00 00", TunnelReadResult.UnsupportedVersion, TestName = "{m}(version 3)")]
    [TestCase("FF 02 00 00", TunnelReadResult.UnsupportedVersion, TestName = "{m}(version 255)")]
    [TestCase("01 00", TunnelReadResult.UnsupportedKind, TestName = "{m}(kind 0, reported from the second byte)")]
    [TestCase("01 04 00 00", TunnelReadResult.UnsupportedKind, TestName = "{m}(kind 4)")]
    [TestCase("01 FF 00 00", TunnelReadResult.UnsupportedKind, TestName = "{m}(kind 255)")]
    [TestCase("01 01 01 2D", TunnelReadResult.Oversize, TestName = "{m}(length 301, no body needed)")]
    [TestCase("01 01 FF FF", TunnelReadResult.Oversize, TestName = "{m}(length 65535)")]
    [TestCase("01 02 01 2D", TunnelReadResult.Oversize, TestName = "{m}(DNS with length 301)")]
    [TestCase("01 02 00 01 00", TunnelReadResult.LengthMismatch, TestName = "{m}(DNS with a body)")]
    [TestCase("01 02 00 01", TunnelReadResult.LengthMismatch, TestName = "{m}(DNS with length 1, reported before the body)")]
    [TestCase("01 01 00 00", TunnelReadResult.LengthMismatch, TestName = "{m}(TCP with empty body)")]
    [TestCase("01 01 00 08 05 7F 00 00 01 00 50 00", TunnelReadResult.InvalidAddressFamily, TestName = "{m}(family 5)")]
    [TestCase("01 01 00 08 00 7F 00 00 01 00 50 00", TunnelReadResult.InvalidAddressFamily, TestName = "{m}(family 0)")]
    [TestCase("01 01 00 08 06 7F 00 00 01 00 50 00", TunnelReadResult.LengthMismatch, TestName = "{m}(family 6 with a 4-byte address)")]
    [TestCase("01 01 00 08 04 7F 00 00 01 00 00 00", TunnelReadResult.InvalidPort, TestName = "{m}(port 0)")]
    [TestCase("01 01 00 07 04 7F 00 00 01 00 50", TunnelReadResult.LengthMismatch, TestName = "{m}(body ends before hint length)")]
    [TestCase("01 01 00 03 04 7F 00", TunnelReadResult.LengthMismatch, TestName = "{m}(body ends inside the address)")]
    [TestCase("01 01 00 09 04 7F 00 00 01 00 50 00 AA", TunnelReadResult.LengthMismatch, TestName = "{m}(trailing byte after fields)")]
    [TestCase("01 01 00 0A 04 7F 00 00 01 00 50 00 41 42", TunnelReadResult.LengthMismatch, TestName = "{m}(length longer than fields, relay bytes swallowed)")]
    [TestCase("01 01 00 0B 04 7F 00 00 01 00 50 05 61 62 63", TunnelReadResult.LengthMismatch, TestName = "{m}(hint length exceeds body)")]
    [TestCase("01 01 00 0B 04 7F 00 00 01 00 50 02 61 62 63", TunnelReadResult.LengthMismatch, TestName = "{m}(hint length short of body)")]
    [TestCase("01 01 00 0B 04 7F 00 00 01 00 50 03 61 20 63", TunnelReadResult.InvalidHostHint, TestName = "{m}(hint with space)")]
    [TestCase("01 01 00 0B 04 7F 00 00 01 00 50 03 61 00 63", TunnelReadResult.InvalidHostHint, TestName = "{m}(hint with NUL)")]
    [TestCase("01 01 00 0B 04 7F 00 00 01 00 50 03 61 2F 63", TunnelReadResult.InvalidHostHint, TestName = "{m}(hint with slash)")]
    [TestCase("01 01 00 0B 04 7F 00 00 01 00 50 03 61 0A 63", TunnelReadResult.InvalidHostHint, TestName = "{m}(hint with newline)")]
    [TestCase("01 01 00 0C 04 7F 00 00 01 00 50 04 63 C3 A9 65", TunnelReadResult.InvalidHostHint, TestName = "{m}(hint with UTF-8 e-acute)")]
    [TestCase("01 01 00 0B 04 7F 00 00 01 00 50 03 61 80 63", TunnelReadResult.InvalidHostHint, TestName = "{m}(hint with byte 0x80)")]
    public void HostileRequestGivesSpecificError(string hex, object expectedValue)
    {
        var expected = (TunnelReadResult)expectedValue;
        byte[] bytes = Hex.Bytes(hex);
        var buffer = new ReadOnlySequence<byte>(bytes);
        var multi = Sequences.OneBytePerSegment(bytes);

        Assert.Multiple(() =>
        {
            Assert.That(TunnelCodec.TryReadRequest(ref buffer, out TunnelRequest request), Is.EqualTo(expected));
            Assert.That(request, Is.EqualTo(default(TunnelRequest)));
            Assert.That(buffer.Length, Is.EqualTo(bytes.Length), "buffer untouched on error");
            Assert.That(TunnelCodec.TryReadRequest(ref multi, out _), Is.EqualTo(expected), "same result over one-byte segments");
        });
    }

    [Test]
    public void HintOf254BytesIsInvalidEvenWhenBodyHoldsIt()
    {
        byte[] body = Sequences.Concat(Hex.Bytes("04 7F 00 00 01 00 50 FE"), Enumerable.Repeat((byte)'a', 254).ToArray());
        byte[] bytes = Sequences.Concat([1, 1, (byte)(body.Length >> 8), (byte)body.Length], body);
        var buffer = new ReadOnlySequence<byte>(bytes);

        Assert.That(TunnelCodec.TryReadRequest(ref buffer, out _), Is.EqualTo(TunnelReadResult.InvalidHostHint));
    }

    [Test]
    public void BodyLengthOf300IsReadButMismatches()
    {
        byte[] bytes = Sequences.Concat(Hex.Bytes("01 01 01 2C 04 7F 00 00 01 00 50 00"), new byte[292]);
        var buffer = new ReadOnlySequence<byte>(bytes);
        var partial = new ReadOnlySequence<byte>(bytes, 0, bytes.Length - 1);

        Assert.Multiple(() =>
        {
            Assert.That(TunnelCodec.TryReadRequest(ref partial, out _), Is.EqualTo(TunnelReadResult.Incomplete));
            Assert.That(TunnelCodec.TryReadRequest(ref buffer, out _), Is.EqualTo(TunnelReadResult.LengthMismatch));
        });
    }

    [TestCase("", TestName = "{m}(empty)")]
    [TestCase("01", TestName = "{m}(version only)")]
    [TestCase("01 01", TestName = "{m}(version and kind)")]
    [TestCase("01 01 00", TestName = "{m}(half the length)")]
    [TestCase("01 01 00 08 04 7F 00 00 01 00 50", TestName = "{m}(body one byte short)")]
    [TestCase("01 01 00 0A 04 7F 00 00 01 00 50 02 61", TestName = "{m}(hint one byte short)")]
    public void ShortBufferIsIncompleteAndUntouched(string hex)
    {
        var buffer = new ReadOnlySequence<byte>(Hex.Bytes(hex));
        var original = buffer;

        Assert.Multiple(() =>
        {
            Assert.That(TunnelCodec.TryReadRequest(ref buffer, out _), Is.EqualTo(TunnelReadResult.Incomplete));
            Assert.That(buffer.Start, Is.EqualTo(original.Start));
            Assert.That(buffer.End, Is.EqualTo(original.End));
        });
    }

    [TestCase(TunnelReadResult.UnsupportedVersion, TunnelStatus.UnsupportedVersion)]
    [TestCase(TunnelReadResult.UnsupportedKind, TunnelStatus.UnsupportedKind)]
    [TestCase(TunnelReadResult.Oversize, TunnelStatus.BadRequest)]
    [TestCase(TunnelReadResult.InvalidAddressFamily, TunnelStatus.BadRequest)]
    [TestCase(TunnelReadResult.InvalidPort, TunnelStatus.BadRequest)]
    [TestCase(TunnelReadResult.InvalidHostHint, TunnelStatus.BadRequest)]
    [TestCase(TunnelReadResult.LengthMismatch, TunnelStatus.BadRequest)]
    [TestCase(TunnelReadResult.TruncatedStream, TunnelStatus.BadRequest)]
    [TestCase(TunnelReadResult.UnknownStatus, TunnelStatus.BadRequest)]
    public void StatusForMapsErrors(object resultValue, TunnelStatus expected)
    {
        var result = (TunnelReadResult)resultValue;
        Assert.That(TunnelCodec.StatusFor(result), Is.EqualTo(expected));
    }

    [TestCase(TunnelReadResult.Complete)]
    [TestCase(TunnelReadResult.Incomplete)]
    public void StatusForRejectsNonErrors(object resultValue)
    {
        var result = (TunnelReadResult)resultValue;
        Assert.That(() => TunnelCodec.StatusFor(result), Throws.TypeOf<ArgumentOutOfRangeException>());
    }

    internal static byte[] Encode(in TunnelRequest request)
    {
        var buffer = new byte[TunnelCodec.MaxRequestLength];
        return buffer[..TunnelCodec.WriteRequest(request, buffer)];
    }

    private static (TunnelReadResult, TunnelRequest) Decode(byte[] bytes)
    {
        var buffer = new ReadOnlySequence<byte>(bytes);
        return (TunnelCodec.TryReadRequest(ref buffer, out TunnelRequest request), request);
    }
}
