using System.Collections.Concurrent;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using Egress.Connections;
using Microsoft.Win32.SafeHandles;

namespace Egress.Relay;

/// <summary>
/// A kernel pipe that one relay direction moves bytes through with splice(2): socket to pipe, pipe to socket, without
/// the bytes crossing into user space (pages are moved, not copied, where both socket types allow it: TCP and Unix).
/// The pipe counts what it holds; a direction rents one while data flows and returns it, empty, when it goes idle.
/// The sockets must be in non-blocking mode: the pipe end never waits, but a blocking TCP socket waits inside splice.
/// A new pipe takes its two descriptors from the process's <see cref="DescriptorBudget"/>; where the budget or the
/// kernel has none (EMFILE, ENFILE), there is no pipe and the relay copies through user space instead.
/// </summary>
internal sealed class SplicePipe : IDisposable
{
    /// <summary>
    /// The capacity a new pipe asks the kernel for (F_SETPIPE_SZ): 256 KiB, four times the default. One fill and one
    /// DATA frame per 256 KiB instead of per 64 KiB: in the throughput benchmark (quiet machine, the same build) this
    /// took the relay from 1.35x-1.46x to 1.64x-1.75x the HAProxy chain and cut egress-enclave's CPU during the
    /// transfer by a third (docs/benchmarks.md). Pipes hold pages only while bytes pass through them.
    /// </summary>
    public const int PreferredCapacity = 256 * 1024;

    /// <summary>The kernel's default pipe capacity (16 pages): what a pipe has when it cannot be enlarged.</summary>
    public const int DefaultCapacity = 64 * 1024;

    /// <summary>The source has nothing to read now, or the destination has no room now.</summary>
    public const int WouldBlock = -1;

    /// <summary>The socket does not support splice (EINVAL); the caller copies through user space instead.</summary>
    public const int Unsupported = -2;

    /// <summary>Empty pipes kept for reuse; beyond this, returned pipes are closed.</summary>
    private const int PoolLimit = 64;

    private static readonly ConcurrentBag<SplicePipe> s_pool = [];
    private static int s_pooled;

    private readonly SafeFileHandle _read;
    private readonly SafeFileHandle _write;
    private readonly bool _poolable;
    private readonly DescriptorBudget? _budget;
    private int _disposed;

    /// <summary>Wraps two descriptors as a relay pipe that is never pooled (tests pass descriptors that are not a pipe).</summary>
    internal SplicePipe(SafeFileHandle read, SafeFileHandle write)
        : this(read, write, poolable: false)
    {
    }

    private SplicePipe(SafeFileHandle read, SafeFileHandle write, bool poolable, DescriptorBudget? budget = null)
    {
        _read = read;
        _write = write;
        _poolable = poolable;
        _budget = budget;
        Capacity = SpliceNative.ResizePipe(write, PreferredCapacity, DefaultCapacity);
    }

    /// <summary>Bytes the pipe can hold: <see cref="PreferredCapacity"/> where the kernel allowed it, else what it gave
    /// (<see cref="DefaultCapacity"/>, or 8 KiB for a pipe an unprivileged process created while over
    /// fs.pipe-user-pages-soft).</summary>
    public int Capacity { get; }

    /// <summary>Bytes in the pipe: moved in and not yet moved out.</summary>
    public int Buffered { get; private set; }

    /// <summary>The descriptors one pipe holds: its read end and its write end.</summary>
    public const int Descriptors = 2;

    /// <summary>An empty pipe from the pool, or a new one.</summary>
    /// <exception cref="IOException">No pipe could be created (the descriptor budget is spent, or pipe2 failed).</exception>
    public static SplicePipe Rent() => Rent(DescriptorBudget.Process);

    /// <summary>An empty pipe from the pool, or a new one paid for from <paramref name="budget"/>.</summary>
    /// <exception cref="IOException">No pipe could be created (the budget is spent, or pipe2 failed).</exception>
    internal static SplicePipe Rent(DescriptorBudget budget)
    {
        if (s_pool.TryTake(out SplicePipe? pipe))
        {
            Interlocked.Decrement(ref s_pooled);
            return pipe;
        }

        if (!budget.TryTake(Descriptors))
        {
            throw new IOException($"no relay pipe: {budget.ExhaustedReason()}");
        }

        try
        {
            var (read, write) = SpliceNative.CreatePipe();
            return new SplicePipe(read, write, poolable: true, budget);
        }
        catch
        {
            budget.Release(Descriptors);
            throw;
        }
    }

    /// <summary>An empty pipe from the pool, a new one, or null when none can be created (e.g. out of descriptors).</summary>
    public static SplicePipe? TryRent() => TryRent(DescriptorBudget.Process);

    /// <summary>An empty pipe from the pool, a new one paid for from <paramref name="budget"/>, or null when none can be had.</summary>
    internal static SplicePipe? TryRent(DescriptorBudget budget)
    {
        try
        {
            return Rent(budget);
        }
        catch (IOException)
        {
            return null;
        }
    }

    /// <summary>Gives the pipe back for reuse if it is empty; a pipe still holding bytes (an aborted relay) is closed.</summary>
    public static void Return(SplicePipe pipe)
    {
        bool reusable = pipe._poolable && pipe.Buffered == 0;
        if (reusable && Interlocked.Increment(ref s_pooled) <= PoolLimit)
        {
            s_pool.Add(pipe);
            return;
        }

        if (reusable)
        {
            Interlocked.Decrement(ref s_pooled);
        }

        pipe.Dispose();
    }

    /// <summary>Moves up to the pipe's free room from <paramref name="source"/> into the pipe.</summary>
    /// <returns>Bytes moved; 0 at end of stream; <see cref="WouldBlock"/> or <see cref="Unsupported"/>.</returns>
    /// <exception cref="SocketException">The receive failed (e.g. the peer reset the connection).</exception>
    /// <exception cref="ObjectDisposedException">The socket was closed (the relay was aborted).</exception>
    public int FillFrom(SafeSocketHandle source) => FillFrom(source, Capacity);

    /// <summary>Moves at most <paramref name="limit"/> bytes (and at most the pipe's free room) from <paramref name="source"/> into the pipe.</summary>
    /// <returns>Bytes moved; 0 at end of stream; <see cref="WouldBlock"/> or <see cref="Unsupported"/>.</returns>
    /// <exception cref="SocketException">The receive failed (e.g. the peer reset the connection).</exception>
    /// <exception cref="ObjectDisposedException">The socket was closed (the relay was aborted).</exception>
    public int FillFrom(SafeSocketHandle source, int limit)
    {
        nint moved;
        int length = Math.Min(limit, Capacity - Buffered);
        do
        {
            moved = SpliceNative.Splice(source, 0, _write, 0, (nuint)length, SpliceNative.Move | SpliceNative.NonBlock);
        }
        while (moved < 0 && Marshal.GetLastPInvokeError() == SpliceNative.Interrupted);

        if (moved < 0)
        {
            return Failed("splice from socket");
        }

        Buffered += (int)moved;
        return (int)moved;
    }

    /// <summary>Moves as much of the pipe's content as <paramref name="destination"/> takes now.</summary>
    /// <returns>Bytes moved (the socket accepted them); <see cref="WouldBlock"/> or <see cref="Unsupported"/>.</returns>
    /// <exception cref="SocketException">The send failed (e.g. the peer reset the connection).</exception>
    /// <exception cref="ObjectDisposedException">The socket was closed (the relay was aborted).</exception>
    public int DrainTo(SafeSocketHandle destination)
    {
        nint moved;
        do
        {
            moved = SpliceNative.Splice(_read, 0, destination, 0, (nuint)Buffered, SpliceNative.Move | SpliceNative.NonBlock);
        }
        while (moved < 0 && Marshal.GetLastPInvokeError() == SpliceNative.Interrupted);

        if (moved < 0)
        {
            return Failed("splice to socket");
        }

        Buffered -= (int)moved;
        return (int)moved;
    }

    /// <summary>Reads bytes out of the pipe into user memory (for a destination that must be waited on, or cannot splice).</summary>
    /// <returns>Bytes read, at most <paramref name="buffer"/>'s length and never more than <see cref="Buffered"/>.</returns>
    public unsafe int ReadInto(Span<byte> buffer)
    {
        int wanted = Math.Min(buffer.Length, Buffered);
        nint read;
        fixed (byte* p = buffer)
        {
            do
            {
                read = SpliceNative.Read(_read, p, (nuint)wanted);
            }
            while (read < 0 && Marshal.GetLastPInvokeError() == SpliceNative.Interrupted);
        }

        if (read < 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            throw new IOException($"read from relay pipe: {Marshal.GetPInvokeErrorMessage(errno)} (errno {errno})");
        }

        Buffered -= (int)read;
        return (int)read;
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        _read.Dispose();
        _write.Dispose();
        _budget?.Release(Descriptors);
    }

    private static int Failed(string operation)
    {
        int errno = Marshal.GetLastPInvokeError();
        return errno switch
        {
            SpliceNative.WouldBlock => WouldBlock,
            SpliceNative.Invalid => Unsupported,
            _ => throw SpliceNative.ToSocketException(errno, operation),
        };
    }
}
