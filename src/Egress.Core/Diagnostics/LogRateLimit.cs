using Microsoft.Extensions.Logging;

namespace Egress.Diagnostics;

/// <summary>
/// Lets one log line of a kind through per interval and counts the ones held back, so that a flood (of refused
/// queries, of slow streams) cannot flood the log: the line that is let through says how many were held back since
/// the previous one. When a flood stops, no line comes to say so: when a whole interval has passed after the end of
/// the last line's interval with no line let through (no line of the kind was even tried then: it would have gone
/// through), a summary line (event 16) reports the count, so the log never under-counts a flood that ended. A flood
/// that goes on, even in bursts up to an interval apart, logs one line an interval, which carries the count: the
/// summary used to fire one interval after the first line held back, which came a moment after the line let through,
/// so it beat the next burst's line, which then said "0 more" (a trial's floods of refused connections).
/// Thread-safe; allocates only the summary's one-shot timer, at most once an interval.
/// </summary>
/// <param name="time">The clock, also the summary's timer.</param>
/// <param name="interval">The least time between two lines.</param>
/// <param name="logger">Where the summary line goes; null: no summary (the count waits for the next line).</param>
/// <param name="eventId">The event id of the rate-limited line, named in the summary.</param>
/// <param name="linesPerInterval">How many lines an interval lets through (from the first of them on): 1 for a line
/// that says the same each time (a limit reached), more for one whose every instance says something of its own (the
/// name of a query that failed) and comes one at a time in normal running, a flood only in an outage.</param>
internal sealed class LogRateLimit(TimeProvider time, TimeSpan interval, ILogger? logger = null, int eventId = 0, int linesPerInterval = 1)
{
    /// <summary>The interval of every rate-limited line: one a second.</summary>
    public static readonly TimeSpan DefaultInterval = TimeSpan.FromSeconds(1);

    /// <summary>The lines a second let through for a line that names what failed (a query, a connection): the first
    /// ten of an outage say what they are, the rest are counted.</summary>
    public const int FailureLinesPerInterval = 10;

    private readonly long _intervalTicks = (long)(interval.TotalSeconds * time.TimestampFrequency);
    private readonly Lock _window = new();
    private long _next = long.MinValue;
    private int _linesInWindow;
    private long _suppressed;

    /// <summary>Whether to log now; when true, <paramref name="suppressed"/> is how many were held back since the last line.</summary>
    public bool TryEnter(out long suppressed)
    {
        if (linesPerInterval > 1)
        {
            return TryEnterWindow(out suppressed);
        }

        long now = time.GetTimestamp();
        long next = Volatile.Read(ref _next);
        if (now < next || Interlocked.CompareExchange(ref _next, now + _intervalTicks, next) != next)
        {
            if (Interlocked.Increment(ref _suppressed) == 1 && logger is not null)
            {
                ScheduleSummary(Volatile.Read(ref _next), TimeSpan.Zero);
            }

            suppressed = 0;
            return false;
        }

        suppressed = Interlocked.Exchange(ref _suppressed, 0);
        return true;
    }

    /// <summary><see cref="TryEnter"/> for more than one line an interval: the interval begins with its first line
    /// (<see cref="_next"/> is its end, as for one line), and lets <c>linesPerInterval</c> through.</summary>
    private bool TryEnterWindow(out long suppressed)
    {
        lock (_window)
        {
            long now = time.GetTimestamp();
            if (now >= _next)
            {
                Volatile.Write(ref _next, now + _intervalTicks);
                _linesInWindow = 0;
            }

            if (_linesInWindow < linesPerInterval)
            {
                _linesInWindow++;
                suppressed = Interlocked.Exchange(ref _suppressed, 0);
                return true;
            }
        }

        if (Interlocked.Increment(ref _suppressed) == 1 && logger is not null)
        {
            ScheduleSummary(Volatile.Read(ref _next), TimeSpan.Zero);
        }

        suppressed = 0;
        return false;
    }

    /// <summary>Reports the lines held back after the line whose interval ends at <paramref name="intervalEnd"/> (a
    /// timestamp), a whole interval after that end, unless a line was let through meanwhile: it took the count, and
    /// the lines held back after it have their own summary scheduled.</summary>
    /// <param name="intervalEnd">When the last line's interval ends (a timestamp).</param>
    /// <param name="margin">Added to the wait: a millisecond once the timer has fired early.</param>
    private void ScheduleSummary(long intervalEnd, TimeSpan margin)
    {
        long due = intervalEnd + _intervalTicks;
        long wait = due - time.GetTimestamp();
        ITimer? timer = null;
        timer = time.CreateTimer(
            _ =>
            {
                timer?.Dispose();
                if (Volatile.Read(ref _next) != intervalEnd)
                {
                    return; // a line went through since: it took the count
                }

                if (due - time.GetTimestamp() > 0)
                {
                    // The timer fired a little before its time on the timestamp clock (timers tick in milliseconds):
                    // the count is still pending and must not be lost, so wait for the time.
                    ScheduleSummary(intervalEnd, TimeSpan.FromMilliseconds(1));
                    return;
                }

                long heldBack = Interlocked.Exchange(ref _suppressed, 0);
                if (heldBack > 0)
                {
                    HeldBackLog.HeldBack(logger!, heldBack, eventId, interval.TotalSeconds);
                }
            },
            null,
            TimeSpan.FromSeconds(Math.Max(0, (double)wait / time.TimestampFrequency)) + margin,
            Timeout.InfiniteTimeSpan);
    }
}

/// <summary>The summary line of <see cref="LogRateLimit"/>.</summary>
internal static partial class HeldBackLog
{
    [LoggerMessage(EventId = 16, Level = LogLevel.Warning, Message = "{HeldBack} more lines of event {EventId} were held back by its rate limit after its last line, and none came in the {Seconds} s after that line's interval (the flood that caused them has ended or paused)")]
    public static partial void HeldBack(ILogger logger, long heldBack, int eventId, double seconds);
}
