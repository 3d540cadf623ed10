namespace Egress.Diagnostics;

/// <summary>
/// The line the hosts write where stdout log lines were dropped because stdout was read more slowly than they came:
/// <c>... warn: Egress.Log[3] 3107 log line(s) dropped here: ...</c>. <see cref="Policy.ReportedDestinations"/> reads
/// the count back, since a would-deny line may be among those dropped.
/// </summary>
internal static class DroppedLogLines
{
    /// <summary>The text right after the count (and a space).</summary>
    public const string Text = "log line(s) dropped here";

    /// <summary>The count <paramref name="line"/> reports (the digits right before the first <see cref="Text"/> with
    /// digits before it, at most 18), or 0 when it reports none.</summary>
    public static long Count(string line)
    {
        for (var at = line.IndexOf(Text, StringComparison.Ordinal); at >= 0; at = line.IndexOf(Text, at + Text.Length, StringComparison.Ordinal))
        {
            var end = at - 1;
            if (end < 1 || line[end] != ' ')
            {
                continue;
            }

            var start = end;
            while (start > 0 && char.IsAsciiDigit(line[start - 1]) && end - start < 18)
            {
                start--;
            }

            // More digits than a count has are not one the hosts wrote.
            if (start > 0 && char.IsAsciiDigit(line[start - 1]))
            {
                continue;
            }

            if (start < end && long.TryParse(line.AsSpan(start, end - start), System.Globalization.NumberStyles.None,
                System.Globalization.CultureInfo.InvariantCulture, out var count))
            {
                return count;
            }
        }

        return 0;
    }
}
