using System.Buffers;
using System.Net.Sockets;

namespace Egress.Relay;

/// <summary>The state of one running <see cref="SocketRelay"/>: two copy loops, the first cause and the idle timer.</summary>
internal sealed class SocketRelaySession
{
    /// <summary>Size of the buffer a flowing direction rents; one receive and one send move at most this much.</summary>
    internal const int BufferSize = 64 * 1024;

    private static readonly TimerCallback s_onIdleTimer = static state => ((SocketRelaySession)state!).CheckIdle();
    private static readonly Action<object?> s_onCancelled = static state => ((SocketRelaySession)state!).Abort(RelayShutdownCause.Cancelled, null);

    private readonly Socket _a;
    private readonly Socket _b;
    private readonly TimeProvider _time;
    private readonly TimeSpan _idleTimeout;
    private readonly bool _tracksIdle;
    private ITimer? _idleTimer;
    private long _lastActivity;
    private int _cause;
    private int _aborted;
    private Exception? _error;

    public SocketRelaySession(Socket a, Socket b, RelayOptions options)
    {
        _a = a;
        _b = b;
        _time = options.TimeProvider ?? throw new ArgumentException("TimeProvider is required.", nameof(options));
        TimeSpan? idle = options.IdleTimeout;
        if (idle is { } timeout && timeout != Timeout.InfiniteTimeSpan)
        {
            ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(timeout, TimeSpan.Zero, nameof(options));
            _idleTimeout = timeout;
            _tracksIdle = true;
        }
    }

    private bool IsAborted => Volatile.Read(ref _aborted) != 0;

    public async Task<RelayResult> RunAsync(ReadOnlyMemory<byte> readFromA, ReadOnlyMemory<byte> readFromB, CancellationToken cancellationToken)
    {
        long start = _time.GetTimestamp();
        _lastActivity = start;
        if (_tracksIdle)
        {
            // Created disarmed and armed after the field is set, so the callback always sees the timer.
            _idleTimer = _time.CreateTimer(s_onIdleTimer, this, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
            _idleTimer.Change(_idleTimeout, Timeout.InfiniteTimeSpan);
        }

        long aToB;
        long bToA;
        try
        {
            using CancellationTokenRegistration registration = cancellationToken.UnsafeRegister(s_onCancelled, this);
            Task<long> forward = CopyAsync(_a, _b, readFromA, fromA: true);
            Task<long> backward = CopyAsync(_b, _a, readFromB, fromA: false);
            aToB = await forward.ConfigureAwait(false);
            bToA = await backward.ConfigureAwait(false);
        }
        finally
        {
            _idleTimer?.Dispose();
        }

        TrySetCause(RelayShutdownCause.BothCompleted, null);
        return new RelayResult(aToB, bToA, (RelayShutdownCause)Volatile.Read(ref _cause), Volatile.Read(ref _error), _time.GetElapsedTime(start));
    }

    /// <summary>Copies one direction until end of stream (forwarded as a half-close) or an error (which aborts both); never throws.</summary>
    private async Task<long> CopyAsync(Socket source, Socket destination, ReadOnlyMemory<byte> pending, bool fromA)
    {
        long moved = 0;
        byte[]? buffer = null;
        bool receiving = false;
        try
        {
            if (!pending.IsEmpty)
            {
                await SendAllAsync(destination, pending).ConfigureAwait(false);
                moved += pending.Length;
                Touch();
            }

            bool full = false;
            while (true)
            {
                receiving = true;
                if (!full)
                {
                    // Wait for data without a buffer; an idle direction holds none.
                    ValueTask<int> ready = source.ReceiveAsync(Memory<byte>.Empty, SocketFlags.None);
                    if (!ready.IsCompleted && buffer is not null)
                    {
                        ArrayPool<byte>.Shared.Return(buffer);
                        buffer = null;
                    }

                    await ready.ConfigureAwait(false);
                }

                buffer ??= ArrayPool<byte>.Shared.Rent(BufferSize);
                int read = await source.ReceiveAsync(buffer.AsMemory(), SocketFlags.None).ConfigureAwait(false);
                receiving = false;
                if (read == 0)
                {
                    destination.Shutdown(SocketShutdown.Send);
                    break;
                }

                Touch();
                for (int sent = 0; sent < read;)
                {
                    // Inline rather than a helper: an async helper would allocate whenever the send has to wait.
                    sent += await destination.SendAsync(buffer.AsMemory(sent, read - sent), SocketFlags.None).ConfigureAwait(false);
                }

                moved += read;
                Touch();

                // A full buffer means more is probably queued: receive again straight away.
                full = read == buffer.Length;
            }
        }
        catch (Exception ex)
        {
            if (!IsAborted)
            {
                RelayShutdownCause cause = receiving
                    ? fromA ? RelayShutdownCause.AReadError : RelayShutdownCause.BReadError
                    : fromA ? RelayShutdownCause.BWriteError : RelayShutdownCause.AWriteError;
                Abort(cause, ex);
            }
        }
        finally
        {
            if (buffer is not null)
            {
                ArrayPool<byte>.Shared.Return(buffer);
            }
        }

        return moved;
    }

    private static async ValueTask SendAllAsync(Socket destination, ReadOnlyMemory<byte> bytes)
    {
        while (!bytes.IsEmpty)
        {
            int sent = await destination.SendAsync(bytes, SocketFlags.None).ConfigureAwait(false);
            bytes = bytes[sent..];
        }
    }

    private void Touch()
    {
        if (_tracksIdle)
        {
            Volatile.Write(ref _lastActivity, _time.GetTimestamp());
        }
    }

    private void TrySetCause(RelayShutdownCause cause, Exception? error)
    {
        if (error is not null)
        {
            Interlocked.CompareExchange(ref _error, error, null);
        }

        Interlocked.CompareExchange(ref _cause, (int)cause, (int)RelayShutdownCause.None);
    }

    /// <summary>Records <paramref name="cause"/> (if first) and resets both sockets, which ends both copy loops.</summary>
    private void Abort(RelayShutdownCause cause, Exception? error)
    {
        TrySetCause(cause, error);
        if (Interlocked.Exchange(ref _aborted, 1) != 0)
        {
            return;
        }

        RelayPipes.Reset(_a);
        RelayPipes.Reset(_b);
    }

    private void CheckIdle()
    {
        if (IsAborted)
        {
            return;
        }

        TimeSpan idleFor = _time.GetElapsedTime(Volatile.Read(ref _lastActivity));
        if (idleFor >= _idleTimeout)
        {
            Abort(RelayShutdownCause.IdleTimeout, null);
            return;
        }

        try
        {
            _idleTimer?.Change(_idleTimeout - idleFor, Timeout.InfiniteTimeSpan);
        }
        catch (ObjectDisposedException)
        {
            // The relay finished while this check ran.
        }
    }
}
