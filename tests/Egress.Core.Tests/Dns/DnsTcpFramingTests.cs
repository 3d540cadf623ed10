using System.Buffers;
using Egress.Dns;
using Egress.Dns.Wire;
using Egress.Tests.Tunnel;

namespace Egress.Tests.Dns;

public sealed class DnsTcpFramingTests
{
    private static readonly byte[] s_query = Hex.Bytes("AB CD 01 00 00 01 00 00 00 00 00 00 07 65 78 61 6D 70 6C 65 03 63 6F 6D 00 00 01 00 01");

    [Test]
    public void WriteMessagePrefixesBigEndianLength()
    {
        byte[] destination = new byte[s_query.Length + 2];

        Assert.Multiple(() =>
        {
            Assert.That(DnsTcpFraming.WriteMessage(s_query, destination), Is.EqualTo(31));
            Assert.That(destination, Is.EqualTo(Sequences.Concat([0x00, 0x1D], s_query)));
        });
    }

    [Test]
    public void BufferWriterOverloadWritesSameBytes()
    {
        var writer = new ArrayBufferWriter<byte>();
        DnsTcpFraming.WriteMessage(writer, s_query);
        DnsTcpFraming.WriteMessage(writer, [0x42]);

        Assert.That(writer.WrittenSpan.ToArray(), Is.EqualTo(Sequences.Concat([0x00, 0x1D], s_query, [0x00, 0x01, 0x42])));
    }

    [Test]
    public void SeveralMessagesInOneBufferReadInOrder()
    {
        byte[] second = [1, 2, 3];
        byte[] third = new byte[300];
        Array.Fill(third, (byte)7);
        var writer = new ArrayBufferWriter<byte>();
        DnsTcpFraming.WriteMessage(writer, s_query);
        DnsTcpFraming.WriteMessage(writer, second);
        DnsTcpFraming.WriteMessage(writer, third);
        var buffer = new ReadOnlySequence<byte>(writer.WrittenMemory);

        var messages = new List<byte[]>();
        while (DnsTcpFraming.TryReadMessage(ref buffer, out ReadOnlySequence<byte> message) == DnsFrameResult.Complete)
        {
            messages.Add(message.ToArray());
        }

        Assert.Multiple(() =>
        {
            Assert.That(messages, Is.EqualTo(new[] { s_query, second, third }));
            Assert.That(buffer.IsEmpty, Is.True);
        });
    }

    [Test]
    public void FrameSplitAtEveryByteIsIncompleteUntilWhole()
    {
        byte[] frame = Sequences.Concat([0x00, 0x1D], s_query);
        byte[] all = Sequences.Concat(frame, [0x00, 0x05]);

        for (int length = 0; length < frame.Length; length++)
        {
            var partial = Sequences.OneBytePerSegment(all[..length]);
            Assert.That(DnsTcpFraming.TryReadMessage(ref partial, out _), Is.EqualTo(DnsFrameResult.Incomplete), $"after {length} bytes");
            Assert.That(partial.Length, Is.EqualTo(length), "untouched");
        }

        var buffer = Sequences.OneBytePerSegment(all);
        Assert.That(DnsTcpFraming.TryReadMessage(ref buffer, out ReadOnlySequence<byte> message), Is.EqualTo(DnsFrameResult.Complete));
        Assert.That(message.ToArray(), Is.EqualTo(s_query));
        Assert.That(buffer.ToArray(), Is.EqualTo(new byte[] { 0x00, 0x05 }), "next frame's prefix left for the caller");
    }

    [Test]
    public void ZeroLengthFrameIsEmptyAndUntouched()
    {
        var buffer = new ReadOnlySequence<byte>(Hex.Bytes("00 00 00 01 42"));

        Assert.Multiple(() =>
        {
            Assert.That(DnsTcpFraming.TryReadMessage(ref buffer, out ReadOnlySequence<byte> message), Is.EqualTo(DnsFrameResult.Empty));
            Assert.That(message.IsEmpty, Is.True);
            Assert.That(buffer.Length, Is.EqualTo(5));
        });
    }

    [Test]
    public void FrameAboveTheLimitIsTooLargeAndUntouched()
    {
        var buffer = new ReadOnlySequence<byte>(Hex.Bytes("02 01 42"));

        Assert.Multiple(() =>
        {
            Assert.That(DnsTcpFraming.TryReadMessage(ref buffer, 512, out ReadOnlySequence<byte> message), Is.EqualTo(DnsFrameResult.TooLarge));
            Assert.That(message.IsEmpty, Is.True);
            Assert.That(buffer.Length, Is.EqualTo(3));
        });
    }

    [Test]
    public void MaximumSizeMessageRoundTrips()
    {
        byte[] message = new byte[DnsTcpFraming.MaxMessageLength];
        new Random(1035).NextBytes(message);
        var writer = new ArrayBufferWriter<byte>();
        DnsTcpFraming.WriteMessage(writer, message);
        byte[] framed = writer.WrittenSpan.ToArray();
        var buffer = Sequences.Split(framed, [1, 4096, 40000]);
        var shortByOne = new ReadOnlySequence<byte>(framed, 0, framed.Length - 1);

        Assert.Multiple(() =>
        {
            Assert.That(framed[..2], Is.EqualTo(new byte[] { 0xFF, 0xFF }));
            Assert.That(DnsTcpFraming.TryReadMessage(ref shortByOne, out _), Is.EqualTo(DnsFrameResult.Incomplete));
            Assert.That(DnsTcpFraming.TryReadMessage(ref buffer, out ReadOnlySequence<byte> read), Is.EqualTo(DnsFrameResult.Complete));
            Assert.That(read.ToArray(), Is.EqualTo(message));
        });
    }

    [Test]
    public void WritingOversizeOrEmptyMessageThrows()
    {
        byte[] oversize = new byte[DnsTcpFraming.MaxMessageLength + 1];

        Assert.Multiple(() =>
        {
            Assert.That(() => DnsTcpFraming.WriteMessage(new ArrayBufferWriter<byte>(), oversize), Throws.ArgumentException.With.Property("ParamName").EqualTo("message"));
            Assert.That(() => DnsTcpFraming.WriteMessage(oversize, new byte[oversize.Length + 2]), Throws.ArgumentException.With.Property("ParamName").EqualTo("message"));
            Assert.That(() => DnsTcpFraming.WriteMessage(ReadOnlySpan<byte>.Empty, new byte[2]), Throws.ArgumentException.With.Property("ParamName").EqualTo("message"));
        });
    }

    [Test]
    public void WritingIntoTooSmallSpanThrows() =>
        Assert.That(() => DnsTcpFraming.WriteMessage(s_query, new byte[s_query.Length + 1]), Throws.ArgumentException.With.Property("ParamName").EqualTo("destination"));

    [Test]
    [NonParallelizable]
    public void ReadAndWriteAllocateNothing()
    {
        byte[] destination = new byte[s_query.Length + 2];

        int Run(int iterations)
        {
            int complete = 0;
            for (int i = 0; i < iterations; i++)
            {
                var buffer = new ReadOnlySequence<byte>(destination, 0, DnsTcpFraming.WriteMessage(s_query, destination));
                if (DnsTcpFraming.TryReadMessage(ref buffer, out ReadOnlySequence<byte> message) == DnsFrameResult.Complete && message.Length == s_query.Length)
                {
                    complete++;
                }
            }

            return complete;
        }

        int rounds = 0;
        int complete = 0;
        long allocated = Allocations.LeastPerRound(() =>
        {
            rounds++;
            complete += Run(2000);
        });

        Assert.Multiple(() =>
        {
            Assert.That(complete, Is.EqualTo(rounds * 2000));
            Assert.That(allocated, Is.Zero);
        });
    }
}
