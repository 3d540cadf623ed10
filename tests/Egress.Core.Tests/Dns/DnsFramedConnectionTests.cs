using System.IO.Pipelines;
using Egress.Dns;
using Egress.Dns.Wire;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;
using Pipelines.Sockets.Unofficial;
using System.Buffers;

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
            side, new FixedSizeAnswerer(2048), new DnsStreamOptions { MaxInFlight = 4, TimeProvider = time },
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
            side, new FixedSizeAnswerer(64), new DnsStreamOptions { MaxInFlight = 4 },
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

    /// <summary>Issue 13 case 5: one byte every 4 s (within the 10 s idle timeout each time) no longer keeps the
    /// connection: the frame must be whole 5 s after its first byte.</summary>
    [Test]
    public async Task AFrameTrickledByteByByteEndsTheStreamTheFrameTimeoutAfterItsFirstByte()
    {
        var time = new FakeTimeProvider();
        using var logs = new LogCapture();
        var toServer = new Pipe();
        var fromServer = new Pipe();
        var options = new DnsStreamOptions { MaxInFlight = 4, IdleTimeout = TimeSpan.FromSeconds(10), FrameTimeout = TimeSpan.FromSeconds(5), TimeProvider = time };
        var answerer = new FixedSizeAnswerer(64);
        Task<DnsStreamEnd> serving = DnsFramedConnection.ServeAsync(
            new DuplexPipe(toServer.Reader, fromServer.Writer), answerer, options, logs.Factory.CreateLogger("test"), CancellationToken.None, CancellationToken.None);

        byte[] frame = DnsQueryBytes.Build(1, "a.x.test");
        byte[] framed = new byte[DnsTcpFraming.PrefixLength + frame.Length];
        DnsTcpFraming.WriteMessage(frame, framed);
        TimeSpan[] gaps = [TimeSpan.FromSeconds(4), TimeSpan.FromSeconds(0.9)];
        for (int i = 0; i < gaps.Length; i++)
        {
            await toServer.Writer.WriteAsync(framed.AsMemory(i, 1));
            await Task.Delay(100); // the reader sees the byte (and arms the frame deadline) before the clock moves
            time.Advance(gaps[i]);
        }

        await Task.Delay(100);
        Assert.That(serving.IsCompleted, Is.False, "4.9 s after the first byte: not yet");
        time.Advance(TimeSpan.FromMilliseconds(200));
        await serving.WaitAsync(HangGuard);
        Assert.Multiple(() =>
        {
            Assert.That(logs.Values(319, "Seconds"), Is.EqualTo(new[] { "5" }));
            Assert.That(answerer.Answered, Is.Zero);
            Assert.That(serving.Result, Is.EqualTo(new DnsStreamEnd(DnsStreamEndReason.FrameTimeout)));
        });
    }

    [Test]
    public async Task AStreamWithoutAFrameForTheIdleTimeoutEnds()
    {
        var time = new FakeTimeProvider();
        using var logs = new LogCapture();
        var toServer = new Pipe();
        var fromServer = new Pipe();
        var options = new DnsStreamOptions { MaxInFlight = 4, IdleTimeout = TimeSpan.FromSeconds(60), TimeProvider = time };
        Task<DnsStreamEnd> serving = DnsFramedConnection.ServeAsync(
            new DuplexPipe(toServer.Reader, fromServer.Writer), new FixedSizeAnswerer(64), options, logs.Factory.CreateLogger("test"), CancellationToken.None, CancellationToken.None);

        await Task.Delay(100);
        time.Advance(TimeSpan.FromSeconds(59));
        await Task.Delay(100);
        Assert.That(serving.IsCompleted, Is.False, "within the idle timeout");
        time.Advance(TimeSpan.FromSeconds(1));
        await serving.WaitAsync(HangGuard);
        Assert.That(logs.Values(320, "Seconds"), Is.EqualTo(new[] { "60" }));
        Assert.That((serving.Result, serving.Result.IsNormal, serving.Result.Text("the enclave", options)), Is.EqualTo((new DnsStreamEnd(DnsStreamEndReason.Idle), true, "idle for 60 s")));
    }

    /// <summary>What the stream's end is said to be (egress-host's event 253): an ordinary end (the peer closed it
    /// between frames, a stop) or another, with its reason.</summary>
    [TestCase(null, nameof(DnsStreamEndReason.PeerClosed), true, "closed by the enclave")]
    [TestCase(new byte[] { 0, 30, 1 }, nameof(DnsStreamEndReason.Truncated), false, "the enclave closed it in the middle of a frame")]
    [TestCase(new byte[] { 0, 0 }, nameof(DnsStreamEndReason.EmptyFrame), false, "the enclave sent an empty frame")]
    public async Task TheStreamsEndIsReturnedWithItsReason(byte[]? sent, string reason, bool normal, string text)
    {
        var toServer = new Pipe();
        var fromServer = new Pipe();
        var options = new DnsStreamOptions { MaxInFlight = 4 };
        Task<DnsStreamEnd> serving = DnsFramedConnection.ServeAsync(
            new DuplexPipe(toServer.Reader, fromServer.Writer), new FixedSizeAnswerer(64), options, NullLogger(), CancellationToken.None, CancellationToken.None);
        if (sent is not null)
        {
            await toServer.Writer.WriteAsync(sent);
        }

        await toServer.Writer.CompleteAsync();
        DnsStreamEnd end = await serving.WaitAsync(HangGuard);
        Assert.That((end.Reason.ToString(), end.IsNormal, end.Text("the enclave", options)), Is.EqualTo((reason, normal, text)));
    }

    [Test]
    public async Task AFailedReadAndAStopAreReturnedAsSuch()
    {
        var options = new DnsStreamOptions { MaxInFlight = 4 };
        var toServer = new Pipe();
        Task<DnsStreamEnd> failing = DnsFramedConnection.ServeAsync(
            new DuplexPipe(toServer.Reader, new Pipe().Writer), new FixedSizeAnswerer(64), options, NullLogger(), CancellationToken.None, CancellationToken.None);
        await toServer.Writer.CompleteAsync(new IOException("Connection reset by peer"));

        using var stopping = new CancellationTokenSource();
        Task<DnsStreamEnd> stopped = DnsFramedConnection.ServeAsync(
            new DuplexPipe(new Pipe().Reader, new Pipe().Writer), new FixedSizeAnswerer(64), options, NullLogger(), stopping.Token, CancellationToken.None);
        await stopping.CancelAsync();

        DnsStreamEnd failed = await failing.WaitAsync(HangGuard);
        Assert.Multiple(async () =>
        {
            Assert.That((failed.Reason, failed.IsNormal, failed.Text("the enclave", options)), Is.EqualTo((DnsStreamEndReason.Failed, false, "reset or failed (Connection reset by peer)")));
            Assert.That((await stopped.WaitAsync(HangGuard)).Reason, Is.EqualTo(DnsStreamEndReason.Stopping));
        });
    }

    private static ILogger NullLogger() => Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance;

    /// <summary>Issue 13 case 4, the parent's side: a stream whose queries all hang gets SERVFAIL (with an EDE) for
    /// every query beyond its limit at once, instead of those queries waiting behind the hung ones.</summary>
    [Test]
    public async Task QueriesBeyondTheLimitAreAnsweredServFailAtOnceWhenOverflowIsAnswered()
    {
        using var logs = new LogCapture();
        var toServer = new Pipe();
        var fromServer = new Pipe();
        var hung = new HangingAnswerer();
        var options = new DnsStreamOptions { MaxInFlight = 2, AnswerOverflow = true };
        Task serving = DnsFramedConnection.ServeAsync(
            new DuplexPipe(toServer.Reader, fromServer.Writer), hung, options, logs.Factory.CreateLogger("test"), CancellationToken.None, CancellationToken.None);

        for (ushort id = 1; id <= 5; id++)
        {
            DnsTcpFraming.WriteMessage(toServer.Writer, DnsQueryBytes.Build(id, "a.x.test", ednsSize: 1232));
        }

        await toServer.Writer.FlushAsync();
        var answers = new DnsFrameReader(fromServer.Reader);
        var ids = new List<ushort>();
        for (int i = 0; i < 3; i++)
        {
            Assert.That(await answers.ReadAsync(CancellationToken.None).AsTask().WaitAsync(HangGuard), Is.EqualTo(DnsStreamRead.Message));
            byte[] answer = answers.Message.ToArray();
            Assert.That(DnsQueryBytes.Rcode(answer), Is.EqualTo(2), "SERVFAIL");
            Assert.That(answer.AsSpan().IndexOf("egress: too many queries in flight"u8), Is.GreaterThan(0), "the EDE's EXTRA-TEXT");
            ids.Add(DnsMessage.ReadId(answer));
        }

        Assert.Multiple(() =>
        {
            Assert.That(ids, Is.EqualTo(new ushort[] { 3, 4, 5 }));
            Assert.That(hung.Started, Is.EqualTo(2));
            Assert.That(serving.IsCompleted, Is.False);
        });

        toServer.Writer.Complete(new ConnectionResetException("reset by the test"));
        await serving.WaitAsync(HangGuard);
        Assert.That(hung.Cancelled, Is.EqualTo(2), "a reset stream cancels the work on its queries");
    }

    [Test]
    public async Task QueriesBeyondTheLimitSharedByAllStreamsAreAnsweredServFailAtOnce()
    {
        using var logs = new LogCapture();
        var hung = new HangingAnswerer();
        var options = new DnsStreamOptions { MaxInFlight = 8, AnswerOverflow = true, SharedLimit = new DnsInFlightLimit(3) };
        var first = (In: new Pipe(), Out: new Pipe());
        var second = (In: new Pipe(), Out: new Pipe());
        using var aborted = new CancellationTokenSource();
        Task[] serving =
        [
            DnsFramedConnection.ServeAsync(new DuplexPipe(first.In.Reader, first.Out.Writer), hung, options, logs.Factory.CreateLogger("test"), CancellationToken.None, aborted.Token),
            DnsFramedConnection.ServeAsync(new DuplexPipe(second.In.Reader, second.Out.Writer), hung, options, logs.Factory.CreateLogger("test"), CancellationToken.None, aborted.Token),
        ];

        for (ushort id = 1; id <= 2; id++)
        {
            DnsTcpFraming.WriteMessage(first.In.Writer, DnsQueryBytes.Build(id, "a.x.test"));
            DnsTcpFraming.WriteMessage(second.In.Writer, DnsQueryBytes.Build((ushort)(id + 10), "a.x.test"));
            await first.In.Writer.FlushAsync();
            await second.In.Writer.FlushAsync();
            await Task.Delay(50);
        }

        // Three of the four are in flight; the last one read, on whichever stream, is answered SERVFAIL at once.
        await WaitUntilAsync(() => hung.Started == 3 && (first.Out.Reader.TryRead(out ReadResult a) && Peek(first.Out.Reader, a) || second.Out.Reader.TryRead(out ReadResult b) && Peek(second.Out.Reader, b)));
        Assert.That(options.SharedLimit.InFlight, Is.EqualTo(3));
        await aborted.CancelAsync();
        await Task.WhenAll(serving).WaitAsync(HangGuard);
        Assert.That(options.SharedLimit.InFlight, Is.Zero, "every place given back");
    }

    // Red-team trial (6 December, third round): slowly answered allowed names asked on streams of the attacker's own
    // filled the parent's 2,048 shared places, and 56 % of an application's queries were answered SERVFAIL.
    [Test]
    public async Task AStreamKeepsItsOwnPlacesWhenOtherStreamsHoldEverySharedOne()
    {
        using var logs = new LogCapture();
        var slow = new TaskCompletionSource(); // the attacker's answers: not until the end
        var attackerAnswerer = new GatedAnswerer(100, slow.Task);
        var gate = new TaskCompletionSource();
        var answerer = new GatedAnswerer(100, gate.Task);
        var options = new DnsStreamOptions { MaxInFlight = 8, AnswerOverflow = true, SharedLimit = new DnsInFlightLimit(2), ReservedPerStream = 2 };
        var attacker = (In: new Pipe(), Out: new Pipe());
        var app = (In: new Pipe(), Out: new Pipe());
        using var aborted = new CancellationTokenSource();
        Task<DnsStreamEnd> attackerServing = DnsFramedConnection.ServeAsync(new DuplexPipe(attacker.In.Reader, attacker.Out.Writer), attackerAnswerer, options, logs.Factory.CreateLogger("test"), CancellationToken.None, aborted.Token);
        Task<DnsStreamEnd> appServing = DnsFramedConnection.ServeAsync(new DuplexPipe(app.In.Reader, app.Out.Writer), answerer, options, logs.Factory.CreateLogger("test"), CancellationToken.None, aborted.Token);

        // The attacker's stream: its own 2 places, then both shared ones; its fifth query finds none.
        for (ushort id = 1; id <= 5; id++)
        {
            DnsTcpFraming.WriteMessage(attacker.In.Writer, DnsQueryBytes.Build(id, "slow.x.test"));
        }

        await attacker.In.Writer.FlushAsync();
        await WaitUntilAsync(() => attackerAnswerer.Started == 4);
        var attackerAnswers = new DnsFrameReader(attacker.Out.Reader);
        Assert.That(await attackerAnswers.ReadAsync(CancellationToken.None).AsTask().WaitAsync(HangGuard), Is.EqualTo(DnsStreamRead.Message));
        Assert.That((DnsQueryBytes.Rcode(attackerAnswers.Message.ToArray()), options.SharedLimit.InFlight), Is.EqualTo((2, 2)), "the fifth: SERVFAIL, every shared place taken");

        // The app's stream still has its own 2; its third query finds no place.
        for (ushort id = 11; id <= 13; id++)
        {
            DnsTcpFraming.WriteMessage(app.In.Writer, DnsQueryBytes.Build(id, "a.x.test"));
        }

        await app.In.Writer.FlushAsync();
        var appAnswers = new DnsFrameReader(app.Out.Reader);
        Assert.That(await appAnswers.ReadAsync(CancellationToken.None).AsTask().WaitAsync(HangGuard), Is.EqualTo(DnsStreamRead.Message));
        Assert.That(DnsQueryBytes.Rcode(appAnswers.Message.ToArray()), Is.EqualTo(2), "the third: SERVFAIL");
        Assert.That(answerer.Started, Is.EqualTo(2), "the app's first two are being answered");

        gate.SetResult();
        var answered = new List<long>();
        for (int i = 0; i < 2; i++)
        {
            Assert.That(await appAnswers.ReadAsync(CancellationToken.None).AsTask().WaitAsync(HangGuard), Is.EqualTo(DnsStreamRead.Message));
            answered.Add(appAnswers.Message.Length);
        }

        Assert.That(answered, Is.EqualTo(new[] { 100L, 100L }), "both answered, not SERVFAIL");

        // Answered, its own places are free again (the attacker still holds every shared one).
        for (ushort id = 21; id <= 22; id++)
        {
            DnsTcpFraming.WriteMessage(app.In.Writer, DnsQueryBytes.Build(id, "a.x.test"));
        }

        await app.In.Writer.FlushAsync();
        for (int i = 0; i < 2; i++)
        {
            Assert.That(await appAnswers.ReadAsync(CancellationToken.None).AsTask().WaitAsync(HangGuard), Is.EqualTo(DnsStreamRead.Message));
            Assert.That(appAnswers.Message.Length, Is.EqualTo(100), "answered: the stream's places came back");
        }

        Assert.That(options.SharedLimit.InFlight, Is.EqualTo(2), "still held by the attacker's queries");
        slow.SetResult();
        await aborted.CancelAsync();
        await Task.WhenAll(attackerServing, appServing).WaitAsync(HangGuard);
        Assert.That(options.SharedLimit.InFlight, Is.Zero, "every shared place given back");
    }

    // Red-team trial (6 December): streams that sent queries and never read the answers held the parent's shared
    // places while their answers waited, and about half of an application's queries were answered SERVFAIL.
    [Test]
    public async Task AStreamThatDoesNotReadItsAnswersHoldsNoSharedPlaceWhileTheyWait()
    {
        using var logs = new LogCapture();
        var options = new DnsStreamOptions { MaxInFlight = 8, AnswerOverflow = true, SharedLimit = new DnsInFlightLimit(4) };
        var answerer = new FixedSizeAnswerer(2048);
        var stalled = (In: new Pipe(), Out: new Pipe(new PipeOptions(pauseWriterThreshold: 1024, resumeWriterThreshold: 512, useSynchronizationContext: false)));
        var reading = (In: new Pipe(), Out: new Pipe());
        using var aborted = new CancellationTokenSource();
        Task<DnsStreamEnd> stalledServing = DnsFramedConnection.ServeAsync(new DuplexPipe(stalled.In.Reader, stalled.Out.Writer), answerer, options, logs.Factory.CreateLogger("test"), CancellationToken.None, aborted.Token);
        Task<DnsStreamEnd> readingServing = DnsFramedConnection.ServeAsync(new DuplexPipe(reading.In.Reader, reading.Out.Writer), answerer, options, logs.Factory.CreateLogger("test"), CancellationToken.None, aborted.Token);

        // Six answers for a peer that reads none: the first one's flush blocks, five wait behind it.
        for (ushort id = 1; id <= 6; id++)
        {
            DnsTcpFraming.WriteMessage(stalled.In.Writer, DnsQueryBytes.Build(id, "a.x.test"));
        }

        await stalled.In.Writer.FlushAsync();
        await WaitUntilAsync(() => answerer.Answered == 6);
        await Task.Delay(100);
        Assert.That(options.SharedLimit.InFlight, Is.Zero, "a computed answer holds no shared place while it waits");

        DnsTcpFraming.WriteMessage(reading.In.Writer, DnsQueryBytes.Build(99, "a.x.test"));
        await reading.In.Writer.FlushAsync();
        var answers = new DnsFrameReader(reading.Out.Reader);
        Assert.That(await answers.ReadAsync(CancellationToken.None).AsTask().WaitAsync(HangGuard), Is.EqualTo(DnsStreamRead.Message));
        Assert.That(answers.Message.Length, Is.EqualTo(2048), "answered, not SERVFAIL for load");

        await aborted.CancelAsync();
        await Task.WhenAll(stalledServing, readingServing).WaitAsync(HangGuard);
        Assert.That(options.SharedLimit.InFlight, Is.Zero);
    }

    [Test]
    public async Task APeerThatLetsMoreThanTheUnwrittenLimitWaitIsNotReadingAndItsConnectionEnds()
    {
        using var logs = new LogCapture();
        var time = new FakeTimeProvider();
        const int size = 60_000;
        var toServer = new Pipe();
        var fromServer = new Pipe(new PipeOptions(pauseWriterThreshold: 1024, resumeWriterThreshold: 512, useSynchronizationContext: false));
        Task<DnsStreamEnd> serving = DnsFramedConnection.ServeAsync(
            new DuplexPipe(toServer.Reader, fromServer.Writer), new FixedSizeAnswerer(size),
            new DnsStreamOptions { MaxInFlight = 32, AnswerOverflow = true, SharedLimit = new DnsInFlightLimit(32), TimeProvider = time },
            logs.Factory.CreateLogger("test"), CancellationToken.None, CancellationToken.None);

        // One answer being written and more than 1 MiB of answers behind it, with the clock standing still.
        int queries = 2 + (DnsFramedConnection.MaxUnwrittenBytes / size);
        for (ushort id = 1; id <= queries; id++)
        {
            DnsTcpFraming.WriteMessage(toServer.Writer, DnsQueryBytes.Build(id, "a.x.test"));
        }

        await toServer.Writer.FlushAsync();
        DnsStreamEnd end = await serving.WaitAsync(HangGuard);
        Assert.Multiple(() =>
        {
            Assert.That(end.Reason, Is.EqualTo(DnsStreamEndReason.PeerNotReading));
            Assert.That(logs.Values(328, "Limit"), Is.EqualTo(new[] { "1048576" }), "one line");
            Assert.That(logs.Values(317, "Seconds"), Is.Empty, "not the write timeout");
        });
    }

    // A review: the budget counted answers queued behind each other while the peer read on, and cut such a peer after
    // 10 KB of a burst of 256 answers of 2,000 bytes.
    [Test]
    public async Task AReadingPeerIsNotCutByABurstOfAnswersThatCompleteAtOnce()
    {
        using var logs = new LogCapture();
        var gate = new TaskCompletionSource();
        var answerer = new GatedAnswerer(2000, gate.Task);
        var toServer = new Pipe();
        var fromServer = new Pipe(new PipeOptions(pauseWriterThreshold: 16 * 1024, resumeWriterThreshold: 8 * 1024, useSynchronizationContext: false));
        using var aborted = new CancellationTokenSource();
        Task<DnsStreamEnd> serving = DnsFramedConnection.ServeAsync(
            new DuplexPipe(toServer.Reader, fromServer.Writer), answerer,
            new DnsStreamOptions { MaxInFlight = 1024, AnswerOverflow = true, SharedLimit = new DnsInFlightLimit(2048) },
            logs.Factory.CreateLogger("test"), CancellationToken.None, aborted.Token);

        const int Burst = 256;
        for (ushort id = 1; id <= Burst; id++)
        {
            DnsTcpFraming.WriteMessage(toServer.Writer, DnsQueryBytes.Build(id, "a.x.test"));
        }

        await toServer.Writer.FlushAsync();
        await WaitUntilAsync(() => answerer.Started == Burst);
        Task<int> reading = Task.Run(async () =>
        {
            var frames = new DnsFrameReader(fromServer.Reader);
            int read = 0;
            while (read < Burst && await frames.ReadAsync(CancellationToken.None) == DnsStreamRead.Message)
            {
                read++;
            }

            return read;
        });
        gate.SetResult(); // every answer completes at once, on this thread, one after another

        Assert.That(await reading.WaitAsync(HangGuard), Is.EqualTo(Burst), "every answer taken");
        Assert.That(serving.IsCompleted, Is.False, "the stream is still served");
        Assert.That(logs.Values(328, "Limit"), Is.Empty);
        await aborted.CancelAsync();
        await serving.WaitAsync(HangGuard);
    }

    /// <summary>Answers of a fixed size, each once the gate opens.</summary>
    private sealed class GatedAnswerer(int size, Task gate) : IDnsAnswerer
    {
        private int _started;

        public int Started => Volatile.Read(ref _started);

        public async ValueTask<int> AnswerAsync(Memory<byte> query, DnsAnswerBuffer response, bool udp, int clientInFlight, CancellationToken cancellationToken)
        {
            Interlocked.Increment(ref _started);
            await gate;
            Span<byte> answer = response.GetSpan(size);
            query.Span.CopyTo(answer);
            answer[query.Length..size].Fill(0x2a);
            return size;
        }

        public int AnswerOverloaded(ReadOnlySpan<byte> query, Span<byte> response, string reason) => DnsMessage.WriteOverloaded(query, response);
    }

    [Test]
    public async Task WithoutOverflowAnswersQueriesBeyondTheLimitWaitForAPlace()
    {
        using var logs = new LogCapture();
        var toServer = new Pipe();
        var fromServer = new Pipe();
        var hung = new HangingAnswerer();
        using var aborted = new CancellationTokenSource();
        Task serving = DnsFramedConnection.ServeAsync(
            new DuplexPipe(toServer.Reader, fromServer.Writer), hung, new DnsStreamOptions { MaxInFlight = 2 }, logs.Factory.CreateLogger("test"), CancellationToken.None, aborted.Token);

        for (ushort id = 1; id <= 3; id++)
        {
            DnsTcpFraming.WriteMessage(toServer.Writer, DnsQueryBytes.Build(id, "a.x.test"));
        }

        await toServer.Writer.FlushAsync();
        await Task.Delay(200);
        Assert.Multiple(() =>
        {
            Assert.That(hung.Started, Is.EqualTo(2));
            Assert.That(fromServer.Reader.TryRead(out _), Is.False, "nothing answered");
        });

        await aborted.CancelAsync();
        await serving.WaitAsync(HangGuard);
        Assert.That(hung.Cancelled, Is.EqualTo(2));
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
        private int _answered;

        public int Answered => Volatile.Read(ref _answered);

        public ValueTask<int> AnswerAsync(Memory<byte> query, DnsAnswerBuffer response, bool udp, int clientInFlight, CancellationToken cancellationToken)
        {
            Interlocked.Increment(ref _answered);
            Span<byte> answer = response.GetSpan(size);
            query.Span.CopyTo(answer);
            answer[query.Length..size].Fill(0x2a);
            return ValueTask.FromResult(size);
        }

        public int AnswerOverloaded(ReadOnlySpan<byte> query, Span<byte> response, string reason) => DnsMessage.WriteOverloaded(query, response);
    }

    /// <summary>An upstream that never answers: each query waits until its stream cancels it.</summary>
    private sealed class HangingAnswerer : IDnsAnswerer
    {
        private int _started;
        private int _cancelled;

        public int Started => Volatile.Read(ref _started);

        public int Cancelled => Volatile.Read(ref _cancelled);

        public async ValueTask<int> AnswerAsync(Memory<byte> query, DnsAnswerBuffer response, bool udp, int clientInFlight, CancellationToken cancellationToken)
        {
            Interlocked.Increment(ref _started);
            try
            {
                await Task.Delay(Timeout.InfiniteTimeSpan, cancellationToken);
            }
            catch (OperationCanceledException)
            {
                Interlocked.Increment(ref _cancelled);
                throw;
            }

            return -1;
        }

        public int AnswerOverloaded(ReadOnlySpan<byte> query, Span<byte> response, string reason) => DnsMessage.WriteOverloaded(query, response);
    }
}
