using Microsoft.Extensions.Logging;

namespace Egress.Diagnostics;

/// <summary>
/// Lets one log line of a kind through per interval and counts the ones held back, so that a flood (of refused
/// queries, of slow streams) cannot flood the log: the line that is let through says how many were held back since
/// the previous one. When a flood stops, no line comes to say so: when a full interval after the first line held back
/// no line has been let through, a summary line (event 16) reports the count, so the log never under-counts a flood
/// that ended, and a flood that goes on still logs one line an interval.
/// Thread-safe; allocates only the summary's one-shot timer, at most once an interval.
/// </summary>
/// <param name="time">The clock, also the summary's timer.</param>
/// <param name="interval">The least time between two lines.</param>
/// <param name="logger">Where the summary line goes; null: no summary (the count waits for the next line).</param>
/// <param name="eventId">The event id of the rate-limited line, named in the summary.</param>
internal sealed class LogRateLimit(TimeProvider time, TimeSpan interval, ILogger? logger = null, int eventId = 0)
{
    /// <summary>The interval of every rate-limited line: one a second.</summary>
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
            if (Interlocked.Increment(ref _suppressed) == 1 && logger is not null)
            {
                ScheduleSummary();
            }

            suppressed = 0;
            return false;
        }

        suppressed = Interlocked.Exchange(ref _suppressed, 0);
        return true;
    }

    /// <summary>Reports, one interval from now, the lines held back by then that no line let through has reported.</summary>
    private void ScheduleSummary() => ScheduleSummaryIn(interval);

    private void ScheduleSummaryIn(TimeSpan delay)
    {
        ITimer? timer = null;
        timer = time.CreateTimer(
            _ =>
            {
                timer?.Dispose();
                long wait = Volatile.Read(ref _next) - time.GetTimestamp();
                if (wait > 0)
                {
                    // Either a line went through since this count began and took it (nothing pending: done), or the
                    // timer fired a little before the interval's end on the timestamp clock (timers tick in
                    // milliseconds): then the count is still pending and must not be lost, so wait for the end.
                    if (Volatile.Read(ref _suppressed) > 0)
                    {
                        ScheduleSummaryIn(TimeSpan.FromSeconds((double)wait / time.TimestampFrequency) + TimeSpan.FromMilliseconds(1));
                    }

                    return;
                }

                long heldBack = Interlocked.Exchange(ref _suppressed, 0);
                if (heldBack > 0)
                {
                    HeldBackLog.HeldBack(logger!, heldBack, eventId, interval.TotalSeconds);
                }
            },
            null,
            delay,
            Timeout.InfiniteTimeSpan);
    }
}

/// <summary>The summary line of <see cref="LogRateLimit"/>.</summary>
internal static partial class HeldBackLog
{
    [LoggerMessage(EventId = 16, Level = LogLevel.Warning, Message = "{HeldBack} more lines of event {EventId} were held back by its rate limit in the last {Seconds} s (the flood that caused them may have ended)")]
    public static partial void HeldBack(ILogger logger, long heldBack, int eventId, double seconds);
}
