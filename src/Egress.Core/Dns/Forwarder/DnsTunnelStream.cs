using System.Buffers;
using System.IO.Pipelines;
using System.Net.Sockets;
using Egress.Connections;
using Egress.Diagnostics;
using Egress.Dns.Wire;
using Egress.Sockets;
using Egress.Tunnel;
using Microsoft.Extensions.Logging;
using Pipelines.Sockets.Unofficial;

namespace Egress.Dns.Forwarder;

/// <summary>
/// One long-lived tunnel DNS stream that multiplexes queries: each query gets a wire ID unique among the stream's
/// pending queries (the client's own ID is restored on the answer), answers are matched by that ID in any order.
/// The stream opens on first use; when it fails, every pending query fails with it and the next query reopens it.
/// </summary>
internal sealed class DnsTunnelStream(int index, DnsForwarderOptions options, ILogger logger, LogRateLimit unavailableLines, CancellationToken stopping)
{
    private readonly Lock _lock = new();
    private readonly Dictionary<ushort, DnsPendingQuery> _pending = [];
    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private readonly List<DnsPendingQuery> _expired = [];
    private DnsStreamPipe? _connection;
    private Task<DnsStreamPipe?>? _opening;
    private ushort _nextId;
    private long _lastUsed;

    /// <summary>
    /// Registers <paramref name="pending"/> and sends <paramref name="query"/> with its ID overwritten by the wire
    /// ID (the caller restores <see cref="DnsPendingQuery.ClientId"/> afterwards). On false nothing was registered
    /// and the caller answers SERVFAIL itself; on true the reader, the sweeper or a failure completes the query.
    /// </summary>
    public async ValueTask<bool> SendAsync(Memory<byte> query, DnsPendingQuery pending)
    {
        DnsStreamPipe? connection;
        ushort id;
        for (int attempt = 1; ; attempt++)
        {
            connection = Volatile.Read(ref _connection) ?? await OpenAsync(pending.Deadline).ConfigureAwait(false);
            if (connection is null)
            {
                return false;
            }

            lock (_lock)
            {
                if (_pending.Count >= ushort.MaxValue)
                {
                    return false;
                }

                if (ReferenceEquals(_connection, connection))
                {
                    while (_pending.ContainsKey(_nextId))
                    {
                        _nextId++;
                    }

                    id = _nextId++;
                    DnsMessage.WriteId(query.Span, id);
                    _pending.Add(id, pending);
                    _lastUsed = options.TimeProvider.GetTimestamp();
                    break;
                }
            }

            if (attempt == 2)
            {
                return false; // Failed (or closed idle) twice in a row while this query was on its way.
            }
        }

        try
        {
            await _writeLock.WaitAsync(stopping).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            // Stopping before the query was written: unregister it (unless a failure already took it), so the
            // caller, which answers SERVFAIL on false, is the only one that completes it.
            lock (_lock)
            {
                if (_pending.TryGetValue(id, out DnsPendingQuery? registered) && ReferenceEquals(registered, pending))
                {
                    _pending.Remove(id);
                    return false;
                }
            }

            return true;
        }

        try
        {
            DnsTcpFraming.WriteMessage(connection.Output, query.Span);
            FlushResult flushed = await connection.Output.FlushAsync(stopping).ConfigureAwait(false);
            if (flushed.IsCompleted)
            {
                Fail(connection, "the parent stopped reading");
            }
        }
        catch (Exception ex) when (ex is IOException or SocketException or ObjectDisposedException or InvalidOperationException
            or ConnectionResetException or ConnectionAbortedException or OperationCanceledException)
        {
            if (ex is OperationCanceledException && stopping.IsCancellationRequested)
            {
                Fail(connection, "the forwarder is stopping", DnsExchangeStatus.Stopped);
            }
            else
            {
                Fail(connection, ex.Message);
            }
        }
        finally
        {
            _writeLock.Release();
        }

        return true;
    }

    /// <summary>
    /// Fails every pending query whose deadline has passed with <see cref="DnsExchangeStatus.TimedOut"/>, and closes
    /// the stream when it has had no query for <paramref name="idleTicks"/> (it reopens on the next query): the parent
    /// closes idle DNS streams after twice as long (<see cref="DnsStreamLimits.IdleTimeout"/>), so a query is never
    /// sent on a stream the parent is closing.
    /// </summary>
    public void Sweep(long now, long idleTicks)
    {
        DnsPendingQuery[] expired;
        DnsStreamPipe? idle = null;
        lock (_lock)
        {
            if (_connection is not null && _pending.Count == 0 && now - _lastUsed >= idleTicks)
            {
                idle = _connection;
                _connection = null;
            }

            foreach (var (id, query) in _pending)
            {
                if (query.Deadline <= now)
                {
                    _expired.Add(query);
                    _pending.Remove(id);
                }
            }

            expired = TakeExpired();
        }

        // Completed outside the lock: continuations run inline.
        foreach (DnsPendingQuery query in expired)
        {
            query.Complete(DnsExchangeStatus.TimedOut);
        }

        if (idle is not null)
        {
            DnsLog.StreamIdleClosed(logger, index, options.TimeProvider.GetElapsedTime(_lastUsed, now).TotalSeconds);
            idle.Dispose();
        }
    }

    /// <summary>Closes the stream; pending queries complete with <paramref name="status"/>.</summary>
    public void Close(DnsExchangeStatus status)
    {
        DnsStreamPipe? connection = Volatile.Read(ref _connection);
        if (connection is not null)
        {
            Fail(connection, "the forwarder is stopping", status);
        }
    }

    private async Task<DnsStreamPipe?> OpenAsync(long deadline)
    {
        Task<DnsStreamPipe?> opening;
        lock (_lock)
        {
            if (_connection is not null)
            {
                return _connection;
            }

            opening = _opening ??= ConnectAsync();
        }

        TimeSpan remaining = options.TimeProvider.GetElapsedTime(options.TimeProvider.GetTimestamp(), deadline);
        try
        {
            return remaining <= TimeSpan.Zero ? null : await opening.WaitAsync(remaining, options.TimeProvider).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            return null;
        }
    }

    private async Task<DnsStreamPipe?> ConnectAsync()
    {
        await Task.Yield();
        DnsStreamPipe? connection = null;
        try
        {
            using var timeout = new CancellationTokenSource(options.StatusTimeout, options.TimeProvider);
            using var linked = CancellationTokenSource.CreateLinkedTokenSource(timeout.Token, stopping);
            Socket socket = await options.Tunnel.ConnectAsync(linked.Token).ConfigureAwait(false);
            connection = DnsStreamPipe.Start(socket, $"dns stream {index}");
            TunnelCodec.WriteRequest(connection.Output, TunnelRequest.ForDns());
            await connection.Output.FlushAsync(linked.Token).ConfigureAwait(false);
            var (result, response) = await TunnelCodec.ReadResponseAsync(connection.Input, linked.Token).ConfigureAwait(false);
            if (result != TunnelReadResult.Complete || response.Status != TunnelStatus.Ok)
            {
                // Every query tries while the parent refuses (at its limit, or its share): rate-limited as below. A stream
                // closed before the status is no refusal: the parent stopped, crashed, or closed it unanswered at its limit.
                if (unavailableLines.TryEnter(out long heldBack))
                {
                    if (result == TunnelReadResult.TruncatedStream)
                    {
                        DnsLog.StreamUnavailable(logger, index, options.Tunnel.ToString(), TunnelClient.ClosedUnanswered, new HeldBackLines(heldBack));
                    }
                    else
                    {
                        DnsLog.StreamRefused(logger, index, options.Tunnel.ToString(), result, response.Status, response.Detail ?? string.Empty, new HeldBackLines(heldBack));
                    }
                }

                connection.Dispose();
                return null;
            }

            lock (_lock)
            {
                _connection = connection;
                _lastUsed = options.TimeProvider.GetTimestamp();
            }

            DnsLog.StreamOpened(logger, index, options.Tunnel.ToString());
            _ = ReadLoopAsync(connection);
            return connection;
        }
        catch (OperationCanceledException) when (stopping.IsCancellationRequested)
        {
            connection?.Dispose(); // stopping while the stream opened: nothing failed
            return null;
        }
        catch (Exception ex) when (ex is SocketException or IOException or OperationCanceledException
            or ConnectionResetException or ConnectionAbortedException)
        {
            if (unavailableLines.TryEnter(out long heldBack)) // each query tries while the parent is down
            {
                DnsLog.StreamUnavailable(logger, index, options.Tunnel.ToString(), AcceptFailure.Message(ex), new HeldBackLines(heldBack));
            }

            connection?.Dispose();
            return null;
        }
        finally
        {
            lock (_lock)
            {
                _opening = null;
            }
        }
    }

    private async Task ReadLoopAsync(DnsStreamPipe connection)
    {
        string reason;
        var frames = new DnsFrameReader(connection.Input);
        try
        {
            DnsStreamRead read;
            while ((read = await frames.ReadAsync(stopping).ConfigureAwait(false)) == DnsStreamRead.Message)
            {
                Deliver(frames.Message);
            }

            reason = read switch
            {
                DnsStreamRead.EmptyFrame => "the parent sent an empty frame",
                DnsStreamRead.Truncated => "the parent closed the stream in the middle of a frame",
                _ => "the parent closed the stream",
            };
        }
        catch (OperationCanceledException) when (stopping.IsCancellationRequested)
        {
            // A stop, not a failure: the queries still pending are answered as stopped, and the line says so.
            DnsLog.StreamStopped(logger, index);
            Fail(connection, "the forwarder is stopping", DnsExchangeStatus.Stopped);
            return;
        }
        catch (Exception ex) when (ex is IOException or SocketException or ObjectDisposedException or InvalidOperationException
            or ConnectionResetException or ConnectionAbortedException or OperationCanceledException)
        {
            reason = ex.Message;
        }

        Fail(connection, reason);
    }

    private void Deliver(ReadOnlySequence<byte> message)
    {
        if (message.Length < DnsHeader.Length)
        {
            return;
        }

        Span<byte> id = stackalloc byte[2];
        message.Slice(0, 2).CopyTo(id);
        DnsPendingQuery? query;
        lock (_lock)
        {
            if (!_pending.Remove(DnsMessage.ReadId(id), out query))
            {
                return; // Late (already timed out) or unknown: drop.
            }
        }

        query.Answer(message);
    }

    private void Fail(DnsStreamPipe connection, string reason, DnsExchangeStatus status = DnsExchangeStatus.StreamFailed)
    {
        DnsPendingQuery[] expired;
        lock (_lock)
        {
            if (!ReferenceEquals(_connection, connection))
            {
                return;
            }

            _connection = null;
            _expired.AddRange(_pending.Values);
            _pending.Clear();
            expired = TakeExpired();
        }

        // Completed outside the lock: continuations run inline.
        foreach (DnsPendingQuery query in expired)
        {
            query.Complete(status);
        }

        int failed = expired.Length;

        if (status == DnsExchangeStatus.StreamFailed)
        {
            DnsLog.StreamFailed(logger, index, reason, failed);
        }

        SocketReset.Reset(connection.Socket);
        connection.Dispose();
    }

    private DnsPendingQuery[] TakeExpired()
    {
        if (_expired.Count == 0)
        {
            return [];
        }

        DnsPendingQuery[] taken = [.. _expired];
        _expired.Clear();
        return taken;
    }
}
