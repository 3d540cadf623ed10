using System.Buffers;
using System.Net;
using Egress.Tunnel;
using Microsoft.Extensions.Time.Testing;

namespace Egress.Tests.Tunnel;

/// <summary>Version 2 of the tunnel protocol: the golden vectors of docs/tunnel-protocol.md, byte for byte, and the frame reader on hostile input.</summary>
public sealed class TunnelV2CodecTests
{
    private const string RequestVector = "02 01 00 1F 01 23 45 67 89 AB CD EF 04 C6 33 64 07 01 BB 0F 61 70 69 2E 65 78 61 6D 70 6C 65 2E 63 6F 6D";

    private static readonly TunnelRequest Request =
        TunnelRequest.ForTcp(new IPEndPoint(IPAddress.Parse("198.51.100.7"), 443), "api.example.com").AsVersion2(0x0123_4567_89AB_CDEFUL);

    [Test]
    public void RequestEncodesToTheGoldenVector()
    {
        byte[] buffer = new byte[TunnelCodec.MaxRequestLength];

        int length = TunnelCodec.WriteRequest(Request, buffer);

        Assert.That(buffer[..length], Is.EqualTo(Hex.Bytes(RequestVector)));
    }

    [Test]
    public void GoldenRequestDecodesWithItsConnectionId()
    {
        var bytes = new ReadOnlySequence<byte>(Hex.Bytes(RequestVector + " AA"));

        var result = TunnelCodec.TryReadRequest(ref bytes, out TunnelRequest request);

        Assert.Multiple(() =>
        {
            Assert.That(result, Is.EqualTo(TunnelReadResult.Complete));
            Assert.That(request, Is.EqualTo(Request));
            Assert.That((request.Version, request.ConnectionId), Is.EqualTo((TunnelCodec.Version2, 0x0123_4567_89AB_CDEFUL)));
            Assert.That(bytes.ToArray(), Is.EqualTo(new byte[] { 0xAA }), "the payload after the header is left");
        });
    }

    [TestCase("02 02 00 00", TunnelReadResult.UnsupportedKind, TestName = "{m}(a DNS stream stays version 1)")]
    [TestCase("02 01 00 07 01 23 45 67 89 AB CD", TunnelReadResult.LengthMismatch, TestName = "{m}(body shorter than the connection id)")]
    [TestCase("02 01 00 08 04 C6 33 64 07 01 BB 00", TunnelReadResult.LengthMismatch, TestName = "{m}(a version 1 body under version 2)")]
    [TestCase("03 01 00 00", TunnelReadResult.UnsupportedVersion, TestName = "{m}(version 3)")]
    public void MalformedVersion2RequestGivesItsError(string hex, object expectedValue)
    {
        var expected = (TunnelReadResult)expectedValue;
        var bytes = new ReadOnlySequence<byte>(Hex.Bytes(hex));

        Assert.That(TunnelCodec.TryReadRequest(ref bytes, out _), Is.EqualTo(expected));
    }

    [TestCase(TunnelStatus.Ok, null, "02 00 00")]
    [TestCase(TunnelStatus.DeniedByPolicy, "no", "02 01 02 6E 6F")]
    public void ResponseEchoesTheVersion(TunnelStatus status, string? detail, string hex)
    {
        byte[] buffer = new byte[TunnelCodec.MaxResponseLength];
        int length = TunnelCodec.WriteResponse(new TunnelResponse(status, detail) { Version = TunnelCodec.Version2 }, buffer);
        var bytes = new ReadOnlySequence<byte>(buffer, 0, length);
        var result = TunnelCodec.TryReadResponse(ref bytes, out TunnelResponse read);

        Assert.Multiple(() =>
        {
            Assert.That(buffer[..length], Is.EqualTo(Hex.Bytes(hex)));
            Assert.That(result, Is.EqualTo(TunnelReadResult.Complete));
            Assert.That(read, Is.EqualTo(new TunnelResponse(status, detail) { Version = TunnelCodec.Version2 }));
        });
    }

    [Test]
    public void DataFrameIsTheGoldenVector()
    {
        byte[] frame = new byte[TunnelFrames.HeaderLength + 5];
        TunnelFrames.WriteDataHeader(frame, 5);
        "hello"u8.CopyTo(frame.AsSpan(TunnelFrames.HeaderLength));

        Assert.That(frame, Is.EqualTo(Hex.Bytes("00 00 00 05 68 65 6C 6C 6F")));
    }

    [TestCase(TunnelEndCause.Fin, "01 00 00 01 00")]
    [TestCase(TunnelEndCause.Reset, "01 00 00 01 01")]
    [TestCase(TunnelEndCause.Error, "01 00 00 01 02")]
    [TestCase(TunnelEndCause.IdleTimeout, "01 00 00 01 03")]
    [TestCase(TunnelEndCause.Stopping, "01 00 00 01 04")]
    [TestCase(TunnelEndCause.ProtocolError, "01 00 00 01 05")]
    [TestCase(TunnelEndCause.Refused, "01 00 00 01 06")]
    public void EndFrameIsTheGoldenVectorAndReadsBack(object causeValue, string hex)
    {
        var cause = (TunnelEndCause)causeValue;
        byte[] frame = new byte[TunnelFrames.EndFrameLength];
        int length = TunnelFrames.WriteEnd(frame, cause);
        var result = TunnelFrames.TryReadHeader(frame, out TunnelFrameHeader header);

        Assert.Multiple(() =>
        {
            Assert.That(frame[..length], Is.EqualTo(Hex.Bytes(hex)));
            Assert.That(result, Is.EqualTo(TunnelFrameResult.Complete));
            Assert.That(header, Is.EqualTo(new TunnelFrameHeader(TunnelFrameType.End, 0, cause)));
            Assert.That(header.Length, Is.EqualTo(5));
        });
    }

    [TestCase("", TunnelFrameResult.Incomplete)]
    [TestCase("00 00 00", TunnelFrameResult.Incomplete)]
    [TestCase("01 00 00 01", TunnelFrameResult.Incomplete, TestName = "{m}(END without its cause byte)")]
    [TestCase("02", TunnelFrameResult.UnknownType, TestName = "{m}(unknown type, from the first byte)")]
    [TestCase("FF FF FF FF", TunnelFrameResult.UnknownType)]
    [TestCase("00 00 00 00", TunnelFrameResult.EmptyData)]
    [TestCase("01 00 00 00", TunnelFrameResult.InvalidEndLength)]
    [TestCase("01 00 00 02 00 00", TunnelFrameResult.InvalidEndLength)]
    [TestCase("01 FF FF FF", TunnelFrameResult.InvalidEndLength)]
    public void HostileOrShortHeaderGivesItsResult(string hex, object expectedValue)
    {
        var expected = (TunnelFrameResult)expectedValue;
        Assert.That(TunnelFrames.TryReadHeader(Hex.Bytes(hex), out _), Is.EqualTo(expected));
    }

    [Test]
    public void LargestDataFrameIsAcceptedWithoutItsPayload()
    {
        var result = TunnelFrames.TryReadHeader(Hex.Bytes("00 FF FF FF"), out TunnelFrameHeader header);

        Assert.Multiple(() =>
        {
            Assert.That(result, Is.EqualTo(TunnelFrameResult.Complete), "the reader never needs the payload in memory");
            Assert.That(header.PayloadLength, Is.EqualTo(TunnelFrames.MaxDataLength));
        });
    }

    [Test]
    public void UnknownEndCauseReadsAsItIs()
    {
        var result = TunnelFrames.TryReadHeader(Hex.Bytes("01 00 00 01 63"), out TunnelFrameHeader header);

        Assert.That((result, (byte)header.Cause), Is.EqualTo((TunnelFrameResult.Complete, (byte)0x63)), "a future cause is kept (and is an abort)");
    }

    [TestCase(0)]
    [TestCase(TunnelFrames.MaxDataLength + 1)]
    public void DataHeaderRefusesALengthTheFormatCannotCarry(int length)
    {
        Assert.That(() => TunnelFrames.WriteDataHeader(new byte[4], length), Throws.InstanceOf<ArgumentOutOfRangeException>());
    }

    [Test]
    public void ProbeFallsBackToVersion1AndAsksAgainAfterTheInterval()
    {
        var time = new FakeTimeProvider();
        var probe = new TunnelVersionProbe(time);
        byte first = probe.NextVersion;
        var refused = probe.RefusedVersion2();
        byte during = probe.NextVersion;
        time.Advance(TunnelVersionProbe.ReprobeInterval);
        byte after = probe.NextVersion;
        var again = probe.RefusedVersion2();
        time.Advance(TunnelVersionProbe.ReprobeInterval);
        var upgraded = probe.AcceptedVersion2();

        Assert.Multiple(() =>
        {
            Assert.That(first, Is.EqualTo(TunnelCodec.Version2));
            Assert.That(refused, Is.EqualTo(TunnelVersionNews.Version1Only), "the first refusal is news (a Warning)");
            Assert.That(during, Is.EqualTo(TunnelCodec.Version));
            Assert.That(after, Is.EqualTo(TunnelCodec.Version2), "re-probed after the interval");
            Assert.That(again, Is.EqualTo(TunnelVersionNews.StillVersion1Only), "not warned twice");
            Assert.That(upgraded, Is.EqualTo(TunnelVersionNews.Version2Again));
            Assert.That(probe.NextVersion, Is.EqualTo(TunnelCodec.Version2));
        });
    }
}
