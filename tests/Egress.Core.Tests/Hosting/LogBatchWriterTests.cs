using System.Text;
using Egress.Hosting;

namespace Egress.Tests.Hosting;

[TestFixture]
public sealed class LogBatchWriterTests
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(10);

    [Test]
    public void LinesQueuedWhileAWriteIsInProgressGoOutTogetherInTheNextWrite()
    {
        using var stdout = new GatedStream(open: false);
        using (var writer = Create(stdout))
        {
            writer.Enqueue("a\n"u8);
            stdout.WaitForWriteStarted(1);
            writer.Enqueue("b\n"u8);
            writer.Enqueue("c\n"u8);
            writer.Enqueue("d\n"u8);
            stdout.Open();
            stdout.WaitForWrites(2);
        }

        Assert.That(stdout.Writes, Is.EqualTo(new[] { "a\n", "b\nc\nd\n" }));
    }

    [Test]
    public void LinesAreWrittenOnlyAfterTheDelayOnceTheFirstOneWokeTheWriter()
    {
        using var stdout = new GatedStream(open: true);
        var writer = Create(stdout, delay: TimeSpan.FromHours(1));
        writer.Enqueue("a\n"u8);
        writer.Enqueue("b\n"u8);
        Thread.Sleep(100);
        Assert.That(stdout.Writes, Is.Empty, "the writer waits for more lines before writing");
        writer.Dispose();
        Assert.That(stdout.Writes, Is.EqualTo(new[] { "a\nb\n" }), "and writes them together");
    }

    [Test]
    public void AFullQueueDropsEveryLineUntilTheWriterTakesItAndTheCountStandsWhereTheyWere()
    {
        using var stdout = new GatedStream(open: false);
        using (var writer = Create(stdout, capacity: 8))
        {
            writer.Enqueue("a\n"u8);
            stdout.WaitForWriteStarted(1);
            writer.Enqueue("b\n"u8);
            writer.Enqueue("c\n"u8);
            writer.Enqueue("d\n"u8);
            writer.Enqueue("long\n"u8); // 11 bytes queued would pass 8: dropped
            writer.Enqueue("e\n"u8); // would fit, but follows a dropped line: dropped too, so the count stays in place
            stdout.Open();
            stdout.WaitForWrites(3);
            writer.Enqueue("f\n"u8);
            stdout.WaitForWrites(4);
        }

        Assert.That(stdout.Writes, Is.EqualTo(new[] { "a\n", "b\nc\nd\n", "dropped 2\n", "f\n" }));
    }

    [Test]
    public void ALineLongerThanTheCapacityIsDroppedAndCounted()
    {
        using var stdout = new GatedStream(open: true);
        using (var writer = Create(stdout, capacity: 4))
        {
            writer.Enqueue("12345\n"u8);
            stdout.WaitForWrites(1);
            writer.Enqueue("ok\n"u8);
            stdout.WaitForWrites(2);
        }

        Assert.That(stdout.Writes, Is.EqualTo(new[] { "dropped 1\n", "ok\n" }));
    }

    [Test]
    public void DisposeWritesWhatIsQueuedWithoutWaitingForTheDelayAndLaterLinesAreDropped()
    {
        using var stdout = new GatedStream(open: true);
        var writer = Create(stdout, delay: TimeSpan.FromHours(1));
        writer.Enqueue("a\n"u8);
        writer.Enqueue("b\n"u8);
        writer.Dispose();
        Assert.That(stdout.Writes, Is.EqualTo(new[] { "a\nb\n" }));

        writer.Enqueue("late\n"u8);
        writer.Dispose();
        Assert.That(stdout.Writes, Is.EqualTo(new[] { "a\nb\n" }));
    }

    [Test]
    public void DisposeGivesUpAfterTheFlushTimeoutOnAStdoutNobodyReads()
    {
        using var stdout = new GatedStream(open: false);
        var writer = Create(stdout, flushTimeout: TimeSpan.FromMilliseconds(50));
        writer.Enqueue("a\n"u8);
        stdout.WaitForWriteStarted(1);
        var dispose = Task.Run(writer.Dispose);
        Assert.That(dispose.Wait(Wait), Is.True, "Dispose waited for a write that never ends");
        stdout.Open();
        stdout.WaitForWrites(1);
    }

    [TestCase(typeof(IOException))]
    [TestCase(typeof(UnauthorizedAccessException))]
    public void AWriteErrorCountsItsBatchAsDroppedAndTheWriterGoesOn(Type error)
    {
        using var stdout = new GatedStream(open: true) { FailNextWrite = error };
        using (var writer = Create(stdout))
        {
            writer.Enqueue("lost\n"u8);
            stdout.WaitForWrites(1); // the failed write, then the count, at once: stdout works again
            writer.Enqueue("kept\n"u8);
            stdout.WaitForWrites(2);
        }

        Assert.That(stdout.Writes, Is.EqualTo(new[] { "dropped 1\n", "kept\n" }));
    }

    [Test]
    public void AFormatterThatThrowsForTheCountDoesNotStopTheWriter()
    {
        using var stdout = new GatedStream(open: true);
        var calls = 0;
        using (var writer = new LogBatchWriter(stdout, capacity: 4, TimeSpan.Zero, Wait, count =>
            ++calls == 1 ? throw new FormatException("bad formatter") : Encoding.UTF8.GetBytes($"dropped {count}\n")))
        {
            writer.Enqueue("12345\n"u8);
            SpinWait.SpinUntil(() => Volatile.Read(ref calls) == 1, Wait);
            writer.Enqueue("toolong\n"u8);
            stdout.WaitForWrites(1);
        }

        Assert.That(stdout.Writes, Is.EqualTo(new[] { "dropped 2\n" }), "the first count waited for the second");
    }

    [Test]
    public void ALineIsEncodedAsUtf8EvenWithASurrogatePairSplitAcrossTheBuildersChunks()
    {
        var line = new StringBuilder(16);
        line.Append('x', 15).Append("\U0001F600 é\n");
        var chunks = 0;
        foreach (var _ in line.GetChunks())
        {
            chunks++;
        }

        Assert.That(chunks, Is.GreaterThan(1), "the test needs the pair split over two chunks");
        Assert.That(char.IsHighSurrogate(line[15]), Is.True);

        using var stdout = new GatedStream(open: true);
        using (var writer = Create(stdout))
        {
            writer.Enqueue(line);
            stdout.WaitForWrites(1);
        }

        Assert.That(stdout.WrittenBytes, Is.EqualTo(Encoding.UTF8.GetBytes(line.ToString())));
    }

    [Test]
    public void LinesFromManyThreadsComeOutWholeOnceEachAndInEachThreadsOrder()
    {
        const int Threads = 8;
        const int LinesPerThread = 2000;
        using var stdout = new GatedStream(open: true);
        using (var writer = Create(stdout, capacity: 1 << 20, delay: TimeSpan.FromMilliseconds(1)))
        {
            Parallel.For(0, Threads, new ParallelOptions { MaxDegreeOfParallelism = Threads }, thread =>
            {
                var line = new StringBuilder();
                for (var i = 0; i < LinesPerThread; i++)
                {
                    line.Clear().Append("thread ").Append(thread).Append(" line ").Append(i).Append('\n');
                    writer.Enqueue(line);
                }
            });
        }

        var lines = Encoding.UTF8.GetString(stdout.WrittenBytes).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.That(lines, Has.Length.EqualTo(Threads * LinesPerThread));
        for (var thread = 0; thread < Threads; thread++)
        {
            var prefix = $"thread {thread} line ";
            var own = lines.Where(l => l.StartsWith(prefix, StringComparison.Ordinal)).Select(l => int.Parse(l[prefix.Length..])).ToArray();
            Assert.That(own, Is.EqualTo(Enumerable.Range(0, LinesPerThread)), $"thread {thread}");
        }
    }

    [Test]
    [Repeat(20)]
    public void DisposeRacingLinesFromManyThreadsWritesEveryLineQueuedBeforeItWholeAndInOrder()
    {
        const int Threads = 4;
        using var stdout = new GatedStream(open: true);
        var writer = Create(stdout, capacity: 64 << 20, delay: TimeSpan.FromMilliseconds(1));
        var disposing = 0;
        var queuedBefore = new int[Threads]; // per thread: lines whose Enqueue returned before Dispose was called
        var running = Enumerable.Range(0, Threads).Select(thread => Task.Factory.StartNew(
            () =>
            {
                var line = new StringBuilder();
                for (var i = 0; i < 200_000; i++)
                {
                    line.Clear().Append("thread ").Append(thread).Append(" line ").Append(i).Append('\n');
                    writer.Enqueue(line);
                    if (Volatile.Read(ref disposing) == 0)
                    {
                        Volatile.Write(ref queuedBefore[thread], i + 1);
                    }
                    else if (i > queuedBefore[thread] + 1000)
                    {
                        return; // well past the stop: what comes later is dropped, as the lines just before were
                    }
                }
            },
            CancellationToken.None,
            TaskCreationOptions.LongRunning,
            TaskScheduler.Default)).ToArray();
        // Every thread is queuing before the race starts (a thread not yet started would test nothing).
        Assert.That(SpinWait.SpinUntil(() => Enumerable.Range(0, Threads).All(t => Volatile.Read(ref queuedBefore[t]) >= 100), Wait), Is.True, "the threads never started");
        Volatile.Write(ref disposing, 1);
        writer.Dispose();
        Assert.That(Task.WaitAll(running, Wait), Is.True, "a thread queuing lines was held up by Dispose");

        var lines = Encoding.UTF8.GetString(stdout.WrittenBytes).Split('\n');
        Assert.That(lines[^1], Is.Empty, "the output ends with a whole line");
        for (var thread = 0; thread < Threads; thread++)
        {
            var prefix = $"thread {thread} line ";
            var own = lines.Where(l => l.StartsWith(prefix, StringComparison.Ordinal)).Select(l => int.Parse(l[prefix.Length..])).ToArray();
            Assert.That(own, Is.EqualTo(Enumerable.Range(0, own.Length)), $"thread {thread}: whole, once, in order, no gap");
            Assert.That(own, Has.Length.AtLeast(queuedBefore[thread]), $"thread {thread}: a line queued before Dispose is missing");
        }

        Assert.That(lines.Count(l => l.Length > 0 && !l.StartsWith("thread ", StringComparison.Ordinal)), Is.Zero, "no other output (no drop count: the capacity was never reached)");
    }

    [Test]
    public void ABatchIsWrittenInWholeLinesOfAtMostPipeBufBytesUnlessOneLineIsLonger()
    {
        var random = new Random(15);
        for (var batch = 0; batch < 300; batch++)
        {
            var lines = Enumerable.Range(0, random.Next(1, 60))
                .Select(_ => new string('x', random.Next(0, random.Next(2) == 0 ? 300 : 6000)) + "\n").ToArray();
            var bytes = Encoding.UTF8.GetBytes(string.Concat(lines));
            var writes = new List<string>();
            for (var start = 0; start < bytes.Length;)
            {
                var end = LogBatchWriter.WriteEnd(bytes.AsSpan(start));
                Assert.That(end, Is.Positive);
                writes.Add(Encoding.UTF8.GetString(bytes, start, end));
                start += end;
            }

            Assert.That(string.Concat(writes), Is.EqualTo(string.Concat(lines)), "every byte once, in order");
            foreach (var write in writes)
            {
                Assert.That(write, Does.EndWith("\n"), "a write ends at a line's end");
                Assert.That(write.Length <= LogBatchWriter.PipeAtomicBytes || write.IndexOf('\n') == write.Length - 1, Is.True,
                    $"a write of {write.Length} bytes that is not one long line");
            }

            // And no write stops short where the next whole line would still fit.
            for (var i = 0; i + 1 < writes.Count; i++)
            {
                var next = writes[i + 1][..(writes[i + 1].IndexOf('\n') + 1)];
                Assert.That(writes[i].Length + next.Length, Is.GreaterThan(LogBatchWriter.PipeAtomicBytes), "a write left a line out that fit");
            }
        }
    }

    [Test]
    public void AWriterSplitsALargeBatchAtLineEnds()
    {
        using var stdout = new GatedStream(open: false);
        var line = new string('y', 99) + "\n";
        using (var writer = Create(stdout, capacity: 1 << 20))
        {
            writer.Enqueue("first\n"u8);
            stdout.WaitForWriteStarted(1);
            for (var i = 0; i < 100; i++)
            {
                writer.Enqueue(Encoding.UTF8.GetBytes(line));
            }

            stdout.Open();
            stdout.WaitForWrites(4);
        }

        Assert.That(stdout.Writes.Skip(1).Select(w => w.Length), Is.EqualTo(new[] { 4000, 4000, 2000 }));
    }

    private static LogBatchWriter Create(Stream stdout, int capacity = 1024, TimeSpan? delay = null, TimeSpan? flushTimeout = null) =>
        new(stdout, capacity, delay ?? TimeSpan.Zero, flushTimeout ?? Wait, count => Encoding.UTF8.GetBytes($"dropped {count}\n"));

    /// <summary>A stdout whose writes block while it is closed (a reader that stopped), recording each write. Its gate is
    /// never disposed: a writer thread a test gave up on may still be waiting on it.</summary>
    private sealed class GatedStream(bool open) : Stream
    {
        private readonly ManualResetEventSlim gate = new(open);
        private readonly List<byte[]> writes = [];
        private int started;

        public Type? FailNextWrite { get; set; }

        public IReadOnlyList<string> Writes
        {
            get
            {
                lock (writes)
                {
                    return [.. writes.Select(w => Encoding.UTF8.GetString(w))];
                }
            }
        }

        public byte[] WrittenBytes
        {
            get
            {
                lock (writes)
                {
                    return [.. writes.SelectMany(w => w)];
                }
            }
        }

        public override bool CanRead => false;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public void Open() => gate.Set();

        public void WaitForWriteStarted(int count) =>
            Assert.That(SpinWait.SpinUntil(() => Volatile.Read(ref started) >= count, Wait), Is.True, $"write {count} never started");

        public void WaitForWrites(int count) =>
            Assert.That(SpinWait.SpinUntil(() => Writes.Count >= count, Wait), Is.True, () => $"{count} writes expected, saw {string.Join(" | ", Writes)}");

        public override void Write(byte[] buffer, int offset, int count)
        {
            Interlocked.Increment(ref started);
            if (FailNextWrite is { } error)
            {
                FailNextWrite = null;
                throw (Exception)Activator.CreateInstance(error, "write failed")!;
            }

            gate.Wait();
            lock (writes)
            {
                writes.Add(buffer.AsSpan(offset, count).ToArray());
            }
        }

        public override void Flush()
        {
        }

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();
    }
}
