using System.Buffers;
using System.Collections.Concurrent;
using System.Threading.Tasks.Sources;
using Egress.Dns.Wire;

namespace Egress.Dns.Forwarder;

/// <summary>
/// One query in flight on a tunnel DNS stream: the slot the stream's reader completes when the answer with its
/// wire ID arrives (or the sweeper when its deadline passes). Pooled and awaited as a <see cref="ValueTask{T}"/>,
/// so a query costs no task or completion-source allocation. Exactly one party completes it: whoever removes it
/// from the stream's pending table, outside the table's lock: the awaiting code runs inline on the completing
/// thread (the stream's read loop for an answer), which saves a thread-pool hop per query.
/// </summary>
internal sealed class DnsPendingQuery : IValueTaskSource<DnsExchangeStatus>
{
    private const int MaxPooled = 256;
    private static readonly ConcurrentQueue<DnsPendingQuery> Pool = new();

    private ManualResetValueTaskSourceCore<DnsExchangeStatus> _core = new() { RunContinuationsAsynchronously = false };

    private DnsPendingQuery()
    {
    }

    /// <summary>Gets the buffer the answer is copied into (rented at the answer's size when it arrives).</summary>
    public DnsAnswerBuffer? Response { get; private set; }

    /// <summary>Gets the client's own message ID, written back into the answer.</summary>
    public ushort ClientId { get; private set; }

    /// <summary>Gets the timestamp (of the forwarder's clock) after which the query times out.</summary>
    public long Deadline { get; private set; }

    /// <summary>Gets the length of the answer once <see cref="DnsExchangeStatus.Answered"/>.</summary>
    public int ResponseLength { get; private set; }

    public static DnsPendingQuery Rent(DnsAnswerBuffer response, ushort clientId, long deadline)
    {
        if (!Pool.TryDequeue(out DnsPendingQuery? query))
        {
            query = new DnsPendingQuery();
        }

        query.Response = response;
        query.ClientId = clientId;
        query.Deadline = deadline;
        query.ResponseLength = 0;
        return query;
    }

    public ValueTask<DnsExchangeStatus> WaitAsync() => new(this, _core.Version);

    /// <summary>Copies the answer (restoring the client's ID) into a buffer of its size and completes.</summary>
    public void Answer(ReadOnlySequence<byte> message)
    {
        Span<byte> destination = Response!.GetSpan((int)message.Length);
        message.CopyTo(destination);
        DnsMessage.WriteId(destination, ClientId);
        ResponseLength = (int)message.Length;
        Complete(DnsExchangeStatus.Answered);
    }

    public void Complete(DnsExchangeStatus status) => _core.SetResult(status);

    /// <summary>Returns the slot to the pool; call once its result has been read.</summary>
    public void Return()
    {
        Response = null;
        _core.Reset();
        if (Pool.Count < MaxPooled)
        {
            Pool.Enqueue(this);
        }
    }

    DnsExchangeStatus IValueTaskSource<DnsExchangeStatus>.GetResult(short token) => _core.GetResult(token);

    ValueTaskSourceStatus IValueTaskSource<DnsExchangeStatus>.GetStatus(short token) => _core.GetStatus(token);

    void IValueTaskSource<DnsExchangeStatus>.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _core.OnCompleted(continuation, state, token, flags);
}
