using System.Buffers;
using System.Net;
using System.Net.Sockets;
using Egress.Diagnostics;
using Egress.Dns.Wire;
using Microsoft.Extensions.Logging;

namespace Egress.Dns.Forwarder;

/// <summary>
/// Serves DNS over UDP on one socket: one receive loop, each datagram answered concurrently from pooled buffers.
/// Beyond <see cref="MaxInFlight"/> unanswered queries new datagrams are dropped (the client retries). Answers are
/// sent with a synchronous, non-blocking <c>sendto</c> from whichever thread completed the query: no thread-pool
/// hop, and no concurrent <see cref="Socket.SendToAsync(ReadOnlyMemory{byte}, SocketFlags, SocketAddress, CancellationToken)"/>
/// on one socket (which, on .NET 10, intermittently throws NullReferenceException under load, losing the answer).
/// Datagrams are received into one buffer of one byte more than <see cref="MaxQueryLength"/> and each query copied
/// into a pooled buffer of its own size. A datagram larger than <see cref="MaxQueryLength"/> is never forwarded cut
/// short: it fills the receive buffer, so it shows (the kernel drops the rest of a datagram that does not fit, MSG_TRUNC, which
/// .NET's ReceiveFrom does not report), and is answered FORMERR at once, from its header and question, without being
/// forwarded (a real stub sends queries of a few hundred bytes; a client that sends more learns at once instead of
/// timing out, and the FORMERR is never larger than the query, so nothing is amplified). One client (source address
/// and port) has at most <see cref="DnsQueryAdmission.PerClientLimit"/> queries in flight: beyond that its queries are
/// answered SERVFAIL at once (with an Extended DNS Error), so it cannot take the whole listener.
/// </summary>
internal sealed class DnsUdpListener(Socket socket, DnsQueryHandler handler, EgressMetrics? metrics, ILogger logger, TimeProvider time)
{
    /// <summary>The most queries answered at once per socket.</summary>
    public const int MaxInFlight = 4096;

    /// <summary>The receive buffer asked for (the kernel caps it at net.core.rmem_max): absorbs bursts of queries.</summary>
    public const int ReceiveBufferBytes = 1 << 20;

    /// <summary>The largest UDP query forwarded.</summary>
    public const int MaxQueryLength = 4096;

    private readonly EndPoint _name = socket.LocalEndPoint!;
    private readonly LogRateLimit _dropLines = new(time, LogRateLimit.DefaultInterval, logger, 316);
    private readonly string _perClientReason = $"{handler.Admission.PerClientLimit} queries in flight from this UDP client";
    private int _inFlight;

    /// <summary>How often a receive that got nothing wakes to see whether the forwarder is stopping.</summary>
    public static readonly TimeSpan StopPoll = TimeSpan.FromMilliseconds(250);

    private static readonly int StopPollMicroseconds = (int)(StopPoll.Ticks / TimeSpan.TicksPerMicrosecond);

    /// <summary>
    /// Receives on a <see cref="DnsThread"/>, with blocking receives, until <paramref name="stopping"/> is cancelled (and the
    /// socket closed). A query is screened and sent to the parent on that thread; its answer comes back on the tunnel
    /// stream's own thread (<see cref="DnsStreamPipe"/>): none of it waits behind the thread pool's queue, which a
    /// flood of connections fills with thousands of continuations.
    /// </summary>
    /// <returns>A task that completes when the receive thread has ended.</returns>
    public Task Start(CancellationToken stopping)
    {
        var ended = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        DnsThread.Start(
            $"dns udp {_name}",
            _ =>
            {
                try
                {
                    ReceiveLoop(stopping);
                }
                finally
                {
                    ended.SetResult();
                }
            },
            null);
        return ended.Task;
    }

    private void ReceiveLoop(CancellationToken stopping)
    {
        try
        {
            socket.ReceiveBufferSize = ReceiveBufferBytes;
        }
        catch (SocketException ex)
        {
            DnsLog.ReceiveFailed(logger, _name, ex.Message);
        }
        catch (ObjectDisposedException)
        {
            return; // stopped before this thread first ran: an exception here would end the process
        }

        // One byte more than the largest query forwarded: a datagram that fills it was longer.
        byte[] datagram = new byte[MaxQueryLength + 1];
        while (!stopping.IsCancellationRequested)
        {
            SocketAddress client;
            int received;
            try
            {
                // Wait in poll(2), which returns false when nothing came within StopPoll: an idle listener looks at the
                // stop signal four times a second without a receive timeout, whose expiry .NET reports by throwing.
                if (!socket.Poll(StopPollMicroseconds, SelectMode.SelectRead))
                {
                    continue;
                }

                client = new SocketAddress(socket.AddressFamily);
                received = socket.ReceiveFrom(datagram, SocketFlags.None, client);
            }
            catch (Exception ex) when (ex is ObjectDisposedException || stopping.IsCancellationRequested)
            {
                return;
            }
            catch (SocketException ex) when (ex.SocketErrorCode is SocketError.WouldBlock or SocketError.Interrupted)
            {
                continue;
            }
            catch (SocketException ex)
            {
                // An ICMP error for an earlier answer, for one: keep serving.
                DnsLog.ReceiveFailed(logger, _name, ex.Message);
                continue;
            }

            if (received > MaxQueryLength)
            {
                RefuseTooLarge(datagram, client);
                continue;
            }

            if (Interlocked.Increment(ref _inFlight) > MaxInFlight)
            {
                int inFlight = Interlocked.Decrement(ref _inFlight);
                if (_dropLines.TryEnter(out long suppressed))
                {
                    DnsLog.Overloaded(logger, inFlight, suppressed);
                }

                continue;
            }

            int clientInFlight = handler.Admission.TryEnterClient(client);
            if (clientInFlight == 0)
            {
                Interlocked.Decrement(ref _inFlight);
                RefuseOverloaded(datagram.AsSpan(0, received), client);
                continue;
            }

            // Each query held only as long as it is: a few dozen bytes for most.
            byte[] query = ArrayPool<byte>.Shared.Rent(received);
            datagram.AsSpan(0, received).CopyTo(query);

            _ = AnswerAsync(query, received, client, clientInFlight);
        }
    }

    private void RefuseOverloaded(ReadOnlySpan<byte> query, SocketAddress client)
    {
        Span<byte> response = stackalloc byte[DnsMessage.MaxErrorResponseLength];
        int length = handler.AnswerOverloaded(query, response, _perClientReason);
        if (length <= 0)
        {
            return;
        }

        try
        {
            socket.SendTo(response[..length], SocketFlags.None, client);
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            // The client went away or we are stopping: nothing to answer to.
        }
    }

    private void RefuseTooLarge(byte[] query, SocketAddress client)
    {
        Span<byte> response = stackalloc byte[DnsMessage.MaxErrorResponseLength];
        var result = DnsQueryResult.Answer(DnsQueryOutcome.FormErr, query.AsSpan(0, MaxQueryLength), response, default, string.Empty);
        int length = result.Length;
        DnsLog.UdpQueryTooLarge(logger, MaxQueryLength, result.Action);
        metrics?.DnsQuery(result.MetricTag);
        if (length <= 0)
        {
            return;
        }

        try
        {
            socket.SendTo(response[..length], SocketFlags.None, client);
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            // The client went away or we are stopping: nothing to answer to.
        }
    }

    private async Task AnswerAsync(byte[] query, int length, SocketAddress client, int clientInFlight)
    {
        var response = new DnsAnswerBuffer();
        try
        {
            int answer = await handler.AnswerAsync(query.AsMemory(0, length), response, udp: true, clientInFlight, CancellationToken.None).ConfigureAwait(false);
            if (answer > 0)
            {
                socket.SendTo(response.Written(answer).Span, SocketFlags.None, client);
            }
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException or OperationCanceledException)
        {
            // The client went away or we are stopping: nothing to answer to.
        }
#pragma warning disable CA1031 // A fire-and-forget answer must never take the process down.
        catch (Exception ex)
#pragma warning restore CA1031
        {
            DnsLog.HandlerFailed(logger, ex);
        }
        finally
        {
            response.Dispose();
            ArrayPool<byte>.Shared.Return(query);
            handler.Admission.ExitClient(client);
            Interlocked.Decrement(ref _inFlight);
        }
    }
}
