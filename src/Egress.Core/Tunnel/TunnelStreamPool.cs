using System.Net.Sockets;
using Egress.Sockets;

namespace Egress.Tunnel;

/// <summary>
/// The enclave's small pool of clean version 2 tunnel streams (issue 15, item 2: stream reuse): a stream whose both
/// directions ended with END(FIN) is at a frame boundary with nothing in flight and may carry the next request. Bounded
/// (<see cref="Capacity"/>), most recently returned first, and a stream idle for <see cref="IdleExpiry"/> is closed
/// rather than rented (keep it below the parent's own idle limit for streams between requests). A stream the parent
/// closed or reset meanwhile (egress-host restarted) or that holds unexpected bytes is never rented: each candidate
/// is checked with a zero-timeout poll, and a readable idle stream is dead. Thread-safe.
/// </summary>
/// <remarks>
/// egress-enclave's proxy owns one (<see cref="DefaultCapacity"/>, <see cref="DefaultIdleExpiry"/>), rents through
/// <see cref="TunnelClient"/> and returns streams after a clean relay; the parent keeps such a stream open for the next
/// request for <see cref="Gateway.TunnelStreamHandler.DefaultIdleBetweenRequests"/>. docs/tunnel-protocol.md, "Stream reuse".
/// </remarks>
internal sealed class TunnelStreamPool : IDisposable
{
    /// <summary>The enclave's pool size: idle streams kept at most (a burst of more connections opens new streams, and
    /// the streams beyond this are closed when their connections end).</summary>
    internal const int DefaultCapacity = 16;

    /// <summary>How long the enclave keeps an idle stream: 20 s, well below the parent's 60 s
    /// (<see cref="Gateway.TunnelStreamHandler.DefaultIdleBetweenRequests"/>), so the parent's idle close is rarely what the
    /// enclave meets.</summary>
    internal static readonly TimeSpan DefaultIdleExpiry = TimeSpan.FromSeconds(20);

    private readonly Lock _lock = new();
    private readonly List<(Socket Stream, long ReturnedAt)> _idle = [];
    private readonly TimeProvider _time;
    private bool _disposed;

    /// <param name="capacity">Most streams kept, 1 or more.</param>
    /// <param name="idleExpiry">How long a stream may wait in the pool; positive.</param>
    /// <param name="time">The clock for the expiry.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="capacity"/> or <paramref name="idleExpiry"/> is not positive.</exception>
    public TunnelStreamPool(int capacity, TimeSpan idleExpiry, TimeProvider time)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(idleExpiry, TimeSpan.Zero);
        Capacity = capacity;
        IdleExpiry = idleExpiry;
        _time = time;
    }

    /// <summary>
    /// Whether a version 2 relay left its stream clean for another request: both directions ended with END(FIN) and
    /// nothing aborted it (no error, idle timeout, stop or refusal), so the stream is at a frame boundary with nothing in flight.
    /// </summary>
    internal static bool EndedClean(Relay.RelayResult relay) =>
        relay.Framed is { IsClean: true } && relay.FirstCause == Relay.RelayShutdownCause.BothCompleted;

    /// <summary>Most streams kept.</summary>
    public int Capacity { get; }

    /// <summary>How long a stream may wait in the pool.</summary>
    public TimeSpan IdleExpiry { get; }

    /// <summary>Streams waiting in the pool now (some may have expired or died since).</summary>
    public int Count
    {
        get
        {
            lock (_lock)
            {
                return _idle.Count;
            }
        }
    }

    /// <summary>Offers a clean stream (both directions ended with END(FIN)) for reuse.</summary>
    /// <returns>True when the pool took it; false when it is full or disposed: then the caller closes the stream.</returns>
    public bool TryReturn(Socket stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        lock (_lock)
        {
            if (_disposed || _idle.Count >= Capacity)
            {
                return false;
            }

            _idle.Add((stream, _time.GetTimestamp()));
            return true;
        }
    }

    /// <summary>
    /// The most recently returned stream that has not expired and is still open and silent; expired or dead streams met
    /// on the way are closed. Null when there is none: open a new stream.
    /// </summary>
    public Socket? TryRent()
    {
        List<Socket>? discarded = null;
        Socket? rented = null;
        lock (_lock)
        {
            while (_idle.Count > 0)
            {
                var (stream, returnedAt) = _idle[^1];
                _idle.RemoveAt(_idle.Count - 1);
                if (_time.GetElapsedTime(returnedAt) < IdleExpiry && IsOpenAndSilent(stream))
                {
                    rented = stream;
                    break;
                }

                (discarded ??= []).Add(stream);
            }
        }

        discarded?.ForEach(static stream => stream.Dispose());
        return rented;
    }

    /// <summary>Closes the streams that have waited longer than <see cref="IdleExpiry"/>.</summary>
    /// <returns>How many were closed.</returns>
    public int Trim()
    {
        List<Socket> expired = [];
        lock (_lock)
        {
            for (int i = _idle.Count - 1; i >= 0; i--)
            {
                if (_time.GetElapsedTime(_idle[i].ReturnedAt) >= IdleExpiry)
                {
                    expired.Add(_idle[i].Stream);
                    _idle.RemoveAt(i);
                }
            }
        }

        expired.ForEach(static stream => stream.Dispose());
        return expired.Count;
    }

    /// <summary>Closes every pooled stream and takes no more.</summary>
    public void Dispose()
    {
        List<(Socket Stream, long ReturnedAt)> idle;
        lock (_lock)
        {
            _disposed = true;
            idle = [.. _idle];
            _idle.Clear();
        }

        idle.ForEach(static entry => entry.Stream.Dispose());
    }

    /// <summary>
    /// An idle pooled stream must have nothing to read: readable means end of stream (the parent closed it), an error
    /// (reset), or bytes nobody asked for. Either way it cannot carry a request. One poll(2) for all of them: readable
    /// or urgent data asked for, and the kernel always reports POLLERR, POLLHUP and POLLNVAL (two Socket.Poll calls,
    /// read then error, were two system calls per rented stream).
    /// </summary>
    private static bool IsOpenAndSilent(Socket stream)
    {
        try
        {
            // 1 or more: something happened (readable, error, hang-up); -1: the check itself failed. Only 0 is silent.
            return SocketNative.PollNow(stream.SafeHandle, SocketNative.PollIn | SocketNative.PollPri) == 0;
        }
        catch (ObjectDisposedException)
        {
            return false;
        }
    }
}
