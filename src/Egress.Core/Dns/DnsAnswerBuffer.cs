using System.Buffers;

namespace Egress.Dns;

/// <summary>
/// The buffer one query's answer is written to, rented from <see cref="ArrayPool{T}"/> only when the answer's size is
/// known: a query waiting for the parent holds no answer buffer at all, and an answer holds about its own size, not
/// 64 KiB. Growing does not keep the contents: ask for the size of what is about to be written, then write it.
/// Not thread-safe: one writer at a time (the party that completes the query). Dispose returns the array.
/// </summary>
internal sealed class DnsAnswerBuffer : IDisposable
{
    private byte[] _array = [];

    /// <summary>Gets the capacity of the buffer now, in bytes (0 until something was asked for).</summary>
    public int Capacity => _array.Length;

    /// <summary>A span of at least <paramref name="length"/> bytes to write an answer to; what was there before is
    /// kept only when no larger array was needed.</summary>
    /// <param name="length">The bytes about to be written (1 to 65,535).</param>
    public Span<byte> GetSpan(int length) => Ensure(length);

    /// <summary>As <see cref="GetSpan"/>, as memory.</summary>
    /// <param name="length">The bytes about to be written.</param>
    public Memory<byte> GetMemory(int length) => Ensure(length);

    /// <summary>The first <paramref name="length"/> bytes written.</summary>
    /// <param name="length">The answer's length (at most <see cref="Capacity"/>).</param>
    public ReadOnlyMemory<byte> Written(int length) => _array.AsMemory(0, length);

    /// <summary>Returns the array to the pool.</summary>
    public void Dispose()
    {
        if (_array.Length > 0)
        {
            ArrayPool<byte>.Shared.Return(_array);
            _array = [];
        }
    }

    private byte[] Ensure(int length)
    {
        if (_array.Length < length)
        {
            Dispose();
            _array = ArrayPool<byte>.Shared.Rent(length);
        }

        return _array;
    }
}
