using System.Buffers;
using System.IO.Pipelines;
using System.Net;
using Egress.Tunnel;

namespace Egress.Tests.Tunnel;

public sealed class TunnelCodecFragmentationTests
{
    private static readonly byte[] s_relay = [0x16, 0x03, 0x01, 0x00, 0xA5, 0x01];

    private static IEnumerable<TestCaseData> Requests()
    {
        yield return new TestCaseData(TunnelRequest.ForTcp(new IPEndPoint(IPAddress.Parse("198.51.100.7"), 443), "api.example.com")).SetName("{m}(v4 with hint)");
        yield return new TestCaseData(TunnelRequest.ForTcp(new IPEndPoint(IPAddress.Parse("2001:db8::1"), 587), null)).SetName("{m}(v6)");
        yield return new TestCaseData(TunnelRequest.ForDns()).SetName("{m}(DNS)");
    }

    private static IEnumerable<TestCaseData> Responses()
    {
        yield return new TestCaseData(new TunnelResponse(TunnelStatus.Ok)).SetName("{m}(Ok)");
        yield return new TestCaseData(new TunnelResponse(TunnelStatus.Unreachable, "no route to 203.0.113.9")).SetName("{m}(Unreachable with detail)");
    }

    [TestCaseSource(nameof(Requests))]
    public void RequestFedOneBytePerSegmentIsIncompleteUntilLastByte(object requestValue)
    {
        var request = (TunnelRequest)requestValue;
        byte[] header = TunnelCodecRequestTests.Encode(request);
        byte[] all = Sequences.Concat(header, s_relay);

        for (int length = 0; length < header.Length; length++)
        {
            var partial = Sequences.OneBytePerSegment(all[..length]);
            Assert.That(TunnelCodec.TryReadRequest(ref partial, out _), Is.EqualTo(TunnelReadResult.Incomplete), $"after {length} bytes");
            Assert.That(partial.Length, Is.EqualTo(length), "untouched");
        }

        for (int length = header.Length; length <= all.Length; length++)
        {
            var buffer = Sequences.OneBytePerSegment(all[..length]);
            Assert.That(TunnelCodec.TryReadRequest(ref buffer, out TunnelRequest decoded), Is.EqualTo(TunnelReadResult.Complete), $"after {length} bytes");
            Assert.That(decoded, Is.EqualTo(request));
            Assert.That(buffer.ToArray(), Is.EqualTo(all[header.Length..length]), "relay bytes preserved");
        }
    }

    [TestCaseSource(nameof(Responses))]
    public void ResponseFedOneBytePerSegmentIsIncompleteUntilLastByte(object responseValue)
    {
        var response = (TunnelResponse)responseValue;
        byte[] header = TunnelCodecResponseTests.Encode(response);
        byte[] all = Sequences.Concat(header, s_relay);

        for (int length = 0; length < header.Length; length++)
        {
            var partial = Sequences.OneBytePerSegment(all[..length]);
            Assert.That(TunnelCodec.TryReadResponse(ref partial, out _), Is.EqualTo(TunnelReadResult.Incomplete), $"after {length} bytes");
        }

        var buffer = Sequences.OneBytePerSegment(all);
        Assert.That(TunnelCodec.TryReadResponse(ref buffer, out TunnelResponse decoded), Is.EqualTo(TunnelReadResult.Complete));
        Assert.That(decoded, Is.EqualTo(response));
        Assert.That(buffer.ToArray(), Is.EqualTo(s_relay));
    }

    [TestCaseSource(nameof(Requests))]
    public async Task RequestThroughPipeFlushedOneByteAtATime(object requestValue)
    {
        var request = (TunnelRequest)requestValue;
        byte[] header = TunnelCodecRequestTests.Encode(request);
        var pipe = new Pipe();

        for (int i = 0; i < header.Length; i++)
        {
            await pipe.Writer.WriteAsync(header.AsMemory(i, 1));
            ReadResult read = await pipe.Reader.ReadAsync();
            ReadOnlySequence<byte> buffer = read.Buffer;
            TunnelReadResult result = TunnelCodec.TryReadRequest(ref buffer, out TunnelRequest decoded);
            if (i < header.Length - 1)
            {
                Assert.That(result, Is.EqualTo(TunnelReadResult.Incomplete), $"after {i + 1} bytes");
                Assert.That(read.Buffer.Length, Is.EqualTo(i + 1), "earlier bytes were not consumed");
                pipe.Reader.AdvanceTo(read.Buffer.Start, read.Buffer.End);
            }
            else
            {
                Assert.That(result, Is.EqualTo(TunnelReadResult.Complete));
                Assert.That(decoded, Is.EqualTo(request));
                pipe.Reader.AdvanceTo(buffer.Start);
            }
        }

        await pipe.Writer.WriteAsync(s_relay);
        await pipe.Writer.CompleteAsync();
        Assert.That(await ReadToEndAsync(pipe.Reader), Is.EqualTo(s_relay));
    }

    [TestCaseSource(nameof(Requests))]
    public async Task ReadRequestAsyncWaitsForLastByteAndLeavesRelayBytes(object requestValue)
    {
        var request = (TunnelRequest)requestValue;
        byte[] all = Sequences.Concat(TunnelCodecRequestTests.Encode(request), s_relay);
        int headerLength = all.Length - s_relay.Length;
        var pipe = new Pipe(new PipeOptions(readerScheduler: PipeScheduler.Inline, writerScheduler: PipeScheduler.Inline, useSynchronizationContext: false));

        ValueTask<(TunnelReadResult Result, TunnelRequest Request)> reading = TunnelCodec.ReadRequestAsync(pipe.Reader, CancellationToken.None);
        for (int i = 0; i < all.Length; i++)
        {
            Assert.That(reading.IsCompleted, Is.EqualTo(i >= headerLength), $"completion after {i} bytes");
            await pipe.Writer.WriteAsync(all.AsMemory(i, 1));
        }

        await pipe.Writer.CompleteAsync();
        var (result, decoded) = await reading;

        Assert.Multiple(async () =>
        {
            Assert.That(result, Is.EqualTo(TunnelReadResult.Complete));
            Assert.That(decoded, Is.EqualTo(request));
            Assert.That(await ReadToEndAsync(pipe.Reader), Is.EqualTo(s_relay));
        });
    }

    [TestCaseSource(nameof(Responses))]
    public async Task ReadResponseAsyncWaitsForLastByteAndLeavesRelayBytes(object responseValue)
    {
        var response = (TunnelResponse)responseValue;
        byte[] all = Sequences.Concat(TunnelCodecResponseTests.Encode(response), s_relay);
        int headerLength = all.Length - s_relay.Length;
        var pipe = new Pipe(new PipeOptions(readerScheduler: PipeScheduler.Inline, writerScheduler: PipeScheduler.Inline, useSynchronizationContext: false));

        ValueTask<(TunnelReadResult Result, TunnelResponse Response)> reading = TunnelCodec.ReadResponseAsync(pipe.Reader, CancellationToken.None);
        for (int i = 0; i < all.Length; i++)
        {
            Assert.That(reading.IsCompleted, Is.EqualTo(i >= headerLength), $"completion after {i} bytes");
            await pipe.Writer.WriteAsync(all.AsMemory(i, 1));
        }

        await pipe.Writer.CompleteAsync();
        var (result, decoded) = await reading;

        Assert.Multiple(async () =>
        {
            Assert.That(result, Is.EqualTo(TunnelReadResult.Complete));
            Assert.That(decoded, Is.EqualTo(response));
            Assert.That(await ReadToEndAsync(pipe.Reader), Is.EqualTo(s_relay));
        });
    }

    [Test]
    public async Task ReadRequestAsyncReportsTruncatedStreamAtEveryPosition()
    {
        byte[] header = Hex.Bytes(TunnelCodecRequestTests.GoldenTcpV4WithHint);

        for (int length = 0; length < header.Length; length++)
        {
            var pipe = new Pipe();
            await pipe.Writer.WriteAsync(header.AsMemory(0, length));
            await pipe.Writer.CompleteAsync();

            var (result, request) = await TunnelCodec.ReadRequestAsync(pipe.Reader, CancellationToken.None);

            Assert.That(result, Is.EqualTo(TunnelReadResult.TruncatedStream), $"EOF after {length} bytes");
            Assert.That(request, Is.EqualTo(default(TunnelRequest)));
        }
    }

    [Test]
    public async Task ReadResponseAsyncReportsTruncatedStreamAtEveryPosition()
    {
        byte[] header = Hex.Bytes(TunnelCodecResponseTests.GoldenDenied);

        for (int length = 0; length < header.Length; length++)
        {
            var pipe = new Pipe();
            await pipe.Writer.WriteAsync(header.AsMemory(0, length));
            await pipe.Writer.CompleteAsync();

            var (result, _) = await TunnelCodec.ReadResponseAsync(pipe.Reader, CancellationToken.None);

            Assert.That(result, Is.EqualTo(TunnelReadResult.TruncatedStream), $"EOF after {length} bytes");
        }
    }

    [Test]
    public async Task ReadRequestAsyncReportsErrorWithoutWaitingAndConsumesNothing()
    {
        var pipe = new Pipe();
        await pipe.Writer.WriteAsync(Hex.Bytes("01 07"));

        var (result, _) = await TunnelCodec.ReadRequestAsync(pipe.Reader, CancellationToken.None);
        ReadResult after = await pipe.Reader.ReadAsync();

        Assert.Multiple(() =>
        {
            Assert.That(result, Is.EqualTo(TunnelReadResult.UnsupportedKind));
            Assert.That(after.Buffer.ToArray(), Is.EqualTo(Hex.Bytes("01 07")));
        });
    }

    [Test]
    public async Task ReadResponseAsyncReportsUnknownStatus()
    {
        var pipe = new Pipe();
        await pipe.Writer.WriteAsync(Hex.Bytes("01 C8 00"));

        var (result, _) = await TunnelCodec.ReadResponseAsync(pipe.Reader, CancellationToken.None);

        Assert.That(result, Is.EqualTo(TunnelReadResult.UnknownStatus));
    }

    [Test]
    public async Task ReadRequestAsyncThrowsWhenTokenIsCanceled()
    {
        var pipe = new Pipe();
        await pipe.Writer.WriteAsync(Hex.Bytes("01 01"));
        using var cancellation = new CancellationTokenSource();

        ValueTask<(TunnelReadResult, TunnelRequest)> reading = TunnelCodec.ReadRequestAsync(pipe.Reader, cancellation.Token);
        await cancellation.CancelAsync();

        Assert.That(async () => await reading, Throws.InstanceOf<OperationCanceledException>());
    }

    [Test]
    public async Task ReadResponseAsyncThrowsWhenPendingReadIsCanceled()
    {
        var pipe = new Pipe();
        await pipe.Writer.WriteAsync(Hex.Bytes("01"));

        ValueTask<(TunnelReadResult, TunnelResponse)> reading = TunnelCodec.ReadResponseAsync(pipe.Reader, CancellationToken.None);
        pipe.Reader.CancelPendingRead();

        Assert.That(async () => await reading, Throws.InstanceOf<OperationCanceledException>());
    }

    private static async Task<byte[]> ReadToEndAsync(PipeReader reader)
    {
        while (true)
        {
            ReadResult read = await reader.ReadAsync();
            if (read.IsCompleted)
            {
                byte[] bytes = read.Buffer.ToArray();
                reader.AdvanceTo(read.Buffer.End);
                return bytes;
            }

            reader.AdvanceTo(read.Buffer.Start, read.Buffer.End);
        }
    }
}
