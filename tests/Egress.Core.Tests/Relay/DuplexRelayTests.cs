using System.IO.Pipelines;
using System.Text;
using Egress.Relay;

namespace Egress.Tests.Relay;

public sealed class DuplexRelayTests
{
    private static readonly RelayOptions NoTimeout = new() { IdleTimeout = null };

    /// <summary>A library user's trial: the same socket on both sides hung, ignoring its cancellation token.</summary>
    [Test]
    public void TheSamePipeOnBothSidesIsAnArgumentException()
    {
        var a = new PipePeer();
        var error = Assert.Throws<ArgumentException>(() => DuplexRelay.RunAsync(a.Side, a.Side, NoTimeout, CancellationToken.None));
        Assert.That(error!.ParamName, Is.EqualTo("b"));
    }

    [Test]
    public async Task EndOfStreamFromAHalfClosesBWhileBToAKeepsFlowing()
    {
        var a = new PipePeer();
        var b = new PipePeer();
        Task<RelayResult> run = DuplexRelay.RunAsync(a.Side, b.Side, NoTimeout, CancellationToken.None);

        await a.Writer.WriteAsync("request"u8.ToArray());
        await a.Writer.CompleteAsync();
        byte[] atB = await PipeIo.ReadToEndAsync(b.Reader); // returns only once b.Output was completed cleanly

        await b.Writer.WriteAsync("response-1"u8.ToArray());
        Assert.That(Encoding.ASCII.GetString(await PipeIo.ReadExactlyAsync(a.Reader, 10)), Is.EqualTo("response-1"));
        Assert.That(run.IsCompleted, Is.False, "the relay must wait for B's end of stream");
        await b.Writer.WriteAsync("response-2"u8.ToArray());
        await b.Writer.CompleteAsync();
        byte[] rest = await PipeIo.ReadToEndAsync(a.Reader);
        RelayResult result = await run;

        Assert.Multiple(() =>
        {
            Assert.That(Encoding.ASCII.GetString(atB), Is.EqualTo("request"));
            Assert.That(Encoding.ASCII.GetString(rest), Is.EqualTo("response-2"));
            Assert.That(result.FirstCause, Is.EqualTo(RelayShutdownCause.BothCompleted));
            Assert.That(result.Error, Is.Null);
            Assert.That(result.BytesAToB, Is.EqualTo(7));
            Assert.That(result.BytesBToA, Is.EqualTo(20));
        });
    }

    [Test]
    public async Task EndOfStreamFromBHalfClosesAWhileAToBKeepsFlowing()
    {
        var a = new PipePeer();
        var b = new PipePeer();
        Task<RelayResult> run = DuplexRelay.RunAsync(a.Side, b.Side, NoTimeout, CancellationToken.None);

        await b.Writer.WriteAsync("banner"u8.ToArray());
        await b.Writer.CompleteAsync();
        byte[] atA = await PipeIo.ReadToEndAsync(a.Reader);

        await a.Writer.WriteAsync("late-upload"u8.ToArray());
        Assert.That(Encoding.ASCII.GetString(await PipeIo.ReadExactlyAsync(b.Reader, 11)), Is.EqualTo("late-upload"));
        await a.Writer.CompleteAsync();
        byte[] rest = await PipeIo.ReadToEndAsync(b.Reader);
        RelayResult result = await run;

        Assert.Multiple(() =>
        {
            Assert.That(Encoding.ASCII.GetString(atA), Is.EqualTo("banner"));
            Assert.That(rest, Is.Empty);
            Assert.That(result.FirstCause, Is.EqualTo(RelayShutdownCause.BothCompleted));
            Assert.That(result.BytesAToB, Is.EqualTo(11));
            Assert.That(result.BytesBToA, Is.EqualTo(6));
        });
    }

    [Test]
    public async Task ReadErrorOnAAbortsBothSidesAndCompletesEveryEnd()
    {
        var a = new PipePeer();
        var b = new PipePeer();
        Task<RelayResult> run = DuplexRelay.RunAsync(a.Side, b.Side, NoTimeout, CancellationToken.None);
        await a.Writer.WriteAsync("partial"u8.ToArray());
        Assert.That(await PipeIo.ReadExactlyAsync(b.Reader, 7), Is.EqualTo("partial"u8.ToArray()));

        var reset = new IOException("connection reset by peer");
        await a.Writer.CompleteAsync(reset);
        RelayResult result = await run;

        Assert.Multiple(() =>
        {
            Assert.That(result.FirstCause, Is.EqualTo(RelayShutdownCause.AReadError));
            Assert.That(result.Error, Is.SameAs(reset));
            Assert.That(result.BytesAToB, Is.EqualTo(7));
            Assert.That(result.BytesBToA, Is.Zero);
        });
        AssertOpenEndsFailedWith(a, b, reset);
    }

    [Test]
    public async Task ReadErrorOnBAbortsBothSidesAndCompletesEveryEnd()
    {
        var a = new PipePeer();
        var b = new PipePeer();
        Task<RelayResult> run = DuplexRelay.RunAsync(a.Side, b.Side, NoTimeout, CancellationToken.None);
        await a.Writer.CompleteAsync(); // A half-closes: its direction finishes cleanly...
        Assert.That(await PipeIo.ReadToEndAsync(b.Reader), Is.Empty, "B.Output is half-closed cleanly before the error");

        var reset = new IOException("upstream reset"); // ...and only then does B fail
        await b.Writer.CompleteAsync(reset);
        RelayResult result = await run;

        Assert.Multiple(() =>
        {
            Assert.That(result.FirstCause, Is.EqualTo(RelayShutdownCause.BReadError));
            Assert.That(result.Error, Is.SameAs(reset));
        });
        Assert.ThrowsAsync<IOException>(async () => await PipeIo.ReadToEndAsync(a.Reader));
    }

    [Test]
    public async Task WriteErrorOnBAbortsBothSides()
    {
        var a = new PipePeer();
        var b = new PipePeer();
        Task<RelayResult> run = DuplexRelay.RunAsync(a.Side, b.Side, NoTimeout, CancellationToken.None);

        var broken = new IOException("broken pipe");
        b.Reader.Complete(broken); // B's consumer (its socket's send loop) failed
        await a.Writer.WriteAsync("data"u8.ToArray());
        RelayResult result = await run;

        Assert.Multiple(() =>
        {
            Assert.That(result.FirstCause, Is.EqualTo(RelayShutdownCause.BWriteError));
            Assert.That(result.Error, Is.SameAs(broken));
            Assert.That(result.BytesAToB, Is.Zero);
        });
        IOException? seen = Assert.ThrowsAsync<IOException>(async () => await PipeIo.ReadToEndAsync(a.Reader));
        Assert.That(seen, Is.SameAs(broken));
        Assert.ThrowsAsync<IOException>(async () => await a.Writer.FlushAsync());
        Assert.ThrowsAsync<IOException>(async () => await b.Writer.FlushAsync());
    }

    [Test]
    public async Task OutputWhoseConsumerStoppedEndsOnlyThatDirection()
    {
        var a = new PipePeer();
        var b = new PipePeer();
        Task<RelayResult> run = DuplexRelay.RunAsync(a.Side, b.Side, NoTimeout, CancellationToken.None);

        b.Reader.Complete(); // B stopped reading, without an error
        await a.Writer.WriteAsync("dropped"u8.ToArray());
        await PipeIo.WaitForReaderCompletionAsync(a.Writer); // the relay stops reading A once B cannot take data

        await b.Writer.WriteAsync("still-flowing"u8.ToArray());
        await b.Writer.CompleteAsync();
        byte[] atA = await PipeIo.ReadToEndAsync(a.Reader);
        RelayResult result = await run;

        Assert.Multiple(() =>
        {
            Assert.That(Encoding.ASCII.GetString(atA), Is.EqualTo("still-flowing"));
            Assert.That(result.FirstCause, Is.EqualTo(RelayShutdownCause.BOutputClosed));
            Assert.That(result.Error, Is.Null);
            Assert.That(result.BytesAToB, Is.Zero);
            Assert.That(result.BytesBToA, Is.EqualTo(13));
        });
    }

    [Test]
    public async Task CancellationAbortsBothSides()
    {
        var a = new PipePeer();
        var b = new PipePeer();
        using var cts = new CancellationTokenSource();
        Task<RelayResult> run = DuplexRelay.RunAsync(a.Side, b.Side, NoTimeout, cts.Token);
        await a.Writer.WriteAsync("x"u8.ToArray());
        Assert.That(await PipeIo.ReadExactlyAsync(b.Reader, 1), Is.EqualTo("x"u8.ToArray()));

        await cts.CancelAsync();
        RelayResult result = await run;

        Assert.Multiple(() =>
        {
            Assert.That(result.FirstCause, Is.EqualTo(RelayShutdownCause.Cancelled));
            Assert.That(result.Error, Is.Null);
            Assert.That(result.BytesAToB, Is.EqualTo(1));
        });
        Assert.ThrowsAsync<OperationCanceledException>(async () => await PipeIo.ReadToEndAsync(a.Reader));
        Assert.ThrowsAsync<OperationCanceledException>(async () => await PipeIo.ReadToEndAsync(b.Reader));
        Assert.ThrowsAsync<OperationCanceledException>(async () => await a.Writer.FlushAsync());
        Assert.ThrowsAsync<OperationCanceledException>(async () => await b.Writer.FlushAsync());
    }

    [Test]
    public async Task AlreadyCancelledTokenEndsTheRelayAtOnce()
    {
        var a = new PipePeer();
        var b = new PipePeer();
        RelayResult result = await DuplexRelay.RunAsync(a.Side, b.Side, NoTimeout, new CancellationToken(canceled: true));

        Assert.That(result.FirstCause, Is.EqualTo(RelayShutdownCause.Cancelled));
        Assert.ThrowsAsync<OperationCanceledException>(async () => await PipeIo.ReadToEndAsync(b.Reader));
    }

    [Test]
    public async Task FirstCauseWinsAndLaterCausesDoNotOverwrite()
    {
        var a = new PipePeer();
        var b = new PipePeer();
        var session = new RelaySession(a.Side, b.Side, NoTimeout);
        Task<RelayResult> run = session.RunAsync(CancellationToken.None);

        var first = new IOException("first");
        var second = new IOException("second");
        session.Abort(RelayShutdownCause.BWriteError, first);
        session.Abort(RelayShutdownCause.AReadError, second);
        session.Abort(RelayShutdownCause.IdleTimeout, null);
        await a.Writer.CompleteAsync(new IOException("third"));
        RelayResult result = await run;

        Assert.Multiple(() =>
        {
            Assert.That(result.FirstCause, Is.EqualTo(RelayShutdownCause.BWriteError));
            Assert.That(result.Error, Is.SameAs(first));
        });
        Assert.That(Assert.ThrowsAsync<IOException>(async () => await PipeIo.ReadToEndAsync(a.Reader)), Is.SameAs(first));
    }

    [Test]
    public async Task ErrorAfterAnEarlierCauseKeepsTheCauseButReportsTheError()
    {
        var a = new PipePeer();
        var b = new PipePeer();
        Task<RelayResult> run = DuplexRelay.RunAsync(a.Side, b.Side, NoTimeout, CancellationToken.None);

        b.Reader.Complete();
        await a.Writer.WriteAsync("x"u8.ToArray());
        await PipeIo.WaitForReaderCompletionAsync(a.Writer);
        var reset = new IOException("later reset");
        await b.Writer.CompleteAsync(reset);
        RelayResult result = await run;

        Assert.Multiple(() =>
        {
            Assert.That(result.FirstCause, Is.EqualTo(RelayShutdownCause.BOutputClosed));
            Assert.That(result.Error, Is.SameAs(reset));
        });
    }

    [Test]
    public async Task SlowDestinationBoundsBufferedBytes()
    {
        const int pause = 16 * 1024;
        const int total = 2 * 1024 * 1024;
        var slow = new PipeOptions(pauseWriterThreshold: pause, resumeWriterThreshold: pause / 2, useSynchronizationContext: false);
        var a = new PipePeer(toRelay: slow);
        var b = new PipePeer(fromRelay: slow);
        Task<RelayResult> run = DuplexRelay.RunAsync(a.Side, b.Side, NoTimeout, CancellationToken.None);
        byte[] payload = RandomBytes(total, seed: 7);
        Task send = PipeIo.WriteChunkedAsync(a.Writer, payload, [4096], complete: true);

        long maxUnread = 0;
        long received = 0;
        using var sha = System.Security.Cryptography.IncrementalHash.CreateHash(System.Security.Cryptography.HashAlgorithmName.SHA256);
        while (true)
        {
            ReadResult read = await b.Reader.ReadAsync();
            maxUnread = Math.Max(maxUnread, read.Buffer.Length);
            var take = read.Buffer.Slice(0, Math.Min(read.Buffer.Length, 1024));
            foreach (ReadOnlyMemory<byte> segment in take)
            {
                sha.AppendData(segment.Span);
            }

            received += take.Length;
            b.Reader.AdvanceTo(take.End);
            if (read.IsCompleted && take.Length == read.Buffer.Length)
            {
                break;
            }

            await Task.Yield();
        }

        await send;
        await b.Writer.CompleteAsync();
        RelayResult result = await run;

        Assert.Multiple(() =>
        {
            Assert.That(received, Is.EqualTo(total));
            Assert.That(sha.GetHashAndReset(), Is.EqualTo(System.Security.Cryptography.SHA256.HashData(payload)));
            Assert.That(maxUnread, Is.LessThanOrEqualTo(pause + RelaySession.MaxChunk));
            Assert.That(result.BytesAToB, Is.EqualTo(total));
        });
    }

    internal static byte[] RandomBytes(int count, int seed)
    {
        byte[] data = new byte[count];
        new Random(seed).NextBytes(data);
        return data;
    }

    /// <summary>a.Input failed first (the test completed its writer); the relay must fail the other three ends with the same error.</summary>
    private static void AssertOpenEndsFailedWith(PipePeer a, PipePeer b, Exception error)
    {
        Assert.That(Assert.ThrowsAsync<IOException>(async () => await PipeIo.ReadToEndAsync(a.Reader)), Is.SameAs(error), "a.Output");
        Assert.That(Assert.ThrowsAsync<IOException>(async () => await PipeIo.ReadToEndAsync(b.Reader)), Is.SameAs(error), "b.Output");
        Assert.That(Assert.ThrowsAsync<IOException>(async () => await b.Writer.FlushAsync()), Is.SameAs(error), "b.Input");
    }
}
