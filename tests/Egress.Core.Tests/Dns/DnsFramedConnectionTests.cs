using System.IO.Pipelines;
using Egress.Dns;
using Egress.Dns.Wire;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;

namespace Egress.Tests.Dns;

public sealed class DnsFramedConnectionTests
{
    private static readonly TimeSpan HangGuard = TimeSpan.FromSeconds(10);

    // 1 query: only the blocked flush's own deadline can end it; 3 queries: the others also wait for the writer.
    [TestCase(1)]
    [TestCase(3)]
    public async Task PeerThatStopsReadingAnswersEndsTheConnectionAfterTheWriteTimeout(int queries)
    {
        var time = new DeadlineCountingTimeProvider(DnsFramedConnection.WriteTimeout);
        using var logs = new LogCapture();
        var toServer = new Pipe();
        // Nobody reads the server's output, and it holds at most 1 KiB: the first flush of a 2 KiB answer blocks.
        var fromServer = new Pipe(new PipeOptions(pauseWriterThreshold: 1024, resumeWriterThreshold: 512, useSynchronizationContext: false));
        var side = new DuplexPipe(toServer.Reader, fromServer.Writer);

        Task serving = DnsFramedConnection.ServeAsync(
            side, new FixedSizeAnswerer(2048), maxInFlight: 4, Timeout.InfiniteTimeSpan, time,
            logs.Factory.CreateLogger("test"), CancellationToken.None, CancellationToken.None);

        byte[] query = DnsQueryBytes.Build(1, "a.x.test");
        for (int i = 0; i < queries; i++)
        {
            DnsTcpFraming.WriteMessage(toServer.Writer, query);
        }

        await toServer.Writer.FlushAsync();
        await WaitUntilAsync(() => fromServer.Reader.TryRead(out ReadResult r) && Peek(fromServer.Reader, r));

        // The answer's bytes reach the pipe a moment before its deadline is armed: advancing the clock in between
        // would start the deadline late. Every answer arms one (the blocked flush, and each answer behind it).
        await WaitUntilAsync(() => time.DeadlinesArmed >= queries);

        time.Advance(DnsFramedConnection.WriteTimeout - TimeSpan.FromSeconds(1));
        await Task.Delay(100);
        Assert.That(serving.IsCompleted, Is.False, "still within the write timeout");

        time.Advance(TimeSpan.FromSeconds(1));
        await serving.WaitAsync(HangGuard);
        Assert.That(logs.Values(317, "Seconds"), Is.EqualTo(new[] { "10" }));
    }

    [Test]
    public async Task WholeQueriesBeforeAStreamThatEndsMidFrameAreAnsweredAndServingEnds()
    {
        var toServer = new Pipe();
        var fromServer = new Pipe();
        var side = new DuplexPipe(toServer.Reader, fromServer.Writer);
        using var logs = new LogCapture();
        Task serving = DnsFramedConnection.ServeAsync(
            side, new FixedSizeAnswerer(64), maxInFlight: 4, Timeout.InfiniteTimeSpan, TimeProvider.System,
            logs.Factory.CreateLogger("test"), CancellationToken.None, CancellationToken.None);

        byte[] query = DnsQueryBytes.Build(1, "a.x.test");
        DnsTcpFraming.WriteMessage(toServer.Writer, query);
        DnsTcpFraming.WriteMessage(toServer.Writer, query);
        await toServer.Writer.WriteAsync(new byte[] { 0x00, (byte)query.Length, query[0] }); // a third frame, cut short
        await toServer.Writer.CompleteAsync();

        await serving.WaitAsync(HangGuard);
        await fromServer.Writer.CompleteAsync();
        var answers = new DnsFrameReader(fromServer.Reader);
        int answered = 0;
        while (await answers.ReadAsync(CancellationToken.None) == DnsStreamRead.Message)
        {
            answered++;
        }

        Assert.That(answered, Is.EqualTo(2));
    }

    private static bool Peek(PipeReader reader, ReadResult result)
    {
        bool any = !result.Buffer.IsEmpty;
        reader.AdvanceTo(result.Buffer.Start); // look without consuming: the peer "does not read"
        return any;
    }

    private static async Task WaitUntilAsync(Func<bool> condition)
    {
        DateTime giveUp = DateTime.UtcNow + HangGuard;
        while (!condition())
        {
            Assert.That(DateTime.UtcNow, Is.LessThan(giveUp), "the server never got that far");
            await Task.Delay(10);
        }
    }

    /// <summary>A fake clock that counts the timers created with a given due time.</summary>
    private sealed class DeadlineCountingTimeProvider(TimeSpan deadline) : FakeTimeProvider
    {
        private int _armed;

        public int DeadlinesArmed => Volatile.Read(ref _armed);

        public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
        {
            ITimer timer = base.CreateTimer(callback, state, dueTime, period);
            if (dueTime == deadline)
            {
                Interlocked.Increment(ref _armed);
            }

            return timer;
        }
    }

    private sealed class DuplexPipe(PipeReader input, PipeWriter output) : IDuplexPipe
    {
        public PipeReader Input { get; } = input;

        public PipeWriter Output { get; } = output;
    }

    private sealed class FixedSizeAnswerer(int size) : IDnsAnswerer
    {
        public ValueTask<int> AnswerAsync(Memory<byte> query, Memory<byte> response, bool udp)
        {
            query.Span.CopyTo(response.Span);
            response.Span[query.Length..size].Fill(0x2a);
            return ValueTask.FromResult(size);
        }
    }
}
