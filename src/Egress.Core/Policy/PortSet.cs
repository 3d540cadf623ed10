using System.Globalization;
using System.Text;

namespace Egress.Policy;

/// <summary>
/// The TCP ports a destination entry allows: single ports and inclusive ranges, 1 … 65535, written
/// <c>443</c>, <c>587,465</c> or <c>8000-8100</c> (combined: <c>80,443,8000-8100</c>). Immutable; <see cref="Text"/> keeps
/// the order written, lookups are a scan of the few ranges.
/// </summary>
internal sealed class PortSet
{
    private readonly (int First, int Last)[] _ranges;

    private PortSet((int First, int Last)[] ranges, string text, string? repeated)
    {
        _ranges = ranges;
        Text = text;
        Repeated = repeated;
    }

    /// <summary>The ports as written in canonical form, e.g. <c>587,465</c> or <c>8000-8100</c>.</summary>
    public string Text { get; }

    /// <summary>The first item made moot by another of the list: one that allows nothing the items before it did not
    /// (<c>443</c> in <c>443,443</c>, <c>8080</c> in <c>8000-8100,8080</c>), or an earlier one a later item covers
    /// (<c>8080</c> in <c>8080,8000-8100</c>); among the first 64 items only. Null when none: a repeat within one entry
    /// is allowed, and warned of.</summary>
    public string? Repeated { get; }

    /// <summary>Whether the set is one port (<c>443</c>), for "port" against "ports" in a line.</summary>
    public bool IsSinglePort => _ranges.Length == 1 && _ranges[0].First == _ranges[0].Last;

    /// <summary>Whether <paramref name="port"/> is one of the ports.</summary>
    public bool Contains(int port)
    {
        foreach (var (first, last) in _ranges)
        {
            if (port >= first && port <= last)
            {
                return true;
            }
        }

        return false;
    }

    private static readonly (int First, int Last)[] EveryPort = [(1, 65535)];

    /// <summary>Whether <paramref name="inner"/> allows no port that <paramref name="outer"/> does not (null: every port).</summary>
    public static bool IsWithin(PortSet? inner, PortSet? outer)
    {
        if (outer is null)
        {
            return true;
        }

        foreach (var (first, last) in inner?._ranges ?? EveryPort)
        {
            // Walk the range through outer's ranges that cover it, which may overlap and come in any order.
            for (int port = first; port <= last;)
            {
                int coveredTo = -1;
                foreach (var (outerFirst, outerLast) in outer._ranges)
                {
                    if (port >= outerFirst && port <= outerLast)
                    {
                        coveredTo = Math.Max(coveredTo, outerLast);
                    }
                }

                if (coveredTo < 0)
                {
                    return false;
                }

                port = coveredTo + 1;
            }
        }

        return true;
    }

    /// <summary>Whether <paramref name="ports"/> (null: every port) allows <paramref name="port"/>.</summary>
    public static bool Allows(PortSet? ports, int port) => ports is null || ports.Contains(port);

    /// <summary>Parses a port list; returns null on success, else the reason.</summary>
    public static string? TryParse(string text, out PortSet? ports)
    {
        ports = null;
        if (text.Length == 0)
        {
            return "names no port after ':'";
        }

        var ranges = new List<(int First, int Last)>();
        var canonical = new StringBuilder();
        string? repeated = null;
        foreach (Range part in text.AsSpan().Split(','))
        {
            string item = text[part];
            int dash = item.IndexOf('-', StringComparison.Ordinal);
            string? reason = dash < 0
                ? ParsePort(item, out int single) ?? Add(ranges, single, single)
                : dash == 0 || dash == item.Length - 1
                    // "80-" or "-80": said as the range it is, not as a port "" that is not a number (a trial).
                    ? $"port range \"{item}\" has no {(dash == 0 ? "first" : "last")} port: write FIRST-LAST, such as \"8000-8099\""
                : ParsePort(item[..dash], out int first) ?? ParsePort(item[(dash + 1)..], out int last)
                    ?? (first > last ? $"port range \"{item}\" runs backwards" : Add(ranges, first, last));
            if (reason is not null)
            {
                return reason;
            }

            // Repeats are looked for among the first items only (a list of thousands, written by hand or not, would
            // make this quadratic); without allocating.
            if (repeated is null && ranges.Count is > 1 and <= MaxItemsCheckedForRepeats)
            {
                repeated = RepeatIn(ranges, canonical, item);
            }

            canonical.Append(canonical.Length > 0 ? "," : string.Empty).Append(item);
        }

        ports = new PortSet([.. ranges], canonical.ToString(), repeated);
        return null;
    }

    /// <summary>The most items of one list compared with each other for <see cref="Repeated"/>.</summary>
    private const int MaxItemsCheckedForRepeats = 64;

    /// <summary>The item that the last range makes a repeat: itself when the ranges before it cover it, else the first
    /// earlier item it covers (<c>8080</c> in <c>8080,8000-8100</c>); null when none.</summary>
    private static string? RepeatIn(List<(int First, int Last)> ranges, StringBuilder canonical, string item)
    {
        (int first, int last) = ranges[^1];
        for (int port = first; port <= last;)
        {
            int coveredTo = -1;
            for (int i = 0; i < ranges.Count - 1; i++)
            {
                if (port >= ranges[i].First && port <= ranges[i].Last)
                {
                    coveredTo = Math.Max(coveredTo, ranges[i].Last);
                }
            }

            if (coveredTo < 0)
            {
                break;
            }

            if (coveredTo >= last)
            {
                return item;
            }

            port = coveredTo + 1;
        }

        for (int i = 0; i < ranges.Count - 1; i++)
        {
            if (ranges[i].First >= first && ranges[i].Last <= last)
            {
                // The i-th item as written: canonical holds the items before this one, joined by ','.
                return canonical.ToString().Split(',')[i];
            }
        }

        return null;
    }

    /// <summary>The ports as a list for a decision line.</summary>
    public override string ToString() => Text;

    private static string? Add(List<(int First, int Last)> ranges, int first, int last)
    {
        ranges.Add((first, last));
        return null;
    }

    private static string? ParsePort(string text, out int port)
    {
        port = 0;
        return text.Length is 0 or > 5 || text.AsSpan().IndexOfAnyExceptInRange('0', '9') >= 0 || (text.Length > 1 && text[0] == '0')
            || !int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out port) || port is < 1 or > 65535
            ? $"port \"{text}\" is not a number from 1 to 65535"
            : null;
    }
}
