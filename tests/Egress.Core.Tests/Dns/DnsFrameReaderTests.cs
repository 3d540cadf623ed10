using System.Buffers;
using System.IO.Pipelines;
using Egress.Dns;
using Egress.Dns.Wire;
using Egress.Tests.Tunnel;

namespace Egress.Tests.Dns;

/// <summary>The one reader of DNS streams: hostile and fragmented input as a peer would send it through a pipe.</summary>
public sealed class DnsFrameReaderTests
{
    private static readonly byte[] s_query = Hex.Bytes("AB CD 01 00 00 01 00 00 00 00 00 00 07 65 78 61 6D 70 6C 65 03 63 6F 6D 00 00 01 00 01");
    private static readonly TimeSpan HangGuard = TimeSpan.FromSeconds(10);

    [Test]
    public async Task FramesWrittenOneByteAtATimeReadWhole()
    {
        byte[] stream = [.. Frame(s_query), .. Frame([0x42]), .. Frame(s_query)];
        var pipe = new Pipe();
        var reader = new DnsFrameReader(pipe.Reader);
        Task writing = WriteAsync(pipe.Writer, stream, chunk: 1);

        var messages = new List<byte[]>();
        DnsStreamRead read;
        while ((read = await reader.ReadAsync(CancellationToken.None).AsTask().WaitAsync(HangGuard)) == DnsStreamRead.Message)
        {
            messages.Add(reader.Message.ToArray());
        }

        await writing;
        Assert.Multiple(() =>
        {
            Assert.That(messages, Is.EqualTo(new[] { s_query, [0x42], s_query }));
            Assert.That(read, Is.EqualTo(DnsStreamRead.Closed));
        });
    }

    [Test]
    public async Task FramesInOneWriteAreReadWithoutAnotherPipeRead()
    {
        var pipe = new Pipe();
        await pipe.Writer.WriteAsync(new byte[][] { Frame(s_query), Frame(s_query) }.SelectMany(b => b).ToArray());
        var reader = new DnsFrameReader(pipe.Reader);

        Assert.Multiple(async () =>
        {
            Assert.That(await reader.ReadAsync(CancellationToken.None), Is.EqualTo(DnsStreamRead.Message));
            ValueTask<DnsStreamRead> second = reader.ReadAsync(CancellationToken.None);
            Assert.That(second.IsCompletedSuccessfully, Is.True, "the second frame was already buffered");
            Assert.That(await second, Is.EqualTo(DnsStreamRead.Message));
            Assert.That(reader.Message.ToArray(), Is.EqualTo(s_query));
        });
    }

    [Test]
    public async Task ZeroLengthFrameEndsTheStream()
    {
        var pipe = new Pipe();
        await pipe.Writer.WriteAsync((byte[])[.. Frame(s_query), 0x00, 0x00, .. Frame(s_query)]);
        var reader = new DnsFrameReader(pipe.Reader);

        Assert.Multiple(async () =>
        {
            Assert.That(await reader.ReadAsync(CancellationToken.None), Is.EqualTo(DnsStreamRead.Message));
            Assert.That(await reader.ReadAsync(CancellationToken.None), Is.EqualTo(DnsStreamRead.EmptyFrame));
            Assert.That(reader.Message.IsEmpty, Is.True);
            Assert.That(() => reader.ReadAsync(CancellationToken.None).AsTask(), Throws.InvalidOperationException, "nothing is read past the end");
        });
    }

    [Test]
    public async Task FrameAboveTheLimitEndsTheStreamBeforeItsMessageArrives()
    {
        var pipe = new Pipe();
        await pipe.Writer.WriteAsync((byte[])[0x02, 0x01]); // declares 513 bytes; none of them sent
        var reader = new DnsFrameReader(pipe.Reader, maxMessageLength: 512);

        DnsStreamRead read = await reader.ReadAsync(CancellationToken.None).AsTask().WaitAsync(HangGuard);

        Assert.That(read, Is.EqualTo(DnsStreamRead.TooLarge));
    }

    [Test]
    public async Task FrameAtTheLimitIsRead()
    {
        byte[] message = new byte[512];
        message[0] = 0x42;
        var pipe = new Pipe();
        await pipe.Writer.WriteAsync(Frame(message));
        var reader = new DnsFrameReader(pipe.Reader, maxMessageLength: 512);

        Assert.Multiple(async () =>
        {
            Assert.That(await reader.ReadAsync(CancellationToken.None), Is.EqualTo(DnsStreamRead.Message));
            Assert.That(reader.Message.ToArray(), Is.EqualTo(message));
        });
    }

    [TestCase(1, TestName = "EndOfStreamInsideThePrefixIsTruncated")]
    [TestCase(2, TestName = "EndOfStreamAfterThePrefixIsTruncated")]
    [TestCase(30, TestName = "EndOfStreamOneByteShortOfTheMessageIsTruncated")]
    public async Task EndOfStreamMidFrameIsTruncated(int sent)
    {
        var pipe = new Pipe();
        byte[] frame = Frame(s_query);
        await pipe.Writer.WriteAsync(frame.AsMemory(0, sent));
        await pipe.Writer.CompleteAsync();
        var reader = new DnsFrameReader(pipe.Reader);

        Assert.That(await reader.ReadAsync(CancellationToken.None).AsTask().WaitAsync(HangGuard), Is.EqualTo(DnsStreamRead.Truncated));
    }

    [Test]
    public async Task EndOfStreamAtAFrameBoundaryIsClosed()
    {
        var pipe = new Pipe();
        await pipe.Writer.WriteAsync(Frame(s_query));
        await pipe.Writer.CompleteAsync();
        var reader = new DnsFrameReader(pipe.Reader);

        Assert.Multiple(async () =>
        {
            Assert.That(await reader.ReadAsync(CancellationToken.None), Is.EqualTo(DnsStreamRead.Message));
            Assert.That(await reader.ReadAsync(CancellationToken.None), Is.EqualTo(DnsStreamRead.Closed));
        });
    }

    [Test]
    public async Task CancellationWhileWaitingThrows()
    {
        var pipe = new Pipe();
        var reader = new DnsFrameReader(pipe.Reader);
        using var cancel = new CancellationTokenSource();
        Task<DnsStreamRead> read = reader.ReadAsync(cancel.Token).AsTask();
        await cancel.CancelAsync();

        Assert.That(async () => await read.WaitAsync(HangGuard), Throws.InstanceOf<OperationCanceledException>());
    }

    private static byte[] Frame(byte[] message)
    {
        var writer = new ArrayBufferWriter<byte>();
        DnsTcpFraming.WriteMessage(writer, message);
        return writer.WrittenSpan.ToArray();
    }

    private static async Task WriteAsync(PipeWriter writer, byte[] bytes, int chunk)
    {
        for (int offset = 0; offset < bytes.Length; offset += chunk)
        {
            await writer.WriteAsync(bytes.AsMemory(offset, Math.Min(chunk, bytes.Length - offset)));
        }

        await writer.CompleteAsync();
    }
}
