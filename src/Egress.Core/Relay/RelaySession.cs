using System.Buffers;
using System.IO.Pipelines;
using Pipelines.Sockets.Unofficial;

namespace Egress.Relay;

/// <summary>The state of one running relay: two pumps, the first cause, the abort signal and the idle timer.</summary>
internal sealed class RelaySession
{
    /// <summary>Most bytes written to a destination before awaiting its flush, so backpressure bounds memory.</summary>
    internal const int MaxChunk = 64 * 1024;

    private static readonly TimerCallback s_onIdleTimer = static state => ((RelaySession)state!).CheckIdle();
    private static readonly Action<object?> s_onCancelled = static state => ((RelaySession)state!).Abort(RelayShutdownCause.Cancelled, null);

    private readonly IDuplexPipe _a;
    private readonly IDuplexPipe _b;
    private readonly TimeProvider _time;
    private readonly TimeSpan _idleTimeout;
    private readonly bool _tracksIdle;
    private ITimer? _idleTimer;
    private long _lastActivity;
    private int _cause;
    private Exception? _error;
    private Exception? _abortError;
    private CancellationToken _cancellationToken;

    public RelaySession(IDuplexPipe a, IDuplexPipe b, RelayOptions options)
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

    /// <summary>The first terminal cause so far (<see cref="RelayShutdownCause.None"/> while running normally).</summary>
    public RelayShutdownCause Cause => (RelayShutdownCause)Volatile.Read(ref _cause);

    private bool IsAborted => Volatile.Read(ref _abortError) is not null;

    public async Task<RelayResult> RunAsync(CancellationToken cancellationToken)
    {
        long start = _time.GetTimestamp();
        _lastActivity = start;
        _cancellationToken = cancellationToken;
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
            Task<long> forward = PumpAsync(_a.Input, _b.Output, fromA: true);
            Task<long> backward = PumpAsync(_b.Input, _a.Output, fromA: false);
            aToB = await forward.ConfigureAwait(false);
            bToA = await backward.ConfigureAwait(false);
        }
        finally
        {
            _idleTimer?.Dispose();
        }

        TrySetCause(RelayShutdownCause.BothCompleted, null);
        return new RelayResult(aToB, bToA, Cause, _error, _time.GetElapsedTime(start));
    }

    /// <summary>Copies one direction; never throws. Completes both of its pipe ends on exit.</summary>
    private async Task<long> PumpAsync(PipeReader reader, PipeWriter writer, bool fromA)
    {
        long moved = 0;
        Exception? completion = null;
        try
        {
            while (true)
            {
                if (IsAborted)
                {
                    completion = _abortError;
                    break;
                }

                ReadResult result;
                try
                {
                    result = await reader.ReadAsync().ConfigureAwait(false);
                }
                catch (Exception ex)
                {
                    Abort(fromA ? RelayShutdownCause.AReadError : RelayShutdownCause.BReadError, ex);
                    completion = ex;
                    break;
                }

                ReadOnlySequence<byte> buffer = result.Buffer;
                if (result.IsCanceled)
                {
                    reader.AdvanceTo(buffer.Start);
                    continue; // loop top sees the abort; a foreign CancelPendingRead is ignored
                }

                if (_tracksIdle && !buffer.IsEmpty)
                {
                    Volatile.Write(ref _lastActivity, _time.GetTimestamp());
                }

                ReadOnlySequence<byte> remaining = buffer;
                bool stop = false;
                while (!remaining.IsEmpty)
                {
                    ReadOnlySequence<byte> chunk = remaining.Length > MaxChunk ? remaining.Slice(0, MaxChunk) : remaining;
                    FlushResult flush;
                    try
                    {
                        foreach (ReadOnlyMemory<byte> segment in chunk)
                        {
                            writer.Write(segment.Span);
                        }

                        flush = await writer.FlushAsync().ConfigureAwait(false);
                    }
                    catch (Exception ex)
                    {
                        Abort(fromA ? RelayShutdownCause.BWriteError : RelayShutdownCause.AWriteError, ex);
                        completion = ex;
                        stop = true;
                        break;
                    }

                    if (flush.IsCompleted)
                    {
                        // The destination's consumer is gone: that side closed. End this direction only.
                        TrySetCause(fromA ? RelayShutdownCause.BOutputClosed : RelayShutdownCause.AOutputClosed, null);
                        stop = true;
                        break;
                    }

                    moved += chunk.Length;
                    remaining = remaining.Slice(chunk.End);
                    if (flush.IsCanceled && IsAborted)
                    {
                        completion = _abortError;
                        stop = true;
                        break;
                    }
                }

                reader.AdvanceTo(stop ? buffer.Start : buffer.End);
                if (stop || result.IsCompleted)
                {
                    break;
                }
            }
        }
        finally
        {
            reader.Complete(completion);
            writer.Complete(completion);
        }

        return moved;
    }

    private bool TrySetCause(RelayShutdownCause cause, Exception? error)
    {
        if (error is not null)
        {
            Interlocked.CompareExchange(ref _error, error, null);
        }

        return Interlocked.CompareExchange(ref _cause, (int)cause, (int)RelayShutdownCause.None) == (int)RelayShutdownCause.None;
    }

    /// <summary>Records <paramref name="cause"/> (if first), resets socket sides and wakes both pumps so they complete every pipe end.</summary>
    internal void Abort(RelayShutdownCause cause, Exception? error)
    {
        TrySetCause(cause, error);
        Exception abortError = error ?? CreateAbortError(cause);
        if (Interlocked.CompareExchange(ref _abortError, abortError, null) is not null)
        {
            return;
        }

        ResetIfSocket(_a);
        ResetIfSocket(_b);
        _a.Input.CancelPendingRead();
        _b.Input.CancelPendingRead();
        _a.Output.CancelPendingFlush();
        _b.Output.CancelPendingFlush();
    }

    private Exception CreateAbortError(RelayShutdownCause cause) => cause switch
    {
        RelayShutdownCause.IdleTimeout => new TimeoutException($"The relay moved no data for {_idleTimeout}."),
        RelayShutdownCause.Cancelled => new OperationCanceledException("The relay was cancelled.", _cancellationToken),
        _ => new IOException($"The relay was aborted ({cause})."),
    };

    private static void ResetIfSocket(IDuplexPipe pipe)
    {
        if (pipe is SocketConnection connection)
        {
            RelayPipes.Reset(connection.Socket);
        }
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
