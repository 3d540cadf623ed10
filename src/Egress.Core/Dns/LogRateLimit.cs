namespace Egress.Dns;

/// <summary>
/// Lets one log line of a kind through per interval and counts the ones held back, so that a flood (of refused
/// queries, of slow streams) cannot flood the log: the line that is let through says how many were held back since
/// the previous one. Thread-safe; allocates nothing.
/// </summary>
/// <param name="time">The clock.</param>
/// <param name="interval">The least time between two lines.</param>
internal sealed class LogRateLimit(TimeProvider time, TimeSpan interval)
{
    /// <summary>The interval of every rate-limited DNS line: one a second.</summary>
    public static readonly TimeSpan DefaultInterval = TimeSpan.FromSeconds(1);

    private readonly long _intervalTicks = (long)(interval.TotalSeconds * time.TimestampFrequency);
    private long _next = long.MinValue;
    private long _suppressed;

    /// <summary>Whether to log now; when true, <paramref name="suppressed"/> is how many were held back since the last line.</summary>
    public bool TryEnter(out long suppressed)
    {
        long now = time.GetTimestamp();
        long next = Volatile.Read(ref _next);
        if (now < next || Interlocked.CompareExchange(ref _next, now + _intervalTicks, next) != next)
        {
            Interlocked.Increment(ref _suppressed);
            suppressed = 0;
            return false;
        }

        suppressed = Interlocked.Exchange(ref _suppressed, 0);
        return true;
    }
}
