using System.Buffers;

namespace Egress.Fuzzing;

/// <summary>Shapes one input the ways a parser meets bytes from a socket: whole, or split into small segments.</summary>
internal static class FuzzInput
{
    /// <summary>The input as a sequence of segments of at most <paramref name="size"/> bytes.</summary>
    public static ReadOnlySequence<byte> Segmented(byte[] input, int size)
    {
        if (input.Length <= size)
        {
            return new ReadOnlySequence<byte>(input);
        }

        var first = new Segment(input.AsMemory(0, size), 0);
        Segment last = first;
        for (int offset = size; offset < input.Length; offset += size)
        {
            last = last.Append(input.AsMemory(offset, Math.Min(size, input.Length - offset)));
        }

        return new ReadOnlySequence<byte>(first, 0, last, last.Memory.Length);
    }

    /// <summary>Runs an operation that completes synchronously over in-memory input, and returns its result.</summary>
    public static T Wait<T>(ValueTask<T> operation) =>
        operation.IsCompleted ? operation.GetAwaiter().GetResult() : operation.AsTask().GetAwaiter().GetResult();

    private sealed class Segment : ReadOnlySequenceSegment<byte>
    {
        public Segment(ReadOnlyMemory<byte> memory, long runningIndex)
        {
            Memory = memory;
            RunningIndex = runningIndex;
        }

        public Segment Append(ReadOnlyMemory<byte> memory)
        {
            var next = new Segment(memory, RunningIndex + Memory.Length);
            Next = next;
            return next;
        }
    }
}

/// <summary>A stream that hands out at most a few bytes per read, as a slow peer does.</summary>
internal sealed class TrickleStream(byte[] data, int maxRead) : Stream
{
    private int position;

    public override bool CanRead => true;

    public override bool CanSeek => false;

    public override bool CanWrite => false;

    public override long Length => throw new NotSupportedException();

    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override int Read(Span<byte> buffer)
    {
        int count = Math.Min(Math.Min(buffer.Length, maxRead), data.Length - position);
        data.AsSpan(position, count).CopyTo(buffer);
        position += count;
        return count;
    }

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) =>
        ValueTask.FromResult(Read(buffer.Span));

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        Task.FromResult(Read(buffer.AsSpan(offset, count)));

    public override void Flush()
    {
    }

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
}
