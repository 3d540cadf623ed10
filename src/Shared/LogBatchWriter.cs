using System.Text;

namespace Egress.Hosting;

/// <summary>
/// Writes formatted log lines to a stream (the hosts' stdout) in batches from a thread of its own, so that logging a
/// line costs its caller a copy under a lock and nothing else: no wake-up of the writer per line and no write(2) per
/// line. The first line of a batch wakes the writer, which waits <c>delay</c> for more and then writes every line
/// queued, in order, in one write of whole lines (several when they pass <see cref="PipeAtomicBytes"/>). Lines
/// queued while a write is in progress go out in the next one.
/// <para>
/// Never makes the caller wait: once <c>capacity</c> bytes are queued (stdout read more slowly than lines come: a
/// stalled log shipper, a terminal paused with Ctrl-S), lines are dropped until the writer takes the queue, and the
/// count of those dropped is written, as a line of its own from <c>describeDropped</c>, right after the lines queued
/// before them. A batch whose write fails (stdout closed, a full disk) is counted the same way, in the next count
/// that can be written. Lines queued after <see cref="Dispose"/> took the last batch are dropped uncounted.
/// </para>
/// </summary>
internal sealed class LogBatchWriter : IDisposable
{
    /// <summary>Bytes queued before lines are dropped: about 1,500 text lines (MEL's console logger held 2,500).</summary>
    public const int DefaultCapacity = 256 * 1024;

    /// <summary>How long the writer waits after a batch's first line for more: at most one wake-up per 5 ms.</summary>
    public static readonly TimeSpan DefaultDelay = TimeSpan.FromMilliseconds(5);

    /// <summary>How long <see cref="Dispose"/> waits for the last lines to be written (a stalled stdout must not hold
    /// a stop up).</summary>
    public static readonly TimeSpan DefaultFlushTimeout = TimeSpan.FromSeconds(1.5);

    /// <summary>PIPE_BUF on Linux: a write(2) of at most this many bytes to a pipe is never interleaved with another
    /// writer's (pipe(7)).</summary>
    public const int PipeAtomicBytes = 4096;

    // A caller's line is encoded here before the lock is taken; a line longer than this is encoded into a buffer of
    // its own that is not kept.
    private const int KeptScratchBytes = 16 * 1024;

    [ThreadStatic]
    private static byte[]? t_scratch;

    [ThreadStatic]
    private static Encoder? t_encoder;

    private readonly Stream output;
    private readonly int capacity;
    private readonly TimeSpan delay;
    private readonly TimeSpan flushTimeout;
    private readonly Func<long, byte[]> describeDropped;
    private readonly Thread thread;
    private readonly object gate = new();

    // Guarded by gate.
    private byte[] queued = new byte[4096];
    private byte[] spare = new byte[4096];
    private int queuedLength;
    private int queuedLines;
    private long dropped;
    private bool signalled;
    private bool stopping;
    private bool stopped;

    /// <param name="output">Where the lines go; written from the writer's thread only.</param>
    /// <param name="capacity">Bytes queued (beside the batch being written) before lines are dropped.</param>
    /// <param name="delay">How long the writer waits after a batch's first line before writing it.</param>
    /// <param name="flushTimeout">How long <see cref="Dispose"/> waits for the writer to finish.</param>
    /// <param name="describeDropped">The line (UTF-8, with its newline) that reports a count of lines dropped.</param>
    public LogBatchWriter(Stream output, int capacity, TimeSpan delay, TimeSpan flushTimeout, Func<long, byte[]> describeDropped)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(capacity);
        this.output = output;
        this.capacity = capacity;
        this.delay = delay;
        this.flushTimeout = flushTimeout;
        this.describeDropped = describeDropped;
        thread = new Thread(Run) { IsBackground = true, Name = "Egress log writer" };
        thread.Start();
    }

    /// <summary>Queues <paramref name="line"/> (its text, newline included) as UTF-8, or drops it if the queue is full.</summary>
    public void Enqueue(StringBuilder line)
    {
        var encoder = t_encoder ??= new UTF8Encoding(encoderShouldEmitUTF8Identifier: false).GetEncoder();
        var maximum = Encoding.UTF8.GetMaxByteCount(line.Length);
        var scratch = t_scratch;
        if (scratch is null || scratch.Length < maximum)
        {
            scratch = new byte[Math.Max(maximum, 1024)];
            if (scratch.Length <= KeptScratchBytes)
            {
                t_scratch = scratch;
            }
        }

        var length = 0;
        foreach (var chunk in line.GetChunks())
        {
            length += encoder.GetBytes(chunk.Span, scratch.AsSpan(length), flush: false);
        }

        length += encoder.GetBytes([], scratch.AsSpan(length), flush: true);
        Enqueue(scratch.AsSpan(0, length));
    }

    /// <summary>Queues <paramref name="line"/> (UTF-8, newline included), or drops it if the queue is full.</summary>
    public void Enqueue(ReadOnlySpan<byte> line)
    {
        lock (gate)
        {
            // Once a line is dropped, every line is until the writer takes the queue, so the count written after the
            // queue's lines stands exactly where the missing lines were.
            if (stopped || dropped > 0 || queuedLength + line.Length > capacity)
            {
                dropped++;
                Signal();
                return;
            }

            if (queuedLength + line.Length > queued.Length)
            {
                var larger = new byte[Math.Min(capacity, Math.Max(queued.Length * 2, queuedLength + line.Length))];
                queued.AsSpan(0, queuedLength).CopyTo(larger);
                queued = larger;
            }

            line.CopyTo(queued.AsSpan(queuedLength));
            queuedLength += line.Length;
            queuedLines++;
            Signal();
        }
    }

    /// <summary>Writes what is queued and stops the writer, waiting at most the flush timeout; later lines are dropped.</summary>
    public void Dispose()
    {
        lock (gate)
        {
            if (stopping)
            {
                return;
            }

            stopping = true;
            Monitor.Pulse(gate);
        }

        thread.Join(flushTimeout);
    }

    // Wakes the writer for the first line of a batch; later lines find it signalled and wake no one.
    private void Signal()
    {
        if (!signalled)
        {
            signalled = true;
            Monitor.Pulse(gate);
        }
    }

    private void Run()
    {
        long lost = 0; // dropped, or in a write that failed, and not yet reported
        while (true)
        {
            byte[] batch;
            int length;
            int lines;
            bool last;
            lock (gate)
            {
                while (!signalled && !stopping)
                {
                    Monitor.Wait(gate);
                }

                // Waits (lock released) for the batch's later lines; a stop cuts the wait short.
                if (!stopping && delay > TimeSpan.Zero)
                {
                    Monitor.Wait(gate, delay);
                }

                (batch, queued, spare) = (queued, spare, queued);
                length = queuedLength;
                lines = queuedLines;
                lost += dropped;
                queuedLength = 0;
                queuedLines = 0;
                dropped = 0;
                signalled = false;
                last = stopping;
                stopped = last;
            }

            if (!Write(batch, length))
            {
                lost += lines; // counted in the next notice that can be written (a disk with room again)
            }

            if (lost > 0 && TryDescribeDropped(lost, out var notice) && Write(notice, notice.Length))
            {
                lost = 0;
            }

            if (last)
            {
                return;
            }
        }
    }

    private bool TryDescribeDropped(long count, out byte[] notice)
    {
        try
        {
            notice = describeDropped(count);
            return true;
        }
        catch (Exception)
        {
            // A formatter that throws must not end the process (this thread's exception would): the count waits.
            notice = [];
            return false;
        }
    }

    // Writes whole lines, at most PipeAtomicBytes at a time where lines allow, so that another writer of the same
    // stdout (audit_log = "stdout") never lands inside a line.
    private bool Write(byte[] buffer, int length)
    {
        try
        {
            for (var start = 0; start < length;)
            {
                var end = WriteEnd(buffer.AsSpan(start, length - start));
                output.Write(buffer, start, end);
                start += end;
            }

            output.Flush();
            return true;
        }
        catch (Exception)
        {
            // stdout failed (EPIPE, ENOSPC, EACCES, EBADF: IOException or UnauthorizedAccessException): an exception here
            // would end the process and every relay with it, so the batch is counted as dropped instead.
            return false;
        }
    }

    /// <summary>How many bytes of <paramref name="lines"/> one write takes: every whole line that fits in
    /// <see cref="PipeAtomicBytes"/>, or the first line alone when it is longer.</summary>
    internal static int WriteEnd(ReadOnlySpan<byte> lines)
    {
        if (lines.Length <= PipeAtomicBytes)
        {
            return lines.Length;
        }

        var lastEnd = lines[..PipeAtomicBytes].LastIndexOf((byte)'\n');
        if (lastEnd >= 0)
        {
            return lastEnd + 1;
        }

        var firstEnd = lines.IndexOf((byte)'\n');
        return firstEnd < 0 ? lines.Length : firstEnd + 1;
    }
}
