using System.Collections.Concurrent;
using System.Threading.Tasks.Sources;
using Egress.Dns.Wire;

namespace Egress.Dns.Upstream;

/// <summary>
/// One UDP query in flight to an upstream: the slot an <see cref="DnsUpstreamSocket"/>'s receive loop completes
/// when the matching answer arrives, or the sweeper, the abort callback or a socket failure completes with a
/// failure. Pooled and awaited as a <see cref="ValueTask{T}"/>, so a query allocates no task or completion source.
/// Exactly one party completes it: whoever removes it from its socket's pending table. An answer completes it
/// inline (the receive loop runs the awaiting code: no thread-pool hop); a failure is handed to the thread pool, so
/// no timer, canceller or closing socket ever runs a resolver's continuation.
/// </summary>
internal sealed class DnsUpstreamQuery : IValueTaskSource<int>, IThreadPoolWorkItem
{
    /// <summary>The result of a query that got no answer in time.</summary>
    public const int Failed = -1;

    /// <summary>The result of a query ended by the abort token.</summary>
    public const int Aborted = -2;

    /// <summary>The result of a query whose socket failed or closed (e.g. the upstream refused: ICMP port unreachable).</summary>
    public const int SocketFailed = -3;

    /// <summary>The result of a UDP exchange whose query the kernel refused as too large (EMSGSIZE): the client asks
    /// over TCP next; never a query's result.</summary>
    public const int TooLargeForUdp = -4;

    /// <summary>The result of a query that got no matching answer in time although a datagram carrying its ID with
    /// another question (or not an answer) arrived: ignored as spoofed, or from an upstream that rewrites questions.</summary>
    public const int Mismatched = -5;

    private const int MaxPooled = 1024;
    private static readonly ConcurrentQueue<DnsUpstreamQuery> Pool = new();

    private ManualResetValueTaskSourceCore<int> _core = new() { RunContinuationsAsynchronously = false };
    private int _failure;

    private DnsUpstreamQuery()
    {
    }

    /// <summary>Gets the query as sent (its ID is the wire ID once sent): what an answer must match.</summary>
    public Memory<byte> Query { get; private set; }

    /// <summary>Gets the buffer the answer is copied into (at least <see cref="DnsForwarding.MaxUdpMessage"/> bytes).</summary>
    public Memory<byte> Response { get; private set; }

    /// <summary>Gets the timestamp (of the client's clock) after which the query times out.</summary>
    public long Deadline { get; private set; }

    /// <summary>Gets the socket the query was sent on, once sent.</summary>
    public DnsUpstreamSocket? Socket { get; private set; }

    /// <summary>Gets the wire ID the query was sent with.</summary>
    public ushort Id { get; private set; }

    /// <summary>Gets whether a datagram with the query's ID that did not answer its question arrived (set by the
    /// socket under its lock; read once the query completed).</summary>
    public bool SawMismatch { get; private set; }

    /// <summary>Records a datagram with the query's ID that does not answer it (called by the socket, under its lock).</summary>
    public void Mismatch() => SawMismatch = true;

    public static DnsUpstreamQuery Rent(Memory<byte> query, Memory<byte> response, long deadline)
    {
        if (!Pool.TryDequeue(out DnsUpstreamQuery? slot))
        {
            slot = new DnsUpstreamQuery();
        }

        slot.Query = query;
        slot.Response = response;
        slot.Deadline = deadline;
        return slot;
    }

    public ValueTask<int> WaitAsync() => new(this, _core.Version);

    /// <summary>Records where the query was sent (called by the socket, under its lock).</summary>
    public void SentOn(DnsUpstreamSocket socket, ushort id)
    {
        Socket = socket;
        Id = id;
    }

    /// <summary>Copies <paramref name="answer"/> and completes with its length, running the continuation inline.</summary>
    public void Answer(ReadOnlySpan<byte> answer)
    {
        if (answer.Length > Response.Length)
        {
            Fail(Failed);
            return;
        }

        answer.CopyTo(Response.Span);
        _core.SetResult(answer.Length);
    }

    /// <summary>Completes with <paramref name="result"/> (<see cref="Failed"/> or <see cref="Aborted"/>) on the thread pool.</summary>
    public void Fail(int result)
    {
        _failure = result;
        ThreadPool.UnsafeQueueUserWorkItem(this, preferLocal: false);
    }

    /// <summary>Returns the slot to the pool; call once its result has been read.</summary>
    public void Return()
    {
        Query = default;
        Response = default;
        Socket = null;
        SawMismatch = false;
        _core.Reset();
        if (Pool.Count < MaxPooled)
        {
            Pool.Enqueue(this);
        }
    }

    void IThreadPoolWorkItem.Execute() => _core.SetResult(_failure);

    int IValueTaskSource<int>.GetResult(short token) => _core.GetResult(token);

    ValueTaskSourceStatus IValueTaskSource<int>.GetStatus(short token) => _core.GetStatus(token);

    void IValueTaskSource<int>.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _core.OnCompleted(continuation, state, token, flags);
}
