using System.Buffers;
using System.IO.Pipelines;
using System.Net.Sockets;
using Egress.Dns.Wire;
using Microsoft.Extensions.Logging;
using Pipelines.Sockets.Unofficial;

namespace Egress.Dns;

/// <summary>
/// Serves length-prefixed DNS queries on a duplex pipe (a client's DNS-over-TCP connection, RFC 7766, or a tunnel
/// DNS stream on the parent): queries are answered concurrently, up to <see cref="DnsStreamOptions.MaxInFlight"/>
/// (further frames wait, or are answered SERVFAIL at once, see <see cref="DnsStreamOptions.AnswerOverflow"/>), and
/// each answer is written as soon as it is ready, in any order. Ends after the idle timeout, when a frame takes longer
/// than the frame timeout from its first byte, on an empty frame, when the peer closes, or when the server is
/// stopping, once every answer has been written; the caller closes the pipe. When the stream ends for anything but a
/// clean close or a stop (reset, timeout, a peer that takes no answers), the queries still in flight are cancelled:
/// nobody is left to take their answers.
/// </summary>
internal sealed class DnsFramedConnection
{
    private readonly IDuplexPipe _pipe;
    private readonly IDnsAnswerer _answerer;
    private readonly ILogger _logger;
    private readonly DnsStreamOptions _options;
    private readonly SemaphoreSlim _slots;
    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private readonly CancellationTokenSource _writes;
    private readonly CancellationTokenSource _queries;
    private readonly TimeProvider _time;
    private int _stalled;
    private int _unwritten;
    private int _flushBlocked;
    private int _reservedInFlight;

    /// <summary>Where a query's place is: none (no shared limit), a shared one, or one of the stream's own.</summary>
    private enum Place : byte
    {
        None,
        Shared,
        Reserved,
    }

    private DnsFramedConnection(IDuplexPipe pipe, IDnsAnswerer answerer, DnsStreamOptions options, ILogger logger, CancellationToken aborted)
    {
        _pipe = pipe;
        _writes = CancellationTokenSource.CreateLinkedTokenSource(aborted);
        _queries = CancellationTokenSource.CreateLinkedTokenSource(aborted);
        _answerer = answerer;
        _logger = logger;
        _options = options;
        _time = options.TimeProvider;
        _slots = new SemaphoreSlim(options.MaxInFlight, options.MaxInFlight);
    }

    /// <summary>
    /// How long one answer may wait for the peer to take it. A peer that stops reading ends the connection, so it
    /// cannot make the server hold its answers (and their buffers) for ever.
    /// </summary>
    internal static TimeSpan WriteTimeout { get; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// The most bytes of answer buffers one connection may hold while they wait for the one being written (1 MiB: the
    /// enclave's forwarder has at most 256 queries in flight on a stream, whose answers of up to 4 KiB fit),
    /// while that one's flush waits for the peer. An answer leaves the shared limit
    /// (<see cref="DnsStreamOptions.SharedLimit"/>) once it is computed, so a peer that does not read is charged here
    /// instead: beyond this, with the peer not taking what was written, it is treated as not reading and the connection
    /// ends, as at <see cref="WriteTimeout"/>. Answers that queue up behind each other while the peer reads (a burst
    /// that completes at once, a busy thread pool handing the write on) are not cut, however many.
    /// </summary>
    internal const int MaxUnwrittenBytes = 1024 * 1024;

    /// <summary>Serves <paramref name="pipe"/> until it ends; never throws for I/O errors.</summary>
    /// <param name="pipe">The connection, positioned at the first frame.</param>
    /// <param name="answerer">Answers each query.</param>
    /// <param name="options">The stream's bounds and clock.</param>
    /// <param name="logger">Where timeouts and unexpected failures are logged.</param>
    /// <param name="stopping">Stops reading further queries; those in flight are still answered.</param>
    /// <param name="aborted">Ends serving at once.</param>
    /// <returns>A task that completes when reading has ended and every answer was written: why the stream ended.</returns>
    public static async Task<DnsStreamEnd> ServeAsync(
        IDuplexPipe pipe,
        IDnsAnswerer answerer,
        DnsStreamOptions options,
        ILogger logger,
        CancellationToken stopping,
        CancellationToken aborted)
    {
        var connection = new DnsFramedConnection(pipe, answerer, options, logger, aborted);
        try
        {
            return await connection.ReadLoopAsync(stopping, aborted).ConfigureAwait(false);
        }
        finally
        {
            connection._slots.Dispose();
            connection._writeLock.Dispose();
            connection._writes.Dispose();
            connection._queries.Dispose();
        }
    }

    private async Task<DnsStreamEnd> ReadLoopAsync(CancellationToken stopping, CancellationToken aborted)
    {
        using var deadline = new CancellationTokenSource(Timeout.InfiniteTimeSpan, _time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(deadline.Token, stopping, _writes.Token);
        bool inFrame = false;
        var frames = new DnsFrameReader(_pipe.Input, frameStarted: () =>
        {
            // The first bytes of a frame are here: the rest must follow within the frame timeout, however it trickles.
            inFrame = true;
            deadline.CancelAfter(_options.FrameTimeout);
        });
        bool cancelQueries = false;
        DnsStreamEnd end;
        try
        {
            while (true)
            {
                inFrame = false;
                deadline.CancelAfter(_options.IdleTimeout);
                DnsStreamRead read = await frames.ReadAsync(linked.Token).ConfigureAwait(false);
                if (read != DnsStreamRead.Message)
                {
                    // Closed, truncated, or an empty frame: stop reading.
                    end = new DnsStreamEnd(read switch
                    {
                        DnsStreamRead.Truncated => DnsStreamEndReason.Truncated,
                        DnsStreamRead.EmptyFrame => DnsStreamEndReason.EmptyFrame,
                        _ => DnsStreamEndReason.PeerClosed,
                    });
                    break;
                }

                deadline.CancelAfter(Timeout.InfiniteTimeSpan);
                ReadOnlySequence<byte> message = frames.Message;
                if (!_slots.Wait(0))
                {
                    if (_options.AnswerOverflow)
                    {
                        await AnswerOverloadedAsync(message, $"{_options.MaxInFlight} queries of this stream in flight").ConfigureAwait(false);
                        continue;
                    }

                    await _slots.WaitAsync(linked.Token).ConfigureAwait(false);

                    // The abort cancels the queries in flight before it cancels this wait (a token's callbacks run
                    // last-registered first), and a cancelled query gives its place back at once: the place this wait
                    // got may be one the abort freed. No query starts after the abort.
                    if (aborted.IsCancellationRequested)
                    {
                        _slots.Release();
                        aborted.ThrowIfCancellationRequested();
                    }
                }

                Place place = Place.None;
                if (_options.AnswerOverflow && _options.SharedLimit is { } shared)
                {
                    // The stream's own places first: the shared ones only beyond them, so that other streams filling
                    // the shared places leave this one its own.
                    if (Interlocked.Increment(ref _reservedInFlight) <= _options.ReservedPerStream)
                    {
                        place = Place.Reserved;
                    }
                    else
                    {
                        Interlocked.Decrement(ref _reservedInFlight);
                        if (!shared.TryTake())
                        {
                            _slots.Release();
                            await AnswerOverloadedAsync(message, $"{shared.Limit} queries in flight on all DNS streams").ConfigureAwait(false);
                            continue;
                        }

                        place = Place.Shared;
                    }
                }

                byte[] query = ArrayPool<byte>.Shared.Rent((int)message.Length);
                message.CopyTo(query);
                _ = AnswerAsync(query, (int)message.Length, place, aborted);
            }
        }
        catch (OperationCanceledException) when (deadline.IsCancellationRequested && !stopping.IsCancellationRequested && !_writes.IsCancellationRequested)
        {
            cancelQueries = true;
            end = new DnsStreamEnd(inFrame ? DnsStreamEndReason.FrameTimeout : DnsStreamEndReason.Idle);
            if (inFrame)
            {
                if (_options.FrameTimeouts(_logger).TryEnter(out long suppressed))
                {
                    DnsLog.FrameTimedOut(_logger, _options.FrameTimeout.TotalSeconds, suppressed);
                }

                _options.Metrics?.Connection("failed", "dns_frame_timeout");
            }
            else
            {
                DnsLog.IdleClosed(_logger, _options.IdleTimeout.TotalSeconds);
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException or SocketException or InvalidOperationException
            or ConnectionResetException or ConnectionAbortedException or ObjectDisposedException)
        {
            // Stopping, aborted, a peer not reading, or reset: stop reading. Only a stop lets the queries finish.
            cancelQueries = ex is not OperationCanceledException || !stopping.IsCancellationRequested;
            end = ex is not OperationCanceledException ? new DnsStreamEnd(DnsStreamEndReason.Failed, ex.Message)
                : stopping.IsCancellationRequested || aborted.IsCancellationRequested ? new DnsStreamEnd(DnsStreamEndReason.Stopping)
                : new DnsStreamEnd(DnsStreamEndReason.PeerNotReading);
        }

        if (cancelQueries)
        {
            await _queries.CancelAsync().ConfigureAwait(false);
        }

        // Let the answers in flight be written before the caller closes the output.
        for (int i = 0; i < _options.MaxInFlight; i++)
        {
            await _slots.WaitAsync(CancellationToken.None).ConfigureAwait(false);
        }

        return end;
    }

    /// <summary>Answers a query beyond the stream's limit at once (SERVFAIL with an Extended DNS Error), in order.</summary>
    private async Task AnswerOverloadedAsync(ReadOnlySequence<byte> message, string reason)
    {
        byte[] query = ArrayPool<byte>.Shared.Rent((int)message.Length);
        byte[] response = ArrayPool<byte>.Shared.Rent(DnsMessage.MaxErrorResponseLength);
        try
        {
            message.CopyTo(query);
            int answer = _answerer.AnswerOverloaded(
                query.AsSpan(0, (int)message.Length), response, reason);
            if (answer > 0 && !_writes.IsCancellationRequested)
            {
                await _writeLock.WaitAsync(_writes.Token).ConfigureAwait(false);
                try
                {
                    await WriteLockedAsync(response.AsMemory(0, answer)).ConfigureAwait(false);
                }
                finally
                {
                    _writeLock.Release();
                }
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(response);
            ArrayPool<byte>.Shared.Return(query);
        }
    }

    private async Task AnswerAsync(byte[]? query, int length, Place place, CancellationToken aborted)
    {
        var response = new DnsAnswerBuffer();
        byte[]? sized = null;
        int charged = 0;
        try
        {
            int answer;
            try
            {
                answer = await _answerer.AnswerAsync(query!.AsMemory(0, length), response, udp: false, _options.MaxInFlight - _slots.CurrentCount, _queries.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (_queries.IsCancellationRequested)
            {
                return; // The stream ended: nobody is left to take the answer.
            }

            // The answer is computed: its place in the limit shared by every stream goes back now, not when the peer
            // has taken it, so that streams that never read cannot hold every place (the wait is charged to this
            // stream below), and so does the query's buffer (up to 64 KiB), which nothing reads any more.
            ReleasePlace(ref place);
            ArrayPool<byte>.Shared.Return(query!);
            query = null;
            if (answer > 0 && !_writes.IsCancellationRequested)
            {
                ReadOnlyMemory<byte> bytes = response.Written(answer);
                if (!_writeLock.Wait(0))
                {
                    // Another answer is being written: hold only what this one needs while it waits.
                    if (response.Capacity > 2 * answer)
                    {
                        sized = ArrayPool<byte>.Shared.Rent(answer);
                        bytes.Span.CopyTo(sized);
                        response.Dispose();
                        bytes = sized.AsMemory(0, answer);
                    }

                    charged = sized?.Length ?? response.Capacity;
                    int unwritten = Interlocked.Add(ref _unwritten, charged);
                    if (unwritten > MaxUnwrittenBytes && Volatile.Read(ref _flushBlocked) != 0)
                    {
                        if (Interlocked.Exchange(ref _stalled, 1) == 0)
                        {
                            DnsLog.TooMuchUnwritten(_logger, unwritten, MaxUnwrittenBytes);
                        }

                        await _writes.CancelAsync().ConfigureAwait(false);
                        return;
                    }

                    using var waited = new CancellationTokenSource(WriteTimeout, _time);
                    using var wait = CancellationTokenSource.CreateLinkedTokenSource(_writes.Token, waited.Token);
                    await _writeLock.WaitAsync(wait.Token).ConfigureAwait(false);
                }

                try
                {
                    await WriteLockedAsync(bytes).ConfigureAwait(false);
                }
                finally
                {
                    _writeLock.Release();
                }
            }
        }
        catch (OperationCanceledException) when (!aborted.IsCancellationRequested)
        {
            // The peer took no answer for WriteTimeout: stop reading its queries and fail the ones waiting.
            if (Interlocked.Exchange(ref _stalled, 1) == 0)
            {
                DnsLog.PeerNotReading(_logger, WriteTimeout.TotalSeconds);
            }

            await _writes.CancelAsync().ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException or SocketException or InvalidOperationException
            or ConnectionResetException or ConnectionAbortedException or ObjectDisposedException)
        {
            // The peer went away: nothing to answer to.
        }
#pragma warning disable CA1031 // A fire-and-forget answer must never take the process down.
        catch (Exception ex)
#pragma warning restore CA1031
        {
            DnsLog.HandlerFailed(_logger, ex);
        }
        finally
        {
            response.Dispose();
            if (sized is not null)
            {
                ArrayPool<byte>.Shared.Return(sized);
            }

            if (query is not null)
            {
                ArrayPool<byte>.Shared.Return(query);
            }

            ReleasePlace(ref place);
            if (charged > 0)
            {
                Interlocked.Add(ref _unwritten, -charged);
            }

            _slots.Release();
        }
    }

    /// <summary>Gives back the query's place (shared or the stream's own), once.</summary>
    private void ReleasePlace(ref Place place)
    {
        if (place == Place.Shared)
        {
            _options.SharedLimit!.Release();
        }
        else if (place == Place.Reserved)
        {
            Interlocked.Decrement(ref _reservedInFlight);
        }

        place = Place.None;
    }

    /// <summary>Writes one framed answer under the write lock; a flush that waits for the peer has <see cref="WriteTimeout"/>.</summary>
    private async Task WriteLockedAsync(ReadOnlyMemory<byte> answer)
    {
        DnsTcpFraming.WriteMessage(_pipe.Output, answer.Span);
        ValueTask<FlushResult> flush = _pipe.Output.FlushAsync(_writes.Token);
        if (!flush.IsCompleted)
        {
            // Only a flush that has to wait for the peer pays for a deadline, and only while one waits do the answers
            // queued behind it count against MaxUnwrittenBytes.
            using var taken = new CancellationTokenSource(WriteTimeout, _time);
            using CancellationTokenRegistration stall = taken.Token.UnsafeRegister(
                static state => ((CancellationTokenSource)state!).Cancel(), _writes);
            Volatile.Write(ref _flushBlocked, 1);
            try
            {
                await flush.ConfigureAwait(false);
            }
            finally
            {
                Volatile.Write(ref _flushBlocked, 0);
            }
        }
        else
        {
            flush.GetAwaiter().GetResult();
        }
    }
}
