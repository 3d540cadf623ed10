using System.Buffers;
using System.IO.Pipelines;
using Egress.Sockets;
using Pipelines.Sockets.Unofficial;

namespace Egress.Relay;

/// <summary>The state of one running relay: two pumps, the first cause, the abort signal and the idle timer.</summary>
internal sealed class RelaySession : IRelayAbort
{
    /// <summary>Most bytes written to a destination before awaiting its flush, so backpressure bounds memory.</summary>
    internal const int MaxChunk = 64 * 1024;

    private readonly IDuplexPipe _a;
    private readonly IDuplexPipe _b;
    private readonly RelayMonitor _monitor;
    private Exception? _abortError;
    private CancellationToken _cancellationToken;

    public RelaySession(IDuplexPipe a, IDuplexPipe b, RelayOptions options)
    {
        _a = a;
        _b = b;
        _monitor = new RelayMonitor(options, this);
    }

    /// <summary>The first terminal cause so far (<see cref="RelayShutdownCause.None"/> while running normally).</summary>
    public RelayShutdownCause Cause => _monitor.Cause;

    private bool IsAborted => Volatile.Read(ref _abortError) is not null;

    /// <summary>Records <paramref name="cause"/> (if first) and aborts the relay (the first time only).</summary>
    internal void Abort(RelayShutdownCause cause, Exception? error) => _monitor.Abort(cause, error);

    public async Task<RelayResult> RunAsync(CancellationToken cancellationToken)
    {
        _cancellationToken = cancellationToken;
        _monitor.Start(cancellationToken);
        Task<long> forward = PumpAsync(_a.Input, _b.Output, fromA: true);
        Task<long> backward = PumpAsync(_b.Input, _a.Output, fromA: false);
        long aToB = await forward.ConfigureAwait(false); // the pumps never throw
        long bToA = await backward.ConfigureAwait(false);
        return _monitor.Finish(aToB, bToA);
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
                    _monitor.Abort(fromA ? RelayShutdownCause.AReadError : RelayShutdownCause.BReadError, ex);
                    completion = ex;
                    break;
                }

                ReadOnlySequence<byte> buffer = result.Buffer;
                if (result.IsCanceled)
                {
                    reader.AdvanceTo(buffer.Start);
                    continue; // loop top sees the abort; a foreign CancelPendingRead is ignored
                }

                if (!buffer.IsEmpty)
                {
                    _monitor.Touch();
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
                        _monitor.Abort(fromA ? RelayShutdownCause.BWriteError : RelayShutdownCause.AWriteError, ex);
                        completion = ex;
                        stop = true;
                        break;
                    }

                    if (flush.IsCompleted)
                    {
                        // The destination's consumer is gone: that side closed. End this direction only.
                        _monitor.TrySetCause(fromA ? RelayShutdownCause.BOutputClosed : RelayShutdownCause.AOutputClosed, null);
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

        if (completion is null)
        {
            _monitor.HalfClosed(); // this direction ended clean: the half-closed timeout applies to the other
        }

        return moved;
    }

    /// <summary>The abort (called once by the monitor): resets socket sides and wakes both pumps so they complete every pipe end.</summary>
    void IRelayAbort.Abort(RelayShutdownCause cause, Exception? error)
    {
        Volatile.Write(ref _abortError, error ?? CreateAbortError(cause));
        ResetIfSocket(_a);
        ResetIfSocket(_b);
        _a.Input.CancelPendingRead();
        _b.Input.CancelPendingRead();
        _a.Output.CancelPendingFlush();
        _b.Output.CancelPendingFlush();
    }

    private Exception CreateAbortError(RelayShutdownCause cause) => cause switch
    {
        RelayShutdownCause.IdleTimeout => new TimeoutException($"The relay moved no data for {_monitor.IdleTimeout}."),
        RelayShutdownCause.Cancelled => new OperationCanceledException("The relay was cancelled.", _cancellationToken),
        _ => new IOException($"The relay was aborted ({cause})."),
    };

    private static void ResetIfSocket(IDuplexPipe pipe)
    {
        if (pipe is SocketConnection connection)
        {
            SocketReset.Reset(connection.Socket);
        }
    }
}
