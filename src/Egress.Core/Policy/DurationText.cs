using System.Globalization;

namespace Egress.Policy;

/// <summary>Short durations for humans: <c>42s</c>, <c>2m5s</c>, <c>1h0m9s</c>.</summary>
internal static class DurationText
{
    /// <summary>Formats whole seconds, rounding a remaining time up and an elapsed time down.</summary>
    public static string Format(TimeSpan duration, bool roundUp)
    {
        long seconds = Math.Max(0, duration.Ticks) / TimeSpan.TicksPerSecond;
        if (roundUp && duration.Ticks % TimeSpan.TicksPerSecond > 0)
        {
            seconds++;
        }

        long hours = seconds / 3600;
        long minutes = seconds / 60 % 60;
        long rest = seconds % 60;
        return hours > 0 ? string.Create(CultureInfo.InvariantCulture, $"{hours}h{minutes}m{rest}s")
            : minutes > 0 ? string.Create(CultureInfo.InvariantCulture, $"{minutes}m{rest}s")
            : string.Create(CultureInfo.InvariantCulture, $"{rest}s");
    }
}
