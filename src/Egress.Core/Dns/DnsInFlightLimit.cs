namespace Egress.Dns;

/// <summary>A count of queries in flight with a ceiling, shared by every stream of one service. Thread-safe.</summary>
/// <param name="limit">The most queries in flight at once (at least 1).</param>
internal sealed class DnsInFlightLimit(int limit)
{
    private int _inFlight;

    /// <summary>Gets the most queries in flight at once.</summary>
    public int Limit { get; } = limit;

    /// <summary>Gets the queries in flight now.</summary>
    public int InFlight => Volatile.Read(ref _inFlight);

    /// <summary>Takes a place (give it back with <see cref="Release"/>), unless all are taken.</summary>
    public bool TryTake()
    {
        if (Interlocked.Increment(ref _inFlight) > Limit)
        {
            Interlocked.Decrement(ref _inFlight);
            return false;
        }

        return true;
    }

    /// <summary>Gives back a place taken by <see cref="TryTake"/>.</summary>
    public void Release() => Interlocked.Decrement(ref _inFlight);
}
