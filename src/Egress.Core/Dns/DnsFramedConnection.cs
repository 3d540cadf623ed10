using System.Buffers;
using System.IO.Pipelines;
using System.Net.Sockets;
using Egress.Dns.Wire;
using Microsoft.Extensions.Logging;
using Pipelines.Sockets.Unofficial;

namespace Egress.Dns;

/// <summary>
/// Serves length-prefixed DNS queries on a duplex pipe (a client's DNS-over-TCP connection, RFC 7766, or a tunnel
/// DNS stream on the parent): queries are answered concurrently, up to a limit (further frames wait), and each
/// answer is written as soon as it is ready, in any order. Ends after the idle timeout, on an empty frame, when
/// the peer closes, or when the server is stopping, once every answer has been written; the caller closes the pipe.
/// </summary>
internal sealed class DnsFramedConnection
{
    private readonly IDuplexPipe _pipe;
    private readonly IDnsAnswerer _answerer;
    private readonly ILogger _logger;
    private readonly int _maxInFlight;
    private readonly SemaphoreSlim _slots;
    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private readonly CancellationTokenSource _writes;
    private readonly TimeProvider _time;
    private int _stalled;

    private DnsFramedConnection(IDuplexPipe pipe, IDnsAnswerer answerer, int maxInFlight, TimeProvider time, ILogger logger, CancellationToken aborted)
    {
        _pipe = pipe;
        _writes = CancellationTokenSource.CreateLinkedTokenSource(aborted);
        _answerer = answerer;
        _logger = logger;
        _time = time;
        _maxInFlight = maxInFlight;
        _slots = new SemaphoreSlim(maxInFlight, maxInFlight);
    }

    /// <summary>
    /// How long one answer may wait for the peer to take it. A peer that stops reading ends the connection, so it
    /// cannot make the server hold its answers (and their buffers) for ever.
    /// </summary>
    internal static TimeSpan WriteTimeout { get; } = TimeSpan.FromSeconds(10);

    /// <summary>Serves <paramref name="pipe"/> until it ends; never throws for I/O errors.</summary>
    /// <param name="pipe">The connection, positioned at the first frame.</param>
    /// <param name="answerer">Answers each query.</param>
    /// <param name="maxInFlight">The most queries answered at once.</param>
    /// <param name="idleTimeout">How long to wait for a frame; <see cref="Timeout.InfiniteTimeSpan"/> for ever.</param>
    /// <param name="time">The clock of the idle timeout.</param>
    /// <param name="logger">Where unexpected failures are logged.</param>
    /// <param name="stopping">Stops reading further queries; those in flight are still answered.</param>
    /// <param name="aborted">Ends serving at once.</param>
    /// <returns>A task that completes when reading has ended and every answer was written.</returns>
    public static async Task ServeAsync(
        IDuplexPipe pipe,
        IDnsAnswerer answerer,
        int maxInFlight,
        TimeSpan idleTimeout,
        TimeProvider time,
        ILogger logger,
        CancellationToken stopping,
        CancellationToken aborted)
    {
        var connection = new DnsFramedConnection(pipe, answerer, maxInFlight, time, logger, aborted);
        try
        {
            await connection.ReadLoopAsync(idleTimeout, time, stopping, aborted).ConfigureAwait(false);
        }
        finally
        {
            connection._slots.Dispose();
            connection._writeLock.Dispose();
            connection._writes.Dispose();
        }
    }

    private async Task ReadLoopAsync(TimeSpan idleTimeout, TimeProvider time, CancellationToken stopping, CancellationToken aborted)
    {
        using var idle = new CancellationTokenSource(Timeout.InfiniteTimeSpan, time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(idle.Token, stopping, _writes.Token);
        var frames = new DnsFrameReader(_pipe.Input);
        try
        {
            while (true)
            {
                idle.CancelAfter(idleTimeout);
                if (await frames.ReadAsync(linked.Token).ConfigureAwait(false) != DnsStreamRead.Message)
                {
                    break; // Closed, truncated, or an empty frame: stop reading.
                }

                idle.CancelAfter(Timeout.InfiniteTimeSpan);
                await _slots.WaitAsync(linked.Token).ConfigureAwait(false);
                ReadOnlySequence<byte> message = frames.Message;
                byte[] query = ArrayPool<byte>.Shared.Rent((int)message.Length);
                message.CopyTo(query);
                _ = AnswerAsync(query, (int)message.Length, aborted);
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException or SocketException or InvalidOperationException
            or ConnectionResetException or ConnectionAbortedException or ObjectDisposedException)
        {
            // Idle, stopping, aborted or reset: stop reading.
        }

        // Let the answers in flight be written before the caller closes the output.
        for (int i = 0; i < _maxInFlight; i++)
        {
            await _slots.WaitAsync(CancellationToken.None).ConfigureAwait(false);
        }
    }

    private async Task AnswerAsync(byte[] query, int length, CancellationToken aborted)
    {
        byte[] response = ArrayPool<byte>.Shared.Rent(DnsTcpFraming.MaxMessageLength);
        try
        {
            int answer = await _answerer.AnswerAsync(query.AsMemory(0, length), response, udp: false).ConfigureAwait(false);
            if (answer > 0 && !_writes.IsCancellationRequested)
            {
                if (!_writeLock.Wait(0))
                {
                    // Another answer is being written: hold only what this one needs while it waits, not 64 KiB.
                    byte[] sized = ArrayPool<byte>.Shared.Rent(answer);
                    response.AsSpan(0, answer).CopyTo(sized);
                    ArrayPool<byte>.Shared.Return(response);
                    response = sized;

                    using var waited = new CancellationTokenSource(WriteTimeout, _time);
                    using var wait = CancellationTokenSource.CreateLinkedTokenSource(_writes.Token, waited.Token);
                    await _writeLock.WaitAsync(wait.Token).ConfigureAwait(false);
                }

                try
                {
                    DnsTcpFraming.WriteMessage(_pipe.Output, response.AsSpan(0, answer));
                    ValueTask<FlushResult> flush = _pipe.Output.FlushAsync(_writes.Token);
                    if (!flush.IsCompleted)
                    {
                        // Only a flush that has to wait for the peer pays for a deadline.
                        using var taken = new CancellationTokenSource(WriteTimeout, _time);
                        using CancellationTokenRegistration stall = taken.Token.UnsafeRegister(
                            static state => ((CancellationTokenSource)state!).Cancel(), _writes);
                        await flush.ConfigureAwait(false);
                    }
                    else
                    {
                        flush.GetAwaiter().GetResult();
                    }
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
            ArrayPool<byte>.Shared.Return(response);
            ArrayPool<byte>.Shared.Return(query);
            _slots.Release();
        }
    }
}
